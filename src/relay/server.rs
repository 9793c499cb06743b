//! `agentferry relay`: mailboxes over WebSocket, with bounded memory and limits per client.
//!
//! Peers reach the relay by outbound connections only (`GET /v1/relay`, upgraded to
//! WebSocket); `GET /v1/stats` answers JSON counters, and `GET /r/<id>` and `/web/…` the
//! browser page ([`crate::web`]), which then reaches its sender through the mailboxes like any
//! client. A message sent to a mailbox goes straight
//! to its subscriber when that subscriber's writer has room; otherwise it waits in the
//! mailbox's bounded queue, for at most the TTL, so an offer can wait for a peer that connects a
//! little later. Every bound is explicit: message size, queue length, total queued bytes,
//! mailboxes, subscriptions per connection, connections, and a per-connection rate (a client
//! over its rate is slowed down, not served ahead of others).
//!
//! Fairness: no client can take the shared limits for itself, however many addresses it has. A
//! connection may hold an eighth of the queued bytes and `max_mailboxes_per_connection`
//! mailboxes; a source (an IPv4 address or an IPv6 /64, see [`accept::source`]) a quarter of
//! the bytes, mailboxes and of the listener's *effective* connection cap (a loose ceiling: a
//! team's agents often share one NAT address). The last eighth of the mailboxes and of the
//! queue is a reserve that only sources holding little may take. And when a limit is reached
//! all the same, a source that holds less than the biggest holder does not get refused: the
//! biggest holder's oldest idle mailbox (no subscriber, and what is queued in it) is evicted
//! to make room. So newcomers always find room, at the cost of whoever holds the most. A slow reader only fills
//! its own queues: its writer holds at most `max_outbound_bytes`, counted against the queue cap
//! with everything else, the rest waits in its mailboxes (senders get `queue_full` and
//! retransmit), and a socket that takes nothing for `write_timeout` is dropped.
//!
//! Short codes ([`crate::code`]) meet here too: a connection asks for a nameplate, another
//! claims it once, and the relay passes the PAKE messages between the two; the table, its
//! bounds and its per-source rate limits are in [`super::nameplates`]. The relay sees the
//! number, never the code's words.
//!
//! The relay never sees a secret or plaintext: mailbox ids are derived from secrets it does not
//! hold, and payloads are sealed frames and authenticated offers. Subscribing takes the
//! mailbox's key (see [`super::proto`]), so knowing a mailbox id is enough to send there, never
//! to read it: a second subscriber replaces the first only if it holds the same key.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    convert::Infallible,
    net::{IpAddr, SocketAddr},
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
    sync::{mpsc, watch},
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

use super::{
    nameplates::{NameplateLimits, Nameplates},
    proto::{Envelope, Refusal},
};
use crate::{
    accept::{self, Accepted, Acceptor},
    error::TransferError,
    mailbox::MailboxId,
    task::AbortOnDrop,
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
    /// Outbound bytes buffered per connection (a slow reader's messages wait in its mailboxes,
    /// where they count against the limits).
    pub max_outbound_bytes: usize,
    /// Mailboxes one connection may create (each address may create a quarter of all).
    pub max_mailboxes_per_connection: usize,
    /// A connection whose socket takes no bytes for this long is dropped.
    pub write_timeout: Duration,
    /// A WebSocket that sends nothing for this long (not even the pong to the relay's pings,
    /// sent every third of it) is dropped.
    pub idle_timeout: Duration,
    /// The nameplates of short codes: TTL, table size, claims per source.
    pub nameplates: NameplateLimits,
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
            max_outbound_bytes: 4 << 20,
            max_mailboxes_per_connection: 1024,
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            nameplates: NameplateLimits::default(),
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
    evicted: AtomicU64,
    idle_dropped: AtomicU64,
    nameplates_allocated: AtomicU64,
    nameplates_claimed: AtomicU64,
    nameplates_refused: AtomicU64,
}

