//! The sender's side: bind, journal, serve until done or expired; and resume after a restart.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | start and resume a send: bind the listener, advertise addresses, mint the ticket, serve on every path until the receiver confirms or the ticket expires |
//! | `outgoing.rs` | the file or folder being served: its manifest, chunk reads, the whole-file hash, how the send ended |
//! | `session.rs` | the one session driver: open each control frame, ask the [`SendCore`](crate::core::SendCore), seal and hand back frames, on any path |

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;

pub(super) mod outgoing;
mod session;

use self::{
    outgoing::{Outgoing, Recorded, SendOutcome, Source},
    session::ServeOutgoing,
};
use crate::engine::{
    Completion, Event, Events, Node, SendOptions, Transfer,
    events::{FilesProgress, FolderSummary, SKIPPED_SHOWN},
    keys::{mailboxes, signalling},
    rate::Rate,
};
use crate::{
    channel::{Channel, ChannelHint},
    core::Prefer,
    crypto::SessionKey,
    error::{Result, TransferError},
    id::TransferId,
    journal::{OwnerLock, Record, Role, Side, State, unix_now},
    manifest::Manifest,
    task::AbortOnDrop,
    ticket::Ticket,
    transport::{self, http::HttpServer},
};

/// A code to hand the ticket over by, and whether to show the verifier.
pub(super) type CodeOffer = (crate::code::rendezvous::Offer, bool);

pub(super) async fn start(node: &Node, options: SendOptions, code: Option<CodeOffer>) -> Result<Transfer> {
    let unreadable =
        |reason: String| TransferError::SourceUnreadable { path: options.path.display().to_string(), reason };
    let path = std::fs::canonicalize(&options.path).map_err(|e| unreadable(e.to_string()))?;
    // A folder is walked once here; its stream is the listing and then every file.
    let source = open_source(node, &path).await?;
    let folder = matches!(source, Source::Tree(_));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let manifest = Manifest { name, size: source.size()?, chunk_size: node.config.chunk_size, sha256: None };

    let channel = match options.prefer {
        Prefer::Http => None,
        Prefer::Auto => node.config.channel.clone(),
        Prefer::Relay | Prefer::Webrtc => Some(node.config.channel.clone().ok_or_else(|| {
            TransferError::PathUnavailable(format!(
                "{} (no relay or shared folder is configured: set AGENTFERRY_RELAY)",
                options.prefer.as_str()
            ))
        })?),
    };
    let server = match &node.server {
        Some(shared) => Arc::clone(shared),
        None => Arc::new(HttpServer::bind(node.config.bind).await?),
    };
    let transfer_id = TransferId::random();
    let ticket = Ticket {
        transfer_id,
        session_key: SessionKey::generate(),
        expires_at: unix_now() + options.expires_in.as_secs(),
        size: manifest.size,
        chunk_size: manifest.chunk_size,
        name: manifest.name.clone(),
        addrs: match options.prefer {
            Prefer::Relay | Prefer::Webrtc => Vec::new(),
            Prefer::Auto | Prefer::Http => advertised_addrs(server.local_addr()),
        },
        channel: channel.as_ref().map(ToString::to_string),
        folder,
        mode: source.mode(),
    };
    let outgoing = Outgoing::open(
        transfer_id,
        ticket.session_key.clone(),
        path.clone(),
        source,
        manifest,
        ticket.expires_at,
        None,
    )?;
    let recorded = outgoing.recorded();
    let side = Side::Send {
        path,
        mtime_ns: recorded.mtime_ns,
        change: recorded.change,
        bind: server.local_addr(),
        bytes_sent: 0,
    };
    let mut record = Record::new(&ticket, ticket.name.clone(), side);
    let lock = node.journal.try_lock(&transfer_id, Role::Send)?.expect("a fresh id has no owner");
    node.journal.save(&mut record)?;
    Ok(spawn(node, record, ticket, server, outgoing, lock, options.prefer, code))
}

/// Open the file or walk the folder on a blocking thread (a large tree takes a while to walk).
async fn open_source(node: &Node, path: &std::path::Path) -> Result<Source> {
    let (path, home) = (path.to_path_buf(), node.home.root().to_path_buf());
    tokio::task::spawn_blocking(move || Source::open(&path, &home)).await.map_err(|_| TransferError::Cancelled)?
}

