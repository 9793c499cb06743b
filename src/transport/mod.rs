//! The seam every path implements: sealed control frames one way, sealed frames the other.
//!
//! A path knows how to reach the other node and move bytes; it knows nothing of chunks, windows,
//! resume or which path is better, which live in [`crate::core`], and nothing of files, which the
//! engine owns. Every path carries the same two things in one encoding:
//!
//! - from the receiver, *control frames*: a [`crate::core::Control`] (hello, want, credit,
//!   complete) sealed under the session key;
//! - from the sender, *frames*: the sealed manifest, chunks and trailer of [`crate::frame`].
//!
//! Because frames are self-contained, a transfer can continue on another path from chunk N.
//!
//! Each path has two halves:
//!
//! - the receiver's [`Link`]: [`Link::send`] posts one sealed control frame; what the sender
//!   answers arrives as [`Incoming`] items on the channel that came with the link. A path with
//!   responses (HTTP) ends each answer with [`Incoming::StreamEnd`]; a path of messages (a relay
//!   mailbox, a shared folder) just delivers frames. [`Incoming::Lost`] says the path broke.
//! - the sender's side hands every control frame a receiver sends to a [`Serve`] (the engine)
//!   and carries back the frames of the [`Session`] it opens.
//!
//! The paths: [`http`] (the receiver dials the sender), [`webrtc`] (a data channel, hole-punched
//! or through TURN, signalled over the channel) and [`channel`] (both reach a relay or a shared
//! folder from the inside).

pub mod channel;
pub mod http;
pub mod webrtc;

use std::fmt;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{error::TransferError, id::TransferId};

/// How frames move between two nodes, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// The receiver opens a TCP connection to the sender and streams frames over HTTP/1.1.
    Http,
    /// A WebRTC data channel (ICE: direct, hole-punched or through TURN), signalled over the
    /// channel; frames travel as data-channel messages.
    Webrtc,
    /// Both sides reach a relay or shared folder from the inside; frames travel as messages.
    Relay,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Http => "http",
            PathKind::Webrtc => "webrtc",
            PathKind::Relay => "relay",
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which path a receiver should use. `auto` starts on the best path that answers, falls back
/// when it stops delivering and moves up when a better one opens; the others pin one path.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    #[default]
    Auto,
    Http,
    Webrtc,
    Relay,
}

impl Prefer {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::Auto => "auto",
            Prefer::Http => "http",
            Prefer::Webrtc => "webrtc",
            Prefer::Relay => "relay",
        }
    }

    /// The one path this preference pins, if any.
    pub fn pinned(self) -> Option<PathKind> {
        match self {
            Prefer::Auto => None,
            Prefer::Http => Some(PathKind::Http),
            Prefer::Webrtc => Some(PathKind::Webrtc),
            Prefer::Relay => Some(PathKind::Relay),
        }
    }
}

/// What a receiver's link hears from the sender.
#[derive(Debug)]
pub enum Incoming {
    /// One whole sealed frame (not yet authenticated).
    Frame(BytesMut),
    /// The answer to the last control frame ended (paths with responses only).
    StreamEnd,
    /// The path broke: connection refused or reset, channel gone.
    Lost(TransferError),
}

/// The receiver's end of one path to the sender.
pub trait Link: Send {
    fn kind(&self) -> PathKind;

    /// Where this link goes (an address or a channel), for attempts and logs.
    fn peer(&self) -> String;

    /// How the bytes travel on paths that have a choice: `direct` or `turn` on WebRTC.
    fn route(&self) -> Option<&'static str> {
        None
    }

    /// Post one sealed control frame to the sender. On a path with responses, the answer to an
    /// earlier frame that is still streaming is abandoned. An error means the path is gone.
    fn send(&mut self, control: Bytes) -> BoxFuture<'_, Result<(), TransferError>>;

    /// Post a last control frame and wait until it has left this process.
    fn send_last(&mut self, control: Bytes) -> BoxFuture<'_, Result<(), TransferError>>;
}

/// A link that answered the hello with an authentic manifest.
pub struct Connected {
    pub link: Box<dyn Link>,
    pub incoming: mpsc::Receiver<Incoming>,
    /// The sealed manifest the sender answered with, already checked.
    pub manifest: BytesMut,
}

/// One try at one address of a path, for the record shown to users.
#[derive(Debug)]
pub struct AttemptReport {
    pub kind: PathKind,
    pub peer: String,
    pub elapsed: std::time::Duration,
    pub error: Option<TransferError>,
    /// The route of a WebRTC connection that opened (see [`Link::route`]).
    pub route: Option<&'static str>,
}

/// The sender's side of one transfer, as the paths see it: the engine implements it.
pub trait Serve: Send + Sync + 'static {
    fn transfer_id(&self) -> TransferId;

    /// Does `token` authorise access (the bearer token of this transfer, not yet expired)?
    /// Constant-time.
    fn authorises(&self, token: &str) -> bool;

    /// Start a session for one receiver on `path`: the path pushes the control frames that
    /// arrive into `controls` and carries back what comes out of `frames`. The session ends
    /// when `controls` is closed and everything asked for has been sent.
    fn open_session(&self, path: PathKind) -> Session;
}

/// A receiver's session with the sender, as a path carries it.
pub struct Session {
    pub controls: mpsc::Sender<Bytes>,
    pub frames: mpsc::Receiver<Bytes>,
}
