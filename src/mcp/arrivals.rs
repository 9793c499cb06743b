//! Telling the client that a push arrived, so that an agent need not poll `check_session`.
//!
//! Each push the inbox accepts or holds ([`Arrival`]) reaches every connected client as two
//! notifications: `notifications/message` (logger `agentferry`, level `info` for a push being
//! fetched, `notice` for one held until someone calls `receive_file(transfer_id)`) whose data
//! says what arrived and what to call next, and `notifications/resources/list_changed`, since the
//! transfer is a new resource. Clients may raise the level with `logging/setLevel`.
//!
//! Only connections that began with `initialize` get them: the 2026-07-28 protocol routes
//! change notifications through `subscriptions/listen`, which this server does not serve yet,
//! and has no log messages outside a request. There `check_session` shows every arrival.

// Logging is deprecated by SEP-2577, but it is how today's hosts show a server's messages.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::{
    Peer, RoleServer,
    model::{LoggingLevel, LoggingMessageNotificationParam},
};
use serde_json::json;
use tokio::sync::broadcast::{Receiver, error::RecvError};

use crate::{engine::Arrival, journal::State};

/// The clients to tell, and the least severe level they want: `info` until a client says
/// otherwise with `logging/setLevel` (the last one set holds for every client of this server).
#[derive(Clone)]
pub(super) struct Clients(Arc<Mutex<(Vec<Peer<RoleServer>>, LoggingLevel)>>);

impl Default for Clients {
    fn default() -> Self {
        Clients(Arc::new(Mutex::new((Vec::new(), LoggingLevel::Info))))
    }
}

impl Clients {
    /// A client that completed `initialize`.
    pub(super) fn add(&self, peer: Peer<RoleServer>) {
        let mut clients = self.0.lock().expect("not poisoned");
        clients.0.retain(|p| !p.is_transport_closed());
        clients.0.push(peer);
    }

    pub(super) fn set_level(&self, level: LoggingLevel) {
        self.0.lock().expect("not poisoned").1 = level;
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
        let clients: Vec<_> = {
            let mut clients = self.0.lock().expect("not poisoned");
            clients.0.retain(|p| !p.is_transport_closed());
            if (level as u8) < (clients.1 as u8) {
                return;
            }
            clients.0.clone()
        };
        for peer in clients {
            let message = LoggingMessageNotificationParam::new(level, data.clone()).with_logger("agentferry");
            if let Err(e) = peer.notify_logging_message(message).await {
                tracing::debug!("could not tell a client about a push: {e}");
                continue;
            }
            let _ = peer.notify_resource_list_changed().await;
        }
    }
}
