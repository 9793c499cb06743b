//! Starting and resuming the receiver's side, and the driver loop that runs the core.
//!
//! The driver owns three things: the [`ReceiveCore`] (decisions), the path it chose for this run
//! (direct HTTP, one network task per request, see `http_fetch`; or a message channel, see
//! `channel`), and the disk [`Worker`]. Frames from either path go to the worker; the worker
//! reports, in order, what each frame was; the driver hands that to the core and carries out
//! what the core asks: a new request or more credit, a checkpoint (sync, then record in the
//! journal), the final verification.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    Completion, Event, Events, Node, ReceiveOptions, Transfer,
    channel::{ChannelLink, Control},
    http_fetch::{NetTask, PROBE_BUDGET, expected_hash, probe_http},
    worker::{Worker, WorkerIn, WorkerOut},
};
use crate::{
    core::{GiveUp, Output, ReceiveConfig, ReceiveCore},
    error::{Result, TransferError},
    frame::Opener,
    journal::{ErrorInfo, OwnerLock, Record, Role, Side, State, unix_now},
    manifest::{Manifest, check_declared},
    names::safe_file_name,
    ticket::Ticket,
    transport::{
        PathKind, Prefer,
        http::{Connected, connect_any},
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
    let mut record = new_record(ticket, &options)?;
    let lock = node.journal.try_lock(&id, Role::Receive)?.expect("a new transfer has no owner");
    node.journal.save(&mut record)?;
    let ticket = record.ticket.parse()?;
    Ok(spawn(node, record, ticket, lock, options.prefer))
}

/// Keep a pushed offer as `pending` until someone accepts it with [`accept`].
pub(super) fn hold(node: &Node, ticket: Ticket, options: &ReceiveOptions, because: &str) -> Result<Record> {
    let mut record = new_record(ticket, options)?;
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
        record = Record { peer, created_at, ..new_record(ticket, &options)? };
    }
    record.held_because = None;
    resume(node, record, None).await
}

