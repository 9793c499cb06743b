//! Transfers over a message channel (relay or shared folder).
//!
//! Both sides meet in two mailboxes derived from the session key: the sender reads its own,
//! the receiver reads the other. The receiver talks in sealed control frames — `hello` (send me
//! your manifest), `want` (send chunks from N), `credit` (slide the window), `complete` — and
//! the sender answers with the very frames the HTTP path carries. Nothing here decides what to
//! ask for: the receiver's core does, exactly as on HTTP, only with a finite window.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Outgoing;
use sha2::{Digest, Sha256};

use crate::{
    core::{Request, SendCore, Transmit},
    crypto::random_epoch,
    error::TransferError,
    frame::{self, FrameKind, Opened, Opener, Sealer},
    manifest::Manifest,
    relay::{Channel, ChannelHint, Mailbox},
    ticket::Ticket,
};

/// What a receiver asks of a sender over a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    Hello,
    Want { from: u64, to: u64 },
    Credit { to: u64 },
    Complete { sha256: String },
}

fn mailboxes(ticket_key: &crate::crypto::SessionKey, id: &crate::id::TransferId) -> (Mailbox, Mailbox) {
    (ticket_key.mailbox(id, b"sender"), ticket_key.mailbox(id, b"receiver"))
}

/// Serve `outgoing` on `channel` until aborted.
pub(super) async fn serve(channel: Channel, outgoing: Arc<Outgoing>) {
    let key = outgoing.session_key().clone();
    let id = outgoing.transfer_id;
    let (to_sender, to_receiver) = mailboxes(&key, &id);
    let mut requests = channel.subscribe(to_sender).await;
    let mut opener = Opener::new(key.clone(), id, 0);
    let mut core = SendCore::new(outgoing.manifest().chunk_count());
    let sealer = Arc::new(Sealer::new(&key, id, random_epoch()));
    // Hash while chunks go out in order from the start, so the trailer needs no second read.
    let count = outgoing.manifest().chunk_count();
    let mut hashing: Option<(Sha256, u64)> = outgoing.sha256().is_none().then(|| (Sha256::new(), 0));
    loop {
        // Take every request that is waiting before sending the next frame.
        let mut next = requests.try_recv().ok();
        if next.is_none() {
            match core.poll_transmit() {
                Some(transmit) => {
                    let in_order = match (transmit, &hashing) {
                        (Transmit::Chunk { index, .. }, Some((_, hashed))) => index == *hashed,
                        (Transmit::Trailer, Some((_, hashed))) => *hashed == count,
                        _ => false,
                    };
                    let mut hasher = if in_order { hashing.take().map(|(h, _)| h) } else { None };
                    let (out, sealer) = (Arc::clone(&outgoing), Arc::clone(&sealer));
                    let sealed = tokio::task::spawn_blocking(move || {
                        let frame = out.seal_transmit(&sealer, transmit, &mut hasher);
                        (frame, hasher)
                    })
                    .await;
                    match sealed {
                        Ok((Ok(frame), hasher)) => {
                            if let (Some(h), Transmit::Chunk { index, .. }) = (hasher, transmit) {
                                hashing = Some((h, index + 1));
                            }
                            if channel.send(to_receiver, frame.freeze()).await.is_err() {
                                tracing::debug!(transfer = %id, "channel closed");
                            }
                        }
                        Ok((Err(e), _)) => {
                            tracing::warn!(transfer = %id, "cannot serve on the channel: {e}");
                            if matches!(e, TransferError::SourceChanged(_)) {
                                outgoing.fail(e);
                            }
                            return;
                        }
                        Err(_) => return,
                    }
                    continue;
                }
                None => next = requests.recv().await,
            }
        }
        let Some(message) = next else { return };
        let mut message = BytesMut::from(&message[..]);
        let control = match opener.open(&mut message) {
            Ok(Opened { kind: FrameKind::Control, .. }) => {
                serde_json::from_slice::<Control>(Opened::payload(&message)).ok()
            }
            _ => None, // not from the ticket holder: ignored
        };
        match control {
            Some(Control::Hello) => {
                let _ = channel.send(to_receiver, outgoing.sealed_manifest()).await;
            }
            Some(Control::Want { from, to }) => core.handle_request(Request { from, to }),
            Some(Control::Credit { to }) => core.handle_credit(to),
            Some(Control::Complete { sha256 }) => {
                outgoing.handle_complete(&sha256);
            }
            None => tracing::debug!(transfer = %id, "dropping a message that is not an authentic control frame"),
        }
    }
}

/// The receiver's end: sends control frames, and yields the frames that arrive.
pub(super) struct ChannelLink {
    channel: Channel,
    to_sender: Mailbox,
    sealer: Sealer,
    sequence: u64,
}

impl ChannelLink {
    /// Open the channel named in the ticket, say hello, and wait for the sender's authentic
    /// manifest. Returns the link, the arriving frames, and the manifest.
    pub async fn open(
        ticket: &Ticket,
        hint: &str,
        budget: std::time::Duration,
    ) -> Result<(ChannelLink, mpsc::Receiver<Bytes>, Manifest), TransferError> {
        let parsed: ChannelHint = hint.parse()?;
        let channel = Channel::open(&parsed).await?;
        let (to_sender, to_receiver) = mailboxes(&ticket.session_key, &ticket.transfer_id);
        let mut frames = channel.subscribe(to_receiver).await;
        let sealer = Sealer::new(&ticket.session_key, ticket.transfer_id, random_epoch());
        let mut link = ChannelLink { channel, to_sender, sealer, sequence: 0 };
        link.control(&Control::Hello).await?;
        let mut opener = Opener::new(ticket.session_key.clone(), ticket.transfer_id, 0);
        let manifest = tokio::time::timeout(budget, async {
            while let Some(payload) = frames.recv().await {
                let mut buf = BytesMut::from(&payload[..]);
                if frame::check(&buf, 0).ok().flatten() != Some(buf.len()) {
                    continue;
                }
                if let Ok(Opened { kind: FrameKind::Manifest, .. }) = opener.open(&mut buf)
                    && let Ok(manifest) = serde_json::from_slice::<Manifest>(Opened::payload(&buf))
                {
                    return Some(manifest);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| TransferError::PeerUnreachable(format!("the sender did not answer on {hint}")))?;
        if manifest.size != ticket.size || manifest.chunk_size != ticket.chunk_size {
            return Err(TransferError::Protocol("the manifest disagrees with the ticket".into()));
        }
        Ok((link, frames, manifest))
    }

    /// Seal and send one control message to the sender. `complete` is waited for until it is
    /// written, since the process may exit right after.
    pub async fn control(&mut self, control: &Control) -> Result<(), TransferError> {
        self.sequence += 1;
        let json = serde_json::to_vec(control).expect("control serialises");
        let frame = self.sealer.seal_bytes(FrameKind::Control, self.sequence, &json).freeze();
        match control {
            Control::Complete { .. } => self.channel.send_written(self.to_sender, frame).await,
            _ => self.channel.send(self.to_sender, frame).await,
        }
    }
}