/// A snapshot of the relay's counters.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    pub connections_total: u64,
    pub mailboxes: usize,
    pub queued_messages: usize,
    pub queued_bytes: usize,
    /// Bytes handed to connections' writers and not yet written (counted against the queue cap).
    #[serde(default)]
    pub outbound_bytes: usize,
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
    /// Idle mailboxes evicted (with what they queued) to make room for smaller holders.
    #[serde(default)]
    pub evicted: u64,
    /// WebSockets dropped for sending nothing, not even a pong, for `idle_timeout`.
    #[serde(default)]
    pub idle_dropped: u64,
    /// Nameplates of short codes open now (allocated, not yet claimed).
    #[serde(default)]
    pub nameplates: usize,
    #[serde(default)]
    pub nameplates_allocated: u64,
    #[serde(default)]
    pub nameplates_claimed: u64,
    /// Nameplate requests refused: unknown, used or expired numbers, rate limits, a full table.
    #[serde(default)]
    pub nameplates_refused: u64,
}

/// One connection as the routing sees it.
#[derive(Clone)]
struct Client {
    id: u64,
    ip: IpAddr,
    /// To the writer: a message, and whether it counts as outbound bytes (deliveries do,
    /// refusals do not).
    out: mpsc::Sender<(Bytes, bool)>,
    /// Bytes handed to this connection's writer and not yet written to its socket.
    outbound: Arc<AtomicUsize>,
}

struct Queued {
    at: Instant,
    msg: Bytes,
    /// Who queued it, charged until it leaves the queue.
    from: (u64, IpAddr),
}

struct MailboxState {
    queue: VecDeque<Queued>,
    subscriber: Option<Client>,
    last_used: Instant,
    /// Who created it, charged until it is forgotten.
    owner: (u64, IpAddr),
}

/// What one connection, or one source address, holds of the shared limits.
#[derive(Debug, Default)]
struct Usage {
    mailboxes: usize,
    queued_bytes: usize,
    connections: usize,
}

/// Everything behind the routing lock.
#[derive(Default)]
struct State {
    boxes: HashMap<MailboxId, MailboxState>,
    by_conn: HashMap<u64, Usage>,
    by_ip: HashMap<IpAddr, Usage>,
    /// Mailboxes without a subscriber, per owner, oldest use first: what may be evicted.
    idle: HashMap<IpAddr, BTreeSet<(Instant, MailboxId)>>,
}

impl State {
    fn set_idle(&mut self, mailbox: MailboxId, owner: IpAddr, since: Instant) {
        self.idle.entry(owner).or_default().insert((since, mailbox));
    }

    fn clear_idle(&mut self, mailbox: &MailboxId, owner: IpAddr, since: Instant) {
        if let Some(set) = self.idle.get_mut(&owner) {
            set.remove(&(since, *mailbox));
            if set.is_empty() {
                self.idle.remove(&owner);
            }
        }
    }

    /// The source with idle mailboxes that holds the most of `what`, if it holds more than
    /// `than`.
    fn biggest_idle_owner(&self, what: impl Fn(&Usage) -> usize, than: usize) -> Option<IpAddr> {
        self.idle
            .keys()
            .map(|ip| (self.by_ip.get(ip).map_or(0, &what), *ip))
            .filter(|(held, _)| *held > than)
            .max()
            .map(|(_, ip)| ip)
    }

    /// Apply `f` to the usage of connection `conn` (if still connected) and of address `ip`.
    fn charge(&mut self, (conn, ip): (u64, IpAddr), f: impl Fn(&mut Usage)) {
        if let Some(u) = self.by_conn.get_mut(&conn) {
            f(u);
        }
        if let Some(u) = self.by_ip.get_mut(&ip) {
            f(u);
        }
    }
}

