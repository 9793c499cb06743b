//! The node's side of an upload link (see [`crate::web::upload`]) until the person picks a file:
//! an invite on the node's relay, the mailbox its offer arrives in, and the wait for the first
//! authentic one. What follows is an ordinary receive of the ticket it gives, on the relay path
//! (the only one a page can serve).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{
    channel::{Channel, ChannelHint},
    core::Prefer,
    engine::{Node, ReceiveOptions, Transfer},
    error::{Result, TransferError},
    id::TransferId,
    journal::{Role, State, TransferStatus, unix_now},
    ticket::Ticket,
    web::upload::Invite,
};

/// How long an upload link stays usable unless the front asks otherwise.
pub const UPLOAD_LINK_LIFETIME: Duration = Duration::from_secs(3600);

/// An upload link this node made and listens on.
pub struct UploadLink {
    invite: Invite,
    offers: mpsc::Receiver<Bytes>,
    /// Keeps the subscription's connection open.
    _channel: Channel,
}

impl UploadLink {
    /// Make a link on `channel`, which must be a relay server at the root of its host (the page
    /// is served there), and start listening for its offer.
    pub(crate) async fn open(channel: Option<&ChannelHint>, lifetime: Duration) -> Result<UploadLink> {
        let needs_relay = || match channel {
            None => TransferError::LinkNeedsRelay("none is configured".into()),
            Some(ChannelHint::Relay(url)) => TransferError::LinkNeedsRelay(format!("{url} is behind a path")),
            Some(_) => TransferError::LinkNeedsRelay("this node's channel is a shared folder or NATS".into()),
        };
        let hint = channel.ok_or_else(needs_relay)?;
        let ChannelHint::Relay(url) = hint else { return Err(needs_relay()) };
        let invite = Invite::new(url, unix_now() + lifetime.as_secs()).ok_or_else(needs_relay)?;
        let channel = Channel::open(hint).await?;
        let offers = channel.subscribe(invite.mailbox()).await;
        Ok(UploadLink { invite, offers, _channel: channel })
    }

    /// The transfer the link becomes: the page takes the invite's id as its transfer id.
    pub fn transfer_id(&self) -> TransferId {
        self.invite.id
    }

    /// The link to hand to the person (it holds the key: treat it like a ticket).
    pub fn link(&self) -> String {
        self.invite.link()
    }

    /// When the link stops being usable (unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.invite.expires_at
    }

    /// The transfer's status while no file is picked: active, nothing known of the file yet.
    pub fn status(&self) -> TransferStatus {
        let now = unix_now();
        TransferStatus {
            transfer_id: self.invite.id.to_string(),
            role: Role::Receive,
            state: State::Active,
            file_name: String::new(),
            bytes_done: 0,
            bytes_total: 0,
            rate: 0,
            path: None,
            attempts: Vec::new(),
            bytes_by_path: Default::default(),
            sha256: None,
            saved_to: None,
            sums: None,
            peer: None,
            held_because: Some("waiting for the person to pick a file on the upload link's page".into()),
            error: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Wait for the person's file, then receive it into `options`' folder over the relay.
    pub async fn receive(self, node: &Node, options: ReceiveOptions) -> Result<Transfer> {
        let ticket = self.offered().await?;
        node.receive(ticket, ReceiveOptions { prefer: Some(Prefer::Relay), ..options }).await
    }

    /// Wait for the first authentic offer and return its ticket; junk in the mailbox is skipped.
    /// Fails with `peer_offline` if the link expires first.
    async fn offered(mut self) -> Result<Ticket> {
        let left = Duration::from_secs(self.invite.expires_at.saturating_sub(unix_now()));
        let wait = async {
            while let Some(message) = self.offers.recv().await {
                match self.invite.open(&message) {
                    Ok(ticket) => return Ok(ticket),
                    Err(e) => tracing::warn!(code = e.code(), "an upload offer was skipped: {e}"),
                }
            }
            Err(TransferError::ChannelUnreachable("the relay closed the upload link's connection".into()))
        };
        tokio::time::timeout(left, wait).await.map_err(|_| {
            TransferError::PeerOffline("nobody sent a file through the upload link before it expired".into())
        })?
    }
}
