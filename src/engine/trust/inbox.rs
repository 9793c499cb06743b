//! The inbox: where trusted peers' pushes arrive, and what becomes of them.
//!
//! An offer passes four checks before anything is stored: its grant is one this node exported,
//! its MAC verifies under that grant's secret, it is fresh, and its id was never seen before
//! (the seen ids live in `offers_seen.json`, shared by every process on the home). A valid grant
//! means the ticket inside is fetched at once into the download folder; an authentic offer under
//! a grant that expired or was revoked, from a sender naming itself differently than on the
//! grant's first use, or over the grant's byte quota (see [`crate::peers::Trust::claim`]) is
//! held as a `pending` transfer with that reason, for a
//! person or agent to accept or ignore — at most [`MAX_PENDING_PER_GRANT`] per grant and
//! [`MAX_PENDING`] in all, each forgotten after [`PENDING_MAX_AGE_SECS`] or once its grant is
//! deleted (`offers_held.json` keeps the ledger). Anything else is refused and leaves no trace.
//!
//! On the message channel every usable grant has its own mailbox, whose key only this node can
//! derive; revoking a grant closes its mailbox without touching the others, and an offer is
//! taken from a mailbox only if it names that mailbox's grant. Answers to authentic offers
//! carry a MAC under the grant (see [`crate::offer::answer_mac`]).

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::engine::{Node, ReceiveOptions, Registry};
use crate::{
    channel::{Channel, MailboxId, MailboxKey},
    error::TransferError,
    journal::unix_now,
    offer::{MAX_SKEW_SECS, Offer, answer_mac, remember_until},
    peers::{Grant, grant_inbox_key},
    store::Store,
    ticket::Ticket,
    transport::http::InboxHandler,
};

/// A push that reached the inbox: fetched at once (`active`), or held for a person (`pending`).
/// Fronts tell their user (the MCP server notifies its client), so nobody need poll.
#[derive(Clone, Debug, Serialize)]
pub struct Arrival {
    pub transfer_id: String,
    pub file_name: String,
    pub bytes_total: u64,
    /// The name the sender gave itself.
    pub from: String,
    pub state: crate::journal::State,
    /// Why a pending push was held (`grant_revoked`, `grant_quota_exceeded`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_because: Option<String>,
}

/// Arrivals buffered for a slow listener; beyond, the oldest are dropped (it still sees the
/// newest, and check_session lists them all).
const ARRIVALS_BUFFERED: usize = 64;

/// Pending offers held per grant, and in all, at most; more are refused (`too_many_pending`).
pub(crate) const MAX_PENDING_PER_GRANT: usize = 8;
pub(crate) const MAX_PENDING: usize = 64;
/// A pending offer not accepted within this long is forgotten (the sender's ticket has usually
/// expired by then anyway).
pub(crate) const PENDING_MAX_AGE_SECS: u64 = 7 * 86_400;

/// A pending offer this inbox holds, and under which grant.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    transfer_id: String,
    grant_id: String,
    at: u64,
}

/// How often the channel subscriptions are brought in line with the grant store.
const RECONCILE: Duration = Duration::from_secs(2);

/// Offer ids remembered at once, per grant and in all. Each is kept only while its offer could
/// still be accepted (some 20 minutes), so these bound what a grant holder's flood of authentic
/// offers (a revoked one's, say) can make the inbox remember; past them new offers get
/// `429 inbox_busy` until old ids age out, and are not taken, so no replay gets through.
const MAX_SEEN_PER_GRANT: usize = 256;
const MAX_SEEN: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct SeenOffer {
    id: String,
    /// The grant it came under; older files lack it.
    #[serde(default)]
    grant: String,
    at: u64,
    /// Remembered until then (see [`crate::offer::remember_until`]); older files lack it.
    #[serde(default)]
    until: u64,
}

/// Accepts offers for one node into its download folder.
pub struct Inbox {
    node: Node,
    download_dir: PathBuf,
    registry: Arc<Registry>,
    seen: Store<SeenOffer>,
    held: Store<Held>,
    arrivals: broadcast::Sender<Arrival>,
}

