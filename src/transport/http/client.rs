//! The dialling side of the HTTP path.
//!
//! [`connect`] races every address in a ticket: each attempt dials, posts the receiver's sealed
//! hello and reads the answer; the first answer that passes the caller's check (a manifest
//! sealed under the session key) wins, and its connection becomes the run's [`HttpLink`]. The link
//! reuses that connection for every later control frame, and dials the same address again only
//! when the connection is gone (an answer was abandoned half-way, or the peer closed it).
//!
//! [`deliver`] posts an offer to a peer's inbox, racing its addresses the same way.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, StatusCode,
    body::Incoming as Body,
    client::conn::http1::{self, SendRequest},
    header,
};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use super::{INBOX_PATH, transfer_path};
use crate::{
    core::PathKind,
    error::TransferError,
    frame::{self, HEADER_LEN, MAX_META_LEN, TAG_LEN},
    id::TransferId,
    task::AbortOnDrop,
    transport::{AttemptReport, Connected, Incoming, Link},
};

/// Frames a link buffers between the socket and the receiver's driver (which hands them on to
/// the disk worker at once): memory, not speed, is what a deeper queue would buy.
const INCOMING_DEPTH: usize = 2;

fn unreachable(addr: SocketAddr, e: impl std::fmt::Display) -> TransferError {
    TransferError::PeerUnreachable(format!("{addr}: {e}"))
}

type Conn = SendRequest<Full<Bytes>>;

async fn dial(addr: SocketAddr) -> Result<Conn, TransferError> {
    let stream = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        // Nothing listens there: the sender is not running (or serves from elsewhere).
        std::io::ErrorKind::ConnectionRefused => TransferError::NotServing(format!("{addr} refuses connections")),
        _ => unreachable(addr, e),
    })?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(addr, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, "connection closed: {e}");
        }
    });
    Ok(send)
}

/// Where one transfer's requests go, and with what authority.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    uri: String,
    auth: Option<String>,
    max_chunk: usize,
}

impl Target {
    /// Post `body` on `conn`; a non-2xx status is an error.
    async fn post(&self, conn: &mut Conn, body: Bytes) -> Result<hyper::Response<Body>, TransferError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&self.uri)
            .header(header::HOST, self.addr.to_string())
            .header(header::CONTENT_TYPE, "application/x-agentferry-frames");
        if let Some(auth) = &self.auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req.body(Full::new(body)).expect("valid request");
        conn.ready().await.map_err(|e| unreachable(self.addr, e))?;
        let resp = conn.send_request(req).await.map_err(|e| unreachable(self.addr, e))?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::FORBIDDEN if self.auth.is_some() => Err(TransferError::Unauthorized),
            // Only to a holder of the transfer's token: the sender finished it and is still up.
            StatusCode::GONE if self.auth.is_some() => {
                Err(TransferError::SenderCompleted(self.uri.rsplit('/').next().unwrap_or_default().to_owned()))
            }
            s => {
                // A peer's words cross a trust boundary here: keep a well-formed code, no prose.
                let body = read_limited(resp.into_body(), 4096).await.unwrap_or_default();
                let code = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned))
                    .filter(|c| c.len() <= 48 && c.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')));
                Err(TransferError::Protocol(code.unwrap_or_else(|| format!("HTTP {}", s.as_u16()))))
            }
        }
    }

    /// Post `body` on `conn` if it is still open (once more on a new connection if the old one
    /// turns out closed), else on a new connection. Returns the connection and the answer.
    async fn open(&self, conn: Option<Conn>, body: Bytes) -> Result<(Conn, Body), TransferError> {
        if let Some(mut conn) = conn.filter(|c| !c.is_closed()) {
            match self.post(&mut conn, body.clone()).await {
                Ok(resp) => return Ok((conn, resp.into_body())),
                Err(TransferError::PeerUnreachable(_)) => {} // closed under us: dial again
                Err(e) => return Err(e),
            }
        }
        let mut conn = dial(self.addr).await?;
        let resp = self.post(&mut conn, body).await?;
        Ok((conn, resp.into_body()))
    }

    /// Cut a response body into whole frames and hand each to `sink`; `Ok(false)` if the sink
    /// stopped listening.
    async fn frames(&self, mut body: Body, sink: &mpsc::Sender<Incoming>) -> Result<bool, TransferError> {
        let capacity = HEADER_LEN + self.max_chunk.max(MAX_META_LEN) + TAG_LEN;
        let mut buf = BytesMut::with_capacity(capacity);
        while let Some(next) = body.frame().await {
            let data = next.map_err(|e| unreachable(self.addr, e))?;
            let Ok(data) = data.into_data() else { continue };
            buf.extend_from_slice(&data);
            loop {
                match frame::check(&buf, self.max_chunk) {
                    Ok(Some(len)) => {
                        let whole = buf.split_to(len);
                        buf.reserve(capacity);
                        if sink.send(Incoming::Frame(whole)).await.is_err() {
                            return Ok(false);
                        }
                    }
                    Ok(None) => break,
                    // Desynchronised: hand over the garbage as one bad frame and stop.
                    Err(e) => {
                        let _ = sink.send(Incoming::Frame(BytesMut::new())).await;
                        return Err(TransferError::Protocol(format!("bad frame header: {e}")));
                    }
                }
            }
        }
        if !buf.is_empty() {
            return Err(unreachable(self.addr, "the answer ended inside a frame"));
        }
        Ok(true)
    }
}

