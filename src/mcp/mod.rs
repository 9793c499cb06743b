//! The MCP server: five tools (and `list_peers`) over stdio, each one call into the engine.
//!
//! Tools return at once: long work runs in the background and is watched with `check_session`,
//! which can wait, stream `notifications/progress` when the client sent a progress token, and
//! stops promptly when the client cancels. Failures a model can act on are `isError` results
//! with a stable `code`, a `message` and a `hint` naming the next call; only malformed requests
//! are JSON-RPC errors. stdout carries the protocol only; logs go to stderr.
//!
//! While it runs, the server also listens on the node's inbox for pushes from trusted peers and
//! serves every file it sends from that one listener.

mod roots;
pub mod types;

use std::{path::PathBuf, sync::Arc, time::Duration};

use rmcp::{
    Json, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool},
    service::RequestContext,
    tool, tool_handler, tool_router,
};
pub use roots::Roots;
use tokio::sync::watch;
use types::*;

use crate::{
    engine::{Inbox, Node, ReceiveOptions, Registry, SendOptions},
    error::TransferError,
    id::TransferId,
    journal::{State, TransferStatus},
    peers::PeerInfo,
    ticket::Ticket,
    transport::http::HttpServer,
};

// The tool macros read return types as written (an alias would hide the output schema), so
// tool signatures spell out `Result<Json<_>, Json<ToolError>>`.
fn fail<T>(e: TransferError) -> Result<Json<T>, Json<ToolError>> {
    Err(Json(ToolError::from(e)))
}

fn parse_id(id: &str) -> Result<TransferId, TransferError> {
    id.parse().map_err(|_| TransferError::TransferNotFound(id.to_owned()))
}

const INSTRUCTIONS: &str = "agentferry moves files between machines, encrypted end to end and verified by SHA-256. \
To give a file to another agent: send_file(path) returns a ticket; pass the ticket to the other agent by any \
means; it calls receive_file(ticket). To push to a trusted peer instead: send_file(path, to=name) (list_peers \
shows names; add_peer adds one). Both sides then follow the transfer with check_session(transfer_id, wait=true). \
Interrupted transfers continue with resume_transfer(transfer_id). Tickets are secrets: share them only with \
the intended receiver.";

/// The MCP front of one node.
#[derive(Clone)]
pub struct FerryServer {
    node: Node,
    roots: Roots,
    registry: Arc<Registry>,
    tool_router: ToolRouter<Self>,
}

/// Default and maximum wait of `check_session`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How often a wait re-reads the journal for a transfer run by another process.
const JOURNAL_POLL: Duration = Duration::from_millis(250);

impl FerryServer {
    /// A server for `node`, listening on its inbox when the address is free (another process,
    /// such as `agentferry listen`, may already serve it).
    pub async fn start(node: Node, roots: Roots) -> Self {
        let registry = Registry::new();
        let node = match node.inbox_bind() {
            Ok(addr) => match HttpServer::bind(addr).await {
                Ok(server) => {
                    let server = Arc::new(server);
                    let inbox = Inbox::new(node.clone(), roots.download_dir().to_owned(), Arc::clone(&registry));
                    server.set_inbox(inbox.handler());
                    inbox.listen_on_channel(&node).await;
                    server.start();
                    tracing::info!(addr = %server.local_addr(), "inbox listening");
                    node.with_shared_server(server)
                }
                Err(e) => {
                    tracing::warn!("not listening for pushes ({e}); each send gets its own port");
                    node
                }
            },
            Err(e) => {
                tracing::warn!("no inbox address: {e}");
                node
            }
        };
        FerryServer { node, roots, registry, tool_router: Self::tool_router() }
    }

    /// Every tool with its schemas, as `tools/list` shows them.
    pub fn tools() -> Vec<Tool> {
        Self::tool_router().list_all()
    }

    fn status_of(&self, id: &TransferId) -> Result<Vec<TransferStatus>, TransferError> {
        self.registry.status(&self.node, id)
    }
}

