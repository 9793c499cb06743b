//! Telling the client that a push arrived, so that an agent need not poll `check_session`.
//!
//! Each push the inbox accepts or holds ([`Arrival`]) reaches every connected client as two
//! notifications: `notifications/message` (logger `agentferry`, level `info` for a push being
//! fetched, `notice` for one held until someone calls `receive_file(transfer_id)`) whose data
//! says what arrived and what to call next, and `notifications/resources/list_changed`, since the
//! transfer is a new resource. Clients may raise the level with `logging/setLevel`.
//!
//! On 2026-07-28 connections, which have no log messages outside a request, a client that holds
//! a `subscriptions/listen` stream with `resourcesListChanged` gets the list change on it; it
//! then calls `check_session` (or `resources/list`) to see what arrived.

// Logging is deprecated by SEP-2577, but it is how today's hosts show a server's messages.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::{
    Peer, RoleServer,
    model::{LoggingLevel, LoggingMessageNotificationParam, ResourceListChangedNotification, ServerNotification},
    service::{SubscriptionSendError, SubscriptionSink},
};
use serde_json::json;
use tokio::sync::broadcast::{Receiver, error::RecvError};

use crate::{engine::Arrival, journal::State};

/// The clients to tell: those that completed `initialize`, the `subscriptions/listen` streams
/// of 2026-07-28 clients, and the least severe level of log message wanted (`info` until a
/// client says otherwise with `logging/setLevel`; the last one set holds for all).
#[derive(Clone)]
pub(super) struct Clients(Arc<Mutex<Told>>);

struct Told {
    peers: Vec<Peer<RoleServer>>,
    streams: Vec<SubscriptionSink>,
    level: LoggingLevel,
}

impl Default for Clients {
    fn default() -> Self {
        Clients(Arc::new(Mutex::new(Told { peers: Vec::new(), streams: Vec::new(), level: LoggingLevel::Info })))
    }
}

impl Clients {
    /// A client that completed `initialize`.
    pub(super) fn add(&self, peer: Peer<RoleServer>) {
        let mut told = self.0.lock().expect("not poisoned");
        told.peers.retain(|p| !p.is_transport_closed());
        told.peers.push(peer);
    }

    /// A `subscriptions/listen` stream that accepted resource list changes.
    pub(super) fn listen(&self, stream: SubscriptionSink) {
        self.0.lock().expect("not poisoned").streams.push(stream);
    }

    pub(super) fn set_level(&self, level: LoggingLevel) {
        self.0.lock().expect("not poisoned").level = level;
    }

    /// Tell every client about each arrival, until the inbox goes away.
    pub(super) fn follow(&self, mut arrivals: Receiver<Arrival>) {
        let clients = self.clone();
        tokio::spawn(async move {
            loop {
                match arrivals.recv().await {
                    Ok(arrival) => clients.tell(&arrival).await,
                    Err(RecvError::Lagged(_)) => continue, // the newest still come; check_session has all
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    async fn tell(&self, arrival: &Arrival) {
        let level = if arrival.state == State::Pending { LoggingLevel::Notice } else { LoggingLevel::Info };
        let id = &arrival.transfer_id;
        let next = match arrival.state {
            State::Pending => format!(
                "{} sent a file that waits for a decision: call receive_file(transfer_id=\"{id}\") to accept it, or ignore it",
                arrival.from
            ),
            _ => format!(
                "{} is sending a file into the download folder: call check_session(transfer_id=\"{id}\", wait=true) to follow it",
                arrival.from
            ),
        };
        let mut data = serde_json::to_value(arrival).expect("plain fields serialise");
        data["event"] = json!("push_arrived");
        data["next"] = json!(next);
        let (peers, streams) = {
            let mut told = self.0.lock().expect("not poisoned");
            told.peers.retain(|p| !p.is_transport_closed());
            let peers = if (level as u8) < (told.level as u8) { Vec::new() } else { told.peers.clone() };
            (peers, told.streams.clone())
        };
        for stream in streams {
            let changed =
                ServerNotification::ResourceListChangedNotification(ResourceListChangedNotification::default());
            if let Err(SubscriptionSendError::SubscriptionClosed) = stream.send(changed).await {
                self.0.lock().expect("not poisoned").streams.retain(|s| s.id() != stream.id());
            }
        }
        for peer in peers {
            let message = LoggingMessageNotificationParam::new(level, data.clone()).with_logger("agentferry");
            if let Err(e) = peer.notify_logging_message(message).await {
                tracing::debug!("could not tell a client about a push: {e}");
                continue;
            }
            let _ = peer.notify_resource_list_changed().await;
        }
    }
}
