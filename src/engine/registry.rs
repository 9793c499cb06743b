//! Transfers running in this process, with a live status each.
//!
//! A long-lived front (the MCP server, `agentferry listen`) hands every [`Transfer`] it starts to
//! the registry, which consumes its events into a [`TransferStatus`] published on a watch
//! channel. `check_session` reads it (or waits on it); transfers not running here are read from
//! the journal instead, so one view covers both.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

use super::{Event, Node, Transfer};
use crate::{
    error::{Result, TransferError},
    id::TransferId,
    journal::{AttemptInfo, ErrorInfo, Role, State, TransferStatus, unix_now},
};

/// Attempts kept per transfer; older ones are dropped.
const MAX_ATTEMPTS: usize = 32;

#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<HashMap<TransferId, watch::Receiver<TransferStatus>>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry::default())
    }

    /// Follow `transfer`'s events from now on; returns its live status.
    pub fn track(self: &Arc<Self>, node: &Node, transfer: Transfer) -> Result<watch::Receiver<TransferStatus>> {
        let (tx, rx) = watch::channel(running(node, &transfer)?);
        self.live.lock().expect("not poisoned").insert(transfer.transfer_id, rx.clone());
        tokio::spawn(follow(transfer, tx));
        Ok(rx)
    }

    /// A transfer that starts later (an upload link waiting for its file): `waiting` is its
    /// status until `start` gives the transfer, whose events are then followed as by
    /// [`Registry::track`], or fails, which ends it with that error.
    pub fn track_later(
        self: &Arc<Self>,
        node: &Node,
        waiting: TransferStatus,
        start: impl Future<Output = Result<Transfer>> + Send + 'static,
    ) -> watch::Receiver<TransferStatus> {
        let id: TransferId = waiting.transfer_id.parse().expect("a registry's ids are transfer ids");
        let (tx, rx) = watch::channel(waiting);
        self.live.lock().expect("not poisoned").insert(id, rx.clone());
        let node = node.clone();
        tokio::spawn(async move {
            match start.await.and_then(|transfer| Ok((running(&node, &transfer)?, transfer))) {
                Ok((status, transfer)) => {
                    tx.send_replace(status);
                    follow(transfer, tx).await
                }
                Err(e) => tx.send_modify(|s| fail(s, &e)),
            }
        });
        rx
    }

    /// The live status of a transfer running in this process.
    pub fn watch(&self, id: &TransferId) -> Option<watch::Receiver<TransferStatus>> {
        self.live.lock().expect("not poisoned").get(id).cloned()
    }

    /// One transfer: live if it runs here, else from the journal (both roles if both exist).
    pub fn status(&self, node: &Node, id: &TransferId) -> Result<Vec<TransferStatus>> {
        if let Some(live) = self.watch(id) {
            let mut all = vec![live.borrow().clone()];
            let role = all[0].role;
            all.extend(
                node.records(Some(*id)).unwrap_or_default().iter().filter(|r| r.role() != role).map(|r| r.status()),
            );
            return Ok(all);
        }
        node.status(Some(*id))
    }

    /// Every transfer this node knows, live ones as they are now (with those that have no
    /// journal record yet).
    pub fn list(&self, node: &Node) -> Result<Vec<TransferStatus>> {
        let live = self.live.lock().expect("not poisoned").clone();
        let records = node.records(None)?;
        let mut all: Vec<TransferStatus> = records
            .iter()
            .map(|r| match live.get(&r.transfer_id) {
                Some(l) if l.borrow().role == r.role() => l.borrow().clone(),
                _ => r.status(),
            })
            .collect();
        let unrecorded = live.iter().filter(|(id, _)| !records.iter().any(|r| r.transfer_id == **id));
        all.extend(unrecorded.map(|(_, l)| l.borrow().clone()));
        Ok(all)
    }
}

/// The status a transfer starts running with: its journal record's, active, without the error
/// of an earlier run.
fn running(node: &Node, transfer: &Transfer) -> Result<TransferStatus> {
    let record = node.journal.load(&transfer.transfer_id, transfer.role)?;
    let mut status =
        record.map(|r| r.status()).ok_or_else(|| TransferError::TransferNotFound(transfer.transfer_id.to_string()))?;
    status.state = State::Active;
    status.error = None;
    Ok(status)
}

/// Fold one transfer's events into its status until it ends.
async fn follow(mut transfer: Transfer, tx: watch::Sender<TransferStatus>) {
    // Since data began to move in this run: (when, bytes done then), for a completed rate.
    let mut moving: Option<(std::time::Instant, u64)> = None;
    while let Some(event) = transfer.events.recv().await {
        if moving.is_none() && matches!(event, Event::Progress { .. } | Event::Path { state: "using", .. }) {
            moving = Some((std::time::Instant::now(), tx.borrow().bytes_done));
        }
        tx.send_modify(|s| {
            apply(s, event);
            if let (State::Completed, Some((since, from))) = (s.state, moving) {
                s.rate = average_rate(s.bytes_done.saturating_sub(from), since.elapsed());
            }
        });
    }
    let result = transfer.outcome().await;
    tx.send_modify(|s| {
        if !s.state.is_terminal() {
            match result {
                Ok(_) => s.state = State::Completed,
                Err(e) => fail(s, &e),
            }
        }
    });
}

/// Bytes per second of `bytes` moved in `elapsed` (a run too short to time counts as 1 ms).
fn average_rate(bytes: u64, elapsed: std::time::Duration) -> u64 {
    (bytes as u128 * 1000 / elapsed.as_millis().max(1)) as u64
}

fn fail(s: &mut TransferStatus, e: &TransferError) {
    s.state = if matches!(e, TransferError::Cancelled) { State::Interrupted } else { State::Failed };
    s.error = Some(ErrorInfo::from(e));
    s.rate = 0;
    s.updated_at = unix_now();
}

fn apply(s: &mut TransferStatus, event: Event) {
    s.updated_at = unix_now();
    match event {
        Event::Progress { bytes_done, rate, .. } => {
            s.bytes_done = s.bytes_done.max(bytes_done);
            s.rate = rate;
            // A push waiting for its peer is no longer waiting once the peer fetches.
            if s.role == Role::Send && bytes_done > 0 {
                s.held_because = None;
            }
        }
        Event::Path { path, state: "using", .. } => s.path = Some(path.to_owned()),
        Event::Attempt { path, addr, ok, elapsed_ms, error_code, .. } => {
            if s.attempts.len() == MAX_ATTEMPTS {
                s.attempts.remove(0);
            }
            s.attempts.push(AttemptInfo {
                path: path.to_owned(),
                addr: addr.to_string(),
                ok,
                elapsed_ms,
                error_code: error_code.map(str::to_owned),
            });
        }
        Event::Completed { sha256, bytes, saved_to, sums, path, bytes_by_path, .. } => {
            s.state = State::Completed;
            s.held_because = s.held_because.take().filter(|_| s.role == Role::Receive);
            s.bytes_by_path = bytes_by_path;
            s.sha256 = Some(sha256);
            s.bytes_done = bytes;
            s.saved_to = saved_to;
            s.sums = sums;
            s.path = Some(path.to_owned());
            s.rate = 0;
        }
        Event::Error { code, message, hint, .. } => {
            s.state = if code == "cancelled" { State::Interrupted } else { State::Failed };
            s.error = Some(ErrorInfo { code: code.into(), message, hint });
            s.rate = 0;
        }
        _ => {}
    }
}
