//! The relay's nameplate table, for short codes ([`crate::code`]): small numbers allocated to one
//! connection, claimed once by another, after which the two are paired and may pass a few small
//! messages (the PAKE exchange) to each other.
//!
//! Everything is bounded and nothing is reused too soon:
//!
//! - a connection holds at most one nameplate or one pairing; a source (an IPv4 address or an
//!   IPv6 /64, [`crate::accept::source`]) at most a quarter of the table; the table at most
//!   `max_open` nameplates;
//! - the lowest free number is allocated (so codes stay short), but a number that was claimed,
//!   expired or whose holder left is not handed out again for one TTL: a code replayed or typed
//!   late is refused as `used` or `expired` instead of landing on someone else's code;
//! - a nameplate lives for one TTL, or until its holder's connection closes;
//! - claims and allocations are rate-limited per source with token buckets, so guesses cannot
//!   be made at scale, and a flood from one source leaves everyone else served;
//! - a pairing carries at most [`MAX_PEER_MESSAGES`] messages each way of at most
//!   [`MAX_PEER_MESSAGE`] bytes: it is a rendezvous, not a second relay path.
//!
//! Generic over the handle the relay uses to reach a connection, so it is tested without
//! sockets.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use super::proto::Refusal;

/// Messages one side of a pairing may send the other.
pub const MAX_PEER_MESSAGES: usize = 16;
/// The largest message between paired connections.
pub const MAX_PEER_MESSAGE: usize = 16 * 1024;

