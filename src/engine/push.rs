//! Pushing: a transfer whose ticket travels, sealed in an offer, to a trusted peer's inbox.
//!
//! The offer goes to the peer's inbox directly over HTTP, else (or when the relay is preferred)
//! through its message channel. A channel that keeps messages (the relay, a shared folder, NATS
//! with JetStream) holds the offer for a peer that is offline; on core NATS, which keeps
//! nothing, the sender posts it again every [`REPOST_EVERY`] until the peer reads its inbox, and
//! the transfer fails with `peer_offline` if it never does before the offer expires.

use std::time::Duration;

use bytes::Bytes;
use tokio::{sync::mpsc, time::Instant};

use super::{Node, SendOptions, Transfer};
use crate::{
    channel::{Channel, MailboxId, MailboxKey, Posted},
    core::Prefer,
    error::{Result, TransferError},
    journal::{ErrorInfo, Role, State, unix_now},
    offer::{MAX_SKEW_SECS, Offer},
    peers::Peer,
    task::AbortOnDrop,
    ticket::Ticket,
    transport::http as http_path,
};

/// What a peer's inbox said of an offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushAnswer {
    /// `accepted` (it is fetching now), `pending` (held until someone there accepts it), or
    /// `queued` (left in the peer's channel mailbox, or posted again until the peer reads it;
    /// it fetches when it next connects).
    pub state: String,
    /// Why it is held, when pending or queued.
    pub reason: Option<String>,
}

/// How long to try reaching a peer's inbox.
const INBOX_BUDGET: Duration = Duration::from_secs(10);
/// How long a listening peer takes at most to answer an offer through its channel; past it the
/// offer is left queued there for a peer that connects later.
const CHANNEL_ANSWER_BUDGET: Duration = Duration::from_secs(3);
/// How often an offer the channel cannot keep is posted again while the peer is offline.
const REPOST_EVERY: Duration = Duration::from_secs(1);
/// Re-posting stops this long before the ticket expires: a peer reached later could not fetch.
const REPOST_MARGIN: Duration = Duration::from_secs(2);

pub(super) async fn push(node: &Node, options: SendOptions, peer_name: &str) -> Result<(Transfer, PushAnswer)> {
    let peer = node.trust.usable_peer(peer_name)?;
    let secret = peer.secret_bytes()?;
    let options_prefer = options.prefer;
    let mut transfer = super::send::start(node, options).await?;
    // The ticket travels sealed inside the offer; it is not shown.
    let first = transfer.events.recv().await;
    debug_assert!(matches!(first, Some(super::Event::Ticket { .. })));
    let id = transfer.transfer_id;
    let mut record =
        node.journal.load(&id, Role::Send)?.ok_or_else(|| TransferError::TransferNotFound(id.to_string()))?;
    record.peer = Some(peer.name.clone());
    node.journal.save(&mut record)?;
    let ticket: Ticket = record.ticket.parse()?;
    let sealed = Offer::seal(&peer.grant_id, &secret, &node.config.name, &ticket);
    // The offer is good until the ticket expires or the inbox finds it stale, whichever is first.
    let good_for = ticket.expires_at.min(sealed.issued_at + MAX_SKEW_SECS).saturating_sub(unix_now());
    let offer = serde_json::to_value(sealed).expect("offers serialise");
    let until = Instant::now() + Duration::from_secs(good_for).saturating_sub(REPOST_MARGIN);
    let refused = match deliver_offer(&peer, offer, options_prefer, until).await {
        Ok((answer, None)) => return Ok((transfer, answer)),
        Ok((answer, Some(repost))) => return Ok((repost.guard(node, transfer), answer)),
        Err(e) => e,
    };
    // Nobody will fetch it: stop serving and record why.
    transfer.cancel();
    let _ = transfer.outcome().await;
    record_failure(node, &id, &refused)?;
    Err(refused)
}

/// Mark the sending side of transfer `id` failed with `error` in the journal.
fn record_failure(node: &Node, id: &crate::id::TransferId, error: &TransferError) -> Result<()> {
    if let Some(mut record) = node.journal.load(id, Role::Send)? {
        record.state = State::Failed;
        record.error = Some(ErrorInfo::from(error));
        node.journal.save(&mut record)?;
    }
    Ok(())
}