/// The receiver's HTTP link: one authenticated connection, reused while it lives.
pub struct HttpLink {
    target: Arc<Target>,
    /// The connection, when no answer is streaming on it.
    idle: Option<Conn>,
    /// The connection comes back here once the answer streaming on it has ended.
    returned: Option<oneshot::Receiver<Conn>>,
    streaming: Option<AbortOnDrop>,
    incoming: mpsc::Sender<Incoming>,
}

impl HttpLink {
    /// The connection to use next: the idle one, the one an ended answer gave back, or a new one.
    fn take_conn(&mut self) -> Option<Conn> {
        self.streaming = None; // an answer abandoned half-way takes its connection with it
        self.idle.take().or_else(|| self.returned.take().and_then(|mut r| r.try_recv().ok()))
    }
}

/// Post `control` and stream the answer into `incoming`, then hand the connection back.
async fn exchange(
    target: Arc<Target>,
    conn: Option<Conn>,
    control: Bytes,
    incoming: mpsc::Sender<Incoming>,
    give_back: oneshot::Sender<Conn>,
) {
    // Refused, unreachable or unauthorised: this path is gone.
    let (mut conn, body) = match target.open(conn, control).await {
        Ok(opened) => opened,
        Err(e) => {
            let _ = incoming.send(Incoming::Lost(e)).await;
            return;
        }
    };
    match target.frames(body, &incoming).await {
        Ok(true) => {
            if conn.ready().await.is_ok() {
                let _ = give_back.send(conn);
            }
        }
        Ok(false) => return, // the link was dropped
        // A stream that broke half-way only ends; the next request tells whether the peer is there.
        Err(e) => tracing::debug!(addr = %target.addr, "answer ended: {e}"),
    }
    let _ = incoming.send(Incoming::StreamEnd).await;
}

impl Link for HttpLink {
    fn kind(&self) -> PathKind {
        PathKind::Http
    }

    fn peer(&self) -> String {
        self.target.addr.to_string()
    }

    fn send(&mut self, control: Bytes) -> BoxFuture<'_, Result<(), TransferError>> {
        let conn = self.take_conn();
        let (give_back, returned) = oneshot::channel();
        self.returned = Some(returned);
        let task = exchange(Arc::clone(&self.target), conn, control, self.incoming.clone(), give_back);
        self.streaming = Some(AbortOnDrop(tokio::spawn(task)));
        Box::pin(std::future::ready(Ok(())))
    }

    fn send_last(&mut self, control: Bytes) -> BoxFuture<'_, Result<(), TransferError>> {
        let conn = self.take_conn();
        let target = Arc::clone(&self.target);
        Box::pin(async move {
            let (_, body) = target.open(conn, control).await?;
            read_limited(body, MAX_META_LEN).await.map(drop)
        })
    }
}

async fn read_limited(body: Body, limit: usize) -> Result<Bytes, TransferError> {
    let collected = Limited::new(body, limit).collect().await.map_err(|e| TransferError::Protocol(e.to_string()))?;
    Ok(collected.to_bytes())
}

