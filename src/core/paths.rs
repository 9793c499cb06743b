//! The receiver's path selector: which paths to connect, which to use, when to move.
//!
//! Candidates come from the ticket (direct HTTP to its addresses, its message channel), best
//! first. The selector connects them the way happy eyeballs does: the best first, the next one
//! when the better ones have failed or have had a head start without answering. Several
//! attempts run at once, at most one per path, so a path that is slow to fail never delays the
//! others. It uses the best path that authenticates, and then:
//!
//! - **falls back**: when the path in use breaks or stops delivering for `stall_timeout`, it is
//!   set aside with a backoff and the next candidate is connected; the receive core asks the new
//!   path for the first chunk still missing;
//! - **upgrades**: while on a worse path it probes the better ones every `upgrade_interval` and
//!   moves to one that authenticates (relay → direct), as iroh does;
//! - **bans** a path whose endpoint fails to authenticate (wrong manifest or token), that
//!   delivered a streak of forged frames, or that refuses this node's own settings (a channel's
//!   credentials or certificates), for the rest of the run;
//! - gives up when the sender says it completed the transfer, when every candidate is banned,
//!   or when no path ever connected and every one has said for `not_serving_grace` that nobody
//!   serves the transfer there (connection refused, no sender on the channel): a ticket whose
//!   sender has finished or stopped ends in seconds. A path that is merely unreachable is tried
//!   again with one backoff policy until the receive core's idle timeout ends the run.
//!
//! A pinned preference leaves one candidate: no fallback and no upgrade.
//!
//! Like the rest of the core it owns no socket and no clock: inputs `handle_*(now, ..)`, outputs
//! [`PathSelector::poll_output`] (drain after every input), then sleep until
//! [`PathSelector::poll_timeout`] and call [`PathSelector::handle_timeout`].

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::{GiveUp, PathKind};

/// Timing of path choice.
#[derive(Clone, Debug)]
pub struct PathConfig {
    /// The path in use has delivered nothing new for this long: abandon it.
    pub stall_timeout: Duration,
    /// Backoff between tries of one path: the first retry after `retry_min`, doubling to
    /// `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// While on a worse path, probe a better one this often.
    pub upgrade_interval: Duration,
    /// How long a path's attempt runs alone before the next path's attempt starts beside it.
    pub head_start: Duration,
    /// How long every path must have refused before a run that never connected gives up.
    pub not_serving_grace: Duration,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            stall_timeout: Duration::from_secs(10),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            upgrade_interval: Duration::from_secs(2),
            head_start: Duration::from_millis(250),
            not_serving_grace: Duration::from_secs(3),
        }
    }
}

/// Why a path attempt or a path in use failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Reset, timed out, or the channel is gone: may work later.
    Unreachable,
    /// Nobody serves the transfer there: every address refused the connection, or the channel
    /// works but no sender answered. May work later (a sender restarting), but a run that never
    /// connected ends on it.
    NotServing,
    /// The endpoint does not hold the session key (wrong manifest, token refused): banned.
    Unauthentic,
    /// This node's own settings for the path were refused or are unusable (the channel's
    /// credentials or certificates): banned, since trying again cannot change them.
    Misconfigured,
    /// The path delivered a streak of frames that failed authentication: banned.
    Tampered { streak: u32 },
    /// The sender says it completed the transfer already: the run ends.
    Completed,
    /// The path in use delivered nothing for the stall timeout.
    Stalled,
}

impl Failure {
    /// The stable code users see for it.
    pub fn code(self) -> &'static str {
        match self {
            Failure::Unreachable => "peer_unreachable",
            Failure::NotServing => "not_serving",
            Failure::Unauthentic => "unauthorized",
            Failure::Misconfigured => "misconfigured",
            Failure::Tampered { .. } => "integrity_mismatch",
            Failure::Completed => "already_completed",
            Failure::Stalled => "stalled",
        }
    }
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathOutput {
    /// Start connecting this path; several paths may be connecting at once, one attempt each.
    /// Every attempt ends in `handle_connected` or `handle_connect_failed`.
    Connect(PathKind),
    /// Carry the transfer on this path from now on (the one just connected). The driver drops
    /// the link it used before, and tells the receive core.
    Use(PathKind),
    /// The path in use is abandoned; until a `Use`, the transfer has no path.
    Abandon(PathKind, Failure),
    /// Every candidate is banned, or nobody serves the transfer.
    Failed(GiveUp),
}

