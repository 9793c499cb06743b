//! Accepting TCP connections so that no flood can take a listener, or the process, down.
//!
//! Both listeners (the sender's HTTP server and the relay) accept through an [`Acceptor`]:
//!
//! - **A cap per listener.** Each accepted connection holds a permit until it closes (for the
//!   relay, until its WebSocket closes: a connection counts before it is upgraded, too). Over the
//!   cap, a new connection is accepted and closed at once, so the backlog never fills with
//!   connections waiting behind idle ones, and an honest client's retry gets in as soon as one
//!   closes. The cap is also kept below a quarter of the process's file descriptors.
//! - **Back-off on accept errors.** Running out of file descriptors makes `accept` fail at once,
//!   forever; retrying in a tight loop burns a core and, with a log line per failure, fills the
//!   disk. The acceptor sleeps (10 ms doubling to 1 s) and logs at most once per interval.
//! - **A header timeout.** hyper's `header_read_timeout` does nothing without a timer; [`http1`]
//!   gives it one, so a connection that never finishes its request head is closed.
//!
//! [`raise_fd_limit`] lifts the soft file descriptor limit to the hard one at start, so the
//! process's own caps, not an arbitrary default of 1024, decide.

use std::{
    net::SocketAddr,
    sync::Arc,
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

/// One accepted connection and its place under the listener's cap.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Hold this for as long as the connection (or what it was upgraded to) lives.
    pub permit: OwnedSemaphorePermit,
}

/// A listener with a connection cap and back-off on errors.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    local: SocketAddr,
    permits: Arc<Semaphore>,
    cap: usize,
    backoff: Duration,
    errors: Throttled,
    over_cap: Throttled,
}

impl Acceptor {
    /// Accept on `listener`, at most `max_connections` at once (fewer if file descriptors are
    /// scarce: a quarter of the soft limit, at least 16).
    pub fn new(listener: TcpListener, max_connections: usize) -> Self {
        let fd_share = fd_limit().map_or(usize::MAX, |n| (n / 4).max(16) as usize);
        let cap = max_connections.min(fd_share).max(1);
        let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Acceptor {
            listener,
            local,
            permits: Arc::new(Semaphore::new(cap)),
            cap,
            backoff: BACKOFF_MIN,
            errors: Throttled::default(),
            over_cap: Throttled::default(),
        }
    }

    /// The effective cap on concurrent connections.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.cap - self.permits.available_permits()
    }

    /// The next connection under the cap. Connections over the cap are closed as they come;
    /// accept errors are waited out.
    pub async fn accept(&mut self) -> Accepted {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = BACKOFF_MIN;
                    match Arc::clone(&self.permits).try_acquire_owned() {
                        Ok(permit) => return Accepted { stream, peer, permit },
                        Err(_) => {
                            drop(stream);
                            let cap = self.cap;
                            self.over_cap.warn("connection limit reached; closing new connections", self.local, &cap);
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
