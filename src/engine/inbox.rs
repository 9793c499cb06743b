//! The inbox: where trusted peers' pushes arrive, and what becomes of them.
//!
//! An offer passes four checks before anything is stored: its grant is one this node exported,
//! its MAC verifies under that grant's secret, it is fresh, and its id was never seen before
//! (the seen ids live in `offers_seen.json`, shared by every process on the home). A valid grant
//! means the ticket inside is fetched at once into the download folder; an authentic offer under
//! a grant that expired or was revoked is held as a `pending` transfer with that reason, for a
//! person or agent to accept or ignore. Anything else is refused and leaves no trace.

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Node, ReceiveOptions, Registry};
use crate::{
    error::TransferError,
    journal::unix_now,
    offer::{MAX_SKEW_SECS, Offer},
    relay::{Channel, Mailbox},
    store::Store,
    transport::http::InboxHandler,
};

#[derive(Debug, Serialize, Deserialize)]
struct SeenOffer {
    id: String,
    at: u64,
}

/// Accepts offers for one node into its download folder.
pub struct Inbox {
    node: Node,
    download_dir: PathBuf,
    registry: Arc<Registry>,
    seen: Store<SeenOffer>,
}

fn answer(status: StatusCode, code: &str) -> (StatusCode, Value) {
    (status, json!({ "code": code }))
}

impl Inbox {
    pub fn new(node: Node, download_dir: PathBuf, registry: Arc<Registry>) -> Arc<Self> {
        let seen = Store::new(node.home(), "offers_seen.json");
        Arc::new(Inbox { node, download_dir, registry, seen })
    }

    /// The handler to install on an [`crate::transport::http::HttpServer`].
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
        let mailbox = match node.inbox_mailbox() {
            Ok(m) => m,
            Err(e) => return tracing::warn!("no inbox mailbox: {e}"),
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match Channel::open(&hint).await {
                Ok(channel) => {
                    tracing::info!(%hint, "taking offers through the channel");
                    this.serve_channel(channel, mailbox).await;
                }
                Err(e) => tracing::warn!(%hint, "cannot take offers through the channel: {e}"),
            }
        });
    }

    /// Take offers from this node's mailbox on `channel` until the channel closes. Each message
    /// is `{"offer": …, "reply": <hex mailbox>}`; the answer goes to the reply mailbox.
    pub async fn serve_channel(self: Arc<Self>, channel: Channel, mailbox: Mailbox) {
        #[derive(Deserialize)]
        struct Delivery {
            offer: Value,
            reply: String,
        }
        let mut deliveries = channel.subscribe(mailbox).await;
        while let Some(message) = deliveries.recv().await {
            let Ok(delivery) = serde_json::from_slice::<Delivery>(&message) else { continue };
            let Some(reply) = data_encoding::HEXLOWER
                .decode(delivery.reply.as_bytes())
                .ok()
                .and_then(|r| <[u8; 32]>::try_from(r).ok())
            else {
                continue;
            };
            let body = Bytes::from(serde_json::to_vec(&delivery.offer).expect("json"));
            let (_, answer) = self.handle(body).await;
            let _ = channel.send(reply, Bytes::from(serde_json::to_vec(&answer).expect("json"))).await;
        }
    }

    async fn handle(&self, body: Bytes) -> (StatusCode, Value) {
        let Ok(offer) = serde_json::from_slice::<Offer>(&body) else {
            return answer(StatusCode::BAD_REQUEST, "offer_malformed");
        };
        let trust = self.node.trust();
        let grant = match trust.grant(&offer.grant_id) {
            Ok(Some(grant)) => grant,
            Ok(None) => return answer(StatusCode::FORBIDDEN, "grant_unknown"),
            Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, e.code()),
        };
        let now = unix_now();
        let ticket = match offer.open(&grant.secret_bytes(), now) {
            Ok(ticket) => ticket,
            Err(e) => return answer(StatusCode::FORBIDDEN, &e.to_string()),
        };
        let first_time = self.seen.update(|seen| {
            seen.retain(|s| s.at + 2 * MAX_SKEW_SECS > now);
            let fresh = !seen.iter().any(|s| s.id == offer.offer_id);
            if fresh {
                seen.push(SeenOffer { id: offer.offer_id.clone(), at: now });
            }
            Ok(fresh)
        });
        match first_time {
            Ok(true) => {}
            Ok(false) => return answer(StatusCode::CONFLICT, "offer_replayed"),
            Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, e.code()),
        }
        let options = ReceiveOptions {
            output_dir: self.download_dir.clone(),
            overwrite: false,
            peer: Some(offer.from.clone()),
            prefer: None,
        };
        if let Some(reason) = grant.invalid_reason(now) {
            tracing::info!(grant = %grant.id, from = %offer.from, reason, "holding an offer");
            return match self.node.hold(ticket, &options, reason) {
                Ok(id) => (StatusCode::ACCEPTED, json!({ "state": "pending", "reason": reason, "transfer_id": id })),
                Err(e) => refusal(&e),
            };
        }
        tracing::info!(grant = %grant.id, from = %offer.from, "accepting an offer");
        let started = match self.node.receive(ticket, options).await {
            Ok(transfer) => self.registry.track(&self.node, transfer).map(|rx| rx.borrow().transfer_id.clone()),
            Err(e) => Err(e),
        };
        match started {
            Ok(id) => (StatusCode::ACCEPTED, json!({ "state": "accepted", "transfer_id": id })),
            Err(e) => refusal(&e),
        }
    }
}

fn refusal(e: &TransferError) -> (StatusCode, Value) {
    (StatusCode::CONFLICT, json!({ "code": e.code(), "message": e.to_string() }))
}
