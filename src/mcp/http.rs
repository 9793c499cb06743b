//! MCP over Streamable HTTP (`agentferry mcp --http ADDR`): the same [`FerryServer`] behind
//! rmcp's Streamable HTTP service, for agents that have no stdio (web agents, hosted assistants).
//!
//! One endpoint, `http://ADDR/mcp`: POST for requests, GET for the server's SSE stream, DELETE to
//! end a session. Each request passes, in this order: the `Origin` check (a page a browser loaded
//! from anywhere but this machine is refused with 403, against DNS rebinding), the bearer token
//! (401 without it; compared in constant time, as SHA-256 digests so that not even its length
//! shows), then rmcp, which checks `Host` (loopback names only, unless remote clients are
//! allowed), keeps sessions (`Mcp-Session-Id`) and lets a client resume an SSE stream with
//! `Last-Event-ID`. Only loopback addresses are served unless `--allow-remote` says otherwise.
//!
//! Every session shares one server: one node, one registry of transfers, one task list, and the
//! roots given by `--root` (HTTP clients have no roots to ask for). The token lives in
//! `<home>/mcp-token` (0600), made at the first start and printed once to stderr, unless
//! `AGENTFERRY_MCP_TOKEN` gives it; it is never logged. This module holds no tool logic.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService, streamable_http_server::session::local::LocalSessionManager,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::{net::TcpListener, sync::Semaphore};

use super::FerryServer;
use crate::{
    error::{Result, TransferError},
    home::{Home, write_private_atomic},
};

/// The file in the node home that keeps the token.
pub const TOKEN_FILE: &str = "mcp-token";
/// The variable that gives the token instead.
pub const TOKEN_ENV: &str = "AGENTFERRY_MCP_TOKEN";
/// The shortest token accepted from [`TOKEN_ENV`]: shorter ones are guessable.
const MIN_TOKEN: usize = 16;
/// The path of the MCP endpoint.
pub const ENDPOINT: &str = "/mcp";
/// Connections served at once; more are closed at once, so a flood cannot exhaust descriptors.
const MAX_CONNECTIONS: usize = 256;
/// A client that does not finish sending its request headers in this time is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The bearer token clients must present. Its value is shown only when it is created.
pub struct Token {
    value: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<secret>)")
    }
}

/// Where the token came from.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// [`TOKEN_ENV`].
    Env,
    /// The home's [`TOKEN_FILE`], made at an earlier start.
    File(PathBuf),
    /// The home's [`TOKEN_FILE`], made now: the only time its value is printed.
    Created(PathBuf),
}

impl Token {
    fn new(value: String) -> Token {
        let digest = Sha256::digest(value.as_bytes()).into();
        Token { value, digest }
    }