/// Hand an offer to the peer: its inbox directly, else (or with `prefer = relay`) its channel.
/// An inbox that answered decides; only an unreachable one makes us try the channel. When the
/// channel can neither deliver nor keep the offer, it comes back as a [`Repost`].
async fn deliver_offer(
    peer: &Peer,
    offer: serde_json::Value,
    prefer: Prefer,
    until: Instant,
) -> Result<(PushAnswer, Option<Repost>)> {
    let mut error = TransferError::OfferRefused(format!("{} has no inbox this node may use", peer.name));
    if prefer != Prefer::Relay && !peer.inbox.is_empty() {
        match http_path::deliver(&peer.inbox, INBOX_BUDGET, &offer).await {
            Ok(answer) => return push_answer(peer, &offer, &answer).map(|a| (a, None)),
            // The refusal's body is the peer's; only a sanitized code of it is shown.
            Err(TransferError::Protocol(code)) => {
                return Err(TransferError::OfferRefused(crate::offer::sanitized_code(Some(&code))));
            }
            Err(e) => error = e,
        }
    }
    let Some((hint, mailbox)) = peer.channel.as_ref().filter(|_| prefer != Prefer::Http) else { return Err(error) };
    let mailbox = MailboxId::from_hex(mailbox)
        .ok_or_else(|| TransferError::PeerUriInvalid("the peer's inbox mailbox is damaged".into()))?;
    let channel = Channel::open(&hint.parse()?).await?;
    let mut reply = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut reply);
    let reply = MailboxKey::from_bytes(reply);
    let answers = channel.subscribe(reply).await;
    let reply = reply.id().to_string();
    let message = serde_json::json!({ "offer": offer, "reply": reply });
    let message = Bytes::from(serde_json::to_vec(&message).expect("json"));
    let mut repost =
        Repost { channel, hint: hint.clone(), mailbox, message, answers, peer: peer.clone(), offer, until };
    if repost.channel.post_offer(mailbox, repost.message.clone()).await? == Posted::Dropped {
        let reason = format!("{} is offline: the offer is posted again until it reads its inbox", peer.name);
        return Ok((PushAnswer { state: "queued".into(), reason: Some(reason) }, Some(repost)));
    }
    match repost.answer().await {
        Some(answer) => answer.map(|a| (a, None)),
        // The offer waits in the channel (for its TTL) until the peer connects.
        None => Ok((
            PushAnswer { state: "queued".into(), reason: Some("waiting in the channel for the peer".into()) },
            None,
        )),
    }
}

/// An offer the channel could not keep (core NATS, the peer offline), posted again until the
/// peer reads its inbox or the offer expires.
struct Repost {
    channel: Channel,
    hint: String,
    mailbox: MailboxId,
    /// `{"offer": …, "reply": …}`, as first posted.
    message: Bytes,
    /// The reply mailbox, subscribed for as long as the offer travels.
    answers: mpsc::Receiver<Bytes>,
    peer: Peer,
    offer: serde_json::Value,
    until: Instant,
}

impl Repost {
    /// The peer's answer within [`CHANNEL_ANSWER_BUDGET`], if it gives one.
    async fn answer(&mut self) -> Option<Result<PushAnswer>> {
        let bytes = tokio::time::timeout(CHANNEL_ANSWER_BUDGET, self.answers.recv()).await.ok().flatten()?;
        Some(match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(answer) => push_answer(&self.peer, &self.offer, &answer),
            Err(e) => Err(TransferError::OfferRefused(format!("unreadable answer: {e}"))),
        })
    }

    /// Post until someone reads the inbox: `Ok` once it did (and did not refuse the offer),
    /// `peer_offline` past the deadline.
    async fn run(mut self) -> Result<()> {
        loop {
            if Instant::now() >= self.until {
                let name = &self.peer.name;
                return Err(TransferError::PeerOffline(format!(
                    "{name} read no inbox on {} while the offer was good",
                    self.hint
                )));
            }
            match self.channel.post_offer(self.mailbox, self.message.clone()).await {
                // A refusal fails the transfer; no answer in time means the inbox has the
                // offer and is slow to say so.
                Ok(Posted::Kept | Posted::Delivered) => {
                    return match self.answer().await {
                        Some(Err(refused)) => Err(refused),
                        _ => Ok(()),
                    };
                }
                Ok(Posted::Dropped) => {}
                // The channel is reconnecting: try again while the offer is good.
                Err(e) => tracing::debug!("posting the offer again failed: {e}"),
            }
            tokio::time::sleep_until((Instant::now() + REPOST_EVERY).min(self.until)).await;
        }
    }

    /// `transfer`, failing with `peer_offline` (or the peer's refusal) if the offer never
    /// reaches the peer: serving stops then, since nobody will fetch.
    fn guard(self, node: &Node, transfer: Transfer) -> Transfer {
        let Transfer { transfer_id, role, events, task } = transfer;
        let node = node.clone();
        let task = tokio::spawn(async move {
            // Aborting this task (a cancel) must stop serving too.
            let mut serving = AbortOnDrop(task);
            tokio::select! {
                outcome = &mut serving.0 => outcome.unwrap_or(Err(TransferError::Cancelled)),
                reached = self.run() => match reached {
                    Ok(()) => (&mut serving.0).await.unwrap_or(Err(TransferError::Cancelled)),
                    Err(e) => {
                        serving.0.abort();
                        let _ = (&mut serving.0).await;
                        let _ = record_failure(&node, &transfer_id, &e);
                        Err(e)
                    }
                },
            }
        });
        Transfer { transfer_id, role, events, task }
    }
}

/// The peer's answer, believed only if authenticated under the grant (see
/// [`crate::offer::answer_mac`]): anyone on the way could forge an unauthenticated one.
fn push_answer(peer: &Peer, offer: &serde_json::Value, answer: &serde_json::Value) -> Result<PushAnswer> {
    let offer_id = offer["offer_id"].as_str().unwrap_or_default();
    let authentic = peer.secret_bytes().is_ok_and(|s| crate::offer::answer_is_authentic(&s, offer_id, answer));
    match answer["state"].as_str() {
        Some("accepted" | "pending") if !authentic => Err(TransferError::OfferRefused(
            "the answer is not authenticated by the peer's grant (forged on the way, or an older agentferry)".into(),
        )),
        Some(state @ ("accepted" | "pending")) => {
            Ok(PushAnswer { state: state.to_owned(), reason: answer["reason"].as_str().map(str::to_owned) })
        }
        _ => Err(TransferError::OfferRefused(crate::offer::sanitized_code(answer["code"].as_str()))),
    }
}
