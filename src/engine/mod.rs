//! The engine: one API that every front calls, driving the core over real files and sockets.
//!
//! A [`Node`] is one home (journal, config). [`Node::send`], [`Node::receive`] and
//! [`Node::resume`] start a transfer in the background and return a [`Transfer`] at once: its
//! `events` stream progress items ending in `Completed` or `Error`, and its `task` resolves to
//! the outcome. The engine owns the journal, the transports and the blocking disk threads; the
//! decisions (what to ask for, when to checkpoint, when to give up) come from [`crate::core`].

mod events;
mod outgoing;
mod receive;
mod send;
mod worker;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};

pub use events::{Event, Events};
pub use outgoing::{Outgoing, SendOutcome};

use crate::{
    error::{Result, TransferError},
    home::Home,
    id::TransferId,
    journal::{Journal, Record, Role},
    manifest::DEFAULT_CHUNK_SIZE,
    ticket::Ticket,
};

/// Node-wide settings; the CLI fills them from flags and `AGENTFERRY_*` variables.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where a sender listens. Port 0 picks a free port; the journal remembers the one chosen.
    pub bind: SocketAddr,
    /// A receiver gives up after this long without new data (the journal keeps what arrived).
    pub peer_timeout: Duration,
    pub chunk_size: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            bind: SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 0)),
            peer_timeout: Duration::from_secs(30),
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// What to send.
#[derive(Clone, Debug)]
pub struct SendOptions {
    pub path: PathBuf,
    pub expires_in: Duration,
}

/// Where and how to receive.
#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    pub output_dir: PathBuf,
    pub overwrite: bool,
}

/// The result of a transfer that finished well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub sha256: String,
    pub bytes: u64,
    pub saved_to: Option<PathBuf>,
}

/// A transfer running in the background.
#[derive(Debug)]
pub struct Transfer {
    pub transfer_id: TransferId,
    pub role: Role,
    /// Progress items; the last one is `Completed` or `Error`.
    pub events: mpsc::Receiver<Event>,
    pub task: JoinHandle<Result<Completion>>,
}

impl Transfer {
    /// Wait for the outcome, discarding events.
    pub async fn finish(mut self) -> Result<Completion> {
        while self.events.recv().await.is_some() {}
        self.task.await.unwrap_or(Err(TransferError::Cancelled))
    }
}

/// One installation of agentferry: a home and its settings.
#[derive(Clone, Debug)]
pub struct Node {
    home: Home,
    journal: Journal,
    config: NodeConfig,
}

impl Node {
    pub fn new(home: Home, config: NodeConfig) -> Self {
        Node { journal: Journal::new(&home), home, config }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Start serving a file; the first event is the ticket.
    pub async fn send(&self, options: SendOptions) -> Result<Transfer> {
        send::start(self, options).await
    }

    /// Start fetching the file a ticket names.
    pub async fn receive(&self, ticket: Ticket, options: ReceiveOptions) -> Result<Transfer> {
        receive::start(self, ticket, options).await
    }

    /// Continue an interrupted transfer from its journal. `role` picks one when this node both
    /// sends and receives `id` (two nodes sharing one home).
    pub async fn resume(&self, id: TransferId, role: Option<Role>) -> Result<Transfer> {
        let mut records = self.journal.find(&id)?;
        records.retain(|r| role.is_none_or(|role| r.role() == role));
        let record = match records.len() {
            0 => return Err(TransferError::TransferNotFound(id.to_string())),
            1 => records.pop().expect("one"),
            _ => return Err(TransferError::AmbiguousTransfer(id.to_string())),
        };
        match record.role() {
            Role::Send => send::resume(self, record).await,
            Role::Receive => receive::resume(self, record).await,
        }
    }

    /// The journal's view of one transfer (both roles) or of all of them.
    pub fn status(&self, id: Option<TransferId>) -> Result<Vec<Record>> {
        match id {
            Some(id) => {
                let found = self.journal.find(&id)?;
                if found.is_empty() {
                    return Err(TransferError::TransferNotFound(id.to_string()));
                }
                Ok(found)
            }
            None => self.journal.list(),
        }
    }
}