fn answer(status: StatusCode, code: &str) -> (StatusCode, Value) {
    (status, json!({ "code": code }))
}

impl Inbox {
    pub fn new(node: Node, download_dir: PathBuf, registry: Arc<Registry>) -> Arc<Self> {
        let seen = Store::new(node.home(), "offers_seen.json");
        let held = Store::new(node.home(), "offers_held.json");
        let arrivals = broadcast::channel(ARRIVALS_BUFFERED).0;
        Arc::new(Inbox { node, download_dir, registry, seen, held, arrivals })
    }

    /// The handler to install on an [`crate::transport::http::HttpServer`].
    /// Every push accepted or held from now on.
    pub fn arrivals(&self) -> broadcast::Receiver<Arrival> {
        self.arrivals.subscribe()
    }

    fn arrived(
        &self,
        transfer_id: String,
        (file_name, bytes_total): (String, u64),
        from: &str,
        held_because: Option<&str>,
    ) {
        let state = if held_because.is_some() { crate::journal::State::Pending } else { crate::journal::State::Active };
        let _ = self.arrivals.send(Arrival {
            transfer_id,
            file_name,
            bytes_total,
            from: from.to_owned(),
            state,
            held_because: held_because.map(str::to_owned),
        }); // nobody listening is fine
    }

    pub fn handler(self: &Arc<Self>) -> InboxHandler {
        let this = Arc::clone(self);
        Arc::new(move |body| {
            let this = Arc::clone(&this);
            Box::pin(async move { this.handle(body).await })
        })
    }