/// Check a ticket and the output folder, and describe the transfer for the journal.
fn new_record(ticket: Ticket, options: &ReceiveOptions) -> Result<Record> {
    ticket.check_expiry(unix_now())?;
    check_declared(ticket.size, ticket.chunk_size)?;
    let id = ticket.transfer_id;
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

/// The path this run uses.
enum Link {
    Http,
    Channel(Box<ChannelLink>),
}

impl Link {
    fn kind(&self) -> PathKind {
        match self {
            Link::Http => PathKind::Http,
            Link::Channel(_) => PathKind::Relay,
        }
    }
}

/// Chunks in flight on a message channel: 16 MiB at the default chunk size, enough to cover a
/// relay's round trip on fast links while bounding what the relay and the receiver hold.
const CHANNEL_WINDOW: u64 = 64;

fn give_up_error(why: GiveUp) -> TransferError {
    match why {
        GiveUp::PeerVanished { idle } => {
            TransferError::PeerUnreachable(format!("no data from the sender for {} s", idle.as_secs()))
        }
        GiveUp::Tampered { streak } => {
            TransferError::IntegrityMismatch(format!("{streak} frames in a row failed authentication"))
        }
    }
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
        self.record.state = State::Failed;
        self.record.error = Some(ErrorInfo::from(e));
        if let TransferError::IntegrityMismatch(_) = e {
            // What is on disk cannot be trusted; a resume starts over.
            *self.receive_side().1 = 0;
        }
        let _ = self.node.journal.save(&mut self.record);
    }

    async fn run(&mut self) -> Result<Completion> {
        let started = Instant::now();
        let manifest = self.manifest();
        let count = manifest.chunk_count();
        let id = self.record.transfer_id;
        let key = self.ticket.session_key.clone();
        let max_chunk = manifest.chunk_size as usize;

        let (temp_path, durable, _) = self.receive_side();
        let (temp_path, claimed) = (temp_path.to_path_buf(), *durable);
        let opener = Opener::new(key.clone(), id, max_chunk);
        let worker_manifest = manifest.clone();
        let (worker, durable) =
            tokio::task::spawn_blocking(move || Worker::open(temp_path, worker_manifest, opener, claimed))
                .await
                .map_err(|_| TransferError::Cancelled)??;
        let resumed_bytes = manifest.bytes_in(durable);

        let (to_worker, worker_rx) = mpsc::channel(WORKER_DEPTH);
        let (worker_tx, mut from_worker) = mpsc::unbounded_channel();
        tokio::task::spawn_blocking(move || worker.run(worker_rx, worker_tx));

        let mut stream = StreamSlot(None);
        let mut link = self.choose_path(&manifest, &to_worker, &mut stream).await?;
        let cfg = match link {
            Link::Http => ReceiveConfig { idle_timeout: self.node.config.peer_timeout, ..ReceiveConfig::default() },
            Link::Channel(_) => ReceiveConfig {
                window: CHANNEL_WINDOW,
                request_timeout: Duration::from_secs(3),
                idle_timeout: self.node.config.peer_timeout,
                ..ReceiveConfig::default()
            },
        };
        let mut core = ReceiveCore::new(Instant::now(), count, durable, cfg);
        let mut generation = 0u64;

        loop {
            while let Some(output) = core.poll_output() {
                match output {
                    Output::Request(request) => match &mut link {
                        Link::Http => {
                            generation += 1;
                            let net = NetTask {
                                ticket: Arc::clone(&self.ticket),
                                manifest: manifest.clone(),
                                to_worker: to_worker.clone(),
                                events: self.events.clone(),
                                generation,
                            };
                            stream.replace(tokio::spawn(net.run(request)));
                        }
                        Link::Channel(channel) => {
                            // A lost message is recovered by the core's request timeout.
                            let want = Control::Want { from: request.from, to: request.to };
                            if let Err(e) = channel.control(&want).await {
                                tracing::debug!(transfer = %id, "channel send failed: {e}");
                            }
                        }
                    },
                    Output::Sync { upto } => {
                        let _ = to_worker.send(WorkerIn::Sync { upto }).await;
                    }
                    Output::Verify => {
                        let _ = to_worker.send(WorkerIn::Finish).await;
                    }
                    Output::Failed(why) => return Err(give_up_error(why)),
                    Output::Credit { to } => {
                        // Only a finite window (the channel) grants credit.
                        if let Link::Channel(channel) = &mut link
                            && let Err(e) = channel.control(&Control::Credit { to }).await
                        {
                            tracing::debug!(transfer = %id, "channel send failed: {e}");
                        }
                    }
                }
            }
            let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
            let input = tokio::select! {
                input = from_worker.recv() => input,
                _ = sleep_until(deadline) => {
                    core.handle_timeout(Instant::now());
                    continue;
                }
            };
            let now = Instant::now();
            match input.ok_or(TransferError::Cancelled)? {
                WorkerOut::Chunk(index) => {
                    core.handle_frame(now, index).map_err(|e| TransferError::Protocol(e.to_string()))?;
                    let done = manifest.bytes_in(core.first_missing());
                    let rate =
                        (done.saturating_sub(resumed_bytes) as f64 / started.elapsed().as_secs_f64().max(1e-3)) as u64;
                    self.events.progress(Event::Progress {
                        transfer_id: id,
                        role: Role::Receive,
                        bytes_done: done,
                        bytes_total: manifest.size,
                        rate,
                    });
                }
                WorkerOut::Corrupt => {
                    tracing::warn!(transfer = %id, "a frame failed authentication; it will be fetched again");
                    core.handle_corrupt(now);
                }
                WorkerOut::Trailer => core.handle_trailer(now),
                WorkerOut::StreamEnd { generation: g, fatal } => {
                    if let Some(e) = fatal {
                        return Err(e);
                    }
                    if g == generation {
                        core.handle_stream_end(now);
                    }
                }
                WorkerOut::Synced(upto) => {
                    *self.receive_side().1 = upto;
                    self.node.journal.save(&mut self.record)?;
                    core.handle_synced(now, upto);
                }
                WorkerOut::Verified(sha256) => {
                    drop(stream);
                    return self.finish(sha256, started, link).await;
                }
                WorkerOut::Fatal(e) => return Err(e),
            }
        }
    }

    /// Move the verified file to its final name, record it, and tell the sender.
    async fn finish(&mut self, sha256: String, started: Instant, link: Link) -> Result<Completion> {
        let Side::Receive { temp_path, output_dir, file_name, overwrite, .. } = self.record.side.clone() else {
            unreachable!("receive record")
        };
        let target = output_dir.join(&file_name);
        place(&temp_path, &target, overwrite)?;
        self.record.state = State::Completed;
        self.record.sha256 = Some(sha256.clone());
        if let Side::Receive { saved_to, .. } = &mut self.record.side {
            *saved_to = Some(target.clone());
        }
        self.node.journal.save(&mut self.record)?;
        let path = link.kind();
        self.confirm(&sha256, link).await;
        let id = self.record.transfer_id;
        self.events
            .send(Event::Completed {
                transfer_id: id,
                role: Role::Receive,
                sha256: sha256.clone(),
                bytes: self.record.size,
                saved_to: Some(target.clone()),
                path: path.as_str(),
                elapsed_ms: started.elapsed().as_millis() as u64,
            })
            .await;
        Ok(Completion { sha256, bytes: self.record.size, saved_to: Some(target) })
    }

    /// Best effort: the sender stops serving once told; if it is gone, its ticket expires anyway.
    async fn confirm(&self, sha256: &str, link: Link) {
        let t = &self.ticket;
        let result = match link {
            Link::Channel(mut channel) => channel.control(&Control::Complete { sha256: sha256.to_owned() }).await,
            Link::Http => {
                let token = t.session_key.http_token(&t.transfer_id);
                let (connected, _) =
                    connect_any(&t.addrs, t.transfer_id, &token, PROBE_BUDGET, |_: &mut BytesMut| Ok(())).await;
                match connected {
                    Ok(Connected { mut peer, .. }) => peer.complete(sha256).await,
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(transfer = %t.transfer_id, "the sender did not take the confirmation: {e}");
        }
    }

    /// Pick the path for this run, as the receiver's preference allows: direct HTTP to every
    /// address in the ticket first, then the ticket's message channel. Tries again with backoff
    /// until the peer timeout, since the sender may be restarting; every try is an attempt.
    async fn choose_path(
        &self,
        manifest: &Manifest,
        to_worker: &mpsc::Sender<WorkerIn>,
        stream: &mut StreamSlot,
    ) -> Result<Link> {
        let t = &self.ticket;
        let use_http = self.prefer != Prefer::Relay && !t.addrs.is_empty();
        let channel = t.channel.as_deref().filter(|_| self.prefer != Prefer::Http);
        if !use_http && channel.is_none() {
            return Err(TransferError::PathUnavailable(format!(
                "{} (the ticket offers {})",
                serde_json::to_value(self.prefer).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                if t.channel.is_some() { "http and relay" } else { "http only" }
            )));
        }
        let give_up = Instant::now() + self.node.config.peer_timeout;
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut error = None;
            if use_http {
                match probe_http(t, manifest, &self.events).await {
                    Ok(_) => return Ok(Link::Http),
                    Err(e @ TransferError::Unauthorized) if channel.is_none() => return Err(e),
                    Err(e) => error = Some(e),
                }
            }
            if let Some(hint) = channel {
                let started = Instant::now();
                let opened = ChannelLink::open(t, hint, PROBE_BUDGET).await;
                let report = |ok: bool, code: Option<&'static str>| Event::Attempt {
                    transfer_id: t.transfer_id,
                    path: PathKind::Relay.as_str(),
                    addr: hint.to_owned(),
                    ok,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    error_code: code,
                };
                match opened {
                    Ok((link, mut frames, manifest)) => {
                        self.events.send(report(true, None)).await;
                        if let Some(hash) = expected_hash(&manifest) {
                            let _ = to_worker.send(WorkerIn::Expected(hash)).await;
                        }
                        let to_worker = to_worker.clone();
                        stream.replace(tokio::spawn(async move {
                            while let Some(payload) = frames.recv().await {
                                // Usually the only view of its buffer: no copy.
                                let frame = payload.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                                if to_worker.send(WorkerIn::Frame(frame)).await.is_err() {
                                    break;
                                }
                            }
                        }));
                        return Ok(Link::Channel(Box::new(link)));
                    }
                    Err(e) => {
                        self.events.send(report(false, Some(e.code()))).await;
                        error = Some(e);
                    }
                }
            }
            if Instant::now() + backoff >= give_up {
                return Err(error.unwrap_or_else(|| TransferError::PeerUnreachable("no path answered".into())));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Give the temp file its final name (see [`super::disk::place`]).
fn place(temp: &Path, target: &Path, overwrite: bool) -> Result<()> {
    super::disk::place(temp, target, overwrite)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The network task of the current request; replacing or dropping it aborts the old one, so no
/// stream outlives the request it serves or the driver that started it.
pub(super) struct StreamSlot(Option<JoinHandle<()>>);

impl StreamSlot {
    pub(super) fn replace(&mut self, task: JoinHandle<()>) {
        if let Some(old) = self.0.replace(task) {
            old.abort();
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
