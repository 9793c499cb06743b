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

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::{core::PathKind, error::TransferError, id::TransferId};

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
