//! The message-channel path: chunks as messages through a relay, a shared folder or NATS
//! ([`crate::channel`]).
//!
//! Both sides meet in two mailboxes derived from the session key (the engine derives them; this
//! module only moves bytes): the sender reads one, the receiver the other. Every control frame
//! is one message to the sender, every frame one message back. A channel has no responses and no
//! flow control of its own, so the receive core runs it with a finite window and credit.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::{
    channel::{Channel, ChannelHint, MailboxKey},
    core::PathKind,
    error::TransferError,
    task::AbortOnDrop,
    transport::{AttemptReport, Connected, Incoming, Link, Serve},
};

/// The two mailboxes of one transfer on a channel: each side holds both keys, reads its own
/// and sends to the other's id.
#[derive(Clone, Copy, Debug)]
pub struct Mailboxes {
    pub to_sender: MailboxKey,
    pub to_receiver: MailboxKey,
}

/// Serve a transfer on `channel` until the returned future is dropped: every message in the
/// sender's mailbox goes to one session of `serve`, and its frames go to the receiver's mailbox.
pub async fn serve(channel: Channel, serve: std::sync::Arc<dyn Serve>, mailboxes: Mailboxes) {
    let mut requests = channel.subscribe(mailboxes.to_sender).await;
    let session = serve.open_session(PathKind::Relay);
    let controls = session.controls;
    let mut frames = session.frames;
    // Two directions at once in one task: neither waits for the other, and dropping the task
    // stops both (which ends the session).
    let inbound = async {
        while let Some(message) = requests.recv().await {
            if controls.send(message).await.is_err() {
                break;
            }
        }
    };
    let outbound = async {
        while let Some(frame) = frames.recv().await {
            if let Err(e) = channel.send(mailboxes.to_receiver.id(), frame).await {
                tracing::debug!("channel send failed: {e}");
            }
        }
    };
    tokio::join!(inbound, outbound);
}

/// The receiver's link over a channel.
pub struct ChannelLink {
    channel: Channel,
    hint: String,
    mailboxes: Mailboxes,
    /// Stops delivery when the link is dropped: the subscription ends with its receiver, and
    /// the channel connection (one per link) closes with the last handle.
    _forward: AbortOnDrop,
}

impl Link for ChannelLink {
    fn kind(&self) -> PathKind {
        PathKind::Relay
    }

    fn peer(&self) -> String {
        self.hint.clone()
    }

    fn send(&mut self, control: Bytes) -> BoxFuture<'_, Result<(), TransferError>> {
        Box::pin(self.channel.send(self.mailboxes.to_sender.id(), control))
    }

    fn send_last(&mut self, control: Bytes) -> BoxFuture<'_, Result<(), TransferError>> {
        Box::pin(self.channel.send_written(self.mailboxes.to_sender.id(), control))
    }
}

/// Items buffered between the channel and the receiver's driver.
const INCOMING_DEPTH: usize = 2;

/// Open the channel `hint`, post `hello` to the sender, and wait up to `budget` for a frame that
/// passes `check` (the sender's sealed manifest); anything else arriving first is ignored.
pub async fn connect(
    hint: &str,
    mailboxes: Mailboxes,
    hello: Bytes,
    budget: Duration,
    check: impl Fn(&mut BytesMut) -> Result<(), TransferError>,
) -> (Result<Connected, TransferError>, AttemptReport) {
    let started = Instant::now();
    let result = async {
        let parsed: ChannelHint = hint.parse()?;
        let channel = Channel::open(&parsed).await?;
        let mut arriving = channel.subscribe(mailboxes.to_receiver).await;
        channel.send(mailboxes.to_sender.id(), hello).await?;
        let answer = async {
            while let Some(message) = arriving.recv().await {
                let mut frame = BytesMut::from(&message[..]);
                if check(&mut frame).is_ok() {
                    return Some(frame);
                }
            }
            None
        };
        let manifest = tokio::time::timeout(budget, answer)
            .await
            .ok()
            .flatten()
            // The channel works; nobody serves the transfer on it.
            .ok_or_else(|| TransferError::NotServing(format!("no sender answers on {hint}")))?;
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_DEPTH);
        let closed = format!("{hint} closed");
        let forward = tokio::spawn(async move {
            while let Some(message) = arriving.recv().await {
                // Usually the only view of its buffer: no copy.
                let frame = message.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                if incoming_tx.send(Incoming::Frame(frame)).await.is_err() {
                    return;
                }
            }
            let lost = TransferError::ChannelUnreachable(closed);
            let _ = incoming_tx.send(Incoming::Lost(lost)).await;
        });
        let link = ChannelLink { channel, hint: hint.to_owned(), mailboxes, _forward: AbortOnDrop(forward) };
        Ok(Connected { link: Box::new(link), incoming, manifest })
    }
    .await;
    let report = AttemptReport {
        kind: PathKind::Relay,
        peer: hint.to_owned(),
        elapsed: started.elapsed(),
        error: result.as_ref().err().cloned(),
        route: None,
    };
    (result, report)
}