pub(super) async fn resume(node: &Node, mut record: Record) -> Result<Transfer> {
    let lock = node.journal.claim(&record)?;
    if crate::pipe::is_piped(&record) {
        return Err(TransferError::NotResumable(record.transfer_id.to_string())); // its stdin is gone
    }
    let Side::Send { path, mtime_ns, change, bind, .. } = record.side.clone() else { unreachable!("send record") };
    let ticket: Ticket = record.ticket.parse()?;
    let fail = |node: &Node, record: &mut Record, e: TransferError| {
        record.fail(&e);
        let _ = node.journal.save(record);
        Err(e)
    };
    if let Err(e) = ticket.check_expiry(unix_now()) {
        return fail(node, &mut record, e);
    }
    let manifest = Manifest {
        name: record.name.clone(),
        size: record.size,
        chunk_size: record.chunk_size,
        sha256: record.sha256.clone(),
    };
    let source = match open_source(node, &path).await {
        Ok(source) => source,
        Err(TransferError::SourceUnreadable { reason, .. }) => {
            return fail(node, &mut record, TransferError::SourceChanged(reason));
        }
        Err(e) => return Err(e),
    };
    let outgoing = match Outgoing::open(
        record.transfer_id,
        ticket.session_key.clone(),
        path,
        source,
        manifest,
        ticket.expires_at,
        Some(Recorded { mtime_ns, change }),
    ) {
        Ok(o) => o,
        Err(e @ TransferError::SourceChanged(_)) => return fail(node, &mut record, e),
        Err(e) => return Err(e),
    };
    // The ticket names this port, so only this port will do.
    let server = match &node.server {
        Some(shared) if shared.local_addr() == bind => Arc::clone(shared),
        _ => Arc::new(HttpServer::bind(bind).await?),
    };
    record.state = State::Active;
    record.error = None;
    node.journal.save(&mut record)?;
    let prefer = node.config.prefer;
    Ok(spawn(node, record, ticket, server, outgoing, lock, prefer, None))
}

#[allow(clippy::too_many_arguments)]
fn spawn(
    node: &Node,
    record: Record,
    ticket: Ticket,
    server: Arc<HttpServer>,
    outgoing: Outgoing,
    lock: OwnerLock,
    prefer: Prefer,
    code: Option<CodeOffer>,
) -> Transfer {
    let (events, rx) = Events::channel();
    let outgoing = Arc::new(outgoing);
    server.register(Arc::new(ServeOutgoing(Arc::clone(&outgoing))));
    server.start();
    let transfer_id = record.transfer_id;
    let node = node.clone();
    let task = tokio::spawn(async move {
        let _lock = lock;
        // Also when the task is aborted (Ctrl-C, a cancelled MCP task): a shared listener
        // must stop serving the transfer.
        let _registered = Unregister(Arc::clone(&server), transfer_id);
        let result = serve(&node, record, &ticket, &server, &outgoing, &events, prefer, code).await;
        match &result {
            Ok(_) => server.retire(transfer_id, outgoing.token_check()),
            Err(_) => server.unregister(&transfer_id),
        }
        if let Err(e) = &result {
            events.send(Event::error(Some(transfer_id), e)).await;
        }
        result
    });
    Transfer { transfer_id, role: Role::Send, events: rx, task }
}

/// How often a sender records in its journal how much it sent.
const BYTES_SENT_EVERY: Duration = Duration::from_secs(5);