#[derive(Clone, Debug)]
struct Candidate {
    kind: PathKind,
    banned: Option<Failure>,
    failures: u32,
    next_try: Instant,
    /// When the attempt under way started.
    connecting: Option<Instant>,
    /// An unbroken run of `NotServing` attempts: when the first started, when the last ended.
    not_serving: Option<(Instant, Instant)>,
}

/// Path choice for one receive run.
///
/// - Getters: [`active`](Self::active).
/// - Inputs: [`handle_connected`](Self::handle_connected),
///   [`handle_connect_failed`](Self::handle_connect_failed), [`handle_lost`](Self::handle_lost),
///   [`handle_progress`](Self::handle_progress), [`handle_timeout`](Self::handle_timeout).
/// - Outputs: drain [`poll_output`](Self::poll_output); wake at [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct PathSelector {
    cfg: PathConfig,
    /// Best first.
    candidates: Vec<Candidate>,
    active: Option<PathKind>,
    /// Some path was used during this run.
    ever_used: bool,
    last_progress: Instant,
    failed: bool,
    outputs: VecDeque<PathOutput>,
}

impl PathSelector {
    /// `kinds` in any order; they are tried best first.
    pub fn new(now: Instant, kinds: &[PathKind], cfg: PathConfig) -> Self {
        let mut candidates: Vec<Candidate> = kinds
            .iter()
            .map(|&kind| Candidate {
                kind,
                banned: None,
                failures: 0,
                next_try: now,
                connecting: None,
                not_serving: None,
            })
            .collect();
        candidates.sort_by_key(|c| c.kind);
        candidates.dedup_by_key(|c| c.kind);
        let mut selector = PathSelector {
            cfg,
            candidates,
            active: None,
            ever_used: false,
            last_progress: now,
            failed: false,
            outputs: VecDeque::new(),
        };
        selector.step(now);
        selector
    }

    /// The path carrying the transfer, if any.
    pub fn active(&self) -> Option<PathKind> {
        self.active
    }

    fn candidate(&mut self, kind: PathKind) -> Option<&mut Candidate> {
        self.candidates.iter_mut().find(|c| c.kind == kind)
    }

    /// A connection attempt on `kind` authenticated. Returns whether to use it (else the
    /// driver drops it: a better path is already in use).
    pub fn handle_connected(&mut self, now: Instant, kind: PathKind) -> bool {
        let better = self.active.is_none_or(|active| kind < active) && !self.failed;
        if let Some(c) = self.candidate(kind) {
            c.connecting = None;
            c.not_serving = None;
            if better {
                c.failures = 0;
            }
        }
        if better {
            self.active = Some(kind);
            self.ever_used = true;
            self.last_progress = now;
            self.outputs.push_back(PathOutput::Use(kind));
        }
        self.step(now);
        better
    }

    /// A connection attempt on `kind` failed.
    pub fn handle_connect_failed(&mut self, now: Instant, kind: PathKind, why: Failure) {
        let Some(c) = self.candidate(kind) else { return };
        let started = c.connecting.take().unwrap_or(now);
        c.not_serving = match (why, c.not_serving) {
            (Failure::NotServing, Some((first, _))) => Some((first, now)),
            (Failure::NotServing, None) => Some((started, now)),
            _ => None,
        };
        self.set_aside(now, kind, why);
        self.step(now);
    }

    /// The path in use broke, stalled or was caught tampering.
    pub fn handle_lost(&mut self, now: Instant, why: Failure) {
        if let Some(kind) = self.active.take() {
            self.outputs.push_back(PathOutput::Abandon(kind, why));
            self.set_aside(now, kind, why);
        }
        self.step(now);
    }

    /// The path in use delivered something new.
    pub fn handle_progress(&mut self, now: Instant) {
        self.last_progress = now;
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.step(now);
    }

    pub fn poll_output(&mut self) -> Option<PathOutput> {
        self.outputs.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        let stall = self.active.map(|_| self.last_progress + self.cfg.stall_timeout);
        let start = (0..self.candidates.len()).filter_map(|i| self.startable_at(i)).min();
        [stall, start].into_iter().flatten().min()
    }

    fn set_aside(&mut self, now: Instant, kind: PathKind, why: Failure) {
        let (min, max, upgrade) = (self.cfg.retry_min, self.cfg.retry_max, self.cfg.upgrade_interval);
        let on_worse_path = self.active.is_some_and(|active| active > kind);
        let Some(c) = self.candidate(kind) else { return };
        match why {
            Failure::Unauthentic | Failure::Misconfigured | Failure::Tampered { .. } | Failure::Completed => {
                c.banned = Some(why)
            }
            Failure::Unreachable | Failure::NotServing | Failure::Stalled => {
                c.failures += 1;
                let backoff = min.saturating_mul(1 << (c.failures - 1).min(16)).min(max);
                // A better path that failed a probe is probed again at the upgrade interval.
                c.next_try = now + if on_worse_path { upgrade.max(backoff) } else { backoff };
            }
        }
    }

