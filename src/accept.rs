//! Accepting TCP connections so that no flood can take a listener, or the process, down.
//!
//! Both listeners (the sender's HTTP server and the relay) accept through an [`Acceptor`]:
//!
//! - **A cap per listener.** Each accepted connection holds a permit until it closes (for the
//!   relay, until its WebSocket closes: a connection counts before it is upgraded, too). Over the
//!   cap, a new connection is accepted and closed at once, so the backlog never fills with
//!   connections waiting behind idle ones, and an honest client's retry gets in as soon as one
//!   closes. The cap is also kept below a quarter of the process's file descriptors.
//! - **A share per source.** One [`source`] (an IPv4 address, or an IPv6 /64, which one
//!   subscriber usually holds whole) may hold only a share of the *effective* cap, so a flood
//!   from one machine leaves the rest of the listener to everyone else.
//! - **Back-off on accept errors.** Running out of file descriptors makes `accept` fail at once,
//!   forever; retrying in a tight loop burns a core and, with a log line per failure, fills the
//!   disk. The acceptor sleeps (10 ms doubling to 1 s) and logs at most once per interval.
//! - **A header timeout.** hyper's `header_read_timeout` does nothing without a timer; [`http1`]
//!   gives it one, so a connection that never finishes its request head is closed.
//!
//! [`raise_fd_limit`] lifts the soft file descriptor limit to the hard one at start, so the
//! process's own caps, not an arbitrary default of 1024, decide.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hyper_util::rt::TokioTimer;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// A client that has not sent its whole request head by then is disconnected.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// One warning per interval at most, whatever fails.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The soft limit on open files (`RLIMIT_NOFILE`), if it can be read.
pub fn fd_limit() -> Option<u64> {
    // SAFETY: getrlimit writes into a properly sized struct.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur as u64)
}

/// Raise the soft limit on open files to the hard limit. Returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit read and write a properly sized struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
        Some(lim.rlim_cur as u64)
    }
}

/// An HTTP/1 connection builder with a timer and a header read timeout.
pub fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder
}

/// Logs a repeated failure once per [`LOG_INTERVAL`], with how often it was suppressed.
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn warn(&mut self, what: &str, addr: SocketAddr, e: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_INTERVAL) {
            self.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        tracing::warn!(%addr, suppressed, "{what}: {e}");
        self.last = Some(now);
    }
}

/// Who a connection is from, for shares: its IPv4 address, or its IPv6 /64 (an IPv4 address
/// mapped into IPv6 counts as itself).
pub fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// Connections open now, per source.
type BySource = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One accepted connection and its place under the listener's caps.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Hold this for as long as the connection (or what it was upgraded to) lives.
    pub permit: Slot,
}

/// A connection's place under the listener's cap and its source's share; dropping it frees both.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    source: IpAddr,
    by_source: BySource,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_source = self.by_source.lock().expect("not poisoned");
        if let Some(n) = by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&self.source);
            }
        }
    }
}

/// A listener with a connection cap, a share per source and back-off on errors.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    local: SocketAddr,
    permits: Arc<Semaphore>,
    cap: usize,
    source_cap: usize,
    by_source: BySource,
    backoff: Duration,
    errors: Throttled,
    over_cap: Throttled,
}

impl Acceptor {
    /// Accept on `listener`, at most `max_connections` at once (fewer if file descriptors are
    /// scarce: a quarter of the soft limit, at least 16), and from one [`source`] at most a
    /// `1 / source_share` of that effective cap.
    pub fn new(listener: TcpListener, max_connections: usize, source_share: usize) -> Self {
        let fd_share = fd_limit().map_or(usize::MAX, |n| (n / 4).max(16) as usize);
        let cap = max_connections.min(fd_share).max(1);
        let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Acceptor {
            listener,
            local,
            permits: Arc::new(Semaphore::new(cap)),
            cap,
            source_cap: (cap / source_share.max(1)).max(1),
            by_source: BySource::default(),
            backoff: BACKOFF_MIN,
            errors: Throttled::default(),
            over_cap: Throttled::default(),
        }
    }

    /// A slot for a connection from `peer`, if the listener and the peer's source have room.
    fn slot(&self, peer: SocketAddr) -> Option<Slot> {
        let source = source(peer.ip());
        let mut by_source = self.by_source.lock().expect("not poisoned");
        if by_source.get(&source).is_some_and(|held| *held >= self.source_cap) {
            return None;
        }
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        *by_source.entry(source).or_default() += 1;
        Some(Slot { _permit: permit, source, by_source: Arc::clone(&self.by_source) })
    }

    /// Connections one source may hold at once.
    pub fn source_cap(&self) -> usize {
        self.source_cap
    }

    /// The effective cap on concurrent connections.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.cap - self.permits.available_permits()
    }

    /// The next connection under the caps. Connections over them are closed as they come;
    /// accept errors are waited out.
    pub async fn accept(&mut self) -> Accepted {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = BACKOFF_MIN;
                    match self.slot(peer) {
                        Some(permit) => return Accepted { stream, peer, permit },
                        None => {
                            drop(stream);
                            let caps = format!("{} in all, {} per source", self.cap, self.source_cap);
                            self.over_cap.warn("connection limit reached; closing new connections", self.local, &caps);
                        }
                    }
                }
                Err(e) => {
                    self.errors.warn("accept failed; backing off", self.local, &e);
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
        assert_ne!(source(ip("2001:db8:1:3::1")), source(ip("2001:db8:1:2::1")));
    }
}
