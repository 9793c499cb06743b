//! `agentferry relay`: mailboxes over WebSocket, with bounded memory and limits per client.
//!
//! Peers reach the relay by outbound connections only (`GET /v1/relay`, upgraded to
//! WebSocket); `GET /v1/stats` answers JSON counters. A message sent to a mailbox goes straight
//! to its subscriber when that subscriber's outbound queue has room; otherwise it waits in the
//! mailbox's bounded queue, for at most the TTL, so an offer can wait for a peer that connects a
//! little later. Every bound is explicit: message size, queue length, total queued bytes,
//! mailboxes, subscriptions per connection, connections, and a per-connection rate (a client
//! over its rate is slowed down, not served ahead of others). A slow reader only fills its own
//! queues; senders to it get `queue_full` and retransmit later, nobody else waits.
//!
//! The relay never sees a secret or plaintext: mailbox ids are derived from secrets it does not
//! hold, and payloads are sealed frames and authenticated offers. Subscribing takes the
//! mailbox's key (see [`super::proto`]), so knowing a mailbox id is enough to send there, never
//! to read it: a second subscriber replaces the first only if it holds the same key.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, mpsc, watch},
    task::JoinSet,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};

use super::proto::{Envelope, Mailbox, Refusal};
use crate::{
    accept::{self, Accepted, Acceptor},
    error::TransferError,
};

/// The relay's limits.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Largest envelope accepted; a client sending more is disconnected.
    pub max_message: usize,
    /// Messages a mailbox holds while its subscriber is away or slow.
    pub mailbox_capacity: usize,
    /// How long a queued message (and an idle mailbox) lives.
    pub ttl: Duration,
    /// Total bytes queued in all mailboxes.
    pub max_queued_bytes: usize,
    pub max_mailboxes: usize,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    /// Per connection: bytes per second (with one second of burst).
    pub rate_bytes: u64,
    /// Per connection: messages per second (with one second of burst).
    pub rate_messages: u64,
    /// Outbound messages buffered per connection before its mailboxes start queueing.
    pub outbound_depth: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            max_message: 1 << 20,
            mailbox_capacity: 64,
            ttl: Duration::from_secs(120),
            max_queued_bytes: 256 << 20,
            max_mailboxes: 100_000,
            max_connections: 4096,
            max_subscriptions: 256,
            rate_bytes: 1 << 30,
            rate_messages: 50_000,
            outbound_depth: 32,
        }
    }
}

/// Counters served at `/v1/stats`.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    connections_total: AtomicU64,
    relayed_messages: AtomicU64,
    relayed_bytes: AtomicU64,
    refused: AtomicU64,
    malformed: AtomicU64,
    oversized: AtomicU64,
    throttled: AtomicU64,
    rejected_connections: AtomicU64,
    /// TCP connections open now, upgraded to WebSocket or not yet.
    tcp_connections: AtomicUsize,
}

/// A snapshot of the relay's counters.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    pub connections_total: u64,
    pub mailboxes: usize,
    pub queued_messages: usize,
    pub queued_bytes: usize,
    pub relayed_messages: u64,
    pub relayed_bytes: u64,
    pub refused: u64,
    pub malformed: u64,
    pub oversized: u64,
    pub throttled: u64,
    pub rejected_connections: u64,
    /// TCP connections open now, WebSocket or not yet upgraded (`connections` counts only
    /// WebSockets); both are under `max_connections`.
    #[serde(default)]
    pub tcp_connections: usize,
}

struct MailboxState {
    queue: VecDeque<(Instant, Bytes)>,
    subscriber: Option<(u64, mpsc::Sender<Bytes>)>,
    last_used: Instant,
}

