//! The sender's one driver: a session answers one receiver's control frames on any path.
//!
//! A path opens a session through [`Serve::open_session`] and feeds it the control frames that
//! arrive (one per HTTP request, a stream of them on a channel). The session runs on a blocking
//! thread: it opens each control frame, hands it to the [`SendCore`], and reads, hashes and seals
//! what the core says to transmit, sending sealed frames into a small bounded channel the path
//! drains, so memory stays flat whatever the file size and a slow path slows the disk down.
//!
//! Nonces are never reused: every `want` starts a fresh epoch (a fresh key), and under one epoch
//! the core transmits each chunk at most once, in increasing order (the sealer enforces it).
//! The source is checked before every request is served and before the trailer.
//!
//! Hashing happens here and only here: the session keeps the SHA-256 of a prefix of the file
//! ([`PrefixHash`], on a thread of its own), extends it with each chunk sent in order, catches up
//! from disk when a request starts further on, and finishes it for the trailer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::outgoing::Outgoing;
use crate::engine::prefix::{PrefixHash, ReadChunk};
use crate::{
    core::{Control, PathKind, Request, SendCore, Transmit},
    crypto::random_epoch,
    error::TransferError,
    frame::{FLAG_LAST, FrameKind, Opened, Opener, Sealer},
    id::TransferId,
    transport::{Serve, Session},
};

/// Sealed frames in flight between the disk thread and the path, per session.
const FRAMES_DEPTH: usize = 4;
/// Control frames waiting for the session.
const CONTROLS_DEPTH: usize = 16;

/// An [`Outgoing`] as the paths serve it (a session needs to hold the transfer).
pub(super) struct ServeOutgoing(pub Arc<Outgoing>);

impl Serve for ServeOutgoing {
    fn transfer_id(&self) -> TransferId {
        self.0.transfer_id
    }

    fn authorises(&self, token: &str) -> bool {
        self.0.authorises(token)
    }

    fn open_session(&self, path: PathKind) -> Session {
        let (controls, controls_rx) = mpsc::channel(CONTROLS_DEPTH);
        let (frames_tx, frames) = mpsc::channel(FRAMES_DEPTH);
        let outgoing = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let id = outgoing.transfer_id;
            let mut driver = Driver::new(outgoing, path, frames_tx);
            if let Err(e) = driver.run(controls_rx) {
                tracing::warn!(transfer = %id, %path, code = e.code(), "session ended: {e}");
                if matches!(e, TransferError::SourceChanged(_)) {
                    driver.outgoing.fail(e);
                }
            }
        });
        Session { controls, frames }
    }
}

struct Driver {
    outgoing: Arc<Outgoing>,
    path: PathKind,
    frames: mpsc::Sender<Bytes>,
    opener: Opener,
    core: SendCore,
    /// The epoch of the current request; `None` before the first `want`.
    sealer: Option<Sealer>,
    /// `None` once the file's hash is known.
    prefix: Option<PrefixHash>,
}

/// The receiver hung up; nothing to report.
struct Gone;

impl Driver {
    fn new(outgoing: Arc<Outgoing>, path: PathKind, frames: mpsc::Sender<Bytes>) -> Self {
        let m = outgoing.manifest();
        Driver {
            opener: Opener::new(outgoing.session_key().clone(), outgoing.transfer_id, 0),
            core: SendCore::new(m.chunk_count()),
            outgoing,
            path,
            frames,
            sealer: None,
            prefix: None,
        }
    }

    /// Serve until the controls close and everything asked for is sent, or the receiver leaves.
    fn run(&mut self, mut controls: mpsc::Receiver<Bytes>) -> Result<(), TransferError> {
        loop {
            // Take every control that is waiting before sending the next frame.
            let control = match controls.try_recv().ok() {
                Some(control) => control,
                None => match self.core.poll_transmit() {
                    Some(transmit) => {
                        let frame = self.seal(transmit)?;
                        if self.send(frame).is_err() {
                            return Ok(());
                        }
                        continue;
                    }
                    None => match controls.blocking_recv() {
                        Some(control) => control,
                        None => return Ok(()),
                    },
                },
            };
            if self.handle(control)?.is_err() {
                return Ok(());
            }
        }
    }

    fn send(&self, frame: Bytes) -> Result<(), Gone> {
        self.frames.blocking_send(frame).map_err(|_| Gone)
    }