    /// Also take offers through the node's message channel, if it has one. Connecting happens in
    /// the background so that a slow or absent relay never delays start-up.
    pub async fn listen_on_channel(self: &Arc<Self>, node: &Node) {
        let Some(hint) = node.config().channel.clone() else { return };
        let inbox_secret = match node.inbox_mailbox() {
            Ok(m) => m,
            Err(e) => return tracing::warn!("no inbox secret: {e}"),
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match Channel::open(&hint).await {
                Ok(channel) => {
                    tracing::info!(%hint, "taking offers through the channel");
                    this.serve_channel(channel, inbox_secret).await;
                }
                Err(e) => tracing::warn!(%hint, "cannot take offers through the channel: {e}"),
            }
        });
    }

    /// Take offers through `channel` until it closes: one mailbox per usable grant, keyed by
    /// [`grant_inbox_key`], kept in step with the grant store (a grant exported or revoked by
    /// another process is picked up within [`RECONCILE`]). Each message is
    /// `{"offer": …, "reply": <hex mailbox id>}`; an offer must name the grant whose mailbox it
    /// came through. The answer, authenticated when the offer was, goes to the reply mailbox.
    pub async fn serve_channel(self: Arc<Self>, channel: Channel, inbox_secret: [u8; 32]) {
        #[derive(Deserialize)]
        struct Delivery {
            offer: Value,
            reply: String,
        }
        let (tx, mut deliveries) = mpsc::channel::<(String, Bytes)>(16);
        let mut subscribed: HashMap<String, MailboxKey> = HashMap::new();
        let mut reconcile = tokio::time::interval(RECONCILE);
        loop {
            let (grant_id, message) = tokio::select! {
                _ = reconcile.tick() => {
                    self.reconcile(&channel, &inbox_secret, &mut subscribed, &tx).await;
                    continue;
                }
                delivery = deliveries.recv() => match delivery {
                    Some(d) => d,
                    None => return,
                },
            };
            let Ok(delivery) = serde_json::from_slice::<Delivery>(&message) else { continue };
            let Some(reply) = MailboxId::from_hex(&delivery.reply) else { continue };
            let body = Bytes::from(serde_json::to_vec(&delivery.offer).expect("json"));
            let (_, answer) = self.handle_for(body, Some(&grant_id)).await;
            let _ = channel.send(reply, Bytes::from(serde_json::to_vec(&answer).expect("json"))).await;
        }
    }

    /// Subscribe to the mailbox of every usable grant, and drop those of grants revoked,
    /// expired or deleted.
    async fn reconcile(
        &self,
        channel: &Channel,
        inbox_secret: &[u8; 32],
        subscribed: &mut HashMap<String, MailboxKey>,
        tx: &mpsc::Sender<(String, Bytes)>,
    ) {
        let now = unix_now();
        let Ok(grants) = self.node.trust().grants() else { return };
        let usable: HashMap<String, MailboxKey> = grants
            .iter()
            .filter(|g| g.invalid_reason(now).is_none())
            .map(|g| (g.id.clone(), grant_inbox_key(inbox_secret, &g.id)))
            .collect();
        for (id, key) in subscribed.clone() {
            if !usable.contains_key(&id) {
                channel.unsubscribe(key).await;
                subscribed.remove(&id);
            }
        }
        for (id, key) in usable {
            if subscribed.contains_key(&id) {
                continue;
            }
            let mut messages = channel.subscribe_inbox(key).await;
            let (tx, grant_id) = (tx.clone(), id.clone());
            // Ends when the subscription is dropped (unsubscribe) or the inbox stops.
            tokio::spawn(async move {
                while let Some(message) = messages.recv().await {
                    if tx.send((grant_id.clone(), message)).await.is_err() {
                        return;
                    }
                }
            });
            subscribed.insert(id, key);
        }
    }

    async fn handle(&self, body: Bytes) -> (StatusCode, Value) {
        self.handle_for(body, None).await
    }

    /// Check an offer (that came through grant `via`'s mailbox, if given) and act on it. Once
    /// the offer is authentic, the answer carries a MAC the pusher checks.
    async fn handle_for(&self, body: Bytes, via: Option<&str>) -> (StatusCode, Value) {
        let Ok(offer) = serde_json::from_slice::<Offer>(&body) else {
            return answer(StatusCode::BAD_REQUEST, "offer_malformed");
        };
        if via.is_some_and(|g| g != offer.grant_id) {
            return answer(StatusCode::FORBIDDEN, "grant_mismatch");
        }
        let trust = self.node.trust();
        let grant = match trust.grant(&offer.grant_id) {
            Ok(Some(grant)) => grant,
            Ok(None) => return answer(StatusCode::FORBIDDEN, "grant_unknown"),
            Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, e.code()),
        };
        let now = unix_now();
        let secret = match grant.secret_bytes() {
            Ok(secret) => secret,
            Err(e) => {
                tracing::error!(grant = %grant.id, "{e}");
                return answer(StatusCode::FORBIDDEN, "grant_unknown");
            }
        };
        let ticket = match offer.open(&secret, now) {
            Ok(ticket) => ticket,
            Err(e) => return answer(StatusCode::FORBIDDEN, &e.to_string()),
        };
        let (status, mut value) = self.admit(&offer, &grant, ticket, now).await;
        value["mac"] = answer_mac(&secret, &offer.offer_id, &value).into();
        (status, value)
    }

    /// An authentic offer: refuse a replay, then fetch it or hold it.
    async fn admit(&self, offer: &Offer, grant: &Grant, ticket: Ticket, now: u64) -> (StatusCode, Value) {
        let first_time = self.seen.update(|seen| {
            seen.retain(|s| s.until.max(s.at + 2 * MAX_SKEW_SECS) >= now);
            if seen.iter().any(|s| s.id == offer.offer_id) {
                return Ok(Some(false));
            }
            let of_grant = seen.iter().filter(|s| s.grant == grant.id).count();
            if of_grant >= MAX_SEEN_PER_GRANT || seen.len() >= MAX_SEEN {
                return Ok(None);
            }
            let until = remember_until(offer.issued_at);
            seen.push(SeenOffer { id: offer.offer_id.clone(), grant: grant.id.clone(), at: now, until });
            Ok(Some(true))
        });
        match first_time {
            Ok(Some(true)) => {}
            Ok(Some(false)) => return answer(StatusCode::CONFLICT, "offer_replayed"),
            Ok(None) => return answer(StatusCode::TOO_MANY_REQUESTS, "inbox_busy"),
            Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, e.code()),
        }
        let options = ReceiveOptions {
            output_dir: self.download_dir.clone(),
            overwrite: false,
            peer: Some(offer.from.clone()),
            prefer: None,
        };
        // The grant must still be usable, the sender must call itself what it did on first use,
        // and the offer must fit the grant's byte quota; otherwise it waits for a person.
        match self.node.trust().claim(&grant.id, &offer.from, ticket.size, now) {
            Ok(None) => {}
            Ok(Some(reason)) => return self.hold(grant, &offer.from, ticket, &options, reason, now),
            Err(e) => return refusal(&e),
        }
        tracing::info!(grant = %grant.id, from = %offer.from, "accepting an offer");
        let what = (ticket.name.clone(), ticket.size);
        let started = match self.node.receive(ticket, options).await {
            Ok(transfer) => self.registry.track(&self.node, transfer).map(|rx| rx.borrow().transfer_id.clone()),
            Err(e) => Err(e),
        };
        match started {
            Ok(id) => {
                self.arrived(id.clone(), what, &offer.from, None);
                (StatusCode::ACCEPTED, json!({ "state": "accepted", "transfer_id": id }))
            }
            Err(e) => refusal(&e),
        }
    }
}