#[tool_router]
impl FerryServer {
    #[tool(
        title = "Send a file",
        description = "Start sending a file to another machine. Returns at once with a transfer_id and, \
unless `to` names a trusted peer, a ticket: give the ticket to the receiving agent, which calls receive_file \
with it. With `to`, the file is pushed to that peer (see list_peers), which fetches it on its own. Then call \
check_session(transfer_id, wait=true) to follow it to completion. The file must be inside the allowed roots.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn send_file(
        &self,
        Parameters(args): Parameters<SendFileArgs>,
    ) -> Result<Json<SendFileResult>, Json<ToolError>> {
        let path = match self.roots.readable_file(&args.path) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let minutes = args.expires_in_minutes.unwrap_or(1440).max(1);
        let options = SendOptions {
            path,
            expires_in: Duration::from_secs(minutes as u64 * 60),
            prefer: args.prefer.unwrap_or_default(),
        };
        let (transfer, answer) = match &args.to {
            Some(peer) => match self.node.push(options, peer).await {
                Ok((t, a)) => (t, Some(a)),
                Err(e) => return fail(e),
            },
            None => match self.node.send(options).await {
                Ok(t) => (t, None),
                Err(e) => return fail(e),
            },
        };
        let id = transfer.transfer_id;
        let record = match self.node.journal().load(&id, crate::journal::Role::Send) {
            Ok(Some(r)) => r,
            Ok(None) => return fail(TransferError::TransferNotFound(id.to_string())),
            Err(e) => return fail(e),
        };
        if let Err(e) = self.registry.track(&self.node, transfer) {
            return fail(e);
        }
        let next = match &answer {
            Some(a) if a.state == "accepted" => format!(
                "{} is fetching the file; call check_session(transfer_id=\"{id}\", wait=true) to follow it",
                record.peer.as_deref().unwrap_or("the peer")
            ),
            Some(_) => "the peer holds the offer until someone there accepts it; check_session shows the state".into(),
            None => format!(
                "give the ticket to the receiving agent (it calls receive_file(ticket)); then call check_session(transfer_id=\"{id}\", wait=true)"
            ),
        };
        Ok(Json(SendFileResult {
            transfer_id: id.to_string(),
            ticket: answer.is_none().then(|| record.ticket.clone()),
            state: State::Active,
            file_name: record.name,
            bytes_total: record.size,
            peer: record.peer,
            peer_answer: answer.map(|a| a.state),
            next,
        }))
    }

    #[tool(
        title = "Receive a file",
        description = "Fetch a file: pass the ticket that send_file printed on the other machine, or the \
transfer_id of a pending incoming offer (listed by check_session) to accept it. Returns at once; the download \
runs in the background. Then call check_session(transfer_id, wait=true); when completed, `saved_to` is the \
file's path. Files land in the download folder unless output_dir names a folder inside it or an allowed root; \
an existing file is never replaced unless overwrite is true.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true)
    )]
    async fn receive_file(
        &self,
        Parameters(args): Parameters<ReceiveFileArgs>,
    ) -> Result<Json<TransferStatus>, Json<ToolError>> {
        let output_dir = match self.roots.writable_dir(args.output_dir.as_deref()) {
            Ok(dir) => dir,
            Err(e) => return fail(e),
        };
        let options =
            ReceiveOptions { output_dir, overwrite: args.overwrite.unwrap_or(false), peer: None, prefer: args.prefer };
        let started = match (&args.ticket, &args.transfer_id) {
            (Some(ticket), None) => match ticket.parse::<Ticket>() {
                Ok(ticket) => self.node.receive(ticket, options).await,
                Err(e) => Err(e),
            },
            (None, Some(id)) => {
                let explicit = args.output_dir.is_some() || args.overwrite.is_some();
                match parse_id(id) {
                    Ok(id) => self.node.accept(id, explicit.then_some(options)).await,
                    Err(e) => Err(e),
                }
            }
            _ => Err(TransferError::InvalidArgument("pass exactly one of ticket and transfer_id".into())),
        };
        match started.and_then(|t| self.registry.track(&self.node, t)) {
            Ok(status) => Ok(Json(status.borrow().clone())),
            Err(e) => fail(e),
        }
    }

    #[tool(
        title = "Check transfers",
        description = "Show one transfer's status (state, bytes_done/bytes_total, rate, path, attempts, sha256, \
saved_to, error with code and hint), or, without transfer_id, every transfer and pending incoming offer. \
States: active, pending (an offer waiting for receive_file(transfer_id)), completed, failed, interrupted \
(call resume_transfer). With wait=true and a transfer_id it blocks until a final state or timeout_seconds, \
sending progress notifications if you gave a progress token.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn check_session(
        &self,
        Parameters(args): Parameters<CheckSessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<SessionReport>, Json<ToolError>> {
        let Some(id) = &args.transfer_id else {
            if args.wait == Some(true) {
                return fail(TransferError::InvalidArgument("wait needs a transfer_id".into()));
            }
            return match self.registry.list(&self.node) {
                Ok(transfers) => Ok(Json(SessionReport { transfers, timed_out: false })),
                Err(e) => fail(e),
            };
        };
        let id = match parse_id(id) {
            Ok(id) => id,
            Err(e) => return fail(e),
        };
        if args.wait != Some(true) {
            return match self.status_of(&id) {
                Ok(transfers) => Ok(Json(SessionReport { transfers, timed_out: false })),
                Err(e) => fail(e),
            };
        }
        let timeout = args.timeout_seconds.map_or(DEFAULT_WAIT, |s| Duration::from_secs(s as u64)).min(MAX_WAIT);
        match self.wait(id, timeout, &ctx).await {
            Ok((transfers, timed_out)) => Ok(Json(SessionReport { transfers, timed_out })),
            Err(e) => fail(e),
        }
    }

    #[tool(
        title = "Trust a peer",
        description = "Store a trusted peer from the grant URI its owner printed with `agentferry export` \
(starts with `grant`). Afterwards send_file(path, to=name) pushes files to it and it accepts them on its own. \
A peer of the same name is replaced.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn add_peer(&self, Parameters(args): Parameters<AddPeerArgs>) -> Result<Json<PeerInfo>, Json<ToolError>> {
        let ttl = args.ttl_hours.map(|h| (h.max(0.0) * 3600.0) as u64);
        match self.node.trust().add_peer(&args.uri, args.name.as_deref(), ttl) {
            Ok(peer) => Ok(Json(PeerInfo::from(&peer))),
            Err(e) => fail(e),
        }
    }

    #[tool(
        title = "List trusted peers",
        description = "List the trusted peers send_file can push to by name, with their expiry.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn list_peers(&self) -> Result<Json<PeerList>, Json<ToolError>> {
        match self.node.trust().peers() {
            Ok(peers) => Ok(Json(PeerList { peers: peers.iter().map(PeerInfo::from).collect() })),
            Err(e) => fail(e),
        }
    }

    #[tool(
        title = "Resume a transfer",
        description = "Continue an interrupted or failed transfer, sending or receiving, from the last chunk \
that is safely on disk; also accepts a pending offer into the download folder. Returns at once; follow it with \
check_session(transfer_id, wait=true).",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn resume_transfer(
        &self,
        Parameters(args): Parameters<ResumeArgs>,
    ) -> Result<Json<TransferStatus>, Json<ToolError>> {
        let started = match parse_id(&args.transfer_id) {
            Ok(id) => self.node.resume(id, None).await,
            Err(e) => Err(e),
        };
        match started.and_then(|t| self.registry.track(&self.node, t)) {
            Ok(status) => Ok(Json(status.borrow().clone())),
            Err(e) => fail(e),
        }
    }
}

