//! The WebRTC data-channel path: for two nodes that cannot dial each other but can get UDP
//! through, by hole punching (ICE with STUN) or through a TURN server.
//!
//! The receiver drives it, as it drives every path: it builds a peer connection, opens one
//! ordered, reliable data channel, and sends its offer through the channel the two nodes already
//! share (relay or folder), sealed under a key from the session key ([`signal`]). The sender's
//! channel serve loop ([`serve`]) answers, and bridges the data channel to a session of the
//! engine. On the channel travel the same things as on every path: the receiver's sealed control
//! frames (one message each) and the sender's sealed frames, cut into messages no larger than the
//! peer accepts ([`fragment`]).
//!
//! Memory stays bounded on both ends: the sender's data channel has a send-buffer limit (`send`
//! waits above it), the receiver runs this path with a finite window of chunks (see the engine's
//! tuning), and the SCTP receive window bounds what is in flight.
//!
//! This module knows nothing of chunks or files: like the other paths it moves sealed bytes
//! through the seam of [`crate::transport`]. It owns no key either: the engine derives the
//! signalling mailboxes and cipher from the session key.

pub mod fragment;
pub mod ice;
mod link;
mod peer;
mod runtime;
mod serve;
pub mod signal;

pub use ice::IceServer;
pub use link::{WebrtcLink, connect};
pub use serve::{GOODBYE_BUDGET, serve};
pub use signal::Signalling;

/// Data-channel message size for frames: 64 KiB, the size every WebRTC stack accepts (RFC 8841's
/// default), capped by what the peer's SDP says it accepts. Measured on loopback (256 MiB,
/// webrtc-rs at both ends): 16 KiB took twice as long as 64 KiB; 128 and 256 KiB were no faster
/// than 64 KiB within the noise, so the size every peer accepts stays.
pub const MESSAGE_SIZE: usize = 64 * 1024;

/// The label of the one data channel of a transfer.
pub const LABEL: &str = "agentferry";

/// STUN and TURN servers for this node, and whether to use TURN only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceConfig {
    pub servers: Vec<IceServer>,
    /// Gather relayed candidates only (ICE transport policy `relay`): every byte through TURN,
    /// neither address shown to the other side.
    pub relay_only: bool,
    /// Refuse a connection whose selected pair goes through TURN (see [`IceConfig::without_turn`]).
    pub refuse_turn: bool,
}

impl IceConfig {
    /// These settings for a run that has the chunk relay to fall back on: no TURN server, and a
    /// connection that only the other side's TURN server reaches is refused. webrtc-rs receives
    /// through TURN far slower than our chunk relay carries the same bytes (see docs/webrtc.md), so
    /// `auto` hole-punches or takes the relay; TURN is used when WebRTC is pinned.
    pub fn without_turn(&self) -> IceConfig {
        let servers = self.servers.iter().filter(|s| !s.is_turn()).cloned().collect();
        IceConfig { servers, relay_only: self.relay_only, refuse_turn: true }
    }

    /// These servers, plus `fallback_stun` (a relay's STUN responder) when none of them is a
    /// STUN server.
    pub fn with_default_stun(&self, fallback_stun: Option<IceServer>) -> IceConfig {
        let mut config = self.clone();
        if !config.servers.iter().any(|s| !s.is_turn())
            && let Some(stun) = fallback_stun
        {
            config.servers.push(stun);
        }
        config
    }
}

/// How the selected ICE candidate pair reaches the other side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Host, server-reflexive or peer-reflexive candidates on both ends: hole-punched or direct.
    Direct,
    /// Through a TURN server on at least one end.
    Turn,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Turn => "turn",
        }
    }
}
