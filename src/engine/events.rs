//! Progress items: the one stream of events every front consumes.
//!
//! An engine task publishes [`Event`]s as it works and ends with `Completed` or `Error`. The CLI
//! prints them as JSON Lines (`--json`) or a progress bar; the MCP server folds them into the
//! status that `check_session`, progress notifications and task status report. The serialised
//! form is the documented JSON Lines envelope: every line is an object with an `"event"` field
//! naming its variant.
//!
//! Progress is published at most every [`PROGRESS_INTERVAL`] (10 a second) per transfer, plus
//! the last one; every other event is a state change and always goes out. Every front inherits
//! that rate, so none floods its consumer.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    error::TransferError,
    id::TransferId,
    journal::{Role, TransferStatus},
    peers::{GrantInfo, PeerInfo},
};

/// One line of `--json` output: a step of a transfer, or a fact asked for. Events are built
/// once and printed or folded into a status, so the size spread between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The sender is ready; hand `ticket` to the receiver. Always the first event of `send`.
    /// For a folder, `file_name` is the folder's name and `bytes_total` counts its listing and
    /// every file's bytes.
    Ticket {
        transfer_id: TransferId,
        ticket: String,
        file_name: String,
        bytes_total: u64,
        expires_at: u64,
        /// Present when a folder is sent: what it holds and what was left out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        folder: Option<FolderSummary>,
    },
    /// A push: the peer's inbox took the offer (`state`: `accepted`, or `pending` with a reason).
    Offered {
        transfer_id: TransferId,
        peer: String,
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A short code to say or type on the other machine (`send --code`: `agentferry receive
    /// CODE`; `export --code`: `agentferry peers add CODE`). It works once, until `expires_at`
    /// (unix s), against the same relay.
    Code {
        #[serde(skip_serializing_if = "Option::is_none")]
        transfer_id: Option<TransferId>,
        code: String,
        /// `transfer` or `pair`.
        purpose: &'static str,
        /// The relay both sides must use.
        relay: String,
        expires_at: u64,
    },
    /// The other side redeemed the code (both sides see this). `verifier`, with `--verify`:
    /// two words derived from the key, the same on both sides unless someone in the middle
    /// guessed the code.
    CodeRedeemed {
        #[serde(skip_serializing_if = "Option::is_none")]
        transfer_id: Option<TransferId>,
        purpose: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        verifier: Option<String>,
    },
    /// `send --link`: the link that opens the transfer in a browser (see docs/browser.md).
    /// Secret, like the ticket; printed right after it.
    Link { transfer_id: TransferId, link: String },
    /// The sender listens on these addresses.
    Listening { transfer_id: TransferId, addrs: Vec<SocketAddr> },
    /// One try at one path and address, with its outcome.
    Attempt {
        transfer_id: TransferId,
        path: &'static str,
        /// An address (`http`) or a channel (`relay`).
        addr: String,
        ok: bool,
        elapsed_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_code: Option<&'static str>,
        /// `webrtc` only: `direct` (host or reflexive candidates, hole-punched) or `turn`.
        #[serde(skip_serializing_if = "Option::is_none")]
        route: Option<&'static str>,
    },
    /// The receiver moved onto a path (`state`: `using`) or off it (`left`, with the reason:
    /// `peer_unreachable`, `stalled`, `unauthorized`, `integrity_mismatch`, `misconfigured`: the
    /// channel refused this node's credentials or certificates).
    Path {
        transfer_id: TransferId,
        path: &'static str,
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    /// Bytes moved so far (receiver: received; sender: handed to the network). `rate` is in
    /// bytes per second, smoothed, counted from the first byte moved in this run.
    Progress {
        transfer_id: TransferId,
        role: Role,
        bytes_done: u64,
        bytes_total: u64,
        rate: u64,
        /// For a folder: files complete and the one in flight (the receiver knows them once the
        /// listing has arrived).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        files: Option<FilesProgress>,
    },
    /// The transfer finished and the hashes matched.
    Completed {
        transfer_id: TransferId,
        role: Role,
        sha256: String,
        bytes: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        saved_to: Option<PathBuf>,
        /// A folder's list of each file's SHA-256, in `sha256sum -c` format (paths start with the
        /// folder's name: check it from the folder that holds the tree).
        #[serde(skip_serializing_if = "Option::is_none")]
        sums: Option<PathBuf>,
        /// The path that carried the last chunk (`http`, `webrtc`, `relay`).
        path: &'static str,
        /// When `path` is `webrtc`: `turn` if a TURN server relayed it, else `direct`.
        #[serde(skip_serializing_if = "Option::is_none")]
        route: Option<&'static str>,
        /// Chunk bytes each path carried (a transfer may move between paths).
        bytes_by_path: BTreeMap<String, u64>,
        elapsed_ms: u64,
    },
    /// One transfer as the journal knows it (`status`).
    Status {
        #[serde(flatten)]
        status: TransferStatus,
    },
    /// `export` minted a grant: give `uri` to the peer that may push files here.
    Exported { uri: String, grant_id: String, name: String, expires_at: u64 },
    /// A trusted peer (`peers list`, `peers extend`, `peers remove`).
    Peer {
        #[serde(flatten)]
        peer: PeerInfo,
    },
    /// A grant this node exported (`grants list`, `grants revoke`).
    Grant {
        #[serde(flatten)]
        grant: GrantInfo,
    },
    /// `relay` is listening; clients use `url`.
    Relay { addr: SocketAddr, url: String },
    /// `listen` is taking pushes from trusted peers on these addresses.
    Inbox { addrs: Vec<SocketAddr>, download_dir: PathBuf },
    /// The transfer failed; `code` is stable, `hint` says what to do.
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        transfer_id: Option<TransferId>,
        code: &'static str,
        message: String,
        hint: String,
    },
}