struct Relay {
    cfg: RelayConfig,
    state: Mutex<State>,
    queued_bytes: AtomicUsize,
    /// Bytes in all connections' writers (counted against `max_queued_bytes` too).
    outbound_bytes: AtomicUsize,
    counters: Counters,
    next_conn: AtomicU64,
    shutdown: watch::Receiver<bool>,
    nameplates: Mutex<Nameplates<Client>>,
}

impl Relay {
    /// The shares of the global limits that one connection, and one source address, may hold:
    /// an eighth for a connection (two transfer windows at the default chunk size), a quarter
    /// for an address (a team's agents often share one NAT address, so this is only a loose
    /// ceiling). What is left keeps room for new clients.
    fn conn_share(&self, total: usize) -> usize {
        (total / 8).max(1)
    }

    fn ip_share(&self, total: usize) -> usize {
        (total / 4).max(1)
    }

    /// The last eighth of a limit, kept for sources that hold less than [`Self::small`].
    fn reserve(&self, total: usize) -> usize {
        total / 8
    }

    fn small(&self, total: usize) -> usize {
        (total / 32).max(1)
    }

    /// May a source that holds `held` of a limit of `total` take one more, with `used` taken
    /// in all? Past `total - reserve` only small holders may.
    fn fits(&self, used: usize, more: usize, held: usize, total: usize) -> bool {
        used + more <= total - self.reserve(total) || (used + more <= total && held < self.small(total))
    }

    /// Evict `owner`'s least recently used idle mailbox other than `keep`, with what is queued
    /// in it. Returns whether there was one.
    fn evict_oldest(&self, state: &mut State, owner: IpAddr, keep: &MailboxId) -> bool {
        let Some(set) = state.idle.get(&owner) else { return false };
        let Some(&(since, mailbox)) = set.iter().find(|(_, m)| m != keep) else { return false };
        state.clear_idle(&mailbox, owner, since);
        let Some(b) = state.boxes.remove(&mailbox) else { return true };
        let mut by = (std::mem::take(&mut state.by_conn), std::mem::take(&mut state.by_ip));
        for q in &b.queue {
            self.unqueue(&mut by, q);
        }
        (state.by_conn, state.by_ip) = by;
        state.charge(b.owner, |u| u.mailboxes = u.mailboxes.saturating_sub(1));
        self.counters.evicted.fetch_add(1, Relaxed);
        true
    }

    /// Make room for `len` more queued bytes from `client`, evicting the biggest holder's idle
    /// mailboxes if the queue is full and `client` holds less than it.
    fn room_for_bytes(&self, state: &mut State, client: &Client, keep: &MailboxId, len: usize) -> Result<(), Refusal> {
        let max = self.cfg.max_queued_bytes;
        let conn = state.by_conn.get(&client.id).map_or(0, |u| u.queued_bytes);
        let held = state.by_ip.get(&client.ip).map_or(0, |u| u.queued_bytes);
        if conn + len > self.conn_share(max) || held + len > self.ip_share(max) {
            return Err(Refusal::OverCapacity);
        }
        loop {
            let used = self.queued_bytes.load(Relaxed) + self.outbound_bytes.load(Relaxed);
            if self.fits(used, len, held, max) {
                return Ok(());
            }
            let Some(biggest) = state.biggest_idle_owner(|u| u.queued_bytes, held) else {
                return Err(Refusal::OverCapacity);
            };
            if !self.evict_oldest(state, biggest, keep) {
                return Err(Refusal::OverCapacity);
            }
        }
    }

    /// Move queued messages to the subscriber while its writer has room, oldest first.
    fn drain(&self, by: &mut (HashMap<u64, Usage>, HashMap<IpAddr, Usage>), b: &mut MailboxState, now: Instant) {
        let Some(sub) = &b.subscriber else { return };
        while let Some(front) = b.queue.front() {
            let len = front.msg.len();
            let expired = now.duration_since(front.at) > self.cfg.ttl;
            if !expired {
                if sub.outbound.load(Relaxed) + len > self.cfg.max_outbound_bytes.max(len) {
                    break; // a slow reader: its messages wait here, counted
                }
                match sub.out.try_send((front.msg.clone(), true)) {
                    Ok(()) => {
                        sub.outbound.fetch_add(len, Relaxed);
                        self.outbound_bytes.fetch_add(len, Relaxed);
                        self.counters.relayed_messages.fetch_add(1, Relaxed);
                        self.counters.relayed_bytes.fetch_add(len as u64, Relaxed);
                    }
                    Err(_) => break,
                }
            }
            let q = b.queue.pop_front().expect("front exists");
            self.unqueue(by, &q);
        }
    }

