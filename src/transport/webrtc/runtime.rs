//! The async runtime webrtc-rs runs on: tokio, with larger UDP socket buffers.
//!
//! A data channel is a stream of ~1.2 KB datagrams (SCTP's MTU). With the kernel's default
//! receive buffer (about 200 KiB, 90 such datagrams) a driver that is scheduled late — two busy
//! cores are enough — drops a burst at the socket, and SCTP halves its window and rebuilds it for
//! every loss. webrtc-rs binds its sockets itself and hands each to the runtime to wrap, so this
//! runtime is where the buffers are set, before delegating everything to webrtc-rs's tokio runtime.

use std::{
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime, TokioRuntime,
};

/// Receive and send buffer asked for each UDP socket. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max` (4 MiB on common distributions, 208 KiB on some); asking for
/// more is not an error.
const SOCKET_BUFFER: libc::c_int = 4 * 1024 * 1024;

#[derive(Debug)]
pub(super) struct BufferedTokio(TokioRuntime);

impl BufferedTokio {
    pub(super) fn shared() -> Arc<dyn Runtime> {
        Arc::new(BufferedTokio(TokioRuntime))
    }
}

fn set_buffer(socket: &std::net::UdpSocket, option: libc::c_int, size: libc::c_int) {
    // SAFETY: a valid socket descriptor, a c_int option value of the size given.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done != 0 {
        tracing::debug!("cannot set a UDP socket buffer: {}", io::Error::last_os_error());
    }
}

impl Runtime for BufferedTokio {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.0.spawn(future)
    }

    fn spawn_reactor(&self, size: usize, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.0.spawn_reactor(size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        set_buffer(&socket, libc::SO_RCVBUF, SOCKET_BUFFER);
        set_buffer(&socket, libc::SO_SNDBUF, SOCKET_BUFFER);
        self.0.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.0.connect_tcp(remote)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.0.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.0.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.0.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.yield_now()
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }
}