/// The table's limits.
#[derive(Clone, Debug)]
pub struct NameplateLimits {
    /// How long a nameplate waits for its claim, and how long a number rests before reuse.
    pub ttl: Duration,
    /// Nameplates open at once.
    pub max_open: usize,
    /// Claims (and, separately, allocations) per source per minute, after a burst of
    /// [`NameplateLimits::burst`].
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for NameplateLimits {
    fn default() -> Self {
        NameplateLimits { ttl: Duration::from_secs(600), max_open: 10_000, per_minute: 20, burst: 10 }
    }
}

struct Open<T> {
    conn: u64,
    source: IpAddr,
    handle: T,
    at: Instant,
}

struct Pair<T> {
    partner: u64,
    handle: T,
    sent: usize,
}

struct Bucket {
    claims: f64,
    allocations: f64,
    at: Instant,
}

/// The table.
pub struct Nameplates<T> {
    limits: NameplateLimits,
    open: BTreeMap<u32, Open<T>>,
    /// Numbers resting after use, with why they ended (`NameplateUsed` or `NameplateExpired`).
    resting: HashMap<u32, Refusal>,
    resting_order: VecDeque<(Instant, u32)>,
    by_source: HashMap<IpAddr, usize>,
    by_conn: HashMap<u64, u32>,
    pairs: HashMap<u64, Pair<T>>,
    buckets: HashMap<IpAddr, Bucket>,
}

impl<T: Clone> Nameplates<T> {
    pub fn new(limits: NameplateLimits) -> Self {
        Nameplates {
            limits,
            open: BTreeMap::new(),
            resting: HashMap::new(),
            resting_order: VecDeque::new(),
            by_source: HashMap::new(),
            by_conn: HashMap::new(),
            pairs: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    /// Nameplates open now.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    fn source_share(&self) -> usize {
        (self.limits.max_open / 4).max(1)
    }

    /// Take one token from `source`'s bucket (claims or allocations).
    fn spend(&mut self, source: IpAddr, claim: bool, now: Instant) -> Result<(), Refusal> {
        let (burst, rate) = (self.limits.burst as f64, self.limits.per_minute as f64 / 60.0);
        let b = self.buckets.entry(source).or_insert(Bucket { claims: burst, allocations: burst, at: now });
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.at = now;
        b.claims = (b.claims + dt * rate).min(burst);
        b.allocations = (b.allocations + dt * rate).min(burst);
        let tokens = if claim { &mut b.claims } else { &mut b.allocations };
        if *tokens < 1.0 {
            return Err(Refusal::RateLimited);
        }
        *tokens -= 1.0;
        Ok(())
    }

    fn busy(&self, conn: u64) -> bool {
        self.by_conn.contains_key(&conn) || self.pairs.contains_key(&conn)
    }

    /// Give connection `conn` the lowest free nameplate.
    pub fn allocate(&mut self, conn: u64, source: IpAddr, handle: T, now: Instant) -> Result<u32, Refusal> {
        self.sweep(now);
        if self.busy(conn) {
            return Err(Refusal::NameplatesFull);
        }
        self.spend(source, false, now)?;
        let held = self.by_source.get(&source).copied().unwrap_or(0);
        if self.open.len() >= self.limits.max_open || held >= self.source_share() {
            return Err(Refusal::NameplatesFull);
        }
        let n = (1..=u32::MAX).find(|n| !self.open.contains_key(n) && !self.resting.contains_key(n)).expect("bounded");
        self.open.insert(n, Open { conn, source, handle, at: now });
        *self.by_source.entry(source).or_default() += 1;
        self.by_conn.insert(conn, n);
        Ok(n)
    }

    /// Connection `conn` claims nameplate `n`: on success the two are paired, the number rests,
    /// and the holder's handle is returned (to tell it).
    pub fn claim(&mut self, conn: u64, source: IpAddr, handle: T, n: u32, now: Instant) -> Result<T, Refusal> {
        self.sweep(now);
        self.spend(source, true, now)?;
        if self.busy(conn) {
            return Err(Refusal::NameplatesFull);
        }
        if let Some(why) = self.resting.get(&n) {
            return Err(*why);
        }
        match self.open.get(&n) {
            Some(o) if o.conn != conn => {}
            _ => return Err(Refusal::NoSuchNameplate),
        }
        let o = self.close(n, Refusal::NameplateUsed, now).expect("open");
        self.pairs.insert(conn, Pair { partner: o.conn, handle: o.handle.clone(), sent: 0 });
        self.pairs.insert(o.conn, Pair { partner: conn, handle, sent: 0 });
        Ok(o.handle)
    }

    /// A message of `len` bytes from `conn` to its partner: the partner's handle, if it may go.
    pub fn to_peer(&mut self, conn: u64, len: usize) -> Result<T, Refusal> {
        let pair = self.pairs.get_mut(&conn).ok_or(Refusal::PeerGone)?;
        if len > MAX_PEER_MESSAGE || pair.sent >= MAX_PEER_MESSAGES {
            return Err(Refusal::QueueFull);
        }
        pair.sent += 1;
        Ok(pair.handle.clone())
    }

    /// Connection `conn` closed: its nameplate ends, its pairing too; the partner to tell.
    pub fn leave(&mut self, conn: u64, now: Instant) -> Option<T> {
        if let Some(n) = self.by_conn.get(&conn).copied() {
            self.close(n, Refusal::NameplateExpired, now);
        }
        let pair = self.pairs.remove(&conn)?;
        self.pairs.remove(&pair.partner);
        Some(pair.handle)
    }

    /// End nameplates past their TTL and let rested numbers go; the holders to tell.
    pub fn sweep(&mut self, now: Instant) -> Vec<T> {
        let ttl = self.limits.ttl;
        let expired: Vec<u32> =
            self.open.iter().filter(|(_, o)| now.saturating_duration_since(o.at) >= ttl).map(|(n, _)| *n).collect();
        let told = expired.into_iter().filter_map(|n| self.close(n, Refusal::NameplateExpired, now)).map(|o| o.handle);
        let told = told.collect();
        // Numbers rest for one TTL, and the resting list is bounded too (oldest first out).
        let cap = self.limits.max_open.saturating_mul(2).max(1);
        while let Some(&(at, n)) = self.resting_order.front() {
            if now.saturating_duration_since(at) < ttl && self.resting_order.len() <= cap {
                break;
            }
            self.resting_order.pop_front();
            self.resting.remove(&n);
        }
        let full = self.limits.burst as f64;
        self.buckets.retain(|_, b| {
            let dt = now.saturating_duration_since(b.at).as_secs_f64() * self.limits.per_minute as f64 / 60.0;
            b.claims + dt < full || b.allocations + dt < full
        });
        told
    }

    /// Take nameplate `n` out of the table; it rests, remembering why it ended.
    fn close(&mut self, n: u32, why: Refusal, now: Instant) -> Option<Open<T>> {
        let o = self.open.remove(&n)?;
        self.by_conn.remove(&o.conn);
        if let Some(held) = self.by_source.get_mut(&o.source) {
            *held -= 1;
            if *held == 0 {
                self.by_source.remove(&o.source);
            }
        }
        self.resting.insert(n, why);
        self.resting_order.push_back((now, n));
        Some(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn table(max_open: usize) -> Nameplates<u64> {
        Nameplates::new(NameplateLimits { max_open, ..NameplateLimits::default() })
    }

    #[test]
    fn the_lowest_free_number_is_allocated_and_a_claim_pairs_once() {
        let (mut t, now) = (table(100), Instant::now());
        assert_eq!(t.allocate(1, ip(1), 1, now), Ok(1));
        assert_eq!(t.allocate(2, ip(1), 2, now), Ok(2));
        assert_eq!(t.allocate(1, ip(1), 1, now), Err(Refusal::NameplatesFull), "one per connection");
        assert_eq!(t.claim(1, ip(1), 1, 1, now), Err(Refusal::NameplatesFull), "not its own");
        assert_eq!(t.claim(3, ip(2), 3, 1, now), Ok(1));
        assert_eq!(t.claim(4, ip(2), 4, 1, now), Err(Refusal::NameplateUsed), "once");
        assert_eq!(t.claim(4, ip(2), 4, 9, now), Err(Refusal::NoSuchNameplate));
        assert_eq!((t.to_peer(3, 10), t.to_peer(1, 10)), (Ok(1), Ok(3)));
        assert_eq!(t.to_peer(2, 10), Err(Refusal::PeerGone), "2 is not paired");
        assert_eq!(t.to_peer(3, MAX_PEER_MESSAGE + 1), Err(Refusal::QueueFull));
        // 1 rests: the next allocation skips it.
        assert_eq!(t.allocate(5, ip(1), 5, now), Ok(3));
        assert_eq!(t.leave(1, now), Some(3), "the partner is told");
        assert_eq!(t.to_peer(3, 1), Err(Refusal::PeerGone));
        // A holder that leaves ends its nameplate: claimed later, it is expired.
        assert_eq!(t.leave(2, now), None);
        assert_eq!(t.claim(6, ip(3), 6, 2, now), Err(Refusal::NameplateExpired));
    }

    #[test]
    fn nameplates_expire_and_numbers_rest_for_one_ttl() {
        let (mut t, now) = (table(100), Instant::now());
        let ttl = t.limits.ttl;
        assert_eq!(t.allocate(1, ip(1), 1, now), Ok(1));
        assert_eq!(t.sweep(now + ttl), vec![1], "the holder is told");
        assert_eq!(t.claim(2, ip(2), 2, 1, now + ttl), Err(Refusal::NameplateExpired));
        assert_eq!(t.allocate(3, ip(1), 3, now + ttl), Ok(2), "1 rests");
        t.sweep(now + ttl * 2);
        assert_eq!(t.allocate(4, ip(1), 4, now + ttl * 2), Ok(1), "then it is free again");
    }

    #[test]
    fn claims_are_rate_limited_per_source_and_the_table_is_bounded() {
        let (mut t, now) = (table(8), Instant::now());
        let burst = t.limits.burst as u64;
        for i in 0..burst {
            assert_eq!(t.claim(100 + i, ip(9), 0, 1000, now), Err(Refusal::NoSuchNameplate));
        }
        assert_eq!(t.claim(200, ip(9), 0, 1000, now), Err(Refusal::RateLimited));
        assert_eq!(t.claim(201, ip(8), 0, 1000, now), Err(Refusal::NoSuchNameplate), "another source is served");
        // Tokens come back at `per_minute`.
        assert_eq!(t.claim(202, ip(9), 0, 1000, now + Duration::from_secs(3)), Err(Refusal::NoSuchNameplate));
        // A source may hold a quarter of the table; the table holds `max_open`.
        assert_eq!((t.allocate(1, ip(1), 1, now), t.allocate(2, ip(1), 2, now)), (Ok(1), Ok(2)));
        assert_eq!(t.allocate(3, ip(1), 3, now), Err(Refusal::NameplatesFull));
        for (conn, last) in (4..10).zip(2..) {
            assert!(t.allocate(conn, ip(last), conn, now).is_ok());
        }
        assert_eq!(t.open(), 8);
        assert_eq!(t.allocate(20, ip(50), 20, now), Err(Refusal::NameplatesFull));
    }
}