struct Relay {
    cfg: RelayConfig,
    mailboxes: Mutex<HashMap<Mailbox, MailboxState>>,
    queued_bytes: AtomicUsize,
    counters: Counters,
    next_conn: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Relay {
    /// Move queued messages to the subscriber while it has room, oldest first.
    fn drain(&self, b: &mut MailboxState, now: Instant) {
        let Some((_, out)) = &b.subscriber else { return };
        while let Some((at, msg)) = b.queue.front() {
            if now.duration_since(*at) > self.cfg.ttl {
                self.queued_bytes.fetch_sub(msg.len(), Relaxed);
                b.queue.pop_front();
                continue;
            }
            match out.try_send(msg.clone()) {
                Ok(()) => {
                    self.queued_bytes.fetch_sub(msg.len(), Relaxed);
                    self.counters.relayed_messages.fetch_add(1, Relaxed);
                    self.counters.relayed_bytes.fetch_add(msg.len() as u64, Relaxed);
                    b.queue.pop_front();
                }
                Err(_) => break,
            }
        }
    }

    /// The mailbox, created on first use within the mailbox limit.
    fn mailbox<'a>(
        &self,
        boxes: &'a mut HashMap<Mailbox, MailboxState>,
        mailbox: Mailbox,
        now: Instant,
    ) -> Result<&'a mut MailboxState, Refusal> {
        if !boxes.contains_key(&mailbox) && boxes.len() >= self.cfg.max_mailboxes {
            return Err(Refusal::TooManyMailboxes);
        }
        let b = boxes.entry(mailbox).or_insert_with(|| MailboxState {
            queue: VecDeque::new(),
            subscriber: None,
            last_used: now,
        });
        b.last_used = now;
        Ok(b)
    }

    /// Route `msg`, a DELIVER envelope for `mailbox`.
    fn send(&self, mailbox: Mailbox, msg: Bytes) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut boxes = self.mailboxes.lock().expect("not poisoned");
        let b = self.mailbox(&mut boxes, mailbox, now)?;
        if b.queue.len() >= self.cfg.mailbox_capacity {
            self.drain(b, now);
            if b.queue.len() >= self.cfg.mailbox_capacity {
                return Err(Refusal::QueueFull);
            }
        }
        if self.queued_bytes.load(Relaxed) + msg.len() > self.cfg.max_queued_bytes {
            return Err(Refusal::OverCapacity);
        }
        self.queued_bytes.fetch_add(msg.len(), Relaxed);
        b.queue.push_back((now, msg));
        self.drain(b, now);
        Ok(())
    }

    fn subscribe(&self, conn: u64, out: &mpsc::Sender<Bytes>, mailbox: Mailbox) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut boxes = self.mailboxes.lock().expect("not poisoned");
        let b = self.mailbox(&mut boxes, mailbox, now)?;
        b.subscriber = Some((conn, out.clone()));
        self.drain(b, now);
        Ok(())
    }

    fn unsubscribe(&self, conn: u64, mailbox: &Mailbox) {
        let mut boxes = self.mailboxes.lock().expect("not poisoned");
        if let Some(b) = boxes.get_mut(mailbox)
            && b.subscriber.as_ref().is_some_and(|(c, _)| *c == conn)
        {
            b.subscriber = None;
            b.last_used = Instant::now();
        }
    }

    /// The connection's writer made room: let its mailboxes move on.
    fn refill(&self, subs: &HashSet<Mailbox>) {
        let now = Instant::now();
        let mut boxes = self.mailboxes.lock().expect("not poisoned");
        for m in subs {
            if let Some(b) = boxes.get_mut(m) {
                self.drain(b, now);
            }
        }
    }

    /// Drop expired messages and forget idle, empty mailboxes.
    fn sweep(&self) {
        let now = Instant::now();
        let mut boxes = self.mailboxes.lock().expect("not poisoned");
        boxes.retain(|_, b| {
            while b.queue.front().is_some_and(|(at, _)| now.duration_since(*at) > self.cfg.ttl) {
                let (_, msg) = b.queue.pop_front().expect("front exists");
                self.queued_bytes.fetch_sub(msg.len(), Relaxed);
            }
            !(b.queue.is_empty() && b.subscriber.is_none() && now.duration_since(b.last_used) > self.cfg.ttl)
        });
    }

    fn stats(&self) -> Stats {
        let boxes = self.mailboxes.lock().expect("not poisoned");
        let c = &self.counters;
        Stats {
            connections: c.connections.load(Relaxed),
            connections_total: c.connections_total.load(Relaxed),
            mailboxes: boxes.len(),
            queued_messages: boxes.values().map(|b| b.queue.len()).sum(),
            queued_bytes: self.queued_bytes.load(Relaxed),
            relayed_messages: c.relayed_messages.load(Relaxed),
            relayed_bytes: c.relayed_bytes.load(Relaxed),
            refused: c.refused.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
            oversized: c.oversized.load(Relaxed),
            throttled: c.throttled.load(Relaxed),
            rejected_connections: c.rejected_connections.load(Relaxed),
            tcp_connections: c.tcp_connections.load(Relaxed),
        }
    }
}

