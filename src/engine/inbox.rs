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
