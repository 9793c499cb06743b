//! The dialling side of the HTTP path: race every advertised address and keep the first whose
//! answer passes the caller's check — for a transfer, a manifest sealed under the session key.

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, StatusCode,
    body::Incoming,
    client::conn::http1::{self, SendRequest},
    header,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, task::JoinSet};

use super::{INBOX_PATH, PREFIX};
use crate::{core, error::TransferError, frame::MAX_META_LEN, id::TransferId};

/// One attempt at one address, for the record shown to users.
#[derive(Debug)]
pub struct AttemptReport {
    pub addr: SocketAddr,
    pub elapsed: Duration,
    pub error: Option<TransferError>,
}

/// An open connection to a peer, with the bearer token for one transfer (if any).
#[derive(Debug)]
pub struct HttpPeer {
    addr: SocketAddr,
    base: String,
    auth: Option<String>,
    send: SendRequest<Full<Bytes>>,
}

/// The winner of [`race`], with what its operation answered.
#[derive(Debug)]
pub struct Connected<T> {
    pub peer: HttpPeer,
    pub answer: T,
}

fn unreachable(addr: SocketAddr, e: impl std::fmt::Display) -> TransferError {
    TransferError::PeerUnreachable(format!("{addr}: {e}"))
}

impl HttpPeer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn dial(addr: SocketAddr) -> Result<Self, TransferError> {
        let stream = TcpStream::connect(addr).await.map_err(|e| unreachable(addr, e))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(addr, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, "connection closed: {e}");
            }
        });
        Ok(HttpPeer { addr, base: String::new(), auth: None, send })
    }

    /// Address requests to transfer `id`, authorised by `token`.
    fn for_transfer(mut self, id: &TransferId, token: &str) -> Self {
        self.base = format!("{PREFIX}{id}");
        self.auth = Some(format!("Bearer {token}"));
        self
    }

    /// Send a request; any non-2xx status is returned as an error, with its body.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, TransferError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::HOST, self.addr.to_string());
        if let Some(auth) = &self.auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req.body(Full::new(body)).expect("valid request");
        self.send.ready().await.map_err(|e| unreachable(self.addr, e))?;
        let resp = self.send.send_request(req).await.map_err(|e| unreachable(self.addr, e))?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::FORBIDDEN if self.auth.is_some() => Err(TransferError::Unauthorized),
            s => {
                let body = read_limited(resp.into_body(), 4096).await.unwrap_or_default();
                Err(TransferError::Protocol(format!("HTTP {s}: {}", String::from_utf8_lossy(&body))))
            }
        }
    }

    /// Fetch the sealed manifest (the probe).
    async fn manifest(&mut self) -> Result<BytesMut, TransferError> {
        let resp = self.request(Method::GET, "", Bytes::new()).await?;
        Ok(BytesMut::from(read_limited(resp.into_body(), MAX_META_LEN + 64).await?))
    }

    /// Ask for the frames of `request`; the body streams them.
    pub async fn frames(&mut self, request: core::Request) -> Result<Incoming, TransferError> {
        let path = format!("/frames?from={}&to={}", request.from, request.to);
        Ok(self.request(Method::GET, &path, Bytes::new()).await?.into_body())
    }

    /// Tell the sender the file arrived whole.
    pub async fn complete(&mut self, sha256: &str) -> Result<(), TransferError> {
        let body = serde_json::to_vec(&serde_json::json!({ "sha256": sha256 })).expect("json");
        self.request(Method::POST, "/complete", body.into()).await?;
        Ok(())
    }

    /// Post a JSON message to the peer's inbox; returns the JSON answer.
    pub async fn deliver(&mut self, message: &serde_json::Value) -> Result<serde_json::Value, TransferError> {
        let body = serde_json::to_vec(message).expect("json");
        let resp = self.request(Method::POST, INBOX_PATH, body.into()).await?;
        let answer = read_limited(resp.into_body(), 64 * 1024).await?;
        serde_json::from_slice(&answer).map_err(|e| TransferError::Protocol(format!("inbox answer: {e}")))
    }
}

async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, TransferError> {
    let collected = Limited::new(body, limit).collect().await.map_err(|e| TransferError::Protocol(e.to_string()))?;
    Ok(collected.to_bytes())
}

/// Dial every address at once and run `op` on each connection; the first `op` to succeed wins
/// and the rest are dropped. Returns the winner (if any) and a report of every attempt that
/// finished. The error, when all fail, is the most telling one (a refusal over a timeout).
pub async fn race<T, F, Fut>(
    addrs: &[SocketAddr],
    budget: Duration,
    op: F,
) -> (Result<Connected<T>, TransferError>, Vec<AttemptReport>)
where
    T: Send + 'static,
    F: Fn(HttpPeer) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Connected<T>, TransferError>> + Send,
{
    let mut attempts = JoinSet::new();
    for &addr in addrs {
        let op = op.clone();
        attempts.spawn(async move {
            let started = Instant::now();
            let attempt = async { op(HttpPeer::dial(addr).await?).await };
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
        match result {
            Ok(connected) => {
                reports.push(AttemptReport { addr, elapsed, error: None });
                return (Ok(connected), reports);
            }
            Err(e) => {
                if !matches!(best_error, Some(TransferError::Unauthorized | TransferError::IntegrityMismatch(_))) {
                    best_error = Some(e.duplicate());
                }
                reports.push(AttemptReport { addr, elapsed, error: Some(e) });
            }
        }
    }
    let error = best_error.unwrap_or_else(|| TransferError::PeerUnreachable("no address to try".into()));
    (Err(error), reports)
}

/// Race the addresses of a transfer's sender; the first whose manifest passes `verify` (i.e.
/// authenticates under the session key) wins.
pub async fn connect_any<T, F>(
    addrs: &[SocketAddr],
    id: TransferId,
    token: &str,
    budget: Duration,
    verify: F,
) -> (Result<Connected<T>, TransferError>, Vec<AttemptReport>)
where
    T: Send + 'static,
    F: Fn(&mut BytesMut) -> Result<T, TransferError> + Clone + Send + Sync + 'static,
{
    let token = token.to_owned();
    race(addrs, budget, move |peer| {
        let (token, verify) = (token.clone(), verify.clone());
        async move {
            let mut peer = peer.for_transfer(&id, &token);
            let mut frame = peer.manifest().await?;
            let answer = verify(&mut frame)?;
            Ok(Connected { peer, answer })
        }
    })
    .await
}