impl Inbox {
    /// Hold an authentic offer under a grant that no longer allows auto-accept, within the caps:
    /// [`MAX_PENDING_PER_GRANT`] per grant, [`MAX_PENDING`] in all. Held offers older than
    /// [`PENDING_MAX_AGE_SECS`], or whose grant was deleted, are forgotten first; accepted or
    /// otherwise settled ones stop counting.
    fn hold(
        &self,
        grant: &Grant,
        from: &str,
        ticket: Ticket,
        options: &ReceiveOptions,
        reason: &str,
        now: u64,
    ) -> (StatusCode, Value) {
        let grants: Vec<String> = self.node.trust().grants().unwrap_or_default().into_iter().map(|g| g.id).collect();
        let journal = self.node.journal();
        let what = (ticket.name.clone(), ticket.size);
        let admitted = self.held.update(|held| {
            held.retain(|h| {
                let Ok(id) = h.transfer_id.parse() else { return false };
                let still_pending = journal
                    .load(&id, crate::journal::Role::Receive)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.state == crate::journal::State::Pending);
                let expired = now.saturating_sub(h.at) > PENDING_MAX_AGE_SECS || !grants.contains(&h.grant_id);
                if still_pending && expired {
                    return !journal.remove_pending(&id).unwrap_or(false);
                }
                still_pending
            });
            let per_grant = held.iter().filter(|h| h.grant_id == grant.id).count();
            if per_grant >= MAX_PENDING_PER_GRANT || held.len() >= MAX_PENDING {
                return Ok(None);
            }
            let id = self.node.hold(ticket, options, reason)?;
            held.push(Held { transfer_id: id.to_string(), grant_id: grant.id.clone(), at: now });
            Ok(Some(id))
        });
        match admitted {
            Ok(Some(id)) => {
                tracing::info!(grant = %grant.id, reason, "holding an offer");
                self.arrived(id.to_string(), what, from, Some(reason));
                (StatusCode::ACCEPTED, json!({ "state": "pending", "reason": reason, "transfer_id": id }))
            }
            Ok(None) => {
                tracing::info!(grant = %grant.id, reason, "refusing an offer: too many pending");
                answer(StatusCode::TOO_MANY_REQUESTS, "too_many_pending")
            }
            Err(e) => refusal(&e),
        }
    }
}

/// A refusal crosses a trust boundary: it says what kind of failure (the code and its fixed
/// hint), never the message, which may name local paths.
fn refusal(e: &TransferError) -> (StatusCode, Value) {
    (StatusCode::CONFLICT, json!({ "code": e.code(), "message": e.hint() }))
}