/// Race every address: dial, post `hello`, and keep the first connection whose first answered
/// frame passes `check`. Returns the winner (if any) and a report of every attempt that
/// finished; the error, when all fail, is the most telling one (a refusal over a timeout).
pub async fn connect(
    addrs: &[SocketAddr],
    id: TransferId,
    token: &str,
    max_chunk: usize,
    hello: Bytes,
    budget: Duration,
    check: impl Fn(&mut BytesMut) -> Result<(), TransferError> + Send + Sync + 'static,
) -> (Result<Connected, TransferError>, Vec<AttemptReport>) {
    let check = Arc::new(check);
    let mut attempts = JoinSet::new();
    for &addr in addrs {
        let target =
            Arc::new(Target { addr, uri: transfer_path(&id), auth: Some(format!("Bearer {token}")), max_chunk });
        let (hello, check) = (hello.clone(), Arc::clone(&check));
        attempts.spawn(async move {
            let started = Instant::now();
            let attempt = async {
                let (conn, body) = target.open(None, hello).await?;
                let answer = read_limited(body, HEADER_LEN + MAX_META_LEN + TAG_LEN).await?;
                let mut manifest = BytesMut::from(&answer[..]);
                if frame::check(&manifest, 0).ok().flatten() != Some(manifest.len()) {
                    return Err(TransferError::Protocol(format!("{addr}: the answer is not a manifest")));
                }
                check(&mut manifest)?;
                Ok((target, conn, manifest))
            };
            let result = tokio::time::timeout(budget, attempt)
                .await
                .unwrap_or_else(|_| Err(unreachable(addr, format!("no answer within {budget:?}"))));
            (addr, started.elapsed(), result)
        });
    }
    let mut reports = Vec::new();
    let mut best_error = None;
    while let Some(joined) = attempts.join_next().await {
        let Ok((addr, elapsed, result)) = joined else { continue };
        let report =
            |error| AttemptReport { kind: PathKind::Http, peer: addr.to_string(), elapsed, error, route: None };
        match result {
            Ok((target, conn, manifest)) => {
                reports.push(report(None));
                let (incoming_tx, incoming) = mpsc::channel(INCOMING_DEPTH);
                let link =
                    HttpLink { target, idle: Some(conn), returned: None, streaming: None, incoming: incoming_tx };
                return (Ok(Connected { link: Box::new(link), incoming, manifest }), reports);
            }
            Err(e) => {
                if best_error.as_ref().is_none_or(|best| telling(&e) >= telling(best)) {
                    best_error = Some(e.clone());
                }
                reports.push(report(Some(e)));
            }
        }
    }
    let error = best_error.unwrap_or_else(|| TransferError::PeerUnreachable("no address to try".into()));
    (Err(error), reports)
}

/// How much an address's failure says about the whole attempt: a sender that answered (it
/// finished, or refused the token) outweighs a network failure, and one address that may still
/// answer outweighs others that refuse connections (nobody serving *every* address is news).
fn telling(e: &TransferError) -> u8 {
    match e {
        TransferError::SenderCompleted(_) => 4,
        TransferError::Unauthorized | TransferError::IntegrityMismatch(_) => 3,
        TransferError::NotServing(_) => 1,
        _ => 2,
    }
}

/// Post an offer (JSON) to the first of a peer's inbox addresses that answers; returns its JSON
/// answer. A `Protocol` error means an inbox answered and refused.
pub async fn deliver(
    addrs: &[SocketAddr],
    budget: Duration,
    offer: &serde_json::Value,
) -> Result<serde_json::Value, TransferError> {
    let body = Bytes::from(serde_json::to_vec(offer).expect("json"));
    let mut attempts = JoinSet::new();
    for &addr in addrs {
        let body = body.clone();
        attempts.spawn(async move {
            let target = Target { addr, uri: INBOX_PATH.into(), auth: None, max_chunk: 0 };
            let attempt = async {
                let (_, answer) = target.open(None, body).await?;
                let answer = read_limited(answer, 64 * 1024).await?;
                serde_json::from_slice(&answer).map_err(|e| TransferError::Protocol(format!("inbox answer: {e}")))
            };
            tokio::time::timeout(budget, attempt)
                .await
                .unwrap_or_else(|_| Err(unreachable(addr, format!("no answer within {budget:?}"))))
        });
    }
    let mut best_error = TransferError::PeerUnreachable("no inbox address to try".into());
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => {
                if !matches!(best_error, TransferError::Protocol(_)) {
                    best_error = e;
                }
            }
            Err(_) => {}
        }
    }
    Err(best_error)
}