    /// The token for `home`: [`TOKEN_ENV`] if set, else the home's token file, made now (32
    /// random bytes, base64url) if there is none.
    pub fn for_home(home: &Home) -> Result<(Token, TokenSource)> {
        if let Some(value) = std::env::var(TOKEN_ENV).ok().filter(|v| !v.is_empty()) {
            if value.trim().len() < MIN_TOKEN {
                return Err(TransferError::InvalidArgument(format!(
                    "{TOKEN_ENV} must be at least {MIN_TOKEN} characters"
                )));
            }
            return Ok((Token::new(value.trim().to_owned()), TokenSource::Env));
        }
        let path = home.root().join(TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().len() >= MIN_TOKEN => {
                return Ok((Token::new(text.trim().to_owned()), TokenSource::File(path)));
            }
            Ok(_) => {} // empty or cut short (a crash while writing it): make a new one
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TransferError::io(&path, e)),
        }
        use base64::Engine as _;
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        write_private_atomic(&path, value.as_bytes())?;
        Ok((Token::new(value), TokenSource::Created(path)))
    }

    /// The value, for printing once when it was just created.
    pub fn reveal(&self) -> &str {
        &self.value
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`.
    fn admits(&self, headers: &header::HeaderMap) -> bool {
        let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
        let Some((scheme, credentials)) = given.split_once(' ') else { return false };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(credentials.trim().as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// Where and how to listen.
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Serve addresses that other machines reach (and any `Host` header).
    pub allow_remote: bool,
    pub token: Token,
}

/// Whether a browser `Origin` is this machine (or absent: clients that are not browsers send
/// none). Anything else is a page elsewhere trying to reach this server through the browser.
fn origin_allowed(headers: &header::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Some(rest) =
        origin.to_str().ok().and_then(|o| o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")))
    else {
        return false; // `null`, other schemes, bytes that are not text
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, port)) if port.is_empty() || port.starts_with(':') => addr,
            _ => return false,
        },
        None => rest.split_once(':').map_or(rest, |(host, _)| host),
    };
    let port_ok = rest.rsplit_once(':').is_none_or(|(_, p)| p.ends_with(']') || p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && (host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1")
}

type Body = BoxBody<Bytes, Infallible>;

/// A refusal with `{error: {code, message, hint}}`, like every other error of this server.
fn refusal(status: StatusCode, code: &str, message: &str, hint: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message, "hint": hint } });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// The checks of this front, then rmcp.
async fn gate(
    request: Request<Incoming>,
    token: &Token,
    mcp: &StreamableHttpService<FerryServer, LocalSessionManager>,
) -> Response<Body> {
    if !origin_allowed(request.headers()) {
        tracing::warn!("refused a request from a browser page on another site (Origin header)");
        return refusal(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this server answers pages from this machine only (Origin http://localhost or http://127.0.0.1)",
            "connect from a client that is not a browser page, or from a page served by this machine",
        );
    }
    if !token.admits(request.headers()) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required",
            "send `Authorization: Bearer <token>`: the token is in <home>/mcp-token (printed when the server first \
started), or set AGENTFERRY_MCP_TOKEN for the server and the client",
        );
    }
    if request.uri().path() != ENDPOINT {
        return refusal(StatusCode::NOT_FOUND, "not_found", "no such endpoint", "the MCP endpoint is /mcp");
    }
    mcp.handle(request).await
}

/// Refuse an address other machines reach unless `allow_remote`.
pub fn check_addr(addr: SocketAddr, allow_remote: bool) -> Result<()> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(TransferError::NotLoopback(addr.to_string()));
    }
    Ok(())
}

/// Serve `server` over Streamable HTTP until Ctrl-C. Prints the endpoint's URL to stderr.
pub async fn serve(server: FerryServer, options: HttpOptions) -> Result<()> {
    let HttpOptions { addr, allow_remote, token } = options;
    check_addr(addr, allow_remote)?;
    let listener = TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => TransferError::AddressInUse(addr.to_string()),
        _ => TransferError::io(addr.to_string(), e),
    })?;
    let local = listener.local_addr().map_err(|e| TransferError::io(addr.to_string(), e))?;
    let mut config = StreamableHttpServerConfig::default();
    if allow_remote {
        // Clients name this machine as they reach it; the token is what admits them.
        config = config.disable_allowed_hosts();
    }
    let mcp = StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config);
    let state = Arc::new((token, mcp));
    eprintln!("agentferry: MCP over Streamable HTTP at http://{local}{ENDPOINT}");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await; // out of descriptors: let some close
                    continue;
                }
            },
            _ = &mut interrupted => return Ok(()),
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, "refused a connection: {MAX_CONNECTIONS} are open");
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(gate(request, &state.0, &state.1).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> header::HeaderMap {
        let mut map = header::HeaderMap::new();
        map.insert(name, header::HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn only_this_machine_is_an_allowed_origin() {
        assert!(origin_allowed(&header::HeaderMap::new()));
        for good in [
            "http://localhost",
            "http://localhost:6274",
            "https://127.0.0.1:8443",
            "http://[::1]:3000",
            "http://LOCALHOST",
        ] {
            assert!(origin_allowed(&headers(header::ORIGIN, good)), "{good}");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
            "http://evil.example:80",
            "null",
            "file://",
            "http://[::1].evil",
            "http://localhost:80@evil.example",
            "ftp://localhost",
        ] {
            assert!(!origin_allowed(&headers(header::ORIGIN, bad)), "{bad}");
        }
    }

    #[test]
    fn only_the_exact_token_is_admitted() {
        let token = Token::new("s3cret-token-of-some-length".into());
        assert!(token.admits(&headers(header::AUTHORIZATION, "Bearer s3cret-token-of-some-length")));
        assert!(token.admits(&headers(header::AUTHORIZATION, "bearer s3cret-token-of-some-length")));
        for bad in [
            "Bearer s3cret-token-of-some-lengt",
            "Bearer ",
            "Basic s3cret-token-of-some-length",
            "s3cret-token-of-some-length",
            "",
        ] {
            assert!(!token.admits(&headers(header::AUTHORIZATION, bad)), "{bad}");
        }
        assert!(!token.admits(&header::HeaderMap::new()));
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