/// What a folder transfer carries, as the sender walked it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FolderSummary {
    /// Regular files (empty ones included).
    pub files: u64,
    /// Folders below the root (empty ones included).
    pub folders: u64,
    /// Entries left out (symbolic links, sockets, devices, names that are not UTF-8), as
    /// `path (why)`; at most [`SKIPPED_SHOWN`], `skipped_count` says how many in all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    pub skipped_count: u64,
}

/// How far a folder transfer is, in files.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FilesProgress {
    pub done: u64,
    pub total: u64,
    /// The file being moved now (relative path), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}

impl FilesProgress {
    pub fn at(index: &crate::tree::FileIndex, done: u64) -> Self {
        let (complete, current) = index.at(done);
        FilesProgress { done: complete, total: index.len(), current: current.map(str::to_owned) }
    }
}

/// Skipped entries named in a [`FolderSummary`].
pub const SKIPPED_SHOWN: usize = 20;

impl Event {
    /// The error event for `e`; its hint names the real transfer id when there is one.
    pub fn error(transfer_id: Option<TransferId>, e: &TransferError) -> Self {
        let hint = match transfer_id {
            Some(id) => e.hint().replace("ID`", &format!("{id}`")).replace("ID --role", &format!("{id} --role")),
            None => e.hint().to_owned(),
        };
        Event::Error { transfer_id, code: e.code(), message: e.to_string(), hint }
    }
}

/// The shortest gap between two progress events of one transfer.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// The publishing end held by an engine task (and its clones, which share one progress clock).
#[derive(Clone, Debug)]
pub struct Events {
    tx: mpsc::Sender<Event>,
    last_progress: Arc<Mutex<Option<Instant>>>,
}

/// Room for bursts; progress beyond it is dropped (the next one supersedes it anyway).
const CAPACITY: usize = 256;

impl Events {
    pub fn channel() -> (Events, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Events { tx, last_progress: Arc::new(Mutex::new(None)) }, rx)
    }

    /// Publish an event that must not be lost.
    pub async fn send(&self, event: Event) {
        let _ = self.tx.send(event).await;
    }

    /// Publish a progress event unless one went out less than [`PROGRESS_INTERVAL`] ago (the
    /// last one, with every byte done, always goes), and only if there is room: a slow consumer
    /// just sees fewer of them, and the next one supersedes a dropped one anyway.
    pub fn progress(&self, event: Event) {
        let last = matches!(event, Event::Progress { bytes_done, bytes_total, .. } if bytes_done >= bytes_total);
        let now = Instant::now();
        {
            let mut at = self.last_progress.lock().expect("not poisoned");
            if !last && at.is_some_and(|at| now.duration_since(at) < PROGRESS_INTERVAL) {
                return;
            }
            *at = Some(now);
        }
        let _ = self.tx.try_send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u64) -> Event {
        let transfer_id = "00112233445566778899aabbccddeeff".parse().unwrap();
        Event::Progress { transfer_id, role: Role::Receive, bytes_done: done, bytes_total: 100, rate: 1, files: None }
    }

    #[tokio::test]
    async fn progress_is_thinned_to_the_interval_but_the_last_one_goes_out() {
        let (events, mut rx) = Events::channel();
        let started = Instant::now();
        for done in 1..=99 {
            events.progress(progress(done));
        }
        events.progress(progress(100));
        drop(events);
        let mut seen = Vec::new();
        while let Some(Event::Progress { bytes_done, .. }) = rx.recv().await {
            seen.push(bytes_done);
        }
        let allowed = 2 + (started.elapsed().as_millis() / PROGRESS_INTERVAL.as_millis()) as usize;
        assert_eq!((seen[0], *seen.last().unwrap()), (1, 100), "the first and the last one go out");
        assert!(seen.len() <= allowed, "{} progress events in {:?}", seen.len(), started.elapsed());
    }

    #[test]
    fn error_hints_name_the_real_transfer_id() {
        let id: TransferId = "00112233445566778899aabbccddeeff".parse().unwrap();
        let Event::Error { hint, .. } = Event::error(Some(id), &TransferError::Cancelled) else { unreachable!() };
        assert_eq!(hint, format!("run `agentferry resume {id}` to continue"));
        let Event::Error { hint, .. } = Event::error(None, &TransferError::Cancelled) else { unreachable!() };
        assert!(hint.contains("resume ID"));
    }
}
