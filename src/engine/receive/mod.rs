//! Starting and resuming the receiver's side, and the IO shell that runs it.
//!
//! The decisions belong to the core's [`Receiver`]: what to ask for, when to checkpoint, which
//! path to connect and use, when to give up and with which error. The driver here carries them
//! out and reports back: it dials a path ([`connect`]), sends control frames on the path in use
//! (a [`Link`] of any kind, see [`crate::transport`]), hands frames to the disk [`Worker`] and
//! feeds what the worker found in each, in order, to the machine, records checkpoints in the
//! journal, and on `Verify` places the file and tells the sender.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | start, hold (a pending offer), accept and resume a receive; the driver loop |
//! | `connect.rs` | dial one path as the ticket describes it, check the sender's manifest, report each attempt |
//! | `worker.rs` | the disk threads: open frames, hash, write, sync checkpoints, verify |
//! | `upload.rs` | an upload link: the invite on the relay and the wait for the page's offer |
//! | `disk.rs` | the output folder: free space, a temp file nobody else planted, a placement that never follows a link |

use std::{
    collections::BTreeMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{sync::mpsc, task::JoinSet};

mod connect;
pub(super) mod disk;
pub(super) mod upload;
mod worker;

use self::{
    connect::{CONNECT_BUDGET, ControlSealer, PathConnected, connect},
    worker::{Worker, WorkerIn, WorkerOut},
};
use crate::engine::{
    Completion, Event, Events, FilesProgress, Node, ReceiveOptions, Transfer, rate::Rate, send::outgoing::hex,
};
use crate::{
    channel::ChannelHint,
    core::{Action, Control, PathConfig, PathKind, Prefer, ReceiveConfig, Receiver, Verdict},
    error::{Result, TransferError},
    frame::Opener,
    home::HomeInodes,
    journal::{OwnerLock, Record, Role, Side, State, unix_now},
    manifest::{Manifest, check_declared},
    names::safe_file_name,
    ticket::Ticket,
    transport::{Connected, Incoming, Link},
    tree::{
        FileIndex,
        build::{Placement, read_listing},
        digest::{Digests, sha256sums},
    },
};

/// Frames queued between the network and the disk thread.
const WORKER_DEPTH: usize = 4;

pub(super) async fn start(node: &Node, ticket: Ticket, options: ReceiveOptions) -> Result<Transfer> {
    let id = ticket.transfer_id;
    if let Some(existing) = node.journal.load(&id, Role::Receive)? {
        // Receiving the same ticket twice continues the first attempt.
        return resume(node, existing, options.prefer).await;
    }
    let mut record = new_record(node, ticket, &options)?;
    let lock = node.journal.try_lock(&id, Role::Receive)?.expect("a new transfer has no owner");
    node.journal.save(&mut record)?;
    let ticket = record.ticket.parse()?;
    Ok(spawn(node, record, ticket, lock, options.prefer))
}

/// Keep a pushed offer as `pending` until someone accepts it with [`accept`].
pub(super) fn hold(node: &Node, ticket: Ticket, options: &ReceiveOptions, because: &str) -> Result<Record> {
    let mut record = new_record(node, ticket, options)?;
    record.state = State::Pending;
    record.held_because = Some(because.to_owned());
    node.journal.save(&mut record)?;
    Ok(record)
}

/// Accept a pending offer (optionally into another folder), or resume any other transfer.
pub(super) async fn accept(node: &Node, mut record: Record, options: Option<ReceiveOptions>) -> Result<Transfer> {
    if let (State::Pending, Some(options)) = (record.state, options) {
        let ticket: Ticket = record.ticket.parse()?;
        let (peer, created_at) = (record.peer.take(), record.created_at);
        record = Record { peer, created_at, ..new_record(node, ticket, &options)? };
    }
    record.held_because = None;
    resume(node, record, None).await
}

/// Check a ticket and the output folder, and describe the transfer for the journal.
pub(super) fn new_record(node: &Node, ticket: Ticket, options: &ReceiveOptions) -> Result<Record> {
    ticket.check_expiry(unix_now())?;
    check_declared(ticket.size, ticket.chunk_size)?;
    let id = ticket.transfer_id;
    // Never into the node home, on any front: a received `grants.json` would be a grant the
    // sender holds. Checked before anything is created there.
    if HomeInodes::of(node.home().root()).holds_target(&options.output_dir) {
        return Err(TransferError::PathNotAllowed(format!(
            "refused to write into {}: it is agentferry's own home or inside it, which holds session keys and grants",
            options.output_dir.display()
        )));
    }
    // The output folder is the user's: ordinary permissions, unlike the node home.
    std::fs::create_dir_all(&options.output_dir).map_err(|e| TransferError::io(&options.output_dir, e))?;
    let output_dir =
        std::fs::canonicalize(&options.output_dir).map_err(|e| TransferError::io(&options.output_dir, e))?;
    let file_name = safe_file_name(&ticket.name);
    let target = output_dir.join(&file_name);
    if !options.overwrite && target.symlink_metadata().is_ok() {
        return Err(TransferError::FileExists(target.display().to_string()));
    }
    let temp_path = output_dir.join(format!(".{file_name}.{}.part", &id.to_string()[..12]));
    let side = Side::Receive {
        output_dir,
        file_name: file_name.clone(),
        temp_path,
        overwrite: options.overwrite,
        durable_chunks: 0,
        saved_to: None,
    };
    Ok(Record { peer: options.peer.clone(), ..Record::new(&ticket, file_name, side) })
}

pub(super) async fn resume(node: &Node, mut record: Record, prefer: Option<Prefer>) -> Result<Transfer> {
    let lock = node.journal.claim(&record)?;
    if crate::pipe::is_piped(&record) {
        return Err(TransferError::NotResumable(record.transfer_id.to_string())); // its stdout is gone
    }
    let ticket: Ticket = record.ticket.parse()?;
    record.state = State::Active;
    record.error = None;
    node.journal.save(&mut record)?;
    Ok(spawn(node, record, ticket, lock, prefer))
}

fn spawn(node: &Node, record: Record, ticket: Ticket, lock: OwnerLock, prefer: Option<Prefer>) -> Transfer {
    let (events, rx) = Events::channel();
    let transfer_id = record.transfer_id;
    let node = node.clone();
    let task = tokio::spawn(async move {
        let _lock = lock;
        let prefer = prefer.unwrap_or(node.config.prefer);
        let mut driver = Driver { node, record, ticket: Arc::new(ticket), events: events.clone(), prefer };
        let result = driver.run().await;
        if let Err(e) = &result {
            driver.record_failure(e);
            events.send(Event::error(Some(transfer_id), e)).await;
        }
        result
    });
    Transfer { transfer_id, role: Role::Receive, events: rx, task }
}

struct Driver {
    node: Node,
    record: Record,
    ticket: Arc<Ticket>,
    events: Events,
    prefer: Prefer,
}

/// The paths the ticket offers this node, best first; the receive machine keeps those the
/// preference allows.
///
/// A ticket's relay (`ws://`) is usable as it stands: fallback depends on it, and the relay sees
/// only ciphertext. A shared folder (`folder:/…`) is usable only when it is the folder this node
/// itself is configured with: a ticket must not make the receiver create folders or read files
/// wherever its author likes.
fn offered(ticket: &Ticket, own_channel: Option<&ChannelHint>) -> Vec<PathKind> {
    let channel_usable = match ticket.channel.as_deref().map(str::parse::<ChannelHint>) {
        None => false,
        Some(Ok(ChannelHint::Relay(_) | ChannelHint::Nats(_))) => true,
        Some(Ok(folder @ ChannelHint::Folder(_))) => own_channel == Some(&folder),
        Some(Err(_)) => false,
    };
    if ticket.channel.is_some() && !channel_usable {
        tracing::warn!(transfer = %ticket.transfer_id, "ignoring the ticket's channel: not a relay, nor this node's shared folder");
    }
    // WebRTC is signalled through the ticket's channel, so it is offered wherever the channel is.
    [
        (!ticket.addrs.is_empty()).then_some(PathKind::Http),
        channel_usable.then_some(PathKind::Webrtc),
        channel_usable.then_some(PathKind::Relay),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The connection attempts under way, at most one per path; dropping it cancels them.
type Attempts = JoinSet<(PathKind, Result<PathConnected>)>;

/// The path carrying the transfer now.
struct Active {
    kind: PathKind,
    link: Box<dyn Link>,
    incoming: mpsc::Receiver<Incoming>,
}

/// What each path carried, for the completion report.
#[derive(Default)]
struct Carried {
    bytes_by_path: BTreeMap<PathKind, u64>,
    last_chunk: Option<PathKind>,
    /// The route of the link that carried the last chunk (WebRTC only).
    last_route: Option<&'static str>,
}

impl Driver {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: self.record.name.clone(),
            size: self.record.size,
            chunk_size: self.record.chunk_size,
            sha256: None,
        }
    }

    fn receive_side(&mut self) -> (&Path, &mut u64, &Path) {
        match &mut self.record.side {
            Side::Receive { temp_path, durable_chunks, output_dir, .. } => (temp_path, durable_chunks, output_dir),
            Side::Send { .. } => unreachable!("receive record"),
        }
    }

    fn record_failure(&mut self, e: &TransferError) {
        if matches!(e, TransferError::Cancelled) {
            return;
        }
        self.record.fail(e);
        if let TransferError::IntegrityMismatch(_) | TransferError::TempFileSwapped(_) = e {
            // What is on disk cannot be trusted; a resume starts over.
            *self.receive_side().1 = 0;
        }
        let _ = self.node.journal.save(&mut self.record);
    }

    /// Start connecting `kind` in the background; the result comes back through `connecting`.
    fn connect(&self, connecting: &mut Attempts, kind: PathKind, hello: Bytes) {
        // With `auto` the chunk relay is a candidate wherever WebRTC is, and beats TURN.
        let ice = match self.prefer {
            Prefer::Auto => self.node.config.ice.without_turn(),
            _ => self.node.config.ice.clone(),
        };
        let (ticket, events) = (Arc::clone(&self.ticket), self.events.clone());
        connecting.spawn(async move { (kind, connect(kind, &ticket, &ice, hello, &events).await) });
    }

    async fn run(&mut self) -> Result<Completion> {
        let started = Instant::now();
        let manifest = self.manifest();
        let count = manifest.chunk_count();
        let id = self.record.transfer_id;
        let key = self.ticket.session_key.clone();
        let max_chunk = manifest.chunk_size as usize;
        let offered = offered(&self.ticket, self.node.config.channel.as_ref());

        let (temp_path, durable, _) = self.receive_side();
        let (temp_path, claimed) = (temp_path.to_path_buf(), *durable);
        let opener = Opener::new(key.clone(), id, max_chunk);
        let (worker_manifest, folder) = (manifest.clone(), self.ticket.folder);
        let (worker, durable) =
            tokio::task::spawn_blocking(move || Worker::open(temp_path, worker_manifest, folder, opener, claimed))
                .await
                .map_err(|_| TransferError::Cancelled)??;
        let resumed_bytes = manifest.bytes_in(durable);
        // Smoothed, and counting from the resume point (which is its first sample).
        let mut rate = Rate::default();
        rate.update(Instant::now(), resumed_bytes);
        // A folder's listing is checked as soon as it is on disk, before any file is built.
        let mut listing_checked = !self.ticket.folder;
        let mut files = None;
        if !listing_checked {
            files = self.check_listing(resumed_bytes).await?;
            listing_checked = files.is_some();
        }

        let (to_worker, worker_rx) = mpsc::channel(WORKER_DEPTH);
        let (worker_tx, mut from_worker) = mpsc::unbounded_channel();
        tokio::task::spawn_blocking(move || worker.run(worker_rx, worker_tx));

        let receive_cfg = ReceiveConfig { idle_timeout: self.node.config.peer_timeout, ..ReceiveConfig::default() };
        let configs = (receive_cfg, PathConfig::default());
        let mut machine = Receiver::new(Instant::now(), id, (count, durable), &offered, self.prefer, configs)?;
        let mut controls = ControlSealer::new(&self.ticket);
        let mut active: Option<Active> = None;
        let mut connecting = Attempts::new();
        let mut carried = Carried::default();

        loop {
            while let Some(action) = machine.poll_output() {
                match action {
                    Action::Connect(kind) => self.connect(&mut connecting, kind, controls.seal(&Control::Hello)),
                    Action::Use(kind) => {
                        let path = kind.as_str();
                        self.events.send(Event::Path { transfer_id: id, path, state: "using", reason: None }).await;
                    }
                    Action::Leave(kind, why) => {
                        let (path, reason) = (kind.as_str(), Some(why.code()));
                        self.events.send(Event::Path { transfer_id: id, path, state: "left", reason }).await;
                        active = None;
                    }
                    Action::Send(control) => {
                        if let Some(path) = &mut active
                            && let Err(e) = path.link.send(controls.seal(&control)).await
                        {
                            tracing::debug!(transfer = %id, "{} send failed: {e}", path.kind);
                            machine.handle_lost(Instant::now(), e);
                        }
                    }
                    Action::Sync { upto } => {
                        let _ = to_worker.send(WorkerIn::Sync { upto }).await;
                    }
                    Action::Verify => {
                        let _ = to_worker.send(WorkerIn::Finish).await;
                    }
                    Action::Fail(e) => return Err(e),
                }
            }

            tokio::select! {
                input = from_worker.recv() => {
                    let now = Instant::now();
                    match input.ok_or(TransferError::Cancelled)? {
                        WorkerOut::Chunk(index, kind) => {
                            if machine.handle_chunk(now, index).map_err(|e| TransferError::Protocol(e.to_string()))?
                                == Verdict::Write
                            {
                                *carried.bytes_by_path.entry(kind).or_default() += manifest.chunk_len(index) as u64;
                                carried.last_chunk = Some(kind);
                                carried.last_route =
                                    active.as_ref().filter(|a| a.kind == kind).and_then(|a| a.link.route());
                            }
                            let done = manifest.bytes_in(machine.first_missing());
                            if !listing_checked {
                                files = self.check_listing(done).await?;
                                listing_checked = files.is_some();
                            }
                            let rate = rate.update(now, done);
                            self.events.progress(Event::Progress {
                                transfer_id: id,
                                role: Role::Receive,
                                bytes_done: done,
                                bytes_total: manifest.size,
                                rate,
                                files: files.as_ref().map(|index| FilesProgress::at(index, done)),
                            });
                        }
                        WorkerOut::Corrupt => {
                            tracing::debug!(transfer = %id, "a frame failed authentication; it will be fetched again");
                            machine.handle_corrupt(now);
                        }
                        WorkerOut::Trailer => machine.handle_trailer(now),
                        WorkerOut::StreamEnd => machine.handle_stream_end(now),
                        WorkerOut::Synced(upto) => {
                            *self.receive_side().1 = upto;
                            self.node.journal.save(&mut self.record)?;
                            machine.handle_synced(now, upto);
                        }
                        WorkerOut::Verified(digests, written) => {
                            drop(connecting);
                            let verified = Verified { digests, written, files };
                            return self.finish(verified, started, active, &mut controls, carried).await;
                        }
                        WorkerOut::Fatal(e) => return Err(e),
                    }
                }
                item = next_incoming(&mut active) => {
                    let kind = active.as_ref().map(|a| a.kind).expect("only an active path delivers");
                    match item {
                        Incoming::Frame(frame) => {
                            let _ = to_worker.send(WorkerIn::Frame(frame, kind)).await;
                        }
                        Incoming::StreamEnd => {
                            let _ = to_worker.send(WorkerIn::StreamEnd).await;
                        }
                        Incoming::Lost(e) => {
                            tracing::debug!(transfer = %id, "{kind} lost: {e}");
                            machine.handle_lost(Instant::now(), e);
                        }
                    }
                }
                Some(joined) = connecting.join_next(), if !connecting.is_empty() => {
                    let now = Instant::now();
                    let Ok((kind, result)) = joined else { continue };
                    match result {
                        Ok(opened) => {
                            if machine.handle_connected(now, kind) {
                                if let Some(hash) = opened.sha256 {
                                    let _ = to_worker.send(WorkerIn::Expected(hash)).await;
                                }
                                let Connected { link, incoming, .. } = opened.connected;
                                active = Some(Active { kind, link, incoming });
                            }
                        }
                        Err(e) => machine.handle_connect_failed(now, kind, e),
                    }
                }
                _ = sleep_until(machine.poll_timeout().map(tokio::time::Instant::from_std)) => {
                    machine.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// Check a folder's listing once the first `available` bytes of the stream are written.
    /// Returns where its files are once it is all there (and fine); a listing that is refused
    /// takes the partial stream with it, since nothing in it may ever be placed.
    async fn check_listing(&mut self, available: u64) -> Result<Option<FileIndex>> {
        let temp = self.receive_side().0.to_path_buf();
        let size = self.record.size;
        let checked = {
            let temp = temp.clone();
            tokio::task::spawn_blocking(move || read_listing(&temp, size, available))
                .await
                .map_err(|_| TransferError::Cancelled)?
        };
        match checked {
            Ok(listing) => Ok(listing.map(|l| FileIndex::new(l.files().map(|(e, at)| (e.path.as_str(), at, e.size))))),
            Err(e @ TransferError::ListingRefused(_)) => {
                let _ = std::fs::remove_file(&temp);
                *self.receive_side().1 = 0;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Move the verified file to its final name, record it, and tell the sender.
    async fn finish(
        &mut self,
        Verified { digests, written, files }: Verified,
        started: Instant,
        active: Option<Active>,
        controls: &mut ControlSealer,
        carried: Carried,
    ) -> Result<Completion> {
        let Side::Receive { temp_path, output_dir, file_name, overwrite, .. } = self.record.side.clone() else {
            unreachable!("receive record")
        };
        let target = output_dir.join(&file_name);
        let sha256 = hex(&digests.whole);
        let mut sums = None;
        if self.ticket.folder {
            let files = match files {
                Some(files) => files,
                None => self.check_listing(self.record.size).await?.expect("the whole stream is in"),
            };
            let staging = output_dir.join(format!(".{file_name}.{}.tree", &self.record.transfer_id.to_string()[..12]));
            let (target, stream_size) = (target.clone(), self.record.size);
            tokio::task::spawn_blocking(move || {
                Placement { stream: &temp_path, written, stream_size, staging: &staging, target: &target, overwrite }
                    .run()
            })
            .await
            .map_err(|_| TransferError::Cancelled)??;
            let text = sha256sums(&file_name, files.paths(), &digests.files);
            sums = Some(self.node.journal.save_sums(&self.record.transfer_id, Role::Receive, text.as_bytes())?);
        } else {
            if let Some(mode) = self.ticket.mode {
                // The sender's bits as the umask allows, like scp and rsync; never setuid or setgid.
                // Through a handle opened without following links: the folder may be shared.
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                let bits = mode & 0o777 & !crate::tree::build::umask();
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&temp_path)
                    .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(bits)))
                    .map_err(|e| TransferError::io(&temp_path, e))?;
            }
            disk::place(&temp_path, written, &target, overwrite)?;
        }
        let path = carried.last_chunk.or(active.as_ref().map(|a| a.kind));
        self.record.complete(&sha256, sums.clone(), path, &carried.bytes_by_path);
        if let Side::Receive { saved_to, .. } = &mut self.record.side {
            *saved_to = Some(target.clone());
        }
        self.node.journal.save(&mut self.record)?;
        if let Some(Active { link, mut incoming, .. }) = active {
            // Frames still arriving (retransmissions) are not wanted, but they must still be
            // taken: a path that delivers in order (the relay client, a WebRTC channel, whose
            // driver also carries the peer's acknowledgements) stalls behind them otherwise,
            // and the confirmation with it.
            let drain = tokio::spawn(async move { while incoming.recv().await.is_some() {} });
            let complete = controls.seal(&Control::Complete { sha256: sha256.clone() });
            confirm(link, complete, self.record.transfer_id).await;
            drain.abort();
        }
        let id = self.record.transfer_id;
        self.events
            .send(Event::Completed {
                transfer_id: id,
                role: Role::Receive,
                sha256: sha256.clone(),
                bytes: self.record.size,
                saved_to: Some(target.clone()),
                sums,
                path: path.map_or("none", PathKind::as_str),
                route: carried.last_route.filter(|_| path == Some(PathKind::Webrtc)),
                bytes_by_path: self.record.bytes_by_path.clone(),
                elapsed_ms: started.elapsed().as_millis() as u64,
            })
            .await;
        Ok(Completion { sha256, bytes: self.record.size, saved_to: Some(target) })
    }
}

/// What the worker verified: the digests, the file they are of, and a folder's file index.
struct Verified {
    digests: Digests,
    written: disk::FileId,
    files: Option<FileIndex>,
}

/// Tell the sender the file arrived whole, so it stops serving. A sender restarting at this
/// moment (its last frames were already on their way when it died) is given a few seconds to come
/// back; past that the confirmation is dropped and the sender's ticket expires on its own.
async fn confirm(mut link: Box<dyn Link>, complete: Bytes, id: crate::id::TransferId) {
    let deadline = tokio::time::Instant::now() + CONNECT_BUDGET;
    let mut backoff = Duration::from_millis(50);
    loop {
        match tokio::time::timeout_at(deadline, link.send_last(complete.clone())).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) if tokio::time::Instant::now() + backoff < deadline => {
                tracing::debug!(transfer = %id, "confirmation not taken yet: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            _ => {
                tracing::warn!(transfer = %id, "the sender did not take the confirmation");
                return;
            }
        }
    }
}

/// The next item from the path in use; pending while there is none.
async fn next_incoming(active: &mut Option<Active>) -> Incoming {
    match active {
        Some(path) => path
            .incoming
            .recv()
            .await
            .unwrap_or_else(|| Incoming::Lost(TransferError::PeerUnreachable(format!("{} closed", path.kind)))),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
