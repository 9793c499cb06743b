//! The sending side of the HTTP path: a listener that serves every registered transfer.
//!
//! It checks the bearer token, hands the request's control frame to the transfer's [`Serve`]
//! and streams back what the session answers; it knows nothing else of transfers. Connections
//! come through an [`Acceptor`] (a cap, a share per source, back-off on accept errors) and are
//! served with a header read timeout, so idle or half-sent requests cannot exhaust the sender.
//!
//! The inbox (`POST /v1/inbox`) shares the listener with the transfers an MCP node serves, and
//! its bodies come before any authentication (the offer's MAC is in the body). So a body is
//! read only within [`INBOX_BODY_TIMEOUT`] and [`MAX_INBOX_BODY`], and only [`MAX_INBOX_READS`]
//! of them at once, [`MAX_INBOX_READS_PER_SOURCE`] per source; over that the inbox answers
//! `503 inbox_busy` without reading, and the transfers go on.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Frame, Incoming},
    header,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use super::{INBOX_PATH, PREFIX, guesses::Guesses};
use crate::{
    accept::{self, Accepted, Acceptor},
    core::PathKind,
    error::TransferError,
    frame::{HEADER_LEN, MAX_META_LEN, TAG_LEN},
    id::TransferId,
    task::AbortOnDrop,
    transport::Serve,
};

pub(super) type Body = BoxBody<Bytes, std::io::Error>;

/// An HTTP listener. It accepts connections once [`HttpServer::start`] is called, so routes
/// can be registered first and no early client meets a `403` for a transfer about to be
/// served. Dropping it stops accepting; open streams finish on their own.
pub struct HttpServer {
    local_addr: SocketAddr,
    routes: Arc<Routes>,
    listener: Mutex<Option<TcpListener>>,
    accept: Mutex<Option<AbortOnDrop>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

/// What answers `POST /v1/inbox`: the request body in, a status and a JSON body out.
pub type InboxFuture = Pin<Box<dyn Future<Output = (StatusCode, serde_json::Value)> + Send>>;
pub type InboxHandler = Arc<dyn Fn(Bytes) -> InboxFuture + Send + Sync>;

/// Largest inbox message accepted.
const MAX_INBOX_BODY: usize = 64 * 1024;
/// An inbox body not all there by then is dropped (`408`): an offer is a few kilobytes.
const INBOX_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Inbox bodies read at once, in all and per source.
const MAX_INBOX_READS: usize = 32;
const MAX_INBOX_READS_PER_SOURCE: usize = 4;

/// Tells whether a bearer token is the one of a transfer that has ended.
pub type TokenCheck = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Completed transfers a listener remembers, to tell their receivers so (`410 Gone`).
const RETIRED_KEPT: usize = 256;

#[derive(Default)]
struct Routes {
    transfers: Mutex<HashMap<TransferId, Arc<dyn Serve>>>,
    /// Completed transfers, oldest first.
    retired: Mutex<VecDeque<(TransferId, TokenCheck)>>,
    inbox: Mutex<Option<InboxHandler>>,
    /// Inbox bodies being read, per source.
    inbox_reads: Mutex<HashMap<IpAddr, usize>>,
    /// Wrong tokens offered, per transfer and source.
    guesses: Mutex<Guesses>,
}

/// One inbox body being read, counted against the caps until dropped.
struct InboxRead<'a> {
    routes: &'a Routes,
    source: IpAddr,
}

impl Routes {
    /// Room to read one more inbox body from `peer`, if the caps allow.
    fn inbox_read(&self, peer: SocketAddr) -> Option<InboxRead<'_>> {
        let source = accept::source(peer.ip());
        let mut reads = self.inbox_reads.lock().expect("not poisoned");
        let total: usize = reads.values().sum();
        let mine = reads.entry(source).or_default();
        if total >= MAX_INBOX_READS || *mine >= MAX_INBOX_READS_PER_SOURCE {
            if *mine == 0 {
                reads.remove(&source);
            }
            return None;
        }
        *mine += 1;
        Some(InboxRead { routes: self, source })
    }

    fn retired(&self, id: &TransferId, token: &str) -> bool {
        self.retired.lock().expect("not poisoned").iter().any(|(retired, check)| retired == id && check(token))
    }
}