/// A running relay. [`RelayServer::shutdown`] closes every connection gracefully.
pub struct RelayServer {
    local_addr: SocketAddr,
    relay: Arc<Relay>,
    shutdown: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl RelayServer {
    pub async fn bind(addr: SocketAddr, cfg: RelayConfig) -> Result<Self, TransferError> {
        let listener = TcpListener::bind(addr).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => TransferError::AddressInUse(addr.to_string()),
            _ => TransferError::io(addr.to_string(), e),
        })?;
        let local_addr = listener.local_addr().map_err(|e| TransferError::io(addr.to_string(), e))?;
        let (shutdown, watch_rx) = watch::channel(false);
        let relay = Arc::new(Relay {
            cfg,
            mailboxes: Mutex::new(HashMap::new()),
            queued_bytes: AtomicUsize::new(0),
            counters: Counters::default(),
            next_conn: AtomicU64::new(1),
            shutdown: watch_rx,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&relay)));
        tracing::info!(addr = %local_addr, "relay listening");
        Ok(RelayServer { local_addr, relay, shutdown, accept })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("ws://{}", self.local_addr)
    }

    pub fn stats(&self) -> Stats {
        self.relay.stats()
    }

    /// Stop accepting, close every connection with a WebSocket close, wait for them (bounded).
    pub async fn shutdown(self) {
        self.accept.abort();
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.relay.counters.connections.load(Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(stats = ?self.relay.stats(), "relay stopped");
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.shutdown.send(true);
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp
}

async fn accept_loop(listener: TcpListener, relay: Arc<Relay>) {
    let mut sweeper = tokio::time::interval(Duration::from_secs(1));
    // Every TCP connection counts, upgraded or not; the WebSocket keeps the permit.
    let mut acceptor = Acceptor::new(listener, relay.cfg.max_connections);
    loop {
        let Accepted { stream, peer, permit } = tokio::select! {
            accepted = acceptor.accept() => accepted,
            _ = sweeper.tick() => {
                relay.sweep();
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            let permit = ConnSlot::new(permit, Arc::clone(&relay));
            let service = service_fn(move |req| {
                let (relay, permit) = (Arc::clone(&relay), Arc::clone(&permit));
                async move { Ok::<_, Infallible>(route(req, relay, peer, permit)) }
            });
            let conn = accept::http1().serve_connection(TokioIo::new(stream), service).with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "http connection ended: {e}");
            }
        });
    }
}

/// A connection's place under the listener's cap, shared by the HTTP connection and the
/// WebSocket it may become; counted in `tcp_connections` while it lives.
type Permit = Arc<ConnSlot>;

struct ConnSlot {
    _permit: OwnedSemaphorePermit,
    relay: Arc<Relay>,
}

impl ConnSlot {
    fn new(permit: OwnedSemaphorePermit, relay: Arc<Relay>) -> Permit {
        relay.counters.tcp_connections.fetch_add(1, Relaxed);
        Arc::new(ConnSlot { _permit: permit, relay })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.relay.counters.tcp_connections.fetch_sub(1, Relaxed);
    }
}

fn route(req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr, permit: Permit) -> Response<Body> {
    match req.uri().path() {
        "/v1/stats" => {
            let mut resp = plain(StatusCode::OK, serde_json::to_vec(&relay.stats()).expect("json"));
            resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("valid"));
            resp
        }
        "/v1/relay" => upgrade(req, relay, peer, permit),
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

fn upgrade(mut req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr, permit: Permit) -> Response<Body> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes()));
    let is_ws = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(accept) = key.filter(|_| is_ws) else {
        return plain(StatusCode::BAD_REQUEST, "a WebSocket upgrade is expected here");
    };
    if relay.counters.connections.load(Relaxed) >= relay.cfg.max_connections {
        relay.counters.rejected_connections.fetch_add(1, Relaxed);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _permit = permit;
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(relay.cfg.max_message + 64))
                    .max_frame_size(Some(relay.cfg.max_message + 64));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                serve_client(ws, relay, peer).await;
            }
            Err(e) => tracing::debug!(%peer, "upgrade failed: {e}"),
        }
    });
    let mut resp = plain(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, "websocket".parse().expect("valid"));
    h.insert(header::CONNECTION, "Upgrade".parse().expect("valid"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept.parse().expect("valid"));
    resp
}

/// Token buckets for one connection.
struct Rate {
    bytes: f64,
    messages: f64,
    at: Instant,
}

impl Rate {
    /// How long to wait before a message of `len` bytes may pass.
    fn charge(&mut self, cfg: &RelayConfig, len: usize) -> Duration {
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.bytes = (self.bytes + dt * cfg.rate_bytes as f64).min(cfg.rate_bytes as f64) - len as f64;
        self.messages = (self.messages + dt * cfg.rate_messages as f64).min(cfg.rate_messages as f64) - 1.0;
        let wait_bytes = (-self.bytes).max(0.0) / cfg.rate_bytes as f64;
        let wait_messages = (-self.messages).max(0.0) / cfg.rate_messages as f64;
        Duration::from_secs_f64(wait_bytes.max(wait_messages))
    }
}

