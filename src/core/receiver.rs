//! The receiver of one run as one sans-IO machine: the [`ReceiveCore`] (what to ask for, when to
//! checkpoint) and the [`PathSelector`] (which path to connect and use) composed, with the
//! policy that joins them: which paths a ticket and a preference allow, how each path is tuned,
//! how a failure counts for path choice, and which error a run that gives up reports.
//!
//! The engine's receive driver is its IO shell: it dials what [`Action::Connect`] names, sends
//! what [`Action::Send`] holds on the path in use, syncs and verifies on the disk thread, and
//! feeds back what happened through `handle_*(now, ..)`. Fallback, upgrade and bans mid-transfer
//! are decided here, so they are tested under a virtual clock (`tests.rs`) as well as through
//! real processes.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::{
    Control, Failure, GiveUp, OutOfRange, Output, PathConfig, PathKind, PathOutput, PathSelector, Prefer,
    ReceiveConfig, ReceiveCore, Verdict,
};
use crate::{error::TransferError, id::TransferId};

/// What the driver must do next.
#[derive(Clone, Debug)]
pub enum Action {
    /// Start connecting this path; the attempt ends in [`Receiver::handle_connected`] or
    /// [`Receiver::handle_connect_failed`]. Several paths may be connecting at once.
    Connect(PathKind),
    /// The path just connected carries the transfer from now on.
    Use(PathKind),
    /// The path in use is dropped (why); until the next `Use` the transfer has no path.
    Leave(PathKind, Failure),
    /// Seal this control frame and send it on the path in use. A send that fails is reported
    /// with [`Receiver::handle_lost`]; the message itself is recovered by the request timeout.
    Send(Control),
    /// Make every chunk below `upto` durable, record it, then [`Receiver::handle_synced`].
    Sync { upto: u64 },
    /// Every chunk is durable and the trailer is in: check the whole-file hash and finish.
    Verify,
    /// The run gives up with this error; the journal keeps what is durable.
    Fail(TransferError),
}

/// One receive run.
///
/// - Getters: [`active`](Self::active), [`first_missing`](Self::first_missing).
/// - Inputs: [`handle_connected`](Self::handle_connected),
///   [`handle_connect_failed`](Self::handle_connect_failed), [`handle_lost`](Self::handle_lost),
///   [`handle_chunk`](Self::handle_chunk), [`handle_corrupt`](Self::handle_corrupt),
///   [`handle_trailer`](Self::handle_trailer), [`handle_stream_end`](Self::handle_stream_end),
///   [`handle_synced`](Self::handle_synced), [`handle_timeout`](Self::handle_timeout).
/// - Outputs: drain [`poll_output`](Self::poll_output) after every input, then wait for the next
///   input or [`poll_timeout`](Self::poll_timeout), whichever comes first.
#[derive(Debug)]
pub struct Receiver {
    id: TransferId,
    /// The time of the latest input: what the outputs that input caused happen at.
    now: Instant,
    core: ReceiveCore,
    paths: PathSelector,
    /// The error to report should the run give up (see [`keep`]).
    kept: Option<TransferError>,
    actions: VecDeque<Action>,
}

impl Receiver {
    /// A run of `chunk_count` chunks, the first `durable` already on disk, over the paths
    /// `offered` (by the ticket) that `prefer` allows.
    pub fn new(
        now: Instant,
        id: TransferId,
        (chunk_count, durable): (u64, u64),
        offered: &[PathKind],
        prefer: Prefer,
        (receive, paths): (ReceiveConfig, PathConfig),
    ) -> Result<Receiver, TransferError> {
        let kinds = allowed(offered, prefer)?;
        let mut core = ReceiveCore::new(now, chunk_count, durable, receive);
        core.handle_path_lost(now); // nothing to ask until a path answers
        let paths = PathSelector::new(now, &kinds, paths);
        Ok(Receiver { id, now, core, paths, kept: None, actions: VecDeque::new() })
    }

    /// The path carrying the transfer, if any.
    pub fn active(&self) -> Option<PathKind> {
        self.paths.active()
    }

