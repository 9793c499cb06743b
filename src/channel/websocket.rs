//! A node's connection to a relay server ([`crate::relay`]): subscriptions and sends over one
//! WebSocket, kept alive.
//!
//! The connection is re-established with backoff whenever it drops (a relay restart, a network
//! change), and every subscription is renewed on the new connection. Messages sent while it is
//! down wait in a small bounded queue (so senders feel backpressure); what the relay dropped in
//! between is recovered by the transfer core's retransmission.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::{connect_async_with_config, tungstenite::Message};

use crate::{
    error::TransferError,
    mailbox::{MailboxId, MailboxKey},
    relay::proto::{Envelope, Refusal},
    task::AbortOnDrop,
};

/// Envelopes waiting to be written.
const SEND_DEPTH: usize = 32;
/// Deliveries waiting for each subscriber (frames are up to 256 KiB: this bounds memory).
const DELIVER_DEPTH: usize = 8;

/// By mailbox id: the key that proves the subscription, and where deliveries go.
type Subscribers = Arc<Mutex<HashMap<MailboxId, (MailboxKey, mpsc::Sender<Bytes>)>>>;

/// An envelope to write, and who to tell once the relay has taken it.
type Outgoing = (Bytes, Option<tokio::sync::oneshot::Sender<()>>);

/// A kept-alive connection to one relay.
#[derive(Debug)]
pub struct RelayClient {
    url: String,
    outbox: mpsc::Sender<Outgoing>,
    subscribers: Subscribers,
    _task: AbortOnDrop,
}

/// Open the WebSocket, with Nagle off: control messages are small and must not wait for an ACK.
pub(crate) async fn dial(
    url: &str,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    connect_async_with_config(endpoint(url), None, true).await
}

fn endpoint(url: &str) -> String {
    format!("{}/v1/relay", url.trim_end_matches('/'))
}

impl RelayClient {
    /// Connect to the relay at `url` (`ws://host:port`); fails if it cannot be reached now.
    pub async fn connect(url: &str) -> Result<Arc<Self>, TransferError> {
        let (ws, _) = tokio::time::timeout(Duration::from_secs(5), dial(url))
            .await
            .map_err(|_| TransferError::ChannelUnreachable(format!("relay {url}: no answer")))?
            .map_err(|e| TransferError::ChannelUnreachable(format!("relay {url}: {e}")))?;
        let (outbox, outbox_rx) = mpsc::channel(SEND_DEPTH);
        let subscribers = Subscribers::default();
        let task = tokio::spawn(run(url.to_owned(), Some(ws), outbox_rx, Arc::clone(&subscribers)));
        Ok(Arc::new(RelayClient { url: url.to_owned(), outbox, subscribers, _task: AbortOnDrop(task) }))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Messages sent to mailbox `key.id()`.
    pub async fn subscribe(&self, key: MailboxKey) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(DELIVER_DEPTH);
        self.subscribers.lock().expect("not poisoned").insert(key.id(), (key, tx));
        let _ = self.outbox.send((Envelope::Subscribe(key).encode(), None)).await;
        rx
    }

    pub async fn unsubscribe(&self, key: MailboxKey) {
        let mailbox = key.id();
        self.subscribers.lock().expect("not poisoned").remove(&mailbox);
        let _ = self.outbox.send((Envelope::Unsubscribe(mailbox).encode(), None)).await;
    }

    pub async fn send(&self, mailbox: MailboxId, payload: Bytes) -> Result<(), TransferError> {
        self.outbox
            .send((Envelope::Send(mailbox, payload).encode(), None))
            .await
            .map_err(|_| TransferError::ChannelUnreachable(format!("relay {}: connection closed", self.url)))
    }

    /// Send, and return only once the relay has taken the message (for a last message before
    /// the process exits). Written is not enough: a process that exits with unread data on its
    /// socket resets the connection, and the relay may lose what it had not read yet. So a ping
    /// follows the message, and the relay's pong, which it sends only after reading (and
    /// routing) everything before the ping, is the receipt.
    pub async fn send_written(&self, mailbox: MailboxId, payload: Bytes) -> Result<(), TransferError> {
        let (done, written) = tokio::sync::oneshot::channel();
        let closed = || TransferError::ChannelUnreachable(format!("relay {}: connection closed", self.url));
        self.outbox.send((Envelope::Send(mailbox, payload).encode(), Some(done))).await.map_err(|_| closed())?;
        written.await.map_err(|_| closed())
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Keep the connection up: write the outbox, route deliveries, reconnect and resubscribe.
async fn run(url: String, mut ws: Option<Ws>, mut outbox: mpsc::Receiver<Outgoing>, subscribers: Subscribers) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut socket = match ws.take() {
            Some(socket) => socket,
            None => match dial(&url).await {
                Ok((socket, _)) => {
                    tracing::info!(relay = %url, "reconnected to the relay");
                    socket
                }
                Err(e) => {
                    tracing::debug!(relay = %url, "relay unreachable: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(50);
        // Receipts owed on this connection, by ping payload; dropped (an error for the waiting
        // sender) if the connection goes.
        let mut receipts: HashMap<u64, tokio::sync::oneshot::Sender<()>> = HashMap::new();
        let mut next_receipt = 0u64;
        // Renew every subscription on this connection.
        let keys: Vec<MailboxKey> = subscribers.lock().expect("not poisoned").values().map(|(k, _)| *k).collect();
        let mut ok = true;
        for key in keys {
            ok &= socket.send(Message::Binary(Envelope::Subscribe(key).encode())).await.is_ok();
        }
        while ok {
            tokio::select! {
                out = outbox.recv() => match out {
                    Some((envelope, receipt)) => {
                        ok = socket.send(Message::Binary(envelope)).await.is_ok();
                        if let (true, Some(receipt)) = (ok, receipt) {
                            next_receipt += 1;
                            let ping = Bytes::copy_from_slice(&next_receipt.to_be_bytes());
                            ok = socket.send(Message::Ping(ping)).await.is_ok();
                            receipts.insert(next_receipt, receipt);
                        }
                    }
                    None => return, // the client was dropped
                },
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Binary(data))) => dispatch(&subscribers, data).await,
                    Some(Ok(Message::Pong(data))) => {
                        let receipt = <[u8; 8]>::try_from(&data[..]).ok().and_then(|n| receipts.remove(&u64::from_be_bytes(n)));
                        if let Some(receipt) = receipt {
                            let _ = receipt.send(());
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => ok = false,
                    Some(Ok(_)) => {}
                },
            }
        }
        tracing::info!(relay = %url, "relay connection lost; reconnecting");
    }
}

async fn dispatch(subscribers: &Subscribers, data: Bytes) {
    match Envelope::decode(data) {
        Ok(Envelope::Deliver(mailbox, payload)) => {
            let tx = subscribers.lock().expect("not poisoned").get(&mailbox).map(|(_, tx)| tx.clone());
            if let Some(tx) = tx {
                // Waiting here slows our reading, which makes the relay queue: backpressure.
                let _ = tx.send(payload).await;
            }
        }
        Ok(Envelope::Refused(_, code)) => {
            let why = Refusal::from_u8(code).map_or("unknown", Refusal::code);
            tracing::debug!("the relay dropped a message: {why}");
        }
        _ => tracing::debug!("ignoring a malformed message from the relay"),
    }
}
