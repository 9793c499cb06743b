//! The journal: one durable record per transfer and role, under `<home>/transfers/`.
//!
//! A record is everything needed to pick a transfer up after `kill -9`: the ticket (so the session
//! key, hence 0600), the manifest facts, and for a receiver the temp file and the count of chunks
//! known to be on stable storage. A receiver only advances `durable_chunks` after syncing the temp
//! file, so a crash at any moment loses at most the chunks written since the last checkpoint.
//!
//! Ownership: a process that works on a transfer holds an exclusive lock on its `.lock` file for
//! as long as it does. The lock dies with the process, so a record whose state is `active` but
//! whose lock is free belongs to a process that crashed: [`Journal::list`] reports it as
//! `interrupted`, and `resume` may take it over. Two processes never drive one transfer at once.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Result, TransferError},
    home::{Home, open_private, write_private_atomic},
    id::TransferId,
};

/// Which end of a transfer this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Send,
    Receive,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Send => "send",
            Role::Receive => "receive",
        }
    }
}

/// Where a transfer stands. `Interrupted` is never stored: it is `Active` without a live owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// A process is moving it now (a sender waiting for its receiver is active too).
    Active,
    /// Its process died or was stopped; `resume` continues it.
    Interrupted,
    /// An offer pushed by a peer, held until accepted with `receive_file(transfer_id)`.
    Pending,
    /// Done; the receiver verified the SHA-256.
    Completed,
    /// Stopped with an error (see `error`); most failures can be resumed.
    Failed,
}

impl State {
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Interrupted)
    }
}

/// A failure as recorded and reported: stable code, message, hint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    pub hint: String,
}

impl From<&TransferError> for ErrorInfo {
    fn from(e: &TransferError) -> Self {
        ErrorInfo { code: e.code().into(), message: e.to_string(), hint: e.hint().into() }
    }
}

/// Role-specific part of a record.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Side {
    Send {
        /// Canonical path of the file being sent.
        path: PathBuf,
        /// Modification time (ns since the epoch) when the transfer began; for a folder, the
        /// fingerprint of its listing and files.
        mtime_ns: u64,
        /// The source's change stamp when the transfer began (`tree::source::change_stamp`,
        /// or a folder's combined one). Absent in records written before it was kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<u64>,
        /// The address the sender listens on; a restarted sender binds it again.
        bind: std::net::SocketAddr,
        /// Bytes handed to the network so far (saved about once a second while serving).
        #[serde(default)]
        bytes_sent: u64,
    },
    Receive {
        output_dir: PathBuf,
        /// Sanitised final file name inside `output_dir`.
        file_name: String,
        temp_path: PathBuf,
        overwrite: bool,
        /// Chunks `0..durable_chunks` are synced to `temp_path`.
        durable_chunks: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        saved_to: Option<PathBuf>,
    },
}

/// The durable state of one transfer on this node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub transfer_id: TransferId,
    /// The ticket string: carries the session key, never shown except by `send`.
    pub ticket: String,
    pub name: String,
    pub size: u64,
    pub chunk_size: u32,
    pub state: State,
    /// Lowercase hex SHA-256, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A completed folder's list of each file's SHA-256 ([`Journal::save_sums`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sums: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub created_at: u64,
    pub updated_at: u64,
    /// The peer a push went to (sender) or came from (receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Receiver: why a pushed offer is held instead of auto-accepted. Sender: why a push waits
    /// for its peer (it is not listening yet), until the peer takes the offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_because: Option<String>,
    /// The path that carried the last chunk, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_path: Option<String>,
    /// Chunk bytes each path carried, once completed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bytes_by_path: BTreeMap<String, u64>,
    /// The transfer travels as chat messages that agents post themselves (`crate::chat`): no
    /// path of the engine serves or fetches it; `receive_messages` moves it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub messages: bool,
    #[serde(flatten)]
    pub side: Side,
}

impl Record {
    /// A new, active record for `ticket` on this side.
    pub fn new(ticket: &crate::ticket::Ticket, name: String, side: Side) -> Record {
        Record {
            transfer_id: ticket.transfer_id,
            ticket: ticket.to_string(),
            name,
            size: ticket.size,
            chunk_size: ticket.chunk_size,
            state: State::Active,
            sha256: None,
            sums: None,
            error: None,
            created_at: unix_now(),
            updated_at: 0,
            peer: None,
            held_because: None,
            last_path: None,
            bytes_by_path: BTreeMap::new(),
            messages: false,
            side,
        }
    }

