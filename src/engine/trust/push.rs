//! Pushing: a transfer whose ticket travels, sealed in an offer, to a trusted peer's inbox.
//!
//! The offer goes to the peer's inbox directly over HTTP, else (or when the relay is preferred)
//! through its message channel. A channel that keeps messages (the relay, a shared folder, NATS
//! with JetStream) holds the offer for a peer that is offline. A peer that is not listening yet
//! (its inbox refuses connections or does not answer, and no channel keeps the offer for it)
//! does not fail the push: it is `queued`, the sender keeps serving, and the offer is tried
//! again with backoff ([`RETRY_FIRST`] doubling to [`RETRY_MAX`]) until the peer takes it or
//! the offer expires; then the transfer fails with `peer_offline`.

use std::time::Duration;

use bytes::Bytes;
use tokio::{sync::mpsc, time::Instant};

use crate::engine::{Event, Node, SendOptions, Transfer, send};
use crate::{
    channel::{Channel, MailboxId, MailboxKey, Posted},
    core::Prefer,
    error::{Result, TransferError},
    journal::{Role, unix_now},
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
    /// `queued` (the peer is not listening yet: the offer waits in its channel mailbox, or is
    /// posted again until the peer answers; it fetches once it does).
    pub state: String,
    /// Why it is held, when pending or queued.
    pub reason: Option<String>,
}

impl PushAnswer {
    fn queued(reason: String) -> PushAnswer {
        PushAnswer { state: "queued".into(), reason: Some(reason) }
    }
}

/// How long the first try waits for the peer's inbox: a push returns at once with `queued`
/// when the peer is not listening, and the later tries go on in the background.
const FIRST_TRY_BUDGET: Duration = Duration::from_secs(2);
/// How long each later try waits for the inbox to answer.
const INBOX_BUDGET: Duration = Duration::from_secs(10);
/// How long a listening peer takes at most to answer an offer through its channel; past it the
/// offer is left queued there for a peer that connects later.
const CHANNEL_ANSWER_BUDGET: Duration = Duration::from_secs(3);
/// Pauses between tries while the peer is not listening: the first is short (a peer that has
/// just been paired starts listening within moments), then they double up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Trying stops this long before the ticket expires: a peer reached later could not fetch.
const RETRY_MARGIN: Duration = Duration::from_secs(2);

pub(in crate::engine) async fn push(
    node: &Node,
    options: SendOptions,
    peer_name: &str,
) -> Result<(Transfer, PushAnswer)> {
    let peer = node.trust.usable_peer(peer_name)?;
    let secret = peer.secret_bytes()?;
    let options_prefer = options.prefer;
    let mut transfer = send::start(node, options, None).await?;
    // The ticket travels sealed inside the offer; it is not shown.
    let first = transfer.events.recv().await;
    debug_assert!(matches!(first, Some(Event::Ticket { .. })));
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
    let until = Instant::now() + Duration::from_secs(good_for).saturating_sub(RETRY_MARGIN);
    let mut delivery = Delivery::new(peer, offer, options_prefer, until)?;
    let refused = match delivery.try_once(FIRST_TRY_BUDGET).await {
        Tried::Answered(answer) => return Ok((transfer, answer)),
        Tried::Kept => {
            let answer = PushAnswer::queued("waiting in the channel for the peer".into());
            return Ok((transfer, answer));
        }
        Tried::NotYet(why) => {
            let reason = format!(
                "{} is not listening yet ({why}); the offer is tried again until it expires",
                delivery.peer.name
            );
            set_waiting(node, &id, Some(&reason))?;
            return Ok((delivery.guard(node, transfer), PushAnswer::queued(reason)));
        }
        Tried::Refused(e) => e,
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
        record.fail(error);
        node.journal.save(&mut record)?;
    }
    Ok(())
}

/// Record why the push of transfer `id` waits for its peer (`None` once the peer answered).
fn set_waiting(node: &Node, id: &crate::id::TransferId, why: Option<&str>) -> Result<()> {
    if let Some(mut record) = node.journal.load(id, Role::Send)?
        && !record.state.is_terminal()
    {
        record.held_because = why.map(str::to_owned);
        node.journal.save(&mut record)?;
    }
    Ok(())
}

/// What one try at handing the offer over came to.
enum Tried {
    /// The peer answered, authentically, and took the offer (`accepted` or `pending`).
    Answered(PushAnswer),
    /// The peer's channel keeps the offer for it (the relay's mailbox, a folder, JetStream).
    Kept,
    /// Nobody took it: the peer is not listening (the reason, naming where it was tried).
    NotYet(String),
    /// The peer refused it, or answered something this node must not believe.
    Refused(TransferError),
}

/// An offer on its way to a peer: its inbox directly over HTTP, else (or with `prefer =
/// relay`) its channel. An inbox that answered decides; only an unreachable one makes us try
/// the channel. Tried again, with backoff, while the peer is not listening.
struct Delivery {
    peer: Peer,
    offer: serde_json::Value,
    prefer: Prefer,
    until: Instant,
    /// The peer's channel mailbox, when it has one this push may use.
    channel: Option<ChannelRoute>,
    /// Some try may have reached the inbox without its answer reaching us (it timed out), so a
    /// later `offer_replayed` means the peer has the offer.
    maybe_arrived: bool,
}

/// The peer's inbox on its channel; connected on first use, and again after a failure.
struct ChannelRoute {
    hint: String,
    mailbox: MailboxId,
    connected: Option<(Channel, mpsc::Receiver<Bytes>, Bytes)>,
}