    /// When candidate `i` may start an attempt: it is not banned nor connecting, it is better
    /// than the path in use, its backoff is over, and every better path connecting has had its
    /// head start.
    fn startable_at(&self, i: usize) -> Option<Instant> {
        let c = &self.candidates[i];
        if c.banned.is_some() || c.connecting.is_some() || self.active.is_some_and(|active| c.kind >= active) {
            return None;
        }
        let head_starts = self.candidates[..i].iter().filter_map(|better| better.connecting);
        head_starts.map(|since| since + self.cfg.head_start).chain([c.next_try]).max()
    }

    /// No path ever connected, and every one still allowed has said for the grace period that
    /// nobody serves the transfer there (judged on answers, not on how long ago they came; an
    /// attempt under way on such a path does not hold the verdict: a path whose attempts take
    /// seconds to fail would otherwise keep the run alive as long as it is retried).
    fn nobody_serves(&self) -> bool {
        let mut allowed = self.candidates.iter().filter(|c| c.banned.is_none()).peekable();
        !self.ever_used
            && allowed.peek().is_some()
            && allowed.all(|c| c.not_serving.is_some_and(|(first, last)| last >= first + self.cfg.not_serving_grace))
    }

    fn fail(&mut self, why: GiveUp) {
        self.failed = true;
        self.active = None;
        self.outputs.push_back(PathOutput::Failed(why));
    }