    fn unqueue(&self, (by_conn, by_ip): &mut (HashMap<u64, Usage>, HashMap<IpAddr, Usage>), q: &Queued) {
        self.queued_bytes.fetch_sub(q.msg.len(), Relaxed);
        if let Some(u) = by_conn.get_mut(&q.from.0) {
            u.queued_bytes = u.queued_bytes.saturating_sub(q.msg.len());
        }
        if let Some(u) = by_ip.get_mut(&q.from.1) {
            u.queued_bytes = u.queued_bytes.saturating_sub(q.msg.len());
        }
    }

    /// The mailbox, created on first use within the mailbox limits (global, the client's share;
    /// evicting the biggest holder's idle mailboxes when the table is full).
    fn mailbox<'a>(
        &self,
        state: &'a mut State,
        mailbox: MailboxId,
        client: &Client,
        now: Instant,
    ) -> Result<&'a mut MailboxState, Refusal> {
        if !state.boxes.contains_key(&mailbox) {
            let max = self.cfg.max_mailboxes;
            let conn = state.by_conn.get(&client.id).map_or(0, |u| u.mailboxes);
            let held = state.by_ip.get(&client.ip).map_or(0, |u| u.mailboxes);
            if conn >= self.cfg.max_mailboxes_per_connection || held >= self.ip_share(max) {
                return Err(Refusal::TooManyMailboxes);
            }
            while !self.fits(state.boxes.len(), 1, held, max) {
                let biggest = state.biggest_idle_owner(|u| u.mailboxes, held);
                if !biggest.is_some_and(|owner| self.evict_oldest(state, owner, &mailbox)) {
                    return Err(Refusal::TooManyMailboxes);
                }
            }
            state.charge((client.id, client.ip), |u| u.mailboxes += 1);
            let owner = (client.id, client.ip);
            state
                .boxes
                .insert(mailbox, MailboxState { queue: VecDeque::new(), subscriber: None, last_used: now, owner });
            state.set_idle(mailbox, client.ip, now);
        }
        let b = state.boxes.get(&mailbox).expect("made above");
        if b.subscriber.is_none() {
            let (owner, since) = (b.owner.1, b.last_used);
            state.clear_idle(&mailbox, owner, since);
            state.set_idle(mailbox, owner, now);
        }
        let b = state.boxes.get_mut(&mailbox).expect("made above");
        b.last_used = now;
        Ok(b)
    }

    /// Route `msg`, a DELIVER envelope for `mailbox`, from `client`.
    fn send(&self, client: &Client, mailbox: MailboxId, msg: Bytes) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut guard = self.state.lock().expect("not poisoned");
        let state = &mut *guard;
        self.mailbox(state, mailbox, client, now)?;
        let mut by = (std::mem::take(&mut state.by_conn), std::mem::take(&mut state.by_ip));
        let b = state.boxes.get_mut(&mailbox).expect("just made");
        if b.queue.len() >= self.cfg.mailbox_capacity {
            self.drain(&mut by, b, now);
        }
        let full = b.queue.len() >= self.cfg.mailbox_capacity;
        (state.by_conn, state.by_ip) = by;
        if full {
            return Err(Refusal::QueueFull);
        }
        let len = msg.len();
        self.room_for_bytes(state, client, &mailbox, len)?;
        self.queued_bytes.fetch_add(len, Relaxed);
        state.charge((client.id, client.ip), |u| u.queued_bytes += len);
        let mut by = (std::mem::take(&mut state.by_conn), std::mem::take(&mut state.by_ip));
        let b = state.boxes.get_mut(&mailbox).expect("kept by the eviction");
        b.queue.push_back(Queued { at: now, msg, from: (client.id, client.ip) });
        self.drain(&mut by, b, now);
        (state.by_conn, state.by_ip) = by;
        Ok(())
    }

    fn subscribe(&self, client: &Client, mailbox: MailboxId) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut guard = self.state.lock().expect("not poisoned");
        let state = &mut *guard;
        let b = self.mailbox(state, mailbox, client, now)?;
        let (owner, since) = (b.owner.1, b.last_used);
        state.clear_idle(&mailbox, owner, since);
        let mut by = (std::mem::take(&mut state.by_conn), std::mem::take(&mut state.by_ip));
        let b = state.boxes.get_mut(&mailbox).expect("just made");
        b.subscriber = Some(client.clone());
        self.drain(&mut by, b, now);
        (state.by_conn, state.by_ip) = by;
        Ok(())
    }

    fn unsubscribe(&self, conn: u64, mailbox: &MailboxId) {
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(b) = state.boxes.get_mut(mailbox)
            && b.subscriber.as_ref().is_some_and(|c| c.id == conn)
        {
            let now = Instant::now();
            b.subscriber = None;
            b.last_used = now;
            let owner = b.owner.1;
            state.set_idle(*mailbox, owner, now);
        }
    }

    /// The connection's writer made room: let its mailboxes move on.
    fn refill(&self, subs: &HashSet<MailboxId>) {
        let now = Instant::now();
        let mut guard = self.state.lock().expect("not poisoned");
        let state = &mut *guard;
        let mut by = (std::mem::take(&mut state.by_conn), std::mem::take(&mut state.by_ip));
        for m in subs {
            if let Some(b) = state.boxes.get_mut(m) {
                self.drain(&mut by, b, now);
            }
        }
        (state.by_conn, state.by_ip) = by;
    }

    /// A nameplate envelope from `client`: what to answer it (the pairing's other side is told
    /// here).
    fn nameplate(&self, client: &Client, envelope: Envelope) -> Option<Envelope> {
        let now = Instant::now();
        let mut table = self.nameplates.lock().expect("not poisoned");
        let answer = match envelope {
            Envelope::Allocate => table.allocate(client.id, client.ip, client.clone(), now).map(|n| {
                self.counters.nameplates_allocated.fetch_add(1, Relaxed);
                Some(Envelope::Allocated(n, self.cfg.nameplates.ttl.as_secs().try_into().unwrap_or(u32::MAX)))
            }),
            Envelope::Claim(n) => table.claim(client.id, client.ip, client.clone(), n, now).map(|holder| {
                self.counters.nameplates_claimed.fetch_add(1, Relaxed);
                let _ = holder.out.try_send((Envelope::Paired.encode(), false));
                Some(Envelope::Paired)
            }),
            Envelope::Peer(payload) => table.to_peer(client.id, payload.len()).and_then(|partner| {
                // A few small messages: not counted as queued bytes, bounded per pairing.
                match partner.out.try_send((Envelope::FromPeer(payload).encode(), false)) {
                    Ok(()) => Ok(None),
                    Err(_) => Err(Refusal::QueueFull),
                }
            }),
            _ => return None,
        };
        answer.unwrap_or_else(|why| {
            self.counters.nameplates_refused.fetch_add(1, Relaxed);
            Some(Envelope::CodeRefused(why as u8))
        })
    }

    /// A connection closed: its nameplate ends, and its partner, if paired, is told.
    fn leave_nameplates(&self, conn: u64) {
        let partner = self.nameplates.lock().expect("not poisoned").leave(conn, Instant::now());
        if let Some(partner) = partner {
            let _ = partner.out.try_send((Envelope::CodeRefused(Refusal::PeerGone as u8).encode(), false));
        }
    }

    /// A connection may be upgraded: under the global cap (each source's share of the
    /// listener's effective cap is kept by the [`Acceptor`], upgraded or not).
    fn admit(&self) -> bool {
        self.counters.connections.load(Relaxed) < self.cfg.max_connections
    }

    fn connect(&self, conn: u64, ip: IpAddr) {
        let mut state = self.state.lock().expect("not poisoned");
        state.by_conn.insert(conn, Usage { connections: 1, ..Usage::default() });
        state.by_ip.entry(ip).or_default().connections += 1;
    }

    /// Forget a connection's share; what it queued or created stays charged to its address
    /// until it leaves, so reconnecting does not reset a client's use.
    fn disconnect(&self, conn: u64, ip: IpAddr) {
        let mut state = self.state.lock().expect("not poisoned");
        state.by_conn.remove(&conn);
        if let Some(u) = state.by_ip.get_mut(&ip) {
            u.connections = u.connections.saturating_sub(1);
        }
    }

    /// Drop expired messages, forget idle, empty mailboxes, and addresses that hold nothing;
    /// end nameplates past their TTL, telling their holders.
    fn sweep(&self) {
        let now = Instant::now();
        let expired = self.nameplates.lock().expect("not poisoned").sweep(now);
        for holder in expired {
            let _ = holder.out.try_send((Envelope::CodeRefused(Refusal::NameplateExpired as u8).encode(), false));
        }
        let mut guard = self.state.lock().expect("not poisoned");
        let state = &mut *guard;
        let mut by = (std::mem::take(&mut state.by_conn), std::mem::take(&mut state.by_ip));
        let mut forgotten = Vec::new();
        state.boxes.retain(|mailbox, b| {
            while b.queue.front().is_some_and(|q| now.duration_since(q.at) > self.cfg.ttl) {
                let q = b.queue.pop_front().expect("front exists");
                self.unqueue(&mut by, &q);
            }
            let keep =
                !(b.queue.is_empty() && b.subscriber.is_none() && now.duration_since(b.last_used) > self.cfg.ttl);
            if !keep {
                for u in [by.0.get_mut(&b.owner.0), by.1.get_mut(&b.owner.1)].into_iter().flatten() {
                    u.mailboxes = u.mailboxes.saturating_sub(1);
                }
                forgotten.push((*mailbox, b.owner.1, b.last_used));
            }
            keep
        });
        for (mailbox, owner, since) in forgotten {
            state.clear_idle(&mailbox, owner, since);
        }
        by.1.retain(|_, u| u.connections > 0 || u.mailboxes > 0 || u.queued_bytes > 0);
        (state.by_conn, state.by_ip) = by;
    }

    fn stats(&self) -> Stats {
        let state = self.state.lock().expect("not poisoned");
        let boxes = &state.boxes;
        let c = &self.counters;
        Stats {
            connections: c.connections.load(Relaxed),
            connections_total: c.connections_total.load(Relaxed),
            mailboxes: boxes.len(),
            queued_messages: boxes.values().map(|b| b.queue.len()).sum(),
            queued_bytes: self.queued_bytes.load(Relaxed),
            outbound_bytes: self.outbound_bytes.load(Relaxed),
            relayed_messages: c.relayed_messages.load(Relaxed),
            relayed_bytes: c.relayed_bytes.load(Relaxed),
            refused: c.refused.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
            oversized: c.oversized.load(Relaxed),
            throttled: c.throttled.load(Relaxed),
            rejected_connections: c.rejected_connections.load(Relaxed),
            tcp_connections: c.tcp_connections.load(Relaxed),
            evicted: c.evicted.load(Relaxed),
            idle_dropped: c.idle_dropped.load(Relaxed),
            nameplates: self.nameplates.lock().expect("not poisoned").open(),
            nameplates_allocated: c.nameplates_allocated.load(Relaxed),
            nameplates_claimed: c.nameplates_claimed.load(Relaxed),
            nameplates_refused: c.nameplates_refused.load(Relaxed),
        }
    }
}