/// Serve until the receiver confirms, the ticket expires, or the file changes; with a code, also
/// until the code fails (wrong, expired), which ends the transfer: no one else has the ticket.
#[allow(clippy::too_many_arguments)]
async fn serve(
    node: &Node,
    mut record: Record,
    ticket: &Ticket,
    server: &HttpServer,
    outgoing: &Arc<Outgoing>,
    events: &Events,
    prefer: Prefer,
    code: Option<CodeOffer>,
) -> Result<Completion> {
    let id = record.transfer_id;
    events
        .send(Event::Ticket {
            transfer_id: id,
            ticket: record.ticket.clone(),
            file_name: record.name.clone(),
            bytes_total: record.size,
            expires_at: ticket.expires_at,
            folder: outgoing.tree().map(|tree| FolderSummary {
                files: tree.file_count(),
                folders: tree.dir_count(),
                skipped: tree.skipped.iter().take(SKIPPED_SHOWN).cloned().collect(),
                skipped_count: tree.skipped.len() as u64,
            }),
        })
        .await;
    events.send(Event::Listening { transfer_id: id, addrs: ticket.addrs.clone() }).await;
    tracing::info!(transfer = %id, addr = %server.local_addr(), "serving");
    let mut channel_tasks = serve_channel(node, ticket, outgoing, prefer);
    // The code's conversation on the relay: it hands the ticket over sealed, once.
    let mut handing = match code {
        Some((offer, verify)) => {
            events
                .send(Event::Code {
                    transfer_id: Some(id),
                    code: offer.code().to_string(),
                    purpose: offer.purpose().as_str(),
                    relay: offer.relay().to_owned(),
                    expires_at: offer.expires_at(),
                })
                .await;
            let sealed = record.ticket.clone();
            Some((Box::pin(async move { offer.hand_over(sealed.as_bytes()).await }), verify))
        }
        None => None,
    };

    let mut rate = Rate::default();
    let files = outgoing.tree().map(|tree| tree.file_index());
    let mut outcome = outgoing.outcome();
    let expiry = Duration::from_secs(ticket.expires_at.saturating_sub(unix_now()));
    let expired = tokio::time::sleep(expiry);
    tokio::pin!(expired);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_served = u64::MAX;
    let mut last_saved = Instant::now();
    // A background save of the bytes sent; awaited before any later save so none lands after it.
    let mut pending_save = None;
    let result = loop {
        tokio::select! {
            changed = outcome.changed() => {
                if changed.is_err() { break Err(TransferError::Cancelled) }
                match outcome.borrow_and_update().clone() {
                    Some(SendOutcome::Completed { sha256 }) => break Ok(sha256),
                    Some(SendOutcome::Failed(e)) => break Err((*e).clone()),
                    None => {}
                }
            }
            _ = &mut expired => {
                break Err(TransferError::TicketExpired { ago_secs: unix_now().saturating_sub(ticket.expires_at) });
            }
            redeemed = async { handing.as_mut().expect("guarded").0.as_mut().await }, if handing.is_some() => {
                let verify = handing.take().is_some_and(|(_, verify)| verify);
                match redeemed {
                    Ok(r) => {
                        tracing::info!(transfer = %id, "the code was redeemed");
                        let verifier = verify.then_some(r.verifier);
                        events.send(Event::CodeRedeemed { transfer_id: Some(id), purpose: "transfer", verifier }).await;
                    }
                    Err(e) => break Err(e),
                }
            }
            _ = tick.tick() => {
                let served = outgoing.bytes_served();
                // The rate counts from the first byte served, not from launch.
                let rate = rate.update(Instant::now(), served);
                if served != last_served {
                    last_served = served;
                    let files = files.as_ref().map(|index| FilesProgress::at(index, served));
                    events.progress(Event::Progress { transfer_id: id, role: Role::Send, bytes_done: served, bytes_total: record.size, rate, files });
                }
                if record.sha256.is_none() && let Some(sha) = outgoing.sha256() {
                    if let Some(save) = pending_save.take() {
                        let _ = save.await;
                    }
                    // The sums first: a record with a hash has them beside it.
                    keep_sums(node, outgoing)?;
                    record.sha256 = Some(sha);
                    node.journal.save(&mut record)?;
                }
                // `status` from another process reads what was sent from the journal. A save
                // syncs, which under heavy writeback can take long: rarely, and off the runtime.
                if let Side::Send { bytes_sent, .. } = &mut record.side
                    && *bytes_sent != served
                    && last_saved.elapsed() >= BYTES_SENT_EVERY
                    && pending_save.as_ref().is_none_or(|h: &tokio::task::JoinHandle<()>| h.is_finished())
                {
                    *bytes_sent = served;
                    last_saved = Instant::now();
                    let (journal, mut copy) = (node.journal.clone(), record.clone());
                    pending_save = Some(tokio::task::spawn_blocking(move || {
                        if let Err(e) = journal.save(&mut copy) {
                            tracing::warn!("cannot record the bytes sent: {e}");
                        }
                    }));
                }
            }
        }
    };
    if let Some(save) = pending_save.take() {
        let _ = save.await;
    }
    match result {
        Ok(sha256) => {
            let carried = outgoing.carried();
            let path = carried.last_chunk.or_else(|| carried.bytes_by_path.keys().next_back().copied());
            keep_sums(node, outgoing)?;
            let sums = outgoing.tree().map(|_| node.journal.sums_path(&id, Role::Send)).filter(|p| p.is_file());
            record.complete(&sha256, sums.clone(), path, &carried.bytes_by_path);
            node.journal.save(&mut record)?;
            events
                .send(Event::Completed {
                    transfer_id: id,
                    role: Role::Send,
                    sha256: sha256.clone(),
                    bytes: record.size,
                    saved_to: None,
                    sums,
                    path: path.map_or("none", |p| p.as_str()),
                    route: None,
                    bytes_by_path: record.bytes_by_path.clone(),
                    elapsed_ms: rate.elapsed(Instant::now()).as_millis() as u64,
                })
                .await;
            channel_tasks.finish().await;
            Ok(Completion { sha256, bytes: record.size, saved_to: None })
        }
        Err(e) => {
            record.fail(&e);
            node.journal.save(&mut record)?;
            Err(e)
        }
    }
}

/// The task serving a transfer on its message channel; it stops when dropped.
#[derive(Default)]
struct ChannelTasks {
    _task: Option<AbortOnDrop>,
    /// Whether the WebRTC answerer runs (it starts once the channel is open).
    webrtc_running: Option<watch::Receiver<bool>>,
}