/// Malformed envelopes tolerated before a client is disconnected.
const MAX_MALFORMED: u32 = 16;

async fn serve_client<S>(ws: WebSocketStream<S>, relay: Arc<Relay>, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = relay.next_conn.fetch_add(1, Relaxed);
    relay.counters.connections.fetch_add(1, Relaxed);
    relay.counters.connections_total.fetch_add(1, Relaxed);
    tracing::debug!(conn, %peer, "client connected");
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(relay.cfg.outbound_depth);
    let subs = Arc::new(Mutex::new(HashSet::<Mailbox>::new()));

    let mut tasks = JoinSet::new();
    // Writer: sends what is routed here; each send makes room, so the mailboxes move on.
    let (writer_relay, writer_subs, mut shutdown) = (Arc::clone(&relay), Arc::clone(&subs), relay.shutdown.clone());
    tasks.spawn(async move {
        loop {
            tokio::select! {
                msg = out_rx.recv() => {
                    let Some(msg) = msg else { break };
                    if sink.send(Message::Binary(msg)).await.is_err() {
                        break;
                    }
                    let subs = writer_subs.lock().expect("not poisoned").clone();
                    writer_relay.refill(&subs);
                }
                _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    });
    // Reader: envelopes in, paced by the connection's rate.
    let (reader_relay, reader_subs, out) = (Arc::clone(&relay), Arc::clone(&subs), out_tx.clone());
    tasks.spawn(async move {
        let cfg = &reader_relay.cfg;
        let mut rate = Rate { bytes: cfg.rate_bytes as f64, messages: cfg.rate_messages as f64, at: Instant::now() };
        let mut malformed = 0u32;
        while let Some(msg) = stream.next().await {
            let data = match msg {
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) => break,
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Text(_)) => Bytes::new(), // not an envelope: counted as malformed below
                Err(e) => {
                    if matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)) {
                        reader_relay.counters.oversized.fetch_add(1, Relaxed);
                        tracing::info!(conn, %peer, "disconnecting a client that sent an oversized message");
                    }
                    break;
                }
            };
            let wait = rate.charge(cfg, data.len());
            if !wait.is_zero() {
                reader_relay.counters.throttled.fetch_add(1, Relaxed);
                tokio::time::sleep(wait).await;
            }
            let refused = match super::proto::send_to_deliver(data) {
                // The hot path: forward a SEND without copying its payload.
                Ok((mailbox, deliver)) => reader_relay.send(mailbox, deliver).err().map(|r| (mailbox, r)),
                Err(other) => match Envelope::decode(other) {
                    Ok(Envelope::SubscribeUnproven(mailbox)) => Some((mailbox, Refusal::Unproven)),
                    Ok(Envelope::Subscribe(key)) => {
                        let mailbox = super::proto::route(&key);
                        let mut subs = reader_subs.lock().expect("not poisoned");
                        if subs.len() >= cfg.max_subscriptions && !subs.contains(&mailbox) {
                            Some((mailbox, Refusal::TooManyMailboxes))
                        } else {
                            subs.insert(mailbox);
                            drop(subs);
                            reader_relay.subscribe(conn, &out, mailbox).err().map(|r| (mailbox, r))
                        }
                    }
                    Ok(Envelope::Unsubscribe(mailbox)) => {
                        reader_subs.lock().expect("not poisoned").remove(&mailbox);
                        reader_relay.unsubscribe(conn, &mailbox);
                        None
                    }
                    // Garbage, or what only the relay may send.
                    Ok(Envelope::Send(..) | Envelope::Deliver(..) | Envelope::Refused(..)) | Err(_) => {
                        reader_relay.counters.malformed.fetch_add(1, Relaxed);
                        malformed += 1;
                        if malformed >= MAX_MALFORMED {
                            tracing::info!(conn, %peer, "disconnecting a client that sends garbage");
                            break;
                        }
                        None
                    }
                },
            };
            if let Some((mailbox, why)) = refused {
                reader_relay.counters.refused.fetch_add(1, Relaxed);
                let _ = out.try_send(Envelope::Refused(mailbox, why as u8).encode());
            }
        }
    });
    drop(out_tx);
    // Either half ending ends the connection.
    tasks.join_next().await;
    tasks.abort_all();
    for mailbox in subs.lock().expect("not poisoned").iter() {
        relay.unsubscribe(conn, mailbox);
    }
    relay.counters.connections.fetch_sub(1, Relaxed);
    tracing::debug!(conn, %peer, "client disconnected");
}
