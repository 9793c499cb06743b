//! The message channel: mailboxes that two nodes reach from the inside.
//!
//! When neither machine can dial the other, both dial out to a channel and exchange messages
//! through mailboxes. A mailbox is named by its key, a 32-byte secret derived from what only its
//! readers hold (a transfer's session key, a node's inbox secret and a grant id); the channel
//! sees only its id, [`route`]`(key)`, and reading takes the key (see [`proto`]). Two channels
//! carry the same messages:
//!
//! - a relay server (`agentferry relay`, [`server`]) reached over WebSocket ([`client`]);
//! - a shared folder ([`folder`]), for agents that share a synced or network folder;
//! - a NATS server or cluster ([`nats`]), for teams that outgrow one relay.
//!
//! The relay server also answers STUN binding requests on UDP at its port ([`stun`]), so nodes
//! that share it can hole-punch a WebRTC connection with nothing else configured.
//!
//! The channel only ever sees mailbox ids and sealed bytes: frames sealed with the session
//! key, offers authenticated by the grant secret. It can delay, drop, reorder or replay them;
//! the transfer core and the frame format make each of those harmless.

pub mod client;
pub mod folder;
pub mod nats;
pub mod nats_offers;
pub mod proto;
pub mod server;
pub mod stun;

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::TransferError;
pub use proto::{Mailbox, route};

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
    Relay(Arc<client::RelayClient>),
    Folder(Arc<folder::FolderChannel>),
    Nats(Arc<nats::NatsChannel>),
}

impl Channel {
    pub async fn open(hint: &ChannelHint) -> Result<Channel, TransferError> {
        Ok(match hint {
            ChannelHint::Relay(url) => Channel::Relay(client::RelayClient::connect(url).await?),
            ChannelHint::Folder(path) => Channel::Folder(folder::FolderChannel::open(path)?),
            ChannelHint::Nats(hint) => Channel::Nats(nats::NatsChannel::connect(hint).await?),
        })
    }

    /// Messages sent to the mailbox of `key` ([`route`]`(key)`) from now on, and those waiting
    /// there. Only a holder of the key can subscribe.
    pub async fn subscribe(&self, key: [u8; 32]) -> mpsc::Receiver<Bytes> {
        match self {
            Channel::Relay(c) => c.subscribe(key).await,
            Channel::Folder(c) => c.subscribe(route(&key)),
            Channel::Nats(c) => c.subscribe(key).await,
        }
    }

    /// Stop delivering the mailbox of `key`.
    pub async fn unsubscribe(&self, key: [u8; 32]) {
        match self {
            Channel::Relay(c) => c.unsubscribe(key).await,
            Channel::Folder(c) => c.unsubscribe(route(&key)),
            Channel::Nats(c) => c.unsubscribe(key),
        }
    }

    /// Post `payload` to the mailbox of `key`, and return once it has left this process (for a
    /// last message).
    pub async fn send_written(&self, key: [u8; 32], payload: Bytes) -> Result<(), TransferError> {
        match self {
            Channel::Relay(c) => c.send_written(route(&key), payload).await,
            Channel::Folder(c) => c.send(route(&key), &payload),
            Channel::Nats(c) => c.send_written(route(&key), payload).await,
        }
    }

    /// Post `payload` to the mailbox of `key`. Waits while the channel is congested.
    pub async fn send(&self, key: [u8; 32], payload: Bytes) -> Result<(), TransferError> {
        self.send_to(route(&key), payload).await
    }

    /// Post `payload` to `mailbox`, known by its id only (an inbox from a grant URI, a reply
    /// mailbox named in a message).
    pub async fn send_to(&self, mailbox: Mailbox, payload: Bytes) -> Result<(), TransferError> {
        match self {
            Channel::Relay(c) => c.send(mailbox, payload).await,
            Channel::Folder(c) => c.send(mailbox, &payload),
            Channel::Nats(c) => c.send(mailbox, payload).await,
        }
    }

    /// Like [`Channel::subscribe`], for a node's inbox: also the offers the channel kept while
    /// nobody read it (the relay and the folder keep every mailbox's messages; NATS keeps only
    /// offers, in JetStream).
    pub async fn subscribe_inbox(&self, key: [u8; 32]) -> mpsc::Receiver<Bytes> {
        match self {
            Channel::Nats(c) => c.subscribe_inbox(key).await,
            Channel::Relay(_) | Channel::Folder(_) => self.subscribe(key).await,
        }
    }

    /// Post a sealed offer to the inbox `mailbox`, which may have no reader now.
    pub async fn post_offer(&self, mailbox: Mailbox, payload: Bytes) -> Result<Posted, TransferError> {
        match self {
            Channel::Nats(c) => c.post_offer(mailbox, payload).await,
            Channel::Relay(_) | Channel::Folder(_) => self.send_to(mailbox, payload).await.map(|()| Posted::Kept),
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
