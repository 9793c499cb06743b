//! Transfer rates as people expect them: counted from the first byte moved, smoothed.
//!
//! A rate averaged since launch includes the wait for the receiver; a rate since the start of a
//! resumed run counts the resume point as if it had just moved. [`Rate`] takes its first sample
//! as the baseline (so neither waiting nor the bytes already there count) and smooths the rate
//! between samples with an exponential moving average whose weight follows the time elapsed (a
//! time constant of [`TAU`]), as croc and indicatif do, so a burst does not make it jump.

use std::time::{Duration, Instant};

/// How quickly the average forgets: about two thirds of the weight is on the last `TAU`.
pub(crate) const TAU: Duration = Duration::from_secs(2);

/// A smoothed rate of a growing byte count.
#[derive(Debug, Default)]
pub(crate) struct Rate {
    /// The first sample at which bytes had moved, and the last sample.
    first: Option<(Instant, u64)>,
    last: Option<(Instant, u64)>,
    ema: f64,
}

impl Rate {
    /// Take a sample of `done` bytes at `now`; returns the smoothed rate in bytes per second.
    pub(crate) fn update(&mut self, now: Instant, done: u64) -> u64 {
        let Some((last_at, last_done)) = self.last else {
            self.last = Some((now, done));
            return 0;
        };
        let dt = now.saturating_duration_since(last_at).as_secs_f64();
        if dt <= 0.0 {
            return self.ema as u64;
        }
        let moved = done.saturating_sub(last_done);
        if moved > 0 && self.first.is_none() {
            self.first = Some((last_at, last_done));
        }
        if self.first.is_some() {
            let instant = moved as f64 / dt;
            let alpha = 1.0 - (-dt / TAU.as_secs_f64()).exp();
            // The first interval seeds the average instead of pulling it up from zero.
            self.ema = if self.ema == 0.0 { instant } else { self.ema + alpha * (instant - self.ema) };
        }
        self.last = Some((now, done));
        self.ema as u64
    }

    /// Time since bytes first moved (zero before).
    pub(crate) fn elapsed(&self, now: Instant) -> Duration {
        self.first.map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_and_the_resume_point_do_not_count() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let mut rate = Rate::default();
        // A resumed run: 800 MB already there at the first sample, then idle for 10 s.
        assert_eq!(rate.update(s(0), 800_000_000), 0);
        assert_eq!(rate.update(s(10_000), 800_000_000), 0);
        assert_eq!(rate.elapsed(s(10_000)), Duration::ZERO);
        // Then 100 MB/s.
        let mut r = 0;
        for i in 1..=20 {
            r = rate.update(s(10_000 + i * 100), 800_000_000 + i * 10_000_000);
        }
        assert!((99_000_000..=101_000_000).contains(&r), "{r}");
        assert_eq!(rate.elapsed(s(12_000)), Duration::from_secs(2));
    }

    #[test]
    fn a_burst_is_smoothed() {
        let t0 = Instant::now();
        let mut rate = Rate::default();
        rate.update(t0, 0);
        let mut done = 0;
        for i in 1..=30 {
            done += 10_000_000;
            rate.update(t0 + Duration::from_millis(i * 100), done);
        }
        // 100 MB/s steady; one 100 ms burst of 1 GB moves the average far less than 10x.
        let burst = rate.update(t0 + Duration::from_millis(3100), done + 1_000_000_000);
        assert!(burst < 700_000_000, "{burst}");
    }
}
