//! `receive --link`: an upload link, and the wait for the file a browser offers through it (see
//! `agentferry::web::upload`).

use std::time::Duration;

use agentferry::{ChannelHint, Event, Node, Ticket, TransferError, channel::Channel, web::upload::Invite};

use super::output::Reporter;

/// How long an upload link stays usable.
pub const LINK_LIFETIME: Duration = Duration::from_secs(3600);

/// Make an upload link on the node's relay, show it, and wait for the first authentic offer
/// through it: the ticket of the file the person picked.
pub async fn take_offer(node: &Node, reporter: &mut Reporter) -> Result<Ticket, TransferError> {
    let needs_relay = || {
        TransferError::PathUnavailable(
            "an upload link needs a relay at the root of its host: set AGENTFERRY_RELAY=ws://HOST:PORT".into(),
        )
    };
    let hint = node.config().channel.clone().ok_or_else(needs_relay)?;
    let ChannelHint::Relay(url) = &hint else { return Err(needs_relay()) };
    let expires_at = agentferry::journal::unix_now() + LINK_LIFETIME.as_secs();
    let invite = Invite::new(url, expires_at).ok_or_else(needs_relay)?;
    let channel = Channel::open(&hint).await?;
    let mut offers = channel.subscribe(invite.mailbox()).await;
    reporter.event(&Event::Link { transfer_id: invite.id, link: invite.link() });
    let wait = async {
        while let Some(message) = offers.recv().await {
            match invite.open(&message) {
                Ok(ticket) => return Ok(ticket),
                Err(e) => tracing::warn!(code = e.code(), "an upload offer was skipped: {e}"),
            }
        }
        Err(TransferError::ChannelUnreachable(format!("{url}: the connection closed")))
    };
    tokio::time::timeout(LINK_LIFETIME, wait).await.map_err(|_| {
        TransferError::PeerOffline("nobody sent a file through the upload link before it expired".into())
    })?
}
