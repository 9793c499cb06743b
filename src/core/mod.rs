//! The sans-IO transfer core: what to ask for, what to send, when to checkpoint, which path to
//! use, when to give up.
//!
//! Nothing here owns a socket, a file or a clock. Drivers feed inputs through `handle_*(now, ..)`
//! methods, then drain `poll_*` outputs until they return `None`, and sleep until
//! [`ReceiveCore::poll_timeout`] or the next input, whichever comes first (the str0m/quinn-proto
//! pattern). Because time is an argument, tests drive the same code under a virtual clock with
//! loss, reordering, duplication and vanishing peers, far faster than real time.
//!
//! The protocol is receiver-driven: the receiver asks for a range of chunks ([`Request`]); the
//! sender's [`SendCore`] turns a request into an ordered list of frames to transmit. A new request
//! supersedes the previous one, which makes retransmission, resume and a change of path the same
//! thing: ask again from the first chunk that is missing.

mod chat;
mod path;
mod paths;
mod receive;
mod receiver;
mod send;
#[cfg(test)]
mod tests;

pub use chat::{ChatReceive, Need, freshest, opening, transmits};
pub use path::{PathKind, Prefer};
pub use paths::{Failure, PathConfig, PathOutput, PathSelector};
pub use receive::{GiveUp, OutOfRange, Output, ReceiveConfig, ReceiveCore, Verdict};
pub use receiver::{Action, Receiver};
pub use send::{CreditWithoutRequest, SendCore, Transmit};

/// What a receiver says to a sender, on every path the same: sealed as a control frame (JSON
/// payload) and carried as an HTTP request body or a channel message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    /// Prove you hold the session key: answer with the sealed manifest.
    Hello,
    /// Send chunks `[from, to)` (and the trailer if `to` is the end), under a fresh epoch.
    Want { from: u64, to: u64 },
    /// Go on up to chunk `to` under the current epoch, sending nothing twice.
    Credit { to: u64 },
    /// The file arrived and verified with this SHA-256.
    Complete { sha256: String },
    /// The messages path ([`ChatReceive`]): send these chunks (and the trailer), whatever came
    /// before; the receiver holds `have` chunks, so the freshest of several needs is the one
    /// with the most. Paths with a stream refuse it.
    Need { chunks: Vec<u64>, trailer: bool, have: u64 },
}

/// Chunks `[from, to)` asked of the sender. `to == chunk_count` also asks for the trailer that
/// carries the whole-file hash, so `from == to == chunk_count` asks for the trailer alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub from: u64,
    pub to: u64,
}
