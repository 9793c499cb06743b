//! The message channel, as a node uses it: mailboxes that two nodes reach from the inside.
//!
//! When neither machine can dial the other, both dial out to a channel and exchange messages
//! through mailboxes. A mailbox is named by its [`MailboxKey`], a secret derived from what only
//! its readers hold, and the channel sees only its [`MailboxId`] (see [`crate::mailbox`]):
//! reading takes the key, sending only the id. Three channels carry the same messages:
//!
//! - a relay server (`agentferry relay`, [`crate::relay`]) reached over WebSocket
//!   ([`websocket`]);
//! - a shared folder ([`folder`]), for agents that share a synced or network folder;
//! - a NATS server or cluster ([`nats`]), for teams that outgrow one relay.
//!
//! This module moves opaque bytes between mailboxes and knows nothing of transfers or offers:
//! the chunk path over a channel is [`crate::transport::channel`], offers are the engine's. The
//! channel can delay, drop, reorder or replay messages; the layers above make each harmless.

pub mod folder;
pub mod nats;
pub mod websocket;

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::TransferError;
pub use crate::mailbox::{MailboxId, MailboxKey};

/// Where a node's channel is: `ws://host:port` (a relay), `folder:/path` (a shared folder) or
/// `nats://host:port` (a NATS server or cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelHint {
    Relay(String),
    Folder(PathBuf),
    Nats(nats::NatsHint),
}

impl std::str::FromStr for ChannelHint {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, TransferError> {
        if let Some(path) = s.strip_prefix("folder:") {
            return Ok(ChannelHint::Folder(PathBuf::from(path)));
        }
        if s.starts_with("ws://") || s.starts_with("wss://") {
            return Ok(ChannelHint::Relay(s.trim_end_matches('/').to_owned()));
        }
        if let Some(hint) = nats::NatsHint::parse(s) {
            return hint.map(ChannelHint::Nats);
        }
        // Not the argument itself: it may carry a password.
        Err(TransferError::InvalidArgument(
            "not a channel: use ws://HOST:PORT, nats://HOST:PORT or folder:/PATH".into(),
        ))
    }
}

impl std::fmt::Display for ChannelHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelHint::Relay(url) => f.write_str(url),
            ChannelHint::Folder(path) => write!(f, "folder:{}", path.display()),
            ChannelHint::Nats(hint) => hint.fmt(f),
        }
    }
}

/// A connected channel of either kind.
#[derive(Clone, Debug)]
pub enum Channel {
    Relay(Arc<websocket::RelayClient>),
    Folder(Arc<folder::FolderChannel>),
    Nats(Arc<nats::NatsChannel>),
}

impl Channel {
    pub async fn open(hint: &ChannelHint) -> Result<Channel, TransferError> {
        Ok(match hint {
            ChannelHint::Relay(url) => Channel::Relay(websocket::RelayClient::connect(url).await?),
            ChannelHint::Folder(path) => Channel::Folder(folder::FolderChannel::open(path)?),
            ChannelHint::Nats(hint) => Channel::Nats(nats::NatsChannel::connect(hint).await?),
        })
    }

    /// Messages sent to the mailbox of `key` (`key.id()`) from now on, and those waiting there.
    /// Only a holder of the key can subscribe.
    pub async fn subscribe(&self, key: MailboxKey) -> mpsc::Receiver<Bytes> {
        match self {
            Channel::Relay(c) => c.subscribe(key).await,
            Channel::Folder(c) => c.subscribe(key.id()),
            Channel::Nats(c) => c.subscribe(key).await,
        }
    }

    /// Stop delivering the mailbox of `key`.
    pub async fn unsubscribe(&self, key: MailboxKey) {
        match self {
            Channel::Relay(c) => c.unsubscribe(key).await,
            Channel::Folder(c) => c.unsubscribe(key.id()),
            Channel::Nats(c) => c.unsubscribe(key),
        }
    }

    /// Post `payload` to `mailbox`, and return once it has left this process (for a last
    /// message).
    pub async fn send_written(&self, mailbox: MailboxId, payload: Bytes) -> Result<(), TransferError> {
        match self {
            Channel::Relay(c) => c.send_written(mailbox, payload).await,
            Channel::Folder(c) => c.send(mailbox, &payload),
            Channel::Nats(c) => c.send_written(mailbox, payload).await,
        }
    }

    /// Post `payload` to `mailbox`: senders know a mailbox by its id only (a transfer's other
    /// side, an inbox from a grant URI, a reply mailbox named in a message). Waits while the
    /// channel is congested.
    pub async fn send(&self, mailbox: MailboxId, payload: Bytes) -> Result<(), TransferError> {
        match self {
            Channel::Relay(c) => c.send(mailbox, payload).await,
            Channel::Folder(c) => c.send(mailbox, &payload),
            Channel::Nats(c) => c.send(mailbox, payload).await,
        }
    }

    /// Like [`Channel::subscribe`], for a node's inbox: also the offers the channel kept while
    /// nobody read it (the relay and the folder keep every mailbox's messages; NATS keeps only
    /// offers, in JetStream).
    pub async fn subscribe_inbox(&self, key: MailboxKey) -> mpsc::Receiver<Bytes> {
        match self {
            Channel::Nats(c) => c.subscribe_inbox(key).await,
            Channel::Relay(_) | Channel::Folder(_) => self.subscribe(key).await,
        }
    }

    /// Post a sealed offer to the inbox `mailbox`, which may have no reader now.
    pub async fn post_offer(&self, mailbox: MailboxId, payload: Bytes) -> Result<Posted, TransferError> {
        match self {
            Channel::Nats(c) => c.post_offer(mailbox, payload).await,
            Channel::Relay(_) | Channel::Folder(_) => self.send(mailbox, payload).await.map(|()| Posted::Kept),
        }
    }
}

/// What became of an offer posted to an inbox ([`Channel::post_offer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    /// The channel keeps it until the inbox reads it or it expires (the relay's and the
    /// folder's mailbox queues, JetStream on NATS).
    Kept,
    /// Someone reads the inbox now, and it was sent (core NATS).
    Delivered,
    /// Nobody reads the inbox and the channel would keep nothing (core NATS without JetStream),
    /// so it was not sent: post it again later.
    Dropped,
}
