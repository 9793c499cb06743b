//! The receiver's side of the core: which chunks it has, what to ask for, when data is durable.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::Request;

/// Tuning of the receiver; the path decides the window, the node the rest.
#[derive(Clone, Debug)]
pub struct ReceiveConfig {
    /// Chunks asked for at once. `u64::MAX` for paths with their own flow control (HTTP over TCP
    /// streams the whole rest of the file in one response).
    pub window: u64,
    /// Checkpoint (sync the file, then record it) after this many new chunks...
    pub checkpoint_chunks: u64,
    /// ...or this long after the last checkpoint, whichever comes first.
    pub checkpoint_interval: Duration,
    /// A request that brings nothing new for this long is asked again.
    pub request_timeout: Duration,
    /// No new chunk for this long: the peer is gone, give up (the journal keeps the rest).
    pub idle_timeout: Duration,
    /// Delay before the second retry after a broken stream; doubles up to `retry_max`. The first
    /// retry is immediate.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Frames in a row that fail authentication before the transfer is abandoned as tampered.
    pub max_corrupt_streak: u32,
}

impl Default for ReceiveConfig {
    fn default() -> Self {
        ReceiveConfig {
            window: u64::MAX,
            checkpoint_chunks: 128,
            checkpoint_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            max_corrupt_streak: 16,
        }
    }
}

/// Chunks above `first_missing` whose arrival the receiver tracks; later ones are dropped and
/// asked for again. 8 KiB of bits: far beyond any path's window (a relay's is 64 chunks, HTTP
/// streams in order), and independent of the file's size.
const HAVE_WINDOW: u64 = 1 << 16;

fn bit_word(i: u64) -> usize {
    ((i % HAVE_WINDOW) / 64) as usize
}

fn bit_mask(i: u64) -> u64 {
    1 << (i % 64)
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Ask the sender for these chunks, abandoning any earlier request still streaming.
    Request(Request),
    /// Let the sender go on up to chunk `to` (exclusive) without resending anything: the sliding
    /// window of paths with a finite window (a relay). Never emitted with an unbounded window.
    Credit { to: u64 },
    /// Make every chunk below `upto` durable (sync the file), then call
    /// [`ReceiveCore::handle_synced`] and record `upto` in the journal.
    Sync { upto: u64 },
    /// Every chunk is durable and the trailer arrived: check the whole-file hash and finish.
    Verify,
    /// This many frames in a row failed authentication: the path in use is suspect. The streak
    /// starts over; the path selector decides whether to ban the path.
    Tampered { streak: u32 },
    /// Give up; the journal keeps what is durable for a later resume.
    Failed(GiveUp),
}

/// Why the receiver gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// Nothing new arrived for `idle`.
    PeerVanished { idle: Duration },
    /// Every path delivered streaks of frames that failed authentication.
    Tampered { streak: u32 },
    /// Every path's endpoint failed to authenticate.
    Refused,
    /// No path ever connected and nobody serves the transfer on any of them: every address
    /// refuses connections and no sender answers on the channel.
    NotServing,
    /// The sender answered that it completed the transfer already.
    Completed,
}

/// What to do with a chunk that passed authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New data: write it before acting on the next output.
    Write,
    /// Already have it: drop it.
    Duplicate,
}

