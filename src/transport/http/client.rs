//! The receiving side of the HTTP path: race every advertised address, keep the first that proves
//! it holds the session key, then stream frames from it.

use std::{
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

use super::PREFIX;
use crate::{core, error::TransferError, frame::MAX_META_LEN, id::TransferId};

/// One attempt at one address, for the record shown to users.
#[derive(Debug)]
pub struct AttemptReport {
    pub addr: SocketAddr,
    pub elapsed: Duration,
    pub error: Option<TransferError>,
}

/// An open, authenticated connection to the sender.
#[derive(Debug)]
pub struct HttpPeer {
    addr: SocketAddr,
    base: String,
    auth: String,
    send: SendRequest<Full<Bytes>>,
}

/// The winner of [`connect_any`], with what its probe answered.
#[derive(Debug)]
pub struct Connected<T> {
    pub peer: HttpPeer,
    pub answer: T,
}

fn status_error(status: StatusCode) -> TransferError {
    match status {
        StatusCode::FORBIDDEN => TransferError::Unauthorized,
        s => TransferError::Protocol(format!("unexpected HTTP status {s}")),
    }
}

impl HttpPeer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn dial(addr: SocketAddr, id: &TransferId, token: &str) -> Result<Self, TransferError> {
        let stream =
            TcpStream::connect(addr).await.map_err(|e| TransferError::PeerUnreachable(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TransferError::PeerUnreachable(format!("{addr}: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, "connection closed: {e}");
            }
        });
        Ok(HttpPeer { addr, base: format!("{PREFIX}{id}"), auth: format!("Bearer {token}"), send })
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, TransferError> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::HOST, self.addr.to_string())
            .header(header::AUTHORIZATION, &self.auth)
            .body(Full::new(body))
            .expect("valid request");
        self.send.ready().await.map_err(|e| TransferError::PeerUnreachable(format!("{}: {e}", self.addr)))?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| TransferError::PeerUnreachable(format!("{}: {e}", self.addr)))?;
        if !resp.status().is_success() {
            return Err(status_error(resp.status()));
        }
        Ok(resp)
    }

    /// Fetch the sealed manifest (the probe).
    async fn manifest(&mut self) -> Result<BytesMut, TransferError> {
        let resp = self.request(Method::GET, "", Bytes::new()).await?;
        let body = Limited::new(resp.into_body(), MAX_META_LEN + 64)
            .collect()
            .await
            .map_err(|e| TransferError::Protocol(format!("manifest: {e}")))?;
        Ok(BytesMut::from(body.to_bytes()))
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
}

/// Dial every address at once and probe each for the manifest; the first whose answer passes
/// `verify` (i.e. authenticates under the session key) wins and the rest are dropped.
/// Returns the winner (if any) and a report of every attempt that finished.
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
    let mut probes = JoinSet::new();
    for &addr in addrs {
        let (token, verify) = (token.to_owned(), verify.clone());
        probes.spawn(async move {
            let started = Instant::now();
            let attempt = async {
                let mut peer = HttpPeer::dial(addr, &id, &token).await?;
                let mut frame = peer.manifest().await?;
                let answer = verify(&mut frame)?;
                Ok(Connected { peer, answer })
            };
            let result = tokio::time::timeout(budget, attempt).await.unwrap_or_else(|_| {
                Err(TransferError::PeerUnreachable(format!("{addr}: no answer within {budget:?}")))
            });
            (addr, started.elapsed(), result)
        });
    }
    let mut reports = Vec::new();
    let mut best_error = None;
    while let Some(joined) = probes.join_next().await {
        let Ok((addr, elapsed, result)) = joined else { continue };
        match result {
            Ok(connected) => {
                reports.push(AttemptReport { addr, elapsed, error: None });
                return (Ok(connected), reports);
            }
            Err(e) => {
                // A sender that refused us says more than one that did not answer.
                if !matches!(best_error, Some(TransferError::Unauthorized | TransferError::IntegrityMismatch(_))) {
                    best_error = Some(e.duplicate());
                }
                reports.push(AttemptReport { addr, elapsed, error: Some(e) });
            }
        }
    }
    let error = best_error.unwrap_or_else(|| TransferError::PeerUnreachable("the ticket lists no address".into()));
    (Err(error), reports)
}
