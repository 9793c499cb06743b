//! The whole receive machine ([`Receiver`]) under a virtual clock, with two or three paths whose
//! behaviour changes on a schedule: a path goes down, stalls, comes back, lies or refuses, in the
//! middle of a transfer. The harness plays the engine's driver and a sender: it dials what the
//! machine asks for, carries control frames and chunks with each path's latency, gives every
//! connection its own sender session, and drops what a connection carries once the machine
//! leaves it. Nothing sleeps.

use std::{cmp::Reverse, collections::BinaryHeap};

use super::*;
use crate::{error::TransferError, id::TransferId};

/// What a path does from some moment on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaves {
    /// Connects and carries frames.
    Up,
    /// Connection refused: nobody serves the transfer there.
    Refuses,
    /// Resets: a connection in use breaks, a new one fails as unreachable.
    Down,
    /// Connected links deliver nothing more (a black hole); new attempts time out.
    Silent,
    /// Connects, but every chunk it carries fails authentication.
    Lies,
    /// The endpoint does not hold the session key.
    Unauthentic,
    /// The channel itself cannot be reached.
    ChannelDown,
}

struct SimPath {
    kind: PathKind,
    link: Link,
    /// `(from, behaviour)`, sorted by time; `Up` before the first entry.
    schedule: Vec<(Duration, Behaves)>,
}

impl SimPath {
    fn new(kind: PathKind, latency_ms: u64) -> Self {
        let link =
            Link { latency: Duration::from_millis(latency_ms), stream_ends: kind == PathKind::Http, ..Link::clean() };
        SimPath { kind, link, schedule: Vec::new() }
    }

    fn then(mut self, at_ms: u64, behaves: Behaves) -> Self {
        self.schedule.push((Duration::from_millis(at_ms), behaves));
        self
    }

    fn at(&self, since_start: Duration) -> Behaves {
        self.schedule.iter().rev().find(|(from, _)| *from <= since_start).map_or(Behaves::Up, |(_, b)| *b)
    }
}

#[derive(Clone, Debug)]
enum Ev {
    Connected(PathKind, Result<(), TransferError>),
    /// A message on connection `conn` (numbered from 1).
    ToSender(u64, Msg),
    ToReceiver(u64, Msg),
    /// Connection `conn` resets.
    Reset(u64),
}

struct Duo {
    start: Instant,
    now: Instant,
    machine: Receiver,
    paths: Vec<SimPath>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: Vec<Option<Ev>>,
    /// The connection in use: its number, path and sender session.
    active: Option<(u64, PathKind, SendCore)>,
    connections: u64,
    chunks: u64,
    frame_time: Duration,
    sender_busy_until: Instant,
    /// What the machine did, in words: `connect http`, `use relay`, `leave http stalled`.
    log: Vec<String>,
    writes: Vec<(u64, PathKind)>,
    outcome: Option<Result<(), TransferError>>,
}

impl Duo {
    fn new(chunks: u64, prefer: Prefer, paths: Vec<SimPath>) -> Self {
        let start = Instant::now();
        let offered: Vec<PathKind> = paths.iter().map(|p| p.kind).collect();
        let receive = ReceiveConfig { idle_timeout: Duration::from_secs(30), ..ReceiveConfig::default() };
        let id = TransferId([7; 16]);
        let machine =
            Receiver::new(start, id, (chunks, 0), &offered, prefer, (receive, PathConfig::default())).expect("allowed");
        Duo {
            start,
            now: start,
            machine,
            paths,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            active: None,
            connections: 0,
            chunks,
            frame_time: Duration::from_millis(1),
            sender_busy_until: start,
            log: Vec::new(),
            writes: Vec::new(),
            outcome: None,
        }
    }

    fn path(&self, kind: PathKind) -> &SimPath {
        self.paths.iter().find(|p| p.kind == kind).expect("offered")
    }

    fn behaves(&self, kind: PathKind, at: Instant) -> Behaves {
        self.path(kind).at(at - self.start)
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.events.push(Some(ev));
        self.queue.push(Reverse((at, self.events.len() as u64, self.events.len() - 1)));
    }

