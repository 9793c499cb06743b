//! The core under a virtual clock: a receiver and a sender joined by a simulated link with
//! latency, loss, duplication and reordering, stepped from one wake-up to the next (after
//! quinn-proto's test `Pair`). Nothing here sleeps; a minute of protocol time takes microseconds.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Msg {
    Request(u64, u64),
    Credit(u64),
    Chunk(u64),
    Corrupt,
    Trailer,
    StreamEnd,
}

#[derive(Clone, Copy)]
struct Link {
    latency: Duration,
    jitter: Duration,
    loss: f64,
    duplicate: f64,
    corrupt: f64,
    /// Stream semantics (HTTP): the sender signals the end of each response.
    stream_ends: bool,
}

impl Link {
    fn clean() -> Self {
        Link {
            latency: Duration::from_millis(5),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            stream_ends: true,
        }
    }
}

struct Pair {
    now: Instant,
    start: Instant,
    rng: StdRng,
    link: Link,
    /// In-flight messages: (arrival, sequence, to_receiver, msg).
    wire: BinaryHeap<Reverse<(Instant, u64, bool, Msg)>>,
    seq: u64,
    receiver: ReceiveCore,
    sender: SendCore,
    sender_chunks: u64,
    /// The sender transmits one frame per tick while it has any queued.
    frame_time: Duration,
    sender_busy_until: Instant,
    /// Sender dies (stops answering) at this time.
    sender_dies_at: Option<Instant>,
    writes: Vec<u64>,
    requests: Vec<Request>,
    credits: usize,
    synced: u64,
    outcome: Option<Output>,
}

impl Pair {
    fn new(seed: u64, chunks: u64, durable: u64, link: Link, cfg: ReceiveConfig) -> Self {
        let start = Instant::now();
        Pair {
            now: start,
            start,
            rng: StdRng::seed_from_u64(seed),
            link,
            wire: BinaryHeap::new(),
            seq: 0,
            receiver: ReceiveCore::new(start, chunks, durable, cfg),
            sender_chunks: chunks,
            sender: SendCore::new(chunks),
            frame_time: Duration::from_micros(500),
            sender_busy_until: start,
            sender_dies_at: None,
            writes: Vec::new(),
            requests: Vec::new(),
            credits: 0,
            synced: durable,
            outcome: None,
        }
    }

    fn send(&mut self, at: Instant, to_receiver: bool, msg: Msg) {
        let reliable = matches!(msg, Msg::StreamEnd);
        if !reliable && self.rng.random_bool(self.link.loss) {
            return;
        }
        let copies = if !reliable && self.rng.random_bool(self.link.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = self.link.jitter.mul_f64(self.rng.random::<f64>());
            let msg = if matches!(msg, Msg::Chunk(_)) && self.rng.random_bool(self.link.corrupt) {
                Msg::Corrupt
            } else {
                msg
            };
            self.seq += 1;
            self.wire.push(Reverse((at + self.link.latency + jitter, self.seq, to_receiver, msg)));
        }
    }

    fn sender_alive(&self, at: Instant) -> bool {
        self.sender_dies_at.is_none_or(|t| at < t)
    }

    /// Drain receiver outputs, acting as its driver.
    fn drain(&mut self) {
        while let Some(out) = self.receiver.poll_output() {
            match out {
                Output::Request(r) => {
                    self.requests.push(r);
                    let now = self.now;
                    self.send(now, false, Msg::Request(r.from, r.to));
                }
                Output::Sync { upto } => {
                    // Sync completes at once; the journal then records `upto`.
                    assert!(upto >= self.synced, "durable point went backwards");
                    self.synced = upto;
                    self.receiver.handle_synced(self.now, upto);
                }
                Output::Credit { to } => {
                    let now = self.now;
                    self.credits += 1;
                    self.send(now, false, Msg::Credit(to));
                }
                done @ (Output::Verify | Output::Failed(_) | Output::Tampered { .. }) => self.outcome = Some(done),
            }
        }
    }

    fn sender_handle(&mut self, from: u64, to: u64) {
        self.sender.handle_request(Request { from, to });
        self.sender_transmit();
    }