/// A chunk index beyond the end of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("chunk {0} is beyond the end of the file")]
pub struct OutOfRange(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Receiving,
    Verifying,
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Outstanding {
    request: Request,
    deadline: Instant,
}

/// The receiver's protocol state for one transfer.
///
/// - Getters: [`first_missing`](Self::first_missing), [`durable`](Self::durable),
///   [`received`](Self::received), [`is_done`](Self::is_done).
/// - Inputs: [`handle_frame`](Self::handle_frame), [`handle_trailer`](Self::handle_trailer),
///   [`handle_corrupt`](Self::handle_corrupt), [`handle_stream_end`](Self::handle_stream_end),
///   [`handle_synced`](Self::handle_synced), [`handle_timeout`](Self::handle_timeout).
/// - Outputs: drain [`poll_output`](Self::poll_output) after every input, then wait until
///   [`poll_timeout`](Self::poll_timeout) and call `handle_timeout`.
#[derive(Debug)]
pub struct ReceiveCore {
    cfg: ReceiveConfig,
    chunk_count: u64,
    /// Which chunks at or above `first_missing` arrived: a ring of [`HAVE_WINDOW`] bits, so
    /// memory is O(window), not O(file). See [`has`](Self::has).
    have: Box<[u64]>,
    /// Where the ring's bits were last brought up to date (`have_base <= first_missing`).
    have_base: u64,
    received: u64,
    first_missing: u64,
    durable: u64,
    sync_in_flight: bool,
    trailer: bool,
    outstanding: Option<Outstanding>,
    retry_at: Option<Instant>,
    retries: u32,
    corrupt_streak: u32,
    /// A path is there to ask; without one the core waits (and its idle timer runs).
    has_path: bool,
    last_progress: Instant,
    last_checkpoint: Instant,
    phase: Phase,
    outputs: VecDeque<Output>,
}

impl ReceiveCore {
    /// A receiver for `chunk_count` chunks of which the first `durable` are already on disk.
    pub fn new(now: Instant, chunk_count: u64, durable: u64, cfg: ReceiveConfig) -> Self {
        let durable = durable.min(chunk_count);
        let mut core = ReceiveCore {
            cfg,
            chunk_count,
            have: vec![0; (HAVE_WINDOW / 64) as usize].into_boxed_slice(),
            have_base: durable,
            received: durable,
            first_missing: durable,
            durable,
            sync_in_flight: false,
            trailer: false,
            outstanding: None,
            retry_at: None,
            retries: 0,
            corrupt_streak: 0,
            has_path: true,
            last_progress: now,
            last_checkpoint: now,
            phase: Phase::Receiving,
            outputs: VecDeque::new(),
        };
        core.step(now);
        core
    }

    pub fn first_missing(&self) -> u64 {
        self.first_missing
    }

    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Chunks received so far (durable or not).
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn is_done(&self) -> bool {
        self.phase != Phase::Receiving
    }

    /// Is anything still to come from the sender (a chunk or the trailer)?
    pub fn wants_data(&self) -> bool {
        self.phase == Phase::Receiving && (self.first_missing < self.chunk_count || !self.trailer)
    }

    /// Whether chunk `i` needs nothing more: it arrived, or it lies beyond the window, where it
    /// is dropped now and asked for again once the window reaches it. Requests are ranges from
    /// `first_missing`, so only a hostile or confused sender sends that far ahead.
    ///
    /// Chunk `i` owns bit `i % HAVE_WINDOW`. Bits of chunks in `[have_base, first_missing)` are
    /// stale (they still say "arrived" for chunks the ring now maps to `i + HAVE_WINDOW`) until
    /// the next [`set`](Self::set) clears them, so a chunk at or past `have_base + HAVE_WINDOW`
    /// is known not to have arrived.
    fn has(&self, i: u64) -> bool {
        if i < self.first_missing || i >= self.first_missing.saturating_add(HAVE_WINDOW) {
            return true;
        }
        i < self.have_base + HAVE_WINDOW && self.have[bit_word(i)] & bit_mask(i) != 0
    }

    /// Record that chunk `i` (inside the window) arrived.
    fn set(&mut self, i: u64) {
        while self.have_base < self.first_missing {
            let b = self.have_base;
            self.have[bit_word(b)] &= !bit_mask(b);
            self.have_base += 1;
        }
        if i >= self.first_missing && i < self.first_missing.saturating_add(HAVE_WINDOW) {
            self.have[bit_word(i)] |= bit_mask(i);
        }
    }

    /// An authenticated chunk arrived. On [`Verdict::Write`] the driver writes it before acting on
    /// the next output (a `Sync` may cover it).
    pub fn handle_frame(&mut self, now: Instant, index: u64) -> Result<Verdict, OutOfRange> {
        if index >= self.chunk_count {
            return Err(OutOfRange(index));
        }
        if self.has(index) || self.phase != Phase::Receiving {
            return Ok(Verdict::Duplicate);
        }
        self.set(index);
        self.received += 1;
        while self.first_missing < self.chunk_count && self.has(self.first_missing) {
            self.first_missing += 1;
        }
        self.last_progress = now;
        self.retries = 0;
        self.corrupt_streak = 0;
        if let Some(o) = &mut self.outstanding {
            o.deadline = now + self.cfg.request_timeout;
        }
        self.step(now);
        Ok(Verdict::Write)
    }

    /// The authenticated trailer (or a manifest already carrying the hash) arrived.
    pub fn handle_trailer(&mut self, now: Instant) {
        self.trailer = true;
        self.step(now);
    }

    /// A frame failed authentication or framing; it is dropped and will be asked for again.
    pub fn handle_corrupt(&mut self, now: Instant) {
        self.corrupt_streak += 1;
        if self.corrupt_streak >= self.cfg.max_corrupt_streak && self.phase == Phase::Receiving {
            self.outputs.push_back(Output::Tampered { streak: std::mem::take(&mut self.corrupt_streak) });
        }
        self.step(now);
    }

    /// The path in use is gone: forget what was asked of it and wait for another.
    pub fn handle_path_lost(&mut self, now: Instant) {
        self.has_path = false;
        self.outstanding = None;
        self.retry_at = None;
        self.outputs.retain(|o| !matches!(o, Output::Request(_) | Output::Credit { .. }));
        self.step(now);
    }

    /// A new path carries the transfer from now on, with its own window and request timeout:
    /// ask it at once for the first chunk still missing.
    pub fn handle_path_change(&mut self, now: Instant, window: u64, request_timeout: Duration) {
        self.handle_path_lost(now);
        self.cfg.window = window;
        self.cfg.request_timeout = request_timeout;
        self.has_path = true;
        self.retries = 0;
        self.corrupt_streak = 0;
        self.step(now);
    }

    /// The stream serving the current request ended or broke, or could not be opened.
    pub fn handle_stream_end(&mut self, now: Instant) {
        self.step(now); // a stream that delivered everything has already been retired here
        if self.outstanding.take().is_some() {
            let backoff = match self.retries {
                0 => Duration::ZERO,
                n => self.cfg.retry_min.saturating_mul(1 << (n - 1).min(16)).min(self.cfg.retry_max),
            };
            self.retries += 1;
            self.retry_at = Some(now + backoff);
        }
        self.step(now);
    }

    /// The chunks below `upto` are on stable storage.
    pub fn handle_synced(&mut self, now: Instant, upto: u64) {
        self.durable = self.durable.max(upto.min(self.first_missing));
        self.sync_in_flight = false;
        self.last_checkpoint = now;
        self.step(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.step(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the driver must call [`handle_timeout`](Self::handle_timeout) at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Receiving {
            return None;
        }
        let mut next = self.last_progress + self.cfg.idle_timeout;
        let mut consider = |t: Instant| next = next.min(t);
        if let Some(o) = &self.outstanding {
            consider(o.deadline);
        }
        if let Some(t) = self.retry_at {
            consider(t);
        }
        if self.first_missing > self.durable && !self.sync_in_flight {
            consider(self.last_checkpoint + self.cfg.checkpoint_interval);
        }
        Some(next)
    }

    fn fail(&mut self, why: GiveUp) {
        self.phase = Phase::Failed;
        self.outstanding = None;
        self.outputs.push_back(Output::Failed(why));
    }

    fn step(&mut self, now: Instant) {
        if self.phase != Phase::Receiving {
            return;
        }
        let all_received = self.first_missing == self.chunk_count;

        if !self.sync_in_flight && self.first_missing > self.durable {
            let pending = self.first_missing - self.durable;
            if all_received
                || pending >= self.cfg.checkpoint_chunks
                || now >= self.last_checkpoint + self.cfg.checkpoint_interval
            {
                self.sync_in_flight = true;
                self.outputs.push_back(Output::Sync { upto: self.first_missing });
            }
        }

        if all_received && self.trailer && self.durable == self.chunk_count {
            self.phase = Phase::Verifying;
            self.outstanding = None;
            self.outputs.push_back(Output::Verify);
            return;
        }

        if now >= self.last_progress + self.cfg.idle_timeout {
            let idle = now - self.last_progress;
            self.fail(GiveUp::PeerVanished { idle });
            return;
        }

        if let Some(o) = self.outstanding {
            let satisfied = self.first_missing >= o.request.to && (o.request.to < self.chunk_count || self.trailer);
            if satisfied {
                self.outstanding = None;
            } else if now >= o.deadline {
                self.outstanding = None;
                self.retry_at = Some(now);
            }
        }

        // Slide the window: once half of it has arrived, grant the sender as much again.
        if let Some(o) = &mut self.outstanding
            && self.cfg.window != u64::MAX
        {
            let target = self.first_missing.saturating_add(self.cfg.window).min(self.chunk_count);
            if target > o.request.to && self.first_missing + self.cfg.window / 2 >= o.request.to {
                o.request.to = target;
                self.outputs.push_back(Output::Credit { to: target });
            }
        }

        let needed = !all_received || !self.trailer;
        let may_ask = self.has_path && self.retry_at.is_none_or(|t| now >= t);
        if self.outstanding.is_none() && needed && may_ask {
            let from = self.first_missing;
            let to = from.saturating_add(self.cfg.window).min(self.chunk_count);
            let request = Request { from, to };
            self.outstanding = Some(Outstanding { request, deadline: now + self.cfg.request_timeout });
            self.retry_at = None;
            self.outputs.push_back(Output::Request(request));
        }
    }
}
