//! Progress items: the one stream of events every front consumes.
//!
//! An engine task publishes [`Event`]s as it works and ends with `Completed` or `Error`. The CLI
//! prints them as JSON Lines (`--json`) or a progress bar; the MCP server (next) will turn them
//! into progress notifications and `check_session` answers. The serialised form is the documented
//! JSON Lines envelope: every line is an object with an `"event"` field naming its variant.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

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
    Ticket { transfer_id: TransferId, ticket: String, file_name: String, bytes_total: u64, expires_at: u64 },
    /// A push: the peer's inbox took the offer (`state`: `accepted`, or `pending` with a reason).
    Offered {
        transfer_id: TransferId,
        peer: String,
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
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
    },
    /// The receiver moved onto a path (`state`: `using`) or off it (`left`, with the reason:
    /// `peer_unreachable`, `stalled`, `unauthorized`, `integrity_mismatch`).
    Path {
        transfer_id: TransferId,
        path: &'static str,
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    /// Bytes moved so far (receiver: received; sender: handed to the network).
    Progress { transfer_id: TransferId, role: Role, bytes_done: u64, bytes_total: u64, rate: u64 },
    /// The transfer finished and the hashes matched.
    Completed {
        transfer_id: TransferId,
        role: Role,
        sha256: String,
        bytes: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        saved_to: Option<PathBuf>,
        /// The path that carried the last chunk (`http`, `relay`).
        path: &'static str,
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
        hint: &'static str,
    },
}

impl Event {
    pub fn error(transfer_id: Option<TransferId>, e: &TransferError) -> Self {
        Event::Error { transfer_id, code: e.code(), message: e.to_string(), hint: e.hint() }
    }
}

/// The publishing end held by an engine task.
#[derive(Clone, Debug)]
pub struct Events(mpsc::Sender<Event>);

/// Room for bursts; progress beyond it is dropped (the next one supersedes it anyway).
const CAPACITY: usize = 256;

impl Events {
    pub fn channel() -> (Events, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Events(tx), rx)
    }

    /// Publish an event that must not be lost.
    pub async fn send(&self, event: Event) {
        let _ = self.0.send(event).await;
    }

    /// Publish a progress event if there is room; a slow consumer just sees fewer of them.
    pub fn progress(&self, event: Event) {
        let _ = self.0.try_send(event);
    }
}