    /// Carry out the machine's actions, as the engine's driver does.
    fn drain(&mut self) {
        while let Some(action) = self.machine.poll_output() {
            match action {
                Action::Connect(kind) => {
                    self.log.push(format!("connect {kind}"));
                    let rtt = self.path(kind).link.latency * 2;
                    let (after, result) = match self.behaves(kind, self.now) {
                        Behaves::Up | Behaves::Lies => (rtt, Ok(())),
                        Behaves::Refuses => (rtt, Err(TransferError::NotServing("refused".into()))),
                        Behaves::Down => (rtt, Err(TransferError::PeerUnreachable("reset".into()))),
                        Behaves::Silent => {
                            (Duration::from_secs(2), Err(TransferError::PeerUnreachable("timeout".into())))
                        }
                        Behaves::Unauthentic => (rtt, Err(TransferError::Unauthorized)),
                        Behaves::ChannelDown => {
                            (rtt, Err(TransferError::ChannelUnreachable("relay ws://x: refused".into())))
                        }
                    };
                    self.schedule(self.now + after, Ev::Connected(kind, result));
                }
                Action::Use(kind) => self.log.push(format!("use {kind}")),
                Action::Leave(kind, why) => {
                    self.log.push(format!("leave {kind} {}", why.code()));
                    self.active = None;
                }
                Action::Send(control) => {
                    let Some((conn, kind, _)) = self.active.as_ref().map(|(c, k, _)| (*c, *k, ())) else { continue };
                    let msg = match control {
                        Control::Want { from, to } => Msg::Request(from, to),
                        Control::Credit { to } => Msg::Credit(to),
                        other => unreachable!("{other:?}"),
                    };
                    let latency = self.path(kind).link.latency;
                    self.schedule(self.now + latency, Ev::ToSender(conn, msg));
                }
                Action::Sync { upto } => self.machine.handle_synced(self.now, upto),
                Action::Verify => self.outcome = Some(Ok(())),
                Action::Fail(e) => self.outcome = Some(Err(e)),
            }
        }
    }

    fn connected(&mut self, kind: PathKind, result: Result<(), TransferError>) {
        match result {
            Ok(()) => {
                if self.machine.handle_connected(self.now, kind) {
                    self.connections += 1;
                    let conn = self.connections;
                    self.active = Some((conn, kind, SendCore::new(self.chunks)));
                    self.sender_busy_until = self.now;
                    // The connection resets when its path goes down.
                    let since = self.now - self.start;
                    let down = self.path(kind).schedule.iter().find(|(at, b)| *at > since && *b == Behaves::Down);
                    if let Some((at, _)) = down.copied() {
                        self.schedule(self.start + at, Ev::Reset(conn));
                    }
                }
            }
            Err(e) => {
                self.log.push(format!("failed {kind} {}", e.code()));
                self.machine.handle_connect_failed(self.now, kind, e)
            }
        }
    }

    /// The sender of connection `conn` acts on a control frame and transmits.
    fn deliver_to_sender(&mut self, conn: u64, msg: Msg) {
        let Some((active, kind, sender)) = self.active.as_mut() else { return };
        if *active != conn {
            return;
        }
        let kind = *kind;
        match msg {
            Msg::Request(from, to) => sender.handle_request(Request { from, to }),
            Msg::Credit(to) => {
                let _ = sender.handle_credit(to);
            }
            other => unreachable!("{other:?}"),
        }
        let mut frames = Vec::new();
        while let Some(tx) = sender.poll_transmit() {
            frames.push(match tx {
                Transmit::Chunk { index, .. } => Msg::Chunk(index),
                Transmit::Trailer => Msg::Trailer,
            });
        }
        let link = self.path(kind).link;
        let mut t = self.sender_busy_until.max(self.now);
        for frame in frames {
            t += self.frame_time;
            self.schedule(t + link.latency, Ev::ToReceiver(conn, frame));
        }
        if link.stream_ends {
            self.schedule(t + link.latency, Ev::ToReceiver(conn, Msg::StreamEnd));
        }
        self.sender_busy_until = t;
    }

    fn deliver_to_receiver(&mut self, conn: u64, msg: Msg) {
        // The driver dropped a connection it left: what it still carried is lost with it.
        let Some(kind) = self.active.as_ref().filter(|(c, ..)| *c == conn).map(|(_, k, _)| *k) else { return };
        match self.behaves(kind, self.now) {
            Behaves::Silent | Behaves::Down => return,
            Behaves::Lies if matches!(msg, Msg::Chunk(_)) => return self.machine.handle_corrupt(self.now),
            _ => {}
        }
        match msg {
            Msg::Chunk(index) => {
                if self.machine.handle_chunk(self.now, index).expect("in range") == Verdict::Write {
                    self.writes.push((index, kind));
                }
            }
            Msg::Trailer => self.machine.handle_trailer(self.now),
            Msg::StreamEnd => self.machine.handle_stream_end(self.now),
            other => unreachable!("{other:?}"),
        }
    }