    fn sender_credit(&mut self, to: u64) {
        // A restarted sender refuses a credit before its first request, as a real one does.
        let _ = self.sender.handle_credit(to);
        self.sender_transmit();
    }

    fn sender_transmit(&mut self) {
        if !self.sender_alive(self.now) {
            // A dead sender refuses the connection: the stream ends at once.
            let now = self.now;
            self.send(now, true, Msg::StreamEnd);
            return;
        }
        let mut t = self.sender_busy_until.max(self.now);
        while let Some(tx) = self.sender.poll_transmit() {
            t += self.frame_time;
            if !self.sender_alive(t) {
                // Dying mid-stream resets the connection.
                self.send(t, true, Msg::StreamEnd);
                return;
            }
            let msg = match tx {
                Transmit::Chunk { index, .. } => Msg::Chunk(index),
                Transmit::Trailer => Msg::Trailer,
            };
            self.send(t, true, msg);
        }
        self.sender_busy_until = t;
        if self.link.stream_ends {
            self.send(t, true, Msg::StreamEnd);
        }
    }

    /// Run until the receiver finishes or `limit` of virtual time passes.
    fn run(&mut self, limit: Duration) -> Output {
        self.drain();
        while self.outcome.is_none() {
            self.step(limit);
        }
        self.outcome.clone().unwrap()
    }

    /// Deliver the next message or fire the next timer, then act on the receiver's outputs.
    fn step(&mut self, limit: Duration) {
        let wire_next = self.wire.peek().map(|Reverse((t, ..))| *t);
        let timer = self.receiver.poll_timeout();
        let next = [wire_next, timer].into_iter().flatten().min().expect("something to wait for");
        assert!(next - self.start <= limit, "no outcome after {limit:?}");
        self.now = self.now.max(next);
        if wire_next == Some(next) {
            let Reverse((_, _, to_receiver, msg)) = self.wire.pop().unwrap();
            match (to_receiver, msg) {
                (true, Msg::Chunk(i)) => {
                    if self.receiver.handle_frame(self.now, i).unwrap() == Verdict::Write {
                        self.writes.push(i);
                    }
                }
                (true, Msg::Corrupt) => self.receiver.handle_corrupt(self.now),
                (true, Msg::Trailer) => self.receiver.handle_trailer(self.now),
                (true, Msg::StreamEnd) => self.receiver.handle_stream_end(self.now),
                (false, Msg::Request(from, to)) => self.sender_handle(from, to),
                (false, Msg::Credit(to)) => self.sender_credit(to),
                other => unreachable!("{other:?}"),
            }
        } else {
            self.receiver.handle_timeout(self.now);
        }
        self.drain();
    }

