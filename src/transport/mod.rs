//! Transports: byte pipes that carry sealed frames between two nodes.
//!
//! A transport knows how to reach a peer and move frames; it knows nothing of chunks, windows or
//! resume, which live in [`crate::core`]. Because every path carries the same self-contained
//! frames, a transfer can continue on another path from chunk N. Two paths exist: direct HTTP
//! streaming, and the message channel ([`crate::relay`]: a relay server or a shared folder);
//! WebRTC data channels plug in beside them.

pub mod http;

use std::fmt;

use serde::Serialize;

/// How frames move between two nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// The receiver opens a TCP connection to the sender and streams frames over HTTP/1.1.
    Http,
    /// Both sides reach a relay or shared folder from the inside; frames travel as messages.
    Relay,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Http => "http",
            PathKind::Relay => "relay",
        }
    }
}

/// Which path a receiver should use. `auto` tries direct HTTP first, then the channel.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    #[default]
    Auto,
    Http,
    Relay,
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