    /// The run failed with `e`: recorded so that `status` and the next resume show why.
    pub fn fail(&mut self, e: &TransferError) {
        self.state = State::Failed;
        self.held_because = None;
        self.error = Some(ErrorInfo::from(e));
    }

    /// The run completed with this whole-file hash (and a folder's list of sums), the last
    /// chunk on `last_path`, each path having carried `bytes_by_path`.
    pub fn complete(
        &mut self,
        sha256: &str,
        sums: Option<PathBuf>,
        last_path: Option<crate::core::PathKind>,
        bytes_by_path: &BTreeMap<crate::core::PathKind, u64>,
    ) {
        self.state = State::Completed;
        self.held_because = None;
        self.sha256 = Some(sha256.to_owned());
        self.sums = sums;
        self.last_path = last_path.map(|p| p.as_str().to_owned());
        self.bytes_by_path = bytes_by_path.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect();
    }

    pub fn role(&self) -> Role {
        match self.side {
            Side::Send { .. } => Role::Send,
            Side::Receive { .. } => Role::Receive,
        }
    }
}

/// One attempt at one path and address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AttemptInfo {
    pub path: String,
    pub addr: String,
    pub ok: bool,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// What a user may see of a transfer: everything but the ticket (which holds the session key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TransferStatus {
    pub transfer_id: String,
    pub role: Role,
    pub state: State,
    pub file_name: String,
    /// Receiver: bytes received (durable ones when read from the journal); sender: bytes sent.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second over the current run; once completed here, the average since data
    /// began to move in the run that completed it; 0 when not running in this process.
    pub rate: u64,
    /// The path carrying the data (`http`), once one was chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Every attempt at a path in this run, in order.
    pub attempts: Vec<AttemptInfo>,
    /// Chunk bytes each path carried (a transfer may move between paths).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bytes_by_path: BTreeMap<String, u64>,
    /// Lowercase hex SHA-256 of the whole file, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the received file is, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_to: Option<PathBuf>,
    /// A completed folder's list of each file's SHA-256, in `sha256sum -c` format (paths start
    /// with the folder's name: check it from the folder that holds the tree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sums: Option<PathBuf>,
    /// The peer this was pushed to, or came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Receiver: why a pushed offer is pending instead of auto-accepted (`grant_expired`,
    /// `grant_revoked`), or that an upload link's person has not picked a file yet. Sender: why
    /// a push is queued (its peer is not listening yet; the offer is tried again until it
    /// expires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_because: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Record {
    pub fn status(&self) -> TransferStatus {
        let bytes_done = match (&self.side, self.state) {
            (_, State::Completed) => self.size,
            (Side::Receive { durable_chunks, .. }, _) => {
                durable_chunks.saturating_mul(self.chunk_size as u64).min(self.size)
            }
            (Side::Send { bytes_sent, .. }, _) => (*bytes_sent).min(self.size),
        };
        let saved_to = match &self.side {
            Side::Receive { saved_to, .. } => saved_to.clone(),
            Side::Send { .. } => None,
        };
        TransferStatus {
            transfer_id: self.transfer_id.to_string(),
            role: self.role(),
            state: self.state,
            file_name: self.name.clone(),
            bytes_done,
            bytes_total: self.size,
            rate: 0,
            path: self.last_path.clone(),
            attempts: Vec::new(),
            bytes_by_path: self.bytes_by_path.clone(),
            sha256: self.sha256.clone(),
            saved_to,
            sums: self.sums.clone(),
            peer: self.peer.clone(),
            held_because: self.held_because.clone(),
            error: self.error.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Fewest hex digits of a transfer id that `resume` and `status` accept.
pub const MIN_ID_PREFIX: usize = 6;

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Held while a process drives a transfer; dropping it (or dying) releases ownership.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

/// The set of records of one node.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn new(home: &Home) -> Self {
        Journal { dir: home.transfers_dir() }
    }

    fn path(&self, id: &TransferId, role: Role, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{}.{ext}", role.as_str()))
    }

    /// Durably replace the record.
    pub fn save(&self, record: &mut Record) -> Result<()> {
        record.updated_at = unix_now();
        let json = serde_json::to_vec_pretty(record).expect("records serialise");
        write_private_atomic(&self.path(&record.transfer_id, record.role(), "json"), &json)
    }

    /// Durably keep a folder transfer's list of each file's SHA-256 (`sha256sum -c` format), and
    /// say where it is.
    pub fn save_sums(&self, id: &TransferId, role: Role, sums: &[u8]) -> Result<PathBuf> {
        let path = self.sums_path(id, role);
        write_private_atomic(&path, sums)?;
        Ok(path)
    }

    /// Where [`save_sums`](Self::save_sums) keeps them.
    pub fn sums_path(&self, id: &TransferId, role: Role) -> PathBuf {
        self.path(id, role, "sha256")
    }

    pub fn load(&self, id: &TransferId, role: Role) -> Result<Option<Record>> {
        let path = self.path(id, role, "json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| TransferError::Home(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TransferError::io(path, e)),
        }
    }

    /// Forget a record that holds nothing on disk (a pending offer that expired or whose grant
    /// is gone). Only a record nobody owns is removed.
    pub fn remove_pending(&self, id: &TransferId) -> Result<bool> {
        let Some(_lock) = self.try_lock(id, Role::Receive)? else { return Ok(false) };
        match self.load(id, Role::Receive)? {
            Some(record) if record.state == State::Pending => {}
            _ => return Ok(false),
        }
        let path = self.path(id, Role::Receive, "json");
        fs::remove_file(&path).map_err(|e| TransferError::io(&path, e))?;
        let _ = fs::remove_file(self.path(id, Role::Receive, "lock"));
        Ok(true)
    }

    /// Take ownership of a transfer; `None` when another live process owns it.
    pub fn try_lock(&self, id: &TransferId, role: Role) -> Result<Option<OwnerLock>> {
        let path = self.path(id, role, "lock");
        let file = open_private(&path).map_err(|e| TransferError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(OwnerLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(TransferError::io(path, e)),
        }
    }

    /// Take over an unfinished transfer to resume it.
    pub fn claim(&self, record: &Record) -> Result<OwnerLock> {
        let id = record.transfer_id;
        if record.state == State::Completed {
            return Err(TransferError::AlreadyCompleted(id.to_string()));
        }
        self.try_lock(&id, record.role())?.ok_or_else(|| TransferError::Busy(id.to_string()))
    }

    /// The record with its state as the user should see it (`active` without owner: `interrupted`).
    fn observed(&self, mut record: Record) -> Record {
        if record.state == State::Active {
            let owned = !matches!(self.try_lock(&record.transfer_id, record.role()), Ok(Some(_)));
            if !owned {
                record.state = State::Interrupted;
            }
        }
        record
    }

    /// Every record of `id`, both roles, as observed.
    pub fn find(&self, id: &TransferId) -> Result<Vec<Record>> {
        let mut found = Vec::new();
        for role in [Role::Send, Role::Receive] {
            if let Some(r) = self.load(id, role)? {
                found.push(self.observed(r));
            }
        }
        Ok(found)
    }

    /// The transfer an id or a unique prefix of one names (at least [`MIN_ID_PREFIX`] hex digits,
    /// as git takes abbreviated hashes).
    pub fn resolve(&self, id: &str) -> Result<TransferId> {
        let wanted = id.trim().to_ascii_lowercase();
        if let Ok(full) = wanted.parse::<TransferId>() {
            return Ok(full);
        }
        if wanted.len() < MIN_ID_PREFIX || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TransferError::TransferNotFound(format!(
                "{id} (give the whole id or at least its first {MIN_ID_PREFIX} hex digits)"
            )));
        }
        let mut matching: Vec<TransferId> =
            self.list()?.into_iter().map(|r| r.transfer_id).filter(|t| t.to_string().starts_with(&wanted)).collect();
        matching.dedup();
        match matching.as_slice() {
            [one] => Ok(*one),
            [] => Err(TransferError::TransferNotFound(id.to_owned())),
            many => Err(TransferError::InvalidArgument(format!(
                "{id} is the start of {} transfer ids ({}); give more of it",
                many.len(),
                many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Every record, newest first, as observed.
    pub fn list(&self) -> Result<Vec<Record>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| TransferError::io(&self.dir, e))?;
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json").filter(|_| !name.starts_with('.')) else { continue };
            let Some((id, role)) = stem.split_once('.') else { continue };
            let (Ok(id), role) = (id.parse::<TransferId>(), role) else { continue };
            let role = match role {
                "send" => Role::Send,
                "receive" => Role::Receive,
                _ => continue,
            };
            if let Some(r) = self.load(&id, role)? {
                records.push(self.observed(r));
            }
        }
        records.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.transfer_id.cmp(&b.transfer_id)));
        Ok(records)
    }
}