    /// The path in use vanishes with whatever it had in flight; `link` replaces it, with a new
    /// sender session behind it and the receiver told to use `cfg`'s window and timeout.
    fn switch_path(&mut self, link: Link, cfg: &ReceiveConfig) {
        self.wire.clear();
        self.link = link;
        self.sender = SendCore::new(self.sender_chunks);
        self.sender_busy_until = self.now;
        self.receiver.handle_path_change(self.now, cfg.window, cfg.request_timeout);
        self.drain();
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

fn windowed() -> ReceiveConfig {
    ReceiveConfig { window: 16, request_timeout: Duration::from_millis(50), ..ReceiveConfig::default() }
}

#[test]
fn clean_stream_takes_one_request_and_checkpoints_as_it_goes() {
    let mut pair = Pair::new(1, 200, 0, Link::clean(), ReceiveConfig::default());
    assert_eq!(pair.run(Duration::from_secs(5)), Output::Verify);
    assert_eq!(pair.requests, vec![Request { from: 0, to: 200 }]);
    assert_eq!(pair.writes, (0..200).collect::<Vec<_>>());
    assert_eq!(pair.receiver.durable(), 200);
    // 200 frames at 0.5 ms plus one round trip: no idle waiting anywhere.
    assert!(pair.elapsed() <= Duration::from_millis(100 + 10 + 1), "{:?}", pair.elapsed());
}

#[test]
fn lossy_reordering_duplicating_link_still_delivers_every_chunk_once() {
    for seed in 0..20 {
        let link = Link {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(15),
            loss: 0.1,
            duplicate: 0.1,
            corrupt: 0.02,
            stream_ends: false,
        };
        let mut pair = Pair::new(seed, 300, 0, link, windowed());
        assert_eq!(pair.run(Duration::from_secs(60)), Output::Verify, "seed {seed}");
        let mut writes = pair.writes.clone();
        writes.sort();
        assert_eq!(writes, (0..300).collect::<Vec<_>>(), "seed {seed}: each chunk written exactly once");
        assert!(pair.requests.len() > 300 / 16, "seed {seed}: losses must have caused re-requests");
    }
}

#[test]
fn corrupt_frames_are_asked_for_again() {
    let link = Link { corrupt: 0.05, ..Link::clean() };
    let mut pair = Pair::new(7, 400, 0, link, ReceiveConfig::default());
    assert_eq!(pair.run(Duration::from_secs(10)), Output::Verify);
    assert!(pair.requests.len() > 1);
    assert!(pair.requests[1..].iter().all(|r| r.from > 0), "re-requests start at the first missing chunk");
}

#[test]
fn a_sender_that_vanishes_is_given_up_on_after_the_idle_timeout() {
    let cfg = ReceiveConfig { idle_timeout: Duration::from_secs(30), ..ReceiveConfig::default() };
    let mut pair = Pair::new(3, 1000, 0, Link::clean(), cfg);
    let dies = pair.start + Duration::from_millis(200);
    pair.sender_dies_at = Some(dies);
    let outcome = pair.run(Duration::from_secs(120));
    assert!(matches!(outcome, Output::Failed(GiveUp::PeerVanished { .. })), "{outcome:?}");
    // Gave up exactly one idle timeout after the last chunk, which came just before the death.
    let last_chunk_at = dies + Duration::from_millis(5);
    assert!(pair.now >= last_chunk_at + Duration::from_secs(29) && pair.now <= last_chunk_at + Duration::from_secs(30));
    // It kept retrying with backoff meanwhile, and the durable point only covers received data.
    assert!(pair.requests.len() > 5);
    assert!(pair.receiver.durable() <= pair.receiver.first_missing());
    assert!(pair.receiver.durable() >= 300, "checkpoints happened while data flowed");
}

#[test]
fn a_resumed_receiver_asks_from_its_durable_point() {
    let mut pair = Pair::new(4, 100, 60, Link::clean(), ReceiveConfig::default());
    assert_eq!(pair.run(Duration::from_secs(5)), Output::Verify);
    assert_eq!(pair.requests[0], Request { from: 60, to: 100 });
    assert_eq!(pair.writes, (60..100).collect::<Vec<_>>());
}

#[test]
fn a_missing_trailer_alone_is_asked_for() {
    let mut pair = Pair::new(5, 10, 10, Link::clean(), ReceiveConfig::default());
    assert_eq!(pair.run(Duration::from_secs(5)), Output::Verify);
    assert_eq!(pair.requests, vec![Request { from: 10, to: 10 }]);
}

#[test]
fn an_endless_stream_of_forgeries_is_abandoned() {
    let link = Link { corrupt: 1.0, ..Link::clean() };
    let mut pair = Pair::new(6, 50, 0, link, ReceiveConfig::default());
    assert!(matches!(pair.run(Duration::from_secs(5)), Output::Tampered { .. }));
    assert!(pair.writes.is_empty());
}

#[test]
fn sender_core_serves_ranges_and_marks_the_last_chunk() {
    let mut s = SendCore::new(3);
    s.handle_request(Request { from: 1, to: 3 });
    assert_eq!(s.poll_transmit(), Some(Transmit::Chunk { index: 1, last: false }));
    assert_eq!(s.poll_transmit(), Some(Transmit::Chunk { index: 2, last: true }));
    assert_eq!(s.poll_transmit(), Some(Transmit::Trailer));
    assert_eq!(s.poll_transmit(), None);
    s.handle_request(Request { from: 0, to: 1 });
    assert_eq!(s.poll_transmit(), Some(Transmit::Chunk { index: 0, last: false }));
    assert_eq!(s.poll_transmit(), None, "no trailer for a range short of the end");
}

#[test]
fn a_finite_window_slides_with_credit_instead_of_stopping_and_waiting() {
    let link = Link { latency: Duration::from_millis(20), stream_ends: false, ..Link::clean() };
    // The window (128 frames, 64 ms of sending) exceeds the bandwidth-delay product (40 ms).
    let cfg = ReceiveConfig { window: 128, request_timeout: Duration::from_secs(2), ..ReceiveConfig::default() };
    let mut pair = Pair::new(8, 800, 0, link, cfg);
    assert_eq!(pair.run(Duration::from_secs(30)), Output::Verify);
    assert_eq!(pair.requests.len(), 1, "no loss: one request, then only credit");
    assert!(pair.credits >= 800 / 128, "the window slid {} times", pair.credits);
    // 800 frames at 0.5 ms is 400 ms plus one round trip; stop-and-wait on 128-frame windows
    // would pay a round trip per window (about 650 ms).
    assert!(pair.elapsed() < Duration::from_millis(500), "{:?}", pair.elapsed());
    assert_eq!(pair.writes, (0..800).collect::<Vec<_>>());
}

#[test]
fn credit_and_loss_together_still_deliver_everything() {
    for seed in 0..10 {
        let link = Link {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            loss: 0.05,
            duplicate: 0.05,
            corrupt: 0.0,
            stream_ends: false,
        };
        let cfg = ReceiveConfig { window: 32, request_timeout: Duration::from_millis(200), ..ReceiveConfig::default() };
        let mut pair = Pair::new(seed, 500, 0, link, cfg);
        assert_eq!(pair.run(Duration::from_secs(120)), Output::Verify, "seed {seed}");
        let mut writes = pair.writes.clone();
        writes.sort();
        assert_eq!(writes, (0..500).collect::<Vec<_>>(), "seed {seed}");
    }
}

#[test]
fn a_change_of_path_mid_transfer_asks_the_new_path_for_the_first_missing_chunk() {
    let mut pair = Pair::new(11, 400, 0, Link::clean(), ReceiveConfig::default());
    pair.drain();
    while pair.writes.len() < 150 {
        pair.step(Duration::from_secs(5));
    }
    // Direct breaks: what was in flight is lost, and until another path answers nothing is asked.
    pair.receiver.handle_path_lost(pair.now);
    pair.wire.clear();
    pair.drain();
    let asked = pair.requests.len();
    let at_switch = pair.receiver.first_missing();
    // The relay answers, with a finite window.
    let relay = Link { latency: Duration::from_millis(20), stream_ends: false, ..Link::clean() };
    pair.switch_path(relay, &windowed());
    assert_eq!(pair.requests.len(), asked + 1, "the new path is asked at once");
    assert_eq!(pair.requests[asked], Request { from: at_switch, to: at_switch + 16 });
    assert_eq!(pair.run(Duration::from_secs(30)), Output::Verify);
    let mut writes = pair.writes.clone();
    writes.sort();
    writes.dedup();
    assert_eq!(writes.len(), pair.writes.len(), "no chunk written twice");
    assert_eq!(writes, (0..400).collect::<Vec<_>>());
    assert!(pair.credits > 0, "the relay's window slid");
}

#[test]
fn without_a_path_nothing_is_asked_and_the_idle_timeout_still_runs() {
    let mut pair = Pair::new(12, 10, 0, Link::clean(), ReceiveConfig::default());
    pair.receiver.handle_path_lost(pair.start);
    pair.drain();
    assert!(pair.requests.is_empty());
    let outcome = pair.run(Duration::from_secs(120));
    assert!(matches!(outcome, Output::Failed(GiveUp::PeerVanished { .. })), "{outcome:?}");
    assert!(pair.requests.is_empty());
}

#[test]
fn a_credit_before_any_request_is_refused_and_transmits_nothing() {
    let mut core = SendCore::new(10);
    assert_eq!(core.handle_credit(5), Err(crate::core::CreditWithoutRequest));
    assert_eq!(core.poll_transmit(), None);
    core.handle_request(Request { from: 0, to: 2 });
    assert_eq!(core.handle_credit(3), Ok(()));
    let sent: Vec<_> = std::iter::from_fn(|| core.poll_transmit()).collect();
    assert_eq!(sent.len(), 3);
}

mod receiver;