    /// Every chunk below this one is received.
    pub fn first_missing(&self) -> u64 {
        self.core.first_missing()
    }

    /// An attempt on `kind` authenticated. Returns whether to use its connection (else the
    /// driver drops it: a better path is in use).
    pub fn handle_connected(&mut self, now: Instant, kind: PathKind) -> bool {
        self.now = now;
        let used = self.paths.handle_connected(now, kind);
        if used {
            let (window, request_timeout) = tuning(kind);
            self.core.handle_path_change(now, window, request_timeout);
        }
        used
    }

    /// An attempt on `kind` failed with `e`.
    pub fn handle_connect_failed(&mut self, now: Instant, kind: PathKind, e: TransferError) {
        self.now = now;
        self.paths.handle_connect_failed(now, kind, failure(&e));
        keep(&mut self.kept, e);
    }

    /// The path in use broke: it closed, or a send on it failed.
    pub fn handle_lost(&mut self, now: Instant, e: TransferError) {
        self.now = now;
        self.paths.handle_lost(now, failure(&e));
        keep(&mut self.kept, e);
    }

    /// Chunk `index` passed authentication.
    pub fn handle_chunk(&mut self, now: Instant, index: u64) -> Result<Verdict, OutOfRange> {
        self.now = now;
        let verdict = self.core.handle_frame(now, index)?;
        if verdict == Verdict::Write {
            self.paths.handle_progress(now);
        }
        Ok(verdict)
    }

    /// A frame failed authentication; it is asked for again.
    pub fn handle_corrupt(&mut self, now: Instant) {
        self.now = now;
        self.core.handle_corrupt(now);
    }

    /// The trailer (the whole-file hash) passed authentication.
    pub fn handle_trailer(&mut self, now: Instant) {
        self.now = now;
        self.paths.handle_progress(now);
        self.core.handle_trailer(now);
    }

    /// A response ended (HTTP); what is missing is asked for again.
    pub fn handle_stream_end(&mut self, now: Instant) {
        self.now = now;
        self.core.handle_stream_end(now);
    }

    /// Chunks below `upto` are durable and recorded.
    pub fn handle_synced(&mut self, now: Instant, upto: u64) {
        self.now = now;
        self.core.handle_synced(now, upto);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.core.handle_timeout(now);
        if self.core.wants_data() {
            self.paths.handle_timeout(now);
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) at the latest. Path timers (stall,
    /// retries, probes) count only while chunks are still wanted: once all are in, the run
    /// waits for the disk alone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let core = self.core.poll_timeout();
        if !self.core.wants_data() {
            return core;
        }
        [core, self.paths.poll_timeout()].into_iter().flatten().min()
    }

    /// The next action, path choice first: a change of path is carried out before the core asks
    /// anything of the new one.
    pub fn poll_output(&mut self) -> Option<Action> {
        loop {
            if let Some(action) = self.actions.pop_front() {
                return Some(action);
            }
            if let Some(output) = self.paths.poll_output() {
                self.take_path_output(output);
                continue;
            }
            let output = self.core.poll_output()?;
            self.take_core_output(output);
        }
    }

    fn take_path_output(&mut self, output: PathOutput) {
        let action = match output {
            PathOutput::Connect(kind) => Action::Connect(kind),
            PathOutput::Use(kind) => Action::Use(kind),
            PathOutput::Abandon(kind, why) => {
                self.core.handle_path_lost(self.now);
                Action::Leave(kind, why)
            }
            PathOutput::Failed(why) => Action::Fail(give_up_error(self.id, why, self.kept.take())),
        };
        self.actions.push_back(action);
    }

    fn take_core_output(&mut self, output: Output) {
        let action = match output {
            Output::Request(request) => Action::Send(Control::Want { from: request.from, to: request.to }),
            Output::Credit { to } => Action::Send(Control::Credit { to }),
            Output::Sync { upto } => Action::Sync { upto },
            Output::Verify => Action::Verify,
            Output::Tampered { streak } => {
                tracing::warn!(transfer = %self.id, "{streak} frames in a row failed authentication");
                self.paths.handle_lost(self.now, Failure::Tampered { streak });
                return;
            }
            Output::Failed(why) => Action::Fail(give_up_error(self.id, why, self.kept.take())),
        };
        self.actions.push_back(action);
    }
}

/// The paths of `offered` that `prefer` allows, or why there are none.
fn allowed(offered: &[PathKind], prefer: Prefer) -> Result<Vec<PathKind>, TransferError> {
    let allowed: Vec<PathKind> = offered.iter().copied().filter(|k| prefer.pinned().is_none_or(|p| p == *k)).collect();
    if allowed.is_empty() {
        let offers = offered.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" and ");
        return Err(TransferError::PathUnavailable(format!(
            "{} (the ticket offers {})",
            prefer.as_str(),
            if offers.is_empty() { "no path" } else { &offers }
        )));
    }
    Ok(allowed)
}