    fn handle(&mut self, message: Bytes) -> Result<Result<(), Gone>, TransferError> {
        let mut buf = BytesMut::from(&message[..]);
        let control = match self.opener.open(&mut buf) {
            Ok(Opened { kind: FrameKind::Control, .. }) => serde_json::from_slice(Opened::payload(&buf)).ok(),
            _ => None,
        };
        let Some(control) = control else {
            tracing::debug!(transfer = %self.outgoing.transfer_id, "dropping a message that is not an authentic control frame");
            return Ok(Ok(()));
        };
        match control {
            Control::Hello => return Ok(self.send(self.outgoing.sealed_manifest())),
            Control::Want { from, to } => {
                self.outgoing.check_unchanged()?;
                if self.outgoing.sha256().is_none() {
                    self.prefix()?.catch_up(from);
                }
                self.sealer = Some(Sealer::new(self.outgoing.session_key(), self.outgoing.transfer_id, random_epoch()));
                self.core.handle_request(Request { from, to });
            }
            Control::Credit { to } => {
                // Only a ticket holder can seal a control, but it may still send them in any
                // order: a credit before a want is dropped with a code, the session goes on.
                if let Err(e) = self.core.handle_credit(to) {
                    let e = TransferError::Protocol(e.to_string());
                    tracing::warn!(transfer = %self.outgoing.transfer_id, code = e.code(), "control dropped: {e}");
                }
            }
            Control::Complete { sha256 } => {
                // A sender restarted after its last frames went out may not know the hash yet.
                if self.outgoing.sha256().is_none() {
                    self.whole_hash()?;
                }
                self.outgoing.handle_complete(&sha256);
            }
            Control::Need { .. } => {
                let e = TransferError::Protocol("a need belongs to the messages path".into());
                tracing::warn!(transfer = %self.outgoing.transfer_id, code = e.code(), "control dropped: {e}");
            }
        }
        Ok(Ok(()))
    }

    /// The prefix hash, started on first use.
    fn prefix(&mut self) -> Result<&mut PrefixHash, TransferError> {
        if self.prefix.is_none() {
            let outgoing = Arc::clone(&self.outgoing);
            let read: ReadChunk = Box::new(move |index, buf| outgoing.read_chunk(index, buf));
            let path = self.outgoing.path().to_path_buf();
            let folder = self.outgoing.tree().is_some();
            self.prefix = Some(PrefixHash::start(&self.outgoing.manifest(), folder, path, read)?);
        }
        Ok(self.prefix.as_mut().expect("started above"))
    }

    /// The whole-file SHA-256: known already, or the prefix hashed so far completed from disk.
    fn whole_hash(&mut self) -> Result<String, TransferError> {
        if let Some(known) = self.outgoing.sha256() {
            self.prefix = None;
            return Ok(known);
        }
        self.prefix()?;
        let prefix = self.prefix.take().expect("started above");
        self.outgoing.record_hash(&prefix.finish()?)
    }

    /// Read and seal what the core says to transmit.
    fn seal(&mut self, transmit: Transmit) -> Result<Bytes, TransferError> {
        let outgoing = Arc::clone(&self.outgoing);
        let m = outgoing.manifest();
        // The core transmits only after a want; should that ever break, end the session
        // with a code rather than the process's thread.
        let no_want = || TransferError::Protocol("a frame to send before any want".into());
        Ok(match transmit {
            Transmit::Chunk { index, last } => {
                let len = m.chunk_len(index);
                let mut buf = Sealer::buffer(len);
                let start = buf.len();
                buf.resize(start + len, 0);
                outgoing.read_chunk(index, &mut buf[start..])?;
                if let Some(prefix) = &mut self.prefix {
                    // A copy: sealing encrypts the plaintext in place while it is hashed.
                    prefix.feed(index, || Bytes::copy_from_slice(&buf[start..]));
                }
                let sealer = self.sealer.as_mut().ok_or_else(no_want)?;
                sealer.seal(FrameKind::Chunk, if last { FLAG_LAST } else { 0 }, index, &mut buf);
                outgoing.record_served(self.path, index, len as u64);
                buf.freeze()
            }
            Transmit::Trailer => {
                let digest = self.whole_hash()?;
                outgoing.check_unchanged()?;
                let raw = data_encoding::HEXLOWER.decode(digest.as_bytes()).expect("hex");
                let sealer = self.sealer.as_mut().ok_or_else(no_want)?;
                sealer.seal_bytes(FrameKind::Trailer, m.chunk_count(), &raw).freeze()
            }
        })
    }
}