/// A running relay. [`RelayServer::shutdown`] closes every connection gracefully.
pub struct RelayServer {
    local_addr: SocketAddr,
    relay: Arc<Relay>,
    shutdown: watch::Sender<bool>,
    accept: AbortOnDrop,
    /// The STUN responder on UDP at the same port ([`super::stun`]), if that port was free.
    stun: Option<AbortOnDrop>,
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
            state: Mutex::new(State::default()),
            queued_bytes: AtomicUsize::new(0),
            outbound_bytes: AtomicUsize::new(0),
            counters: Counters::default(),
            next_conn: AtomicU64::new(1),
            shutdown: watch_rx,
            nameplates: Mutex::new(Nameplates::new(cfg.nameplates.clone())),
            cfg,
        });
        let accept = AbortOnDrop(tokio::spawn(accept_loop(listener, Arc::clone(&relay))));
        let stun = match tokio::net::UdpSocket::bind(local_addr).await {
            Ok(socket) => Some(AbortOnDrop(tokio::spawn(super::stun::serve(socket)))),
            Err(e) => {
                tracing::warn!(addr = %local_addr, "no STUN responder (UDP port taken?): {e}");
                None
            }
        };
        tracing::info!(addr = %local_addr, stun = stun.is_some(), "relay listening");
        Ok(RelayServer { local_addr, relay, shutdown, accept, stun })
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
    pub async fn shutdown(mut self) {
        self.accept.0.abort();
        self.stun = None;
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.relay.counters.connections.load(Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(stats = ?self.relay.stats(), "relay stopped");
    }
}