/// How the receive core drives each path: a window and a request timeout.
fn tuning(kind: PathKind) -> (u64, Duration) {
    match kind {
        // TCP has its own flow control: one request streams the whole rest of the file.
        PathKind::Http => (u64::MAX, Duration::from_secs(15)),
        // SCTP has flow control, but the data channel's receive queue is counted in messages,
        // not bytes: a window of 8 MiB at the default chunk size bounds what the receiver holds
        // and covers the round trip of a fast hole-punched or TURN route.
        PathKind::Webrtc => (32, Duration::from_secs(5)),
        // 16 MiB in flight at the default chunk size: enough to cover a relay's round trip on
        // fast links while bounding what the relay and the receiver hold.
        PathKind::Relay => (64, Duration::from_secs(3)),
    }
}

/// How a path failure counts for path choice.
fn failure(e: &TransferError) -> Failure {
    match e {
        TransferError::Unauthorized | TransferError::IntegrityMismatch(_) => Failure::Unauthentic,
        TransferError::NotServing(_) => Failure::NotServing,
        TransferError::SenderCompleted(_) => Failure::Completed,
        // The sender declined this path (it pinned another): no use trying it again this run.
        TransferError::PathUnavailable(_) => Failure::Unauthentic,
        // The channel refused this node's credentials or certificates, or they are unusable.
        TransferError::ChannelAuth(_) | TransferError::ChannelTls(_) | TransferError::InvalidArgument(_) => {
            Failure::Misconfigured
        }
        _ => Failure::Unreachable,
    }
}

/// Keep `e` as the error to report should the run give up, unless a weightier one is kept
/// already: one that names this node's own settings, then a channel that cannot be reached.
/// That is what the user has to fix, whatever failed after it.
fn keep(kept: &mut Option<TransferError>, e: TransferError) {
    if kept.as_ref().is_none_or(|k| weight(k) <= weight(&e)) {
        *kept = Some(e);
    }
}

/// How much an error says about what to fix: a channel that is down (the relay, the NATS
/// server) says more than the sender's silence, and this node's own settings most.
fn weight(e: &TransferError) -> u8 {
    match (failure(e), e) {
        (Failure::Misconfigured, _) => 2,
        (_, TransferError::ChannelUnreachable(_)) => 1,
        _ => 0,
    }
}

fn give_up_error(id: TransferId, why: GiveUp, last: Option<TransferError>) -> TransferError {
    match (why, last) {
        // Nobody answered, and the channel is down or refuses this node: say that, not that
        // the sender stopped.
        (GiveUp::NotServing, Some(last)) if weight(&last) > 0 => last,
        (GiveUp::PeerVanished { .. } | GiveUp::Refused, Some(last)) => last,
        (GiveUp::PeerVanished { idle }, None) => {
            TransferError::PeerUnreachable(format!("no data from the sender for {} s", idle.as_secs()))
        }
        (GiveUp::Refused, None) => TransferError::Unauthorized,
        (GiveUp::Completed, _) => TransferError::SenderCompleted(id.to_string()),
        (GiveUp::NotServing, _) => TransferError::NotServing(
            "nobody answers for it at the addresses or on the channel the ticket names".into(),
        ),
        (GiveUp::Tampered { streak }, _) => {
            TransferError::IntegrityMismatch(format!("{streak} frames in a row failed authentication on every path"))
        }
    }
}