impl Delivery {
    fn new(peer: Peer, offer: serde_json::Value, prefer: Prefer, until: Instant) -> Result<Delivery> {
        let channel = match peer.channel.as_ref().filter(|_| prefer != Prefer::Http) {
            None => None,
            Some((hint, mailbox)) => {
                let mailbox = MailboxId::from_hex(mailbox)
                    .ok_or_else(|| TransferError::PeerUriInvalid("the peer's inbox mailbox is damaged".into()))?;
                Some(ChannelRoute { hint: hint.clone(), mailbox, connected: None })
            }
        };
        let direct = prefer != Prefer::Relay && !peer.inbox.is_empty();
        if !direct && channel.is_none() {
            return Err(TransferError::OfferRefused(format!("{} has no inbox this node may use", peer.name)));
        }
        Ok(Delivery { peer, offer, prefer, until, channel, maybe_arrived: false })
    }

    /// One try at the inbox, then at the channel.
    async fn try_once(&mut self, budget: Duration) -> Tried {
        let mut not_yet = Vec::new();
        if self.prefer != Prefer::Relay && !self.peer.inbox.is_empty() {
            match http_path::deliver(&self.peer.inbox, budget, &self.offer).await {
                Ok(answer) => return self.judge(&answer),
                // The refusal's body is the peer's; only a sanitized code of it is shown.
                Err(TransferError::Protocol(code)) if code == "offer_replayed" && self.maybe_arrived => {
                    return Tried::Kept;
                }
                Err(TransferError::Protocol(code)) => {
                    return Tried::Refused(TransferError::OfferRefused(crate::offer::sanitized_code(Some(&code))));
                }
                Err(e) => {
                    self.maybe_arrived |= !matches!(e, TransferError::NotServing(_));
                    not_yet.push(format!("its inbox: {}", inbox_failure(&e)));
                }
            }
        }
        if let Some(route) = self.channel.as_mut() {
            match route.post(&self.offer).await {
                Ok(Posted::Dropped) => not_yet.push(format!("offline on {}: it reads no inbox there", route.hint)),
                Ok(Posted::Kept | Posted::Delivered) => {
                    let (_, answers, _) = route.connected.as_mut().expect("posted, so connected");
                    let answer = tokio::time::timeout(CHANNEL_ANSWER_BUDGET, answers.recv()).await.ok().flatten();
                    return match answer.map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes)) {
                        Some(Ok(answer)) => self.judge(&answer),
                        Some(Err(e)) => Tried::Refused(TransferError::OfferRefused(format!("unreadable answer: {e}"))),
                        // The offer waits in the channel (for its TTL) until the peer connects.
                        None => Tried::Kept,
                    };
                }
                // A channel that refuses this node's credentials will not let it in later.
                Err(e @ (TransferError::ChannelAuth(_) | TransferError::ChannelTls(_))) => return Tried::Refused(e),
                Err(e) => {
                    route.connected = None;
                    not_yet.push(format!("the channel {}: {e}", route.hint));
                }
            }
        }
        Tried::NotYet(not_yet.join("; "))
    }

    /// The peer's answer, believed only if authenticated under the grant.
    fn judge(&self, answer: &serde_json::Value) -> Tried {
        match push_answer(&self.peer, &self.offer, answer) {
            Ok(answer) => Tried::Answered(answer),
            Err(TransferError::OfferRefused(code)) if code == "offer_replayed" && self.maybe_arrived => Tried::Kept,
            Err(e) => Tried::Refused(e),
        }
    }

    /// Try until the peer takes the offer: `Ok` once it did, `peer_offline` past the deadline.
    async fn run(mut self, node: &Node, id: &crate::id::TransferId) -> Result<()> {
        let mut pause = RETRY_FIRST;
        let mut last = String::new();
        loop {
            let now = Instant::now();
            if now >= self.until {
                return Err(TransferError::PeerOffline(format!(
                    "{} did not take the offer while it was good ({last})",
                    self.peer.name
                )));
            }
            tokio::time::sleep_until((now + pause).min(self.until)).await;
            pause = (pause * 2).min(RETRY_MAX);
            let budget = INBOX_BUDGET.min(self.until.saturating_duration_since(Instant::now())).max(RETRY_FIRST);
            match self.try_once(budget).await {
                Tried::Answered(answer) => {
                    tracing::info!(peer = %self.peer.name, state = %answer.state, "the peer took the offer");
                    let _ = set_waiting(node, id, None);
                    return Ok(());
                }
                Tried::Kept => {
                    let _ = set_waiting(node, id, None);
                    return Ok(());
                }
                Tried::NotYet(why) => last = why,
                Tried::Refused(e) => return Err(e),
            }
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
                reached = self.run(&node, &transfer_id) => match reached {
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

impl ChannelRoute {
    /// Post the offer to the peer's inbox mailbox, connecting first if need be.
    async fn post(&mut self, offer: &serde_json::Value) -> Result<Posted> {
        if self.connected.is_none() {
            let channel = Channel::open(&self.hint.parse()?).await?;
            let mut reply = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut reply);
            let reply = MailboxKey::from_bytes(reply);
            let answers = channel.subscribe(reply).await;
            let reply = reply.id().to_string();
            let message = serde_json::json!({ "offer": offer, "reply": reply });
            self.connected = Some((channel, answers, Bytes::from(serde_json::to_vec(&message).expect("json"))));
        }
        let (channel, _, message) = self.connected.as_ref().expect("connected above");
        channel.post_offer(self.mailbox, message.clone()).await
    }
}

/// Why the peer's inbox did not take an offer, in words about the peer (the transport's own
/// errors speak of a sender, since receivers dial senders).
fn inbox_failure(error: &TransferError) -> String {
    match error {
        TransferError::NotServing(why) | TransferError::PeerUnreachable(why) => why.clone(),
        other => other.to_string(),
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