    fn step(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        if self.active.is_some() && now >= self.last_progress + self.cfg.stall_timeout {
            let kind = self.active.take().expect("active");
            self.outputs.push_back(PathOutput::Abandon(kind, Failure::Stalled));
            self.set_aside(now, kind, Failure::Stalled);
        }
        if self.candidates.iter().any(|c| c.banned == Some(Failure::Completed)) {
            return self.fail(GiveUp::Completed);
        }
        if self.candidates.iter().all(|c| c.banned.is_some()) {
            let why = match self.candidates.iter().rev().find_map(|c| c.banned) {
                Some(Failure::Tampered { streak }) => GiveUp::Tampered { streak },
                _ => GiveUp::Refused,
            };
            return self.fail(why);
        }
        if self.nobody_serves() {
            return self.fail(GiveUp::NotServing);
        }
        // Best first, so that a start gives the worse paths their wait.
        for i in 0..self.candidates.len() {
            if self.startable_at(i).is_some_and(|at| at <= now) {
                self.candidates[i].connecting = Some(now);
                self.outputs.push_back(PathOutput::Connect(self.candidates[i].kind));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: PathKind = PathKind::Http;
    const RELAY: PathKind = PathKind::Relay;

    fn drain(s: &mut PathSelector) -> Vec<PathOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    /// Step the selector's own clock to its next wake-up.
    fn wake(s: &mut PathSelector) -> Instant {
        let at = s.poll_timeout().expect("a wake-up");
        s.handle_timeout(at);
        at
    }

    #[test]
    fn tries_direct_first_then_the_relay_and_uses_what_authenticates() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(t0, &[RELAY, HTTP], PathConfig::default());
        assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
        s.handle_connect_failed(t0, HTTP, Failure::Unreachable);
        assert_eq!(drain(&mut s), [PathOutput::Connect(RELAY)]);
        assert!(s.handle_connected(t0, RELAY));
        assert_eq!(drain(&mut s), [PathOutput::Use(RELAY)]);
        assert_eq!(s.active(), Some(RELAY));
    }

    #[test]
    fn a_path_that_breaks_mid_transfer_hands_over_to_the_next() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], PathConfig::default());
        drain(&mut s);
        assert!(s.handle_connected(t0, HTTP));
        drain(&mut s);
        let t1 = t0 + Duration::from_secs(3);
        s.handle_progress(t1);
        s.handle_lost(t1, Failure::Unreachable);
        assert_eq!(drain(&mut s), [PathOutput::Abandon(HTTP, Failure::Unreachable), PathOutput::Connect(RELAY)]);
        assert!(s.handle_connected(t1, RELAY));
        assert_eq!(drain(&mut s), [PathOutput::Use(RELAY)]);
    }

    #[test]
    fn a_path_that_stops_delivering_is_abandoned_after_the_stall_timeout() {
        let t0 = Instant::now();
        let cfg = PathConfig::default();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], cfg.clone());
        drain(&mut s);
        s.handle_connected(t0, HTTP);
        drain(&mut s);
        s.handle_progress(t0 + Duration::from_secs(1));
        let at = wake(&mut s);
        assert_eq!(at, t0 + Duration::from_secs(1) + cfg.stall_timeout);
        assert_eq!(drain(&mut s), [PathOutput::Abandon(HTTP, Failure::Stalled), PathOutput::Connect(RELAY)]);
    }

    #[test]
    fn on_the_relay_it_probes_direct_at_the_upgrade_interval_and_moves_up() {
        let t0 = Instant::now();
        let cfg = PathConfig::default();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], cfg.clone());
        drain(&mut s);
        s.handle_connect_failed(t0, HTTP, Failure::Unreachable);
        drain(&mut s);
        s.handle_connected(t0, RELAY);
        drain(&mut s);
        // The first retry of direct is due after the short backoff; it fails again.
        let mut now = wake(&mut s);
        assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
        for _ in 0..5 {
            s.handle_progress(now);
            s.handle_connect_failed(now, HTTP, Failure::Unreachable);
            let failed_at = now;
            now = wake(&mut s);
            assert!(now - failed_at >= cfg.upgrade_interval, "probes are spaced by the upgrade interval");
            s.handle_progress(now);
            assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
        }
        assert!(s.handle_connected(now, HTTP));
        assert_eq!(drain(&mut s), [PathOutput::Use(HTTP)]);
        assert_eq!(s.active(), Some(HTTP));
        // On the best path nothing more is probed.
        assert_eq!(s.poll_timeout(), Some(now + cfg.stall_timeout));
    }

    #[test]
    fn a_path_that_flaps_is_retried_with_a_growing_backoff_capped_at_the_maximum() {
        let t0 = Instant::now();
        let cfg = PathConfig::default();
        let mut s = PathSelector::new(t0, &[HTTP], cfg.clone());
        drain(&mut s);
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..8 {
            s.handle_connected(now, HTTP);
            drain(&mut s);
            s.handle_lost(now, Failure::Unreachable);
            assert_eq!(drain(&mut s), [PathOutput::Abandon(HTTP, Failure::Unreachable)]);
            let at = wake(&mut s);
            assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
            s.handle_connect_failed(at, HTTP, Failure::Unreachable);
            let retry = wake(&mut s);
            gaps.push(retry - at);
            drain(&mut s);
            now = retry;
        }
        assert!(gaps.windows(2).all(|w| w[0] <= w[1]), "backoff grows: {gaps:?}");
        assert!(gaps.iter().all(|&g| g <= cfg.retry_max), "and is capped: {gaps:?}");
    }

    #[test]
    fn an_endpoint_that_fails_to_authenticate_is_not_tried_again() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], PathConfig::default());
        drain(&mut s);
        s.handle_connect_failed(t0, HTTP, Failure::Unauthentic);
        assert_eq!(drain(&mut s), [PathOutput::Connect(RELAY)]);
        s.handle_connected(t0, RELAY);
        drain(&mut s);
        // On the relay for a long while: direct, the liar, is never probed.
        for i in 1..20 {
            let now = t0 + Duration::from_secs(i);
            s.handle_progress(now);
            s.handle_timeout(now);
            assert_eq!(drain(&mut s), []);
        }
    }

    #[test]
    fn a_tamper_streak_bans_the_path_and_when_none_is_left_the_run_fails() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], PathConfig::default());
        drain(&mut s);
        s.handle_connected(t0, HTTP);
        drain(&mut s);
        s.handle_lost(t0, Failure::Tampered { streak: 16 });
        assert_eq!(
            drain(&mut s),
            [PathOutput::Abandon(HTTP, Failure::Tampered { streak: 16 }), PathOutput::Connect(RELAY)]
        );
        s.handle_connected(t0, RELAY);
        drain(&mut s);
        s.handle_lost(t0, Failure::Tampered { streak: 16 });
        assert_eq!(
            drain(&mut s),
            [
                PathOutput::Abandon(RELAY, Failure::Tampered { streak: 16 }),
                PathOutput::Failed(GiveUp::Tampered { streak: 16 })
            ]
        );
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_pinned_path_never_falls_back_and_is_retried_until_the_run_gives_up() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(t0, &[HTTP], PathConfig::default());
        assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
        s.handle_connect_failed(t0, HTTP, Failure::Unreachable);
        assert_eq!(drain(&mut s), []);
        wake(&mut s);
        assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
        s.handle_connect_failed(t0, HTTP, Failure::Unauthentic);
        assert_eq!(drain(&mut s), [PathOutput::Failed(GiveUp::Refused)]);
    }

    #[test]
    fn a_path_slow_to_answer_gets_a_head_start_then_the_next_one_races_it() {
        let t0 = Instant::now();
        let cfg = PathConfig::default();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], cfg.clone());
        assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
        // Direct neither answers nor fails: after its head start the relay is tried beside it.
        assert_eq!(wake(&mut s), t0 + cfg.head_start);
        assert_eq!(drain(&mut s), [PathOutput::Connect(RELAY)]);
        assert!(s.handle_connected(t0 + cfg.head_start, RELAY));
        assert_eq!(drain(&mut s), [PathOutput::Use(RELAY)]);
        // Direct answers late: the transfer moves up at once.
        let t1 = t0 + Duration::from_secs(1);
        assert!(s.handle_connected(t1, HTTP));
        assert_eq!(drain(&mut s), [PathOutput::Use(HTTP)]);
    }

    #[test]
    fn each_path_has_one_attempt_at_a_time() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], PathConfig::default());
        drain(&mut s);
        wake(&mut s);
        assert_eq!(drain(&mut s), [PathOutput::Connect(RELAY)]);
        // Both attempts hang: nothing more is started, and nothing asks to be woken for it.
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_ticket_nobody_serves_ends_after_the_grace_period() {
        let t0 = Instant::now();
        let cfg = PathConfig::default();
        let mut s = PathSelector::new(t0, &[HTTP], cfg.clone());
        let mut now = t0;
        loop {
            assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
            s.handle_connect_failed(now, HTTP, Failure::NotServing);
            if now >= t0 + cfg.not_serving_grace {
                break;
            }
            now = wake(&mut s);
        }
        assert_eq!(drain(&mut s), [PathOutput::Failed(GiveUp::NotServing)]);
        assert!(now < t0 + cfg.not_serving_grace + cfg.retry_max, "ends at the first refusal past the grace");
    }

    #[test]
    fn one_path_that_may_still_answer_keeps_the_run_going() {
        let t0 = Instant::now();
        let cfg = PathConfig::default();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], cfg.clone());
        drain(&mut s);
        s.handle_connect_failed(t0, HTTP, Failure::NotServing);
        assert_eq!(drain(&mut s), [PathOutput::Connect(RELAY)]);
        // The relay itself cannot be reached: that says nothing about the sender.
        let t1 = t0 + cfg.not_serving_grace * 2;
        s.handle_connect_failed(t1, RELAY, Failure::Unreachable);
        assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
        // Once the relay works and no sender answers there either, nobody serves the ticket.
        s.handle_connect_failed(t1, HTTP, Failure::NotServing);
        let t2 = wake(&mut s);
        assert_eq!(drain(&mut s), [PathOutput::Connect(RELAY)]);
        s.handle_connect_failed(t2 + cfg.not_serving_grace, RELAY, Failure::NotServing);
        assert_eq!(drain(&mut s), [PathOutput::Failed(GiveUp::NotServing)]);
    }

    #[test]
    fn a_sender_that_stops_mid_transfer_is_waited_for() {
        let t0 = Instant::now();
        let cfg = PathConfig::default();
        let mut s = PathSelector::new(t0, &[HTTP], cfg.clone());
        drain(&mut s);
        s.handle_connected(t0, HTTP);
        s.handle_lost(t0, Failure::Unreachable);
        drain(&mut s);
        // It may be restarting (`agentferry resume`): refusals do not end the run; the receive
        // core's idle timeout does.
        let mut now = t0;
        while now < t0 + cfg.not_serving_grace * 4 {
            now = wake(&mut s);
            assert_eq!(drain(&mut s), [PathOutput::Connect(HTTP)]);
            s.handle_connect_failed(now, HTTP, Failure::NotServing);
        }
        assert_eq!(drain(&mut s), []);
    }

    #[test]
    fn a_worse_path_that_connects_late_is_not_used() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(t0, &[HTTP, RELAY], PathConfig::default());
        drain(&mut s);
        s.handle_connected(t0, HTTP);
        drain(&mut s);
        assert!(!s.handle_connected(t0, RELAY));
        assert_eq!(s.active(), Some(HTTP));
        assert_eq!(drain(&mut s), []);
    }
}
