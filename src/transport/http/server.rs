//! The sending side of the HTTP path: a listener that serves every registered [`Outgoing`].
//!
//! Connections come through an [`Acceptor`] (a cap, back-off on accept errors) and are served
//! with a header read timeout, so idle or half-sent requests cannot exhaust the sender.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
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
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use super::{INBOX_PATH, PREFIX};
use crate::{
    accept::{self, Accepted, Acceptor},
    core,
    engine::Outgoing,
    error::TransferError,
    id::TransferId,
};

type Body = BoxBody<Bytes, std::io::Error>;

/// An HTTP listener. It accepts connections once [`HttpServer::start`] is called, so routes
/// can be registered first and no early client meets a `403` for a transfer about to be
/// served. Dropping it stops accepting; open streams finish on their own.
pub struct HttpServer {
    local_addr: SocketAddr,
    routes: Arc<Routes>,
    listener: Mutex<Option<TcpListener>>,
    accept: Mutex<Option<JoinHandle<()>>>,
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

#[derive(Default)]
struct Routes {
    transfers: Mutex<HashMap<TransferId, Arc<Outgoing>>>,
    inbox: Mutex<Option<InboxHandler>>,
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
            *self.accept.lock().expect("not poisoned") = Some(task);
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn register(&self, outgoing: Arc<Outgoing>) {
        self.routes.transfers.lock().expect("not poisoned").insert(outgoing.transfer_id, outgoing);
    }

    pub fn unregister(&self, id: &TransferId) {
        self.routes.transfers.lock().expect("not poisoned").remove(id);
    }

    /// Answer `POST /v1/inbox` with `handler` from now on.
    pub fn set_inbox(&self, handler: InboxHandler) {
        *self.routes.inbox.lock().expect("not poisoned") = Some(handler);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().expect("not poisoned").take() {
            task.abort();
        }
    }
}

/// Connections one HTTP listener serves at once: many transfers and the inbox share it, and
/// each receiver holds one or two.
const MAX_CONNECTIONS: usize = 512;

async fn accept_loop(listener: TcpListener, routes: Arc<Routes>) {
    let mut acceptor = Acceptor::new(listener, MAX_CONNECTIONS);
    loop {
        let Accepted { stream, peer, permit } = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let routes = Arc::clone(&routes);
                async move { Ok::<_, Infallible>(route(req, &routes).await) }
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

fn query_u64(query: Option<&str>, key: &str) -> Option<u64> {
    query?.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("json");
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("valid"));
    resp
}

async fn inbox(req: Request<Incoming>, routes: &Routes) -> Response<Body> {
    let handler = routes.inbox.lock().expect("not poisoned").clone();
    let Some(handler) = handler else { return empty(StatusCode::NOT_FOUND) };
    if req.method() != Method::POST {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    match http_body_util::Limited::new(req.into_body(), MAX_INBOX_BODY).collect().await {
        Ok(body) => {
            let (status, answer) = handler(body.to_bytes()).await;
            json(status, &answer)
        }
        Err(_) => json(StatusCode::PAYLOAD_TOO_LARGE, &serde_json::json!({ "code": "offer_malformed" })),
    }
}

async fn route(req: Request<Incoming>, routes: &Routes) -> Response<Body> {
    if req.uri().path() == INBOX_PATH {
        return inbox(req, routes).await;
    }
    let Some(rest) = req.uri().path().strip_prefix(PREFIX) else { return empty(StatusCode::NOT_FOUND) };
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let outgoing = id
        .parse::<TransferId>()
        .ok()
        .and_then(|id| routes.transfers.lock().expect("not poisoned").get(&id).cloned())
        .filter(|o| bearer(&req).is_some_and(|t| o.authorises(t)));
    let Some(outgoing) = outgoing else { return empty(StatusCode::FORBIDDEN) };

    match (req.method(), action) {
        (&Method::HEAD, "") => empty(StatusCode::OK),
        (&Method::GET, "") => {
            let body = Full::new(outgoing.sealed_manifest()).map_err(|never| match never {}).boxed();
            Response::new(body)
        }
        (&Method::GET, "frames") => {
            let count = outgoing.manifest().chunk_count();
            let from = query_u64(req.uri().query(), "from").unwrap_or(0);
            let to = query_u64(req.uri().query(), "to").unwrap_or(count);
            if from > to || to > count {
                return empty(StatusCode::RANGE_NOT_SATISFIABLE);
            }
            let frames = ReceiverStream::new(outgoing.frames(core::Request { from, to }));
            let stream = frames.map(|item| item.map(Frame::data));
            let mut resp = Response::new(StreamBody::new(stream).boxed());
            resp.headers_mut().insert(header::CONTENT_TYPE, "application/x-agentferry-frames".parse().unwrap());
            resp
        }
        (&Method::POST, "complete") => {
            let Ok(body) = http_body_util::Limited::new(req.into_body(), 1024).collect().await else {
                return empty(StatusCode::BAD_REQUEST);
            };
            #[derive(serde::Deserialize)]
            struct Complete {
                sha256: String,
            }
            match serde_json::from_slice::<Complete>(&body.to_bytes()) {
                Ok(c) if outgoing.handle_complete(&c.sha256) => empty(StatusCode::NO_CONTENT),
                Ok(_) => empty(StatusCode::CONFLICT),
                Err(_) => empty(StatusCode::BAD_REQUEST),
            }
        }
        _ => empty(StatusCode::METHOD_NOT_ALLOWED),
    }
}