impl FerryServer {
    /// Wait for a final state; progress goes to the client if it asked for it.
    async fn wait(
        &self,
        id: TransferId,
        timeout: Duration,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(Vec<TransferStatus>, bool), TransferError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let token = ctx.meta.get_progress_token();
        let mut reported = 0u64;
        let mut live: Option<watch::Receiver<TransferStatus>> = self.registry.watch(&id);
        loop {
            let now = match &mut live {
                Some(rx) => rx.borrow_and_update().clone(),
                None => self.status_of(&id)?.remove(0),
            };
            if let Some(token) = &token
                && now.bytes_done > reported
            {
                reported = now.bytes_done;
                let message = format!("{} of {} bytes, {} B/s", now.bytes_done, now.bytes_total, now.rate);
                let param = ProgressNotificationParam::new(token.clone(), now.bytes_done as f64)
                    .with_total(now.bytes_total as f64)
                    .with_message(message);
                let _ = ctx.peer.notify_progress(param).await;
            }
            if now.state.is_terminal() {
                return Ok((self.status_of(&id)?, false));
            }
            let changed = async {
                match &mut live {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => tokio::time::sleep(JOURNAL_POLL).await,
                }
            };
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => return Ok((self.status_of(&id)?, true)),
                _ = ctx.ct.cancelled() => return Err(TransferError::Cancelled),
            }
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FerryServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agentferry", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

/// Where received files go when nothing says otherwise.
pub fn default_download_dir(node_home: &std::path::Path) -> PathBuf {
    dirs::download_dir().map(|d| d.join("agentferry")).unwrap_or_else(|| node_home.join("downloads"))
}