/// The accept loop and the STUN responder stop with their fields; the connections are told.
impl Drop for RelayServer {
    fn drop(&mut self) {
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
    let mut acceptor = Acceptor::new(listener, relay.cfg.max_connections, 4);
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
    _permit: accept::Slot,
    relay: Arc<Relay>,
}

impl ConnSlot {
    fn new(permit: accept::Slot, relay: Arc<Relay>) -> Permit {
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
        _ => match crate::web::answer(&req) {
            Some(page) => page.map(BodyExt::boxed),
            None => plain(StatusCode::NOT_FOUND, "not found"),
        },
    }
}

fn upgrade(mut req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr, permit: Permit) -> Response<Body> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes()));
    let is_ws = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(accept) = key.filter(|_| is_ws) else {
        return plain(StatusCode::BAD_REQUEST, "a WebSocket upgrade is expected here");
    };
    if !relay.admit() {
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
    let source = accept::source(peer.ip());
    relay.counters.connections.fetch_add(1, Relaxed);
    relay.counters.connections_total.fetch_add(1, Relaxed);
    relay.connect(conn, source);
    tracing::debug!(conn, %peer, "client connected");
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(Bytes, bool)>(relay.cfg.outbound_depth);
    let client = Client { id: conn, ip: source, out: out_tx, outbound: Arc::default() };
    let subs = Arc::new(Mutex::new(HashSet::<MailboxId>::new()));

    let mut tasks = JoinSet::new();
    // Writer: sends what is routed here; each send makes room, so the mailboxes move on. A
    // reader that takes nothing for `write_timeout` is dropped. Pings, a third of the idle
    // timeout apart, make every live client answer something.
    let (writer_relay, writer_subs, mut shutdown) = (Arc::clone(&relay), Arc::clone(&subs), relay.shutdown.clone());
    let (outbound, writer_outbound) = (Arc::clone(&client.outbound), Arc::clone(&client.outbound));
    tasks.spawn(async move {
        let outbound = writer_outbound;
        let timeout = writer_relay.cfg.write_timeout;
        let every = writer_relay.cfg.idle_timeout / 3;
        let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = pings.tick() => {
                    if !matches!(tokio::time::timeout(timeout, sink.send(Message::Ping(Bytes::new()))).await, Ok(Ok(()))) {
                        break;
                    }
                }
                msg = out_rx.recv() => {
                    let Some((msg, counted)) = msg else { break };
                    let len = if counted { msg.len() } else { 0 };
                    let sent = tokio::time::timeout(timeout, sink.send(Message::Binary(msg))).await;
                    outbound.fetch_sub(len, Relaxed);
                    writer_relay.outbound_bytes.fetch_sub(len, Relaxed);
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break,
                        Err(_) => {
                            tracing::info!(conn, "disconnecting a client that does not read");
                            break;
                        }
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
    let (reader_relay, reader_subs, reader_client) = (Arc::clone(&relay), Arc::clone(&subs), client.clone());
    tasks.spawn(async move {
        let cfg = &reader_relay.cfg;
        let mut rate = Rate { bytes: cfg.rate_bytes as f64, messages: cfg.rate_messages as f64, at: Instant::now() };
        let mut malformed = 0u32;
        loop {
            let Ok(next) = tokio::time::timeout(cfg.idle_timeout, stream.next()).await else {
                reader_relay.counters.idle_dropped.fetch_add(1, Relaxed);
                tracing::info!(conn, %peer, "disconnecting a client that sent nothing, not even a pong");
                break;
            };
            let Some(msg) = next else { break };
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
                Ok((mailbox, deliver)) => {
                    reader_relay.send(&reader_client, mailbox, deliver).err().map(|r| (mailbox, r))
                }
                Err(other) => match Envelope::decode(other) {
                    Ok(Envelope::SubscribeUnproven(mailbox)) => Some((mailbox, Refusal::Unproven)),
                    Ok(Envelope::Subscribe(key)) => {
                        let mailbox = key.id();
                        let mut subs = reader_subs.lock().expect("not poisoned");
                        if subs.len() >= cfg.max_subscriptions && !subs.contains(&mailbox) {
                            Some((mailbox, Refusal::TooManyMailboxes))
                        } else {
                            subs.insert(mailbox);
                            drop(subs);
                            reader_relay.subscribe(&reader_client, mailbox).err().map(|r| (mailbox, r))
                        }
                    }
                    Ok(Envelope::Unsubscribe(mailbox)) => {
                        reader_subs.lock().expect("not poisoned").remove(&mailbox);
                        reader_relay.unsubscribe(conn, &mailbox);
                        None
                    }
                    Ok(envelope @ (Envelope::Allocate | Envelope::Claim(_) | Envelope::Peer(_))) => {
                        if let Some(answer) = reader_relay.nameplate(&reader_client, envelope) {
                            let _ = reader_client.out.try_send((answer.encode(), false));
                        }
                        None
                    }
                    // Garbage, or what only the relay may send.
                    Ok(
                        Envelope::Send(..)
                        | Envelope::Deliver(..)
                        | Envelope::Refused(..)
                        | Envelope::Allocated(..)
                        | Envelope::Paired
                        | Envelope::FromPeer(_)
                        | Envelope::CodeRefused(_),
                    )
                    | Err(_) => {
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
                let _ = reader_client.out.try_send((Envelope::Refused(mailbox, why as u8).encode(), false));
            }
        }
    });
    // The mailboxes hold clones of the sender while subscribed; unsubscribing below drops them.
    drop(client);
    // Either half ending ends the connection.
    tasks.join_next().await;
    tasks.shutdown().await;
    for mailbox in subs.lock().expect("not poisoned").iter() {
        relay.unsubscribe(conn, mailbox);
    }
    relay.leave_nameplates(conn);
    // Nothing routes here any more: what is still buffered will never be written.
    relay.outbound_bytes.fetch_sub(outbound.swap(0, Relaxed), Relaxed);
    relay.disconnect(conn, source);
    relay.counters.connections.fetch_sub(1, Relaxed);
    tracing::debug!(conn, %peer, "client disconnected");
}