    /// Run until the machine verifies or fails, or `limit` of virtual time passes.
    fn run(&mut self, limit: Duration) -> Result<(), TransferError> {
        self.drain();
        while self.outcome.is_none() {
            let queued = self.queue.peek().map(|Reverse((t, ..))| *t);
            let next =
                [queued, self.machine.poll_timeout()].into_iter().flatten().min().expect("something to wait for");
            assert!(next - self.start <= limit, "no outcome after {limit:?}: {:?}", self.log);
            self.now = self.now.max(next);
            if queued == Some(next) {
                let Reverse((_, _, i)) = self.queue.pop().expect("peeked");
                match self.events[i].take().expect("each event runs once") {
                    Ev::Connected(kind, result) => self.connected(kind, result),
                    Ev::ToSender(conn, msg) => self.deliver_to_sender(conn, msg),
                    Ev::ToReceiver(conn, msg) => self.deliver_to_receiver(conn, msg),
                    Ev::Reset(conn) => {
                        if self.active.as_ref().is_some_and(|(c, ..)| *c == conn) {
                            self.machine.handle_lost(self.now, TransferError::PeerUnreachable("reset".into()));
                        }
                    }
                }
            } else {
                self.machine.handle_timeout(self.now);
            }
            self.drain();
        }
        self.outcome.clone().expect("set")
    }

    fn every_chunk_written_once(&self) -> bool {
        let mut written: Vec<u64> = self.writes.iter().map(|(i, _)| *i).collect();
        written.sort();
        written == (0..self.chunks).collect::<Vec<_>>()
    }

    fn carried_by(&self, kind: PathKind) -> usize {
        self.writes.iter().filter(|(_, k)| *k == kind).count()
    }