impl HttpServer {
    /// Bind `addr` (port 0 for an ephemeral port); call [`HttpServer::start`] to serve.
    pub async fn bind(addr: SocketAddr) -> Result<Self, TransferError> {
        let listener = TcpListener::bind(addr).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => TransferError::AddressInUse(addr.to_string()),
            _ => TransferError::io(addr.to_string(), e),
        })?;
        let local_addr = listener.local_addr().map_err(|e| TransferError::io(addr.to_string(), e))?;
        Ok(HttpServer {
            local_addr,
            routes: Arc::new(Routes::default()),
            listener: Mutex::new(Some(listener)),
            accept: Mutex::new(None),
        })
    }

    /// Start accepting connections (once; later calls do nothing).
    pub fn start(&self) {
        if let Some(listener) = self.listener.lock().expect("not poisoned").take() {
            let task = tokio::spawn(accept_loop(listener, Arc::clone(&self.routes)));
            *self.accept.lock().expect("not poisoned") = Some(AbortOnDrop(task));
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn register(&self, serve: Arc<dyn Serve>) {
        self.routes.transfers.lock().expect("not poisoned").insert(serve.transfer_id(), serve);
    }

    pub fn unregister(&self, id: &TransferId) {
        self.routes.transfers.lock().expect("not poisoned").remove(id);
    }

    /// Stop serving a completed transfer, and from now on answer its receivers (those whose
    /// token `check` accepts; anyone else still gets a bare `403`) that it is complete, while
    /// this listener lives: a long-lived sender (MCP server, `listen`) tells a receiver re-using
    /// the ticket why there is nothing to fetch.
    pub fn retire(&self, id: TransferId, check: TokenCheck) {
        self.unregister(&id);
        let mut retired = self.routes.retired.lock().expect("not poisoned");
        if retired.len() == RETIRED_KEPT {
            retired.pop_front();
        }
        retired.push_back((id, check));
    }

    /// Answer `POST /v1/inbox` with `handler` from now on.
    pub fn set_inbox(&self, handler: InboxHandler) {
        *self.routes.inbox.lock().expect("not poisoned") = Some(handler);
    }
}

impl Drop for InboxRead<'_> {
    fn drop(&mut self) {
        let mut reads = self.routes.inbox_reads.lock().expect("not poisoned");
        if let Some(n) = reads.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                reads.remove(&self.source);
            }
        }
    }
}

/// Connections one HTTP listener serves at once: many transfers and the inbox share it, and
/// each receiver holds one or two.
const MAX_CONNECTIONS: usize = 512;
/// One source may hold an eighth of them.
const SOURCE_SHARE: usize = 8;

async fn accept_loop(listener: TcpListener, routes: Arc<Routes>) {
    let mut acceptor = Acceptor::new(listener, MAX_CONNECTIONS, SOURCE_SHARE);
    loop {
        let Accepted { stream, peer, permit } = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let routes = Arc::clone(&routes);
                async move { Ok::<_, Infallible>(route(req, &routes, peer).await) }
            });
            if let Err(e) = accept::http1().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("json");
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("valid"));
    resp
}

async fn inbox(req: Request<Incoming>, routes: &Routes, peer: SocketAddr) -> Response<Body> {
    let handler = routes.inbox.lock().expect("not poisoned").clone();
    let Some(handler) = handler else { return empty(StatusCode::NOT_FOUND) };
    if req.method() != Method::POST {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let code = |status, code: &str| json(status, &serde_json::json!({ "code": code }));
    let Some(reading) = routes.inbox_read(peer) else {
        return code(StatusCode::SERVICE_UNAVAILABLE, "inbox_busy");
    };
    let body = http_body_util::Limited::new(req.into_body(), MAX_INBOX_BODY).collect();
    let body = tokio::time::timeout(INBOX_BODY_TIMEOUT, body).await;
    drop(reading);
    match body {
        Ok(Ok(body)) => {
            let (status, answer) = handler(body.to_bytes()).await;
            json(status, &answer)
        }
        Ok(Err(_)) => code(StatusCode::PAYLOAD_TOO_LARGE, "offer_malformed"),
        Err(_) => code(StatusCode::REQUEST_TIMEOUT, "inbox_timeout"),
    }
}

async fn route(req: Request<Incoming>, routes: &Routes, peer: SocketAddr) -> Response<Body> {
    if req.uri().path() == INBOX_PATH {
        return inbox(req, routes, peer).await;
    }
    if let Some(page) = crate::web::answer(&req) {
        return page.map(|body| body.map_err(|never| match never {}).boxed());
    }
    let Some(rest) = req.uri().path().strip_prefix(PREFIX) else { return empty(StatusCode::NOT_FOUND) };
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(id) = id.parse::<TransferId>() else { return empty(StatusCode::FORBIDDEN) };
    let (source, now) = (accept::source(peer.ip()), std::time::Instant::now());
    if routes.guesses.lock().expect("not poisoned").refuses(id, source, now) {
        return empty(StatusCode::TOO_MANY_REQUESTS);
    }
    let serve = routes.transfers.lock().expect("not poisoned").get(&id).cloned();
    let token = bearer(&req).unwrap_or_default();
    let known = serve.is_some();
    let Some(serve) = serve.filter(|s| s.authorises(token)) else {
        if routes.retired(&id, token) {
            return empty(StatusCode::GONE);
        }
        if known {
            routes.guesses.lock().expect("not poisoned").wrong(id, source, now);
        }
        return empty(StatusCode::FORBIDDEN);
    };
    if req.method() != Method::POST || !action.is_empty() {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let limit = HEADER_LEN + MAX_META_LEN + TAG_LEN;
    let Ok(control) = http_body_util::Limited::new(req.into_body(), limit).collect().await else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let session = serve.open_session(PathKind::Http);
    if session.controls.send(control.to_bytes()).await.is_err() {
        return empty(StatusCode::SERVICE_UNAVAILABLE);
    }
    // Closing the controls ends the session once it has answered this one.
    drop(session.controls);
    let stream = ReceiverStream::new(session.frames).map(|frame| Ok(Frame::data(frame)));
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/x-agentferry-frames".parse().expect("valid"));
    resp
}