impl ChannelTasks {
    /// Once the receiver confirmed: let the WebRTC answerer close its data channel, which is how
    /// a receiver on that path learns its confirmation arrived, before the tasks are dropped.
    async fn finish(&mut self) {
        if let Some(running) = &mut self.webrtc_running
            && *running.borrow()
        {
            let _ = tokio::time::timeout(transport::webrtc::GOODBYE_BUDGET, running.wait_for(|r| !*r)).await;
        }
    }
}

/// Keep a folder's per-file SHA-256 list beside its record, once this process computed it.
fn keep_sums(node: &Node, outgoing: &Outgoing) -> Result<()> {
    if let Some(text) = outgoing.take_sums() {
        node.journal.save_sums(&outgoing.transfer_id, Role::Send, text.as_bytes())?;
    }
    Ok(())
}

/// Serve on the ticket's message channel too, if it names one: the relay path (unless WebRTC is
/// pinned) and WebRTC signalling (declining offers when the relay is pinned). The channel is
/// opened in the background and, while it cannot be (a relay that is down, or full for a
/// moment), tried again with the path selector's backoff: a receiver may come over it later.
fn serve_channel(node: &Node, ticket: &Ticket, outgoing: &Arc<Outgoing>, prefer: Prefer) -> ChannelTasks {
    let Some(hint) = ticket.channel.as_deref().and_then(|c| c.parse::<ChannelHint>().ok()) else {
        return ChannelTasks::default();
    };
    let serve = Arc::new(ServeOutgoing(Arc::clone(outgoing)));
    let (key, id) = (ticket.session_key.clone(), ticket.transfer_id);
    let mut outcome = outgoing.outcome();
    let ice = node.config.ice.clone();
    let (running_tx, running) = watch::channel(false);
    let task = tokio::spawn(async move {
        let Some(channel) = open_with_backoff(&hint, &id).await else { return };
        let relay = (prefer != Prefer::Webrtc).then(|| {
            AbortOnDrop(tokio::spawn(transport::channel::serve(channel.clone(), serve.clone(), mailboxes(&key, &id))))
        });
        let confirmed = async move {
            let _ = outcome.wait_for(|o| matches!(o, Some(SendOutcome::Completed { .. }))).await;
        };
        running_tx.send_replace(true);
        transport::webrtc::serve(channel, hint, serve, signalling(&key, &id), ice, prefer != Prefer::Relay, confirmed)
            .await;
        running_tx.send_replace(false);
        // The relay path serves until the transfer's tasks are dropped.
        let _relay = relay;
        std::future::pending::<()>().await
    });
    ChannelTasks { _task: Some(AbortOnDrop(task)), webrtc_running: Some(running) }
}

/// Open the channel, trying again with the path selector's backoff while it fails for a reason
/// that may pass; `None` once it refuses this node's own settings (credentials, certificates),
/// which no retry changes.
async fn open_with_backoff(hint: &ChannelHint, id: &TransferId) -> Option<Channel> {
    let cfg = crate::core::PathConfig::default();
    let mut backoff = cfg.retry_min;
    let mut warned = false;
    loop {
        match Channel::open(hint).await {
            Ok(channel) => {
                if warned {
                    tracing::info!(transfer = %id, "serving on {hint} now");
                }
                return Some(channel);
            }
            Err(e @ (TransferError::ChannelAuth(_) | TransferError::ChannelTls(_))) => {
                tracing::warn!(transfer = %id, code = e.code(), "cannot serve on {hint}: {e}");
                return None;
            }
            Err(e) => {
                // The receiver may still come over HTTP, or the channel come back.
                if !warned {
                    tracing::warn!(transfer = %id, code = e.code(), "cannot serve on {hint} yet, trying again: {e}");
                    warned = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.retry_max);
            }
        }
    }
}

/// Removes a transfer from a listener when dropped.
struct Unregister(Arc<HttpServer>, TransferId);

impl Drop for Unregister {
    fn drop(&mut self) {
        self.0.unregister(&self.1);
    }
}

/// The addresses to put in a ticket for a listener bound to `local`: every interface address
/// (loopback included) when bound to the unspecified address, else just the bound one.
pub fn advertised_addrs(local: SocketAddr) -> Vec<SocketAddr> {
    let port = local.port();
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let dual_stack = local.is_ipv6();
    let mut addrs: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|iface| iface.ip())
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            // Link-local v6 addresses need a scope id a ticket cannot carry.
            IpAddr::V6(v6) => dual_stack && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    addrs.sort_by_key(|a| (a.ip().is_loopback(), a.is_ipv6()));
    addrs.dedup();
    if addrs.is_empty() {
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    addrs
}
