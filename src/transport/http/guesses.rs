//! Wrong tokens, counted: how many a source may offer for one transfer before it is refused.
//!
//! A 256-bit session key cannot be guessed, but a password-protected browser link
//! (`web::link`) turns each password guess into one request with the token it gives: the
//! sender is the only oracle. So each source (an IPv4 address, an IPv6 /64) gets a bucket of
//! [`BURST`] wrong tokens per transfer, refilled by one every [`REFILL`]; while its bucket is
//! empty every request it makes for that transfer is refused (`429`), the right token too, so
//! guessing goes no faster than the refill. Other sources are not affected, so a guesser cannot
//! lock the person with the real password out from elsewhere. At most [`MAX_TRACKED`] buckets are
//! kept; full ones go first. Time is an argument, for the tests.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::id::TransferId;

/// Wrong tokens a source may offer for one transfer at once.
pub(super) const BURST: u32 = 5;
/// One more wrong token may come this long after the last was refilled.
pub(super) const REFILL: Duration = Duration::from_secs(6);
/// Buckets kept at most.
const MAX_TRACKED: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    left: u32,
    since: Instant,
}

impl Bucket {
    fn refilled(mut self, now: Instant) -> Bucket {
        let steps = (now.saturating_duration_since(self.since).as_nanos() / REFILL.as_nanos()) as u32;
        if steps > 0 {
            self.left = self.left.saturating_add(steps).min(BURST);
            self.since = now;
        }
        self
    }
}

/// The buckets of one listener.
#[derive(Debug, Default)]
pub(super) struct Guesses {
    buckets: HashMap<(TransferId, IpAddr), Bucket>,
}

impl Guesses {
    /// Is `source` out of wrong tokens for `id`?
    pub(super) fn refuses(&mut self, id: TransferId, source: IpAddr, now: Instant) -> bool {
        let Some(bucket) = self.buckets.get_mut(&(id, source)) else { return false };
        *bucket = bucket.refilled(now);
        bucket.left == 0
    }

    /// `source` offered a wrong token for `id`.
    pub(super) fn wrong(&mut self, id: TransferId, source: IpAddr, now: Instant) {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&(id, source)) {
            self.buckets.retain(|_, b| b.refilled(now).left < BURST);
            if self.buckets.len() >= MAX_TRACKED {
                return;
            }
        }
        let bucket = self.buckets.entry((id, source)).or_insert(Bucket { left: BURST, since: now });
        *bucket = bucket.refilled(now);
        bucket.left = bucket.left.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: TransferId = TransferId([1; 16]);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_source_is_refused_after_its_burst_and_let_in_again_as_it_refills() {
        let (mut g, t0) = (Guesses::default(), Instant::now());
        for _ in 0..BURST {
            assert!(!g.refuses(ID, ip(1), t0));
            g.wrong(ID, ip(1), t0);
        }
        assert!(g.refuses(ID, ip(1), t0), "the burst is spent");
        assert!(g.refuses(ID, ip(1), t0 + REFILL - Duration::from_millis(1)));
        assert!(!g.refuses(ID, ip(1), t0 + REFILL), "one more guess after one refill");
        g.wrong(ID, ip(1), t0 + REFILL);
        assert!(g.refuses(ID, ip(1), t0 + REFILL));
    }

    #[test]
    fn other_sources_and_other_transfers_are_not_affected() {
        let (mut g, t0) = (Guesses::default(), Instant::now());
        for _ in 0..BURST {
            g.wrong(ID, ip(1), t0);
        }
        assert!(g.refuses(ID, ip(1), t0));
        assert!(!g.refuses(ID, ip(2), t0));
        assert!(!g.refuses(TransferId([2; 16]), ip(1), t0));
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_spent_buckets_first() {
        let (mut g, t0) = (Guesses::default(), Instant::now());
        for _ in 0..BURST {
            g.wrong(ID, ip(1), t0);
        }
        for i in 0..(MAX_TRACKED as u32 + 100) {
            g.wrong(TransferId([3; 16]), IpAddr::from((0xc633_6400_u32 + i).to_be_bytes()), t0 + REFILL * 10);
        }
        assert!(g.buckets.len() <= MAX_TRACKED);
        assert!(!g.refuses(ID, ip(1), t0), "its bucket was refilled, so it could go");
    }
}