    fn said(&self, line: &str) -> usize {
        self.log.iter().filter(|l| *l == line).count()
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

const HTTP: PathKind = PathKind::Http;
const RELAY: PathKind = PathKind::Relay;
const WEBRTC: PathKind = PathKind::Webrtc;

#[test]
fn a_direct_path_that_resets_mid_transfer_hands_over_to_the_relay_and_nothing_is_written_twice() {
    let http = SimPath::new(HTTP, 2).then(300, Behaves::Down);
    let mut duo = Duo::new(1000, Prefer::Auto, vec![http, SimPath::new(RELAY, 20)]);
    duo.run(Duration::from_secs(60)).expect("completes");
    assert!(duo.every_chunk_written_once());
    assert_eq!(&duo.log[..2], ["connect http", "use http"], "{:?}", duo.log);
    assert_eq!(duo.said("leave http peer_unreachable"), 1, "{:?}", duo.log);
    assert_eq!(duo.said("use relay"), 1, "{:?}", duo.log);
    assert!(duo.carried_by(HTTP) > 100 && duo.carried_by(RELAY) > 100, "both paths carried part of it");
}

#[test]
fn a_path_that_goes_silent_is_left_after_the_stall_timeout_and_the_next_one_finishes() {
    let http = SimPath::new(HTTP, 2).then(300, Behaves::Silent);
    let mut duo = Duo::new(1000, Prefer::Auto, vec![http, SimPath::new(RELAY, 20)]);
    duo.run(Duration::from_secs(60)).expect("completes");
    assert!(duo.every_chunk_written_once());
    assert_eq!(duo.said("leave http stalled"), 1, "{:?}", duo.log);
    let stall = PathConfig::default().stall_timeout;
    assert!(duo.elapsed() > stall && duo.elapsed() < stall + Duration::from_secs(5), "{:?}", duo.elapsed());
}

#[test]
fn on_the_relay_it_moves_up_to_direct_once_direct_answers_and_direct_carries_the_end() {
    let http = SimPath::new(HTTP, 2).then(0, Behaves::Down).then(3_000, Behaves::Up);
    let mut duo = Duo::new(20_000, Prefer::Auto, vec![http, SimPath::new(RELAY, 20)]);
    duo.run(Duration::from_secs(120)).expect("completes");
    assert!(duo.every_chunk_written_once());
    let uses: Vec<&String> = duo.log.iter().filter(|l| l.starts_with("use ")).collect();
    assert_eq!(uses, ["use relay", "use http"], "{:?}", duo.log);
    assert!(duo.said("connect http") > 2, "direct was probed while on the relay: {:?}", duo.log);
    assert_eq!(duo.writes.last().map(|(_, k)| *k), Some(HTTP));
    assert!(duo.carried_by(RELAY) > 0);
}

#[test]
fn an_endpoint_without_the_key_is_banned_after_one_try() {
    let http = SimPath::new(HTTP, 2).then(0, Behaves::Unauthentic);
    let mut duo = Duo::new(500, Prefer::Auto, vec![http, SimPath::new(RELAY, 20)]);
    duo.run(Duration::from_secs(60)).expect("completes");
    assert!(duo.every_chunk_written_once());
    assert_eq!(duo.said("connect http"), 1, "{:?}", duo.log);
    assert_eq!(duo.carried_by(RELAY), 500);
}

#[test]
fn a_path_that_delivers_forgeries_is_banned_mid_transfer_and_the_rest_comes_another_way() {
    let http = SimPath::new(HTTP, 2).then(200, Behaves::Lies);
    let mut duo = Duo::new(1000, Prefer::Auto, vec![http, SimPath::new(RELAY, 20)]);
    duo.run(Duration::from_secs(60)).expect("completes");
    assert!(duo.every_chunk_written_once());
    assert!(duo.log.iter().any(|l| l.starts_with("leave http integrity_mismatch")), "{:?}", duo.log);
    assert_eq!(duo.said("connect http"), 1, "a lying path is never tried again: {:?}", duo.log);
    assert!(duo.carried_by(RELAY) > 0);
}

#[test]
fn with_webrtc_down_and_direct_refused_the_relay_carries_it_all() {
    let http = SimPath::new(HTTP, 2).then(0, Behaves::Refuses);
    let webrtc = SimPath::new(WEBRTC, 5).then(0, Behaves::Down);
    let mut duo = Duo::new(300, Prefer::Auto, vec![http, webrtc, SimPath::new(RELAY, 20)]);
    duo.run(Duration::from_secs(60)).expect("completes");
    assert!(duo.every_chunk_written_once());
    assert_eq!(duo.carried_by(RELAY), 300);
}

#[test]
fn a_pinned_path_is_the_only_one_tried() {
    let http = SimPath::new(HTTP, 2).then(300, Behaves::Down).then(1_000, Behaves::Up);
    let mut duo = Duo::new(1000, Prefer::Http, vec![http, SimPath::new(RELAY, 20)]);
    duo.run(Duration::from_secs(60)).expect("completes after direct comes back");
    assert!(duo.every_chunk_written_once());
    assert_eq!(duo.said("connect relay"), 0, "{:?}", duo.log);
    assert_eq!(duo.carried_by(HTTP), 1000);
}

#[test]
fn a_pin_the_ticket_cannot_honour_is_refused_before_anything_is_dialled() {
    let id = TransferId([7; 16]);
    let configs = (ReceiveConfig::default(), PathConfig::default());
    let e = Receiver::new(Instant::now(), id, (10, 0), &[HTTP], Prefer::Relay, configs).unwrap_err();
    assert_eq!(e.code(), "path_unavailable");
    assert!(e.to_string().contains("the ticket offers http"), "{e}");
}

#[test]
fn a_relay_that_was_down_is_what_the_run_reports_whatever_failed_after_it() {
    // The relay refuses once, then its attempts time out like the sender's: the weightier
    // error is kept, since a channel that is down is what the user can fix.
    let http = SimPath::new(HTTP, 2).then(0, Behaves::Refuses);
    let relay = SimPath::new(RELAY, 1).then(0, Behaves::ChannelDown).then(100, Behaves::Silent);
    let mut duo = Duo::new(100, Prefer::Auto, vec![http, relay]);
    let e = duo.run(Duration::from_secs(120)).unwrap_err();
    assert_eq!(duo.said("failed relay channel_unreachable"), 1, "{:?}", duo.log);
    let last = duo.log.iter().rev().find(|l| l.starts_with("failed ")).expect("attempts failed");
    assert_ne!(last, "failed relay channel_unreachable", "other failures came after it");
    assert_eq!(e.code(), "channel_unreachable", "{e}");
    assert!(duo.writes.is_empty());
}

#[test]
fn when_every_path_refuses_the_run_ends_as_not_serving_within_seconds() {
    let http = SimPath::new(HTTP, 2).then(0, Behaves::Refuses);
    let relay = SimPath::new(RELAY, 20).then(0, Behaves::Refuses);
    let mut duo = Duo::new(100, Prefer::Auto, vec![http, relay]);
    let e = duo.run(Duration::from_secs(30)).unwrap_err();
    assert_eq!(e.code(), "not_serving", "{e}");
    assert!(duo.elapsed() < Duration::from_secs(10), "{:?}", duo.elapsed());
}
