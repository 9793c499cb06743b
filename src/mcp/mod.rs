//! The MCP server: ten tools over stdio or Streamable HTTP (see `http`), each one call into the
//! engine, plus transfers and received files as resources (see `resources`), invites that pair
//! agents without a person (see `invites`), the client's roots when no `--root` was given (see
//! `roots`), and a stdio framing that answers oversized requests (see `stdio`).
//!
//! Tools return at once: long work runs in the background and is watched with `check_session`,
//! which can wait, stream `notifications/progress` when the client sent a progress token, and
//! stops promptly when the client cancels. A request that asks for a task (its `_meta` declares
//! the extension `io.modelcontextprotocol/tasks`) gets one instead for `receive_file`,
//! `resume_transfer` and push-mode `send_file` (see `tasks`). Failures a model can act on are `isError`
//! results carrying `{code, message, hint}` as JSON text (see `errors`), argument errors
//! included; only unroutable requests are JSON-RPC errors. stdout carries the protocol only;
//! logs go to stderr.
//!
//! Starting the server has no side effect beyond opening the node home: the inbox for pushes
//! from trusted peers is bound (and serves every file this server sends) only once this node has
//! a grant (from `agentferry export` or `create_invite`), and the download folder is created by
//! the first receive.

mod arrivals;
mod errors;
pub mod http;
mod input;
pub mod invites;
pub mod messages;
mod resources;
mod roots;
pub mod stdio;
mod tasks;
pub mod types;

use std::{path::PathBuf, sync::Arc, time::Duration};

pub use errors::ToolError;
pub use invites::InvitePolicy;
use invites::{CreateInviteArgs, CreateInviteResult, InviteList, RevokeInviteArgs};
use rmcp::{
    Json, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, tool::ToolCallContext, wrapper::Parameters},
    model::{
        CallToolRequestParams, CallToolResponse, CancelTaskParams, GetTaskParams, GetTaskResult, Implementation,
        ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ProgressNotificationParam,
        ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig, SubscribeRequestParams,
        Tool, UnsubscribeRequestParams,
    },
    service::RequestContext,
    task_manager::TaskManager,
    tool, tool_handler, tool_router,
};
pub use roots::Roots;
use tokio::sync::{OnceCell, watch};
use types::*;

use crate::{
    engine::{Canceller, Inbox, Node, ReceiveOptions, Registry, SendOptions, Transfer},
    error::{Code, TransferError},
    id::TransferId,
    journal::{State, TransferStatus},
    peers::{GrantInfo, GrantUri, PeerInfo},
    ticket::Ticket,
    transport::http::HttpServer,
};

fn parse_id(id: &str) -> Result<TransferId, TransferError> {
    id.parse().map_err(|_| TransferError::TransferNotFound(id.to_owned()))
}

/// `status` with its error's hint in the words of these tools.
fn for_agent(mut status: TransferStatus) -> TransferStatus {
    if let Some(error) = &mut status.error
        && let Some(code) = Code::from_name(&error.code)
    {
        error.hint = errors::hint_for(code, Some(&status.transfer_id));
    }
    status
}

/// A transfer this server started: its live status and the handle that cancels it.
struct Started {
    status: watch::Receiver<TransferStatus>,
    abort: Canceller,
}

const INSTRUCTIONS: &str = "agentferry moves files between machines, encrypted end to end and verified by SHA-256. \
To give a file to another agent: send_file(path) returns a ticket; pass the ticket to the other agent by any \
means; it calls receive_file(ticket). To push to a trusted peer instead: send_file(path, to=name) (list_peers \
shows names; add_peer adds one). Both sides then follow the transfer with check_session(transfer_id, wait=true). \
Interrupted transfers continue with resume_transfer(transfer_id). To pair two agents so that later files need no \
ticket: the receiving agent calls create_invite and hands the uri to the sending agent, which calls add_peer(uri) and \
then send_file(path, to=name). When a person must carry it between machines, pass code: true to send_file or \
create_invite for a short code they can say; receive_file(code) and add_peer(code) redeem it. When the two agents \
share only a chat: send_file(path, via=\"messages\") returns messages to post; the other agent passes what it sees to \
receive_messages and posts what that returns, back and forth until completed. For a person with only a \
browser: send_file returns a `link` they open to download; receive_file(via=\"link\") returns a link they open to \
upload a file to you. Tickets, links, invite uris and \
codes are secrets: share them only with the intended agent.";

/// The MCP front of one node.
#[derive(Clone)]
pub struct FerryServer {
    /// The node as configured, without a shared listener.
    node: Node,
    /// The node serving from its inbox listener, once one was needed (bound at most once; the
    /// plain node when the address was taken).
    inbox: Arc<OnceCell<Node>>,
    /// The allowed roots now (see [`roots`] for where they come from).
    roots: Arc<std::sync::RwLock<Roots>>,
    /// The client's roots must be asked for before the next call that uses them.
    roots_stale: Arc<std::sync::atomic::AtomicBool>,
    invites: InvitePolicy,
    /// The codes of invites made here (create_invite with code: true).
    invite_codes: invites::InviteCodes,
    /// Questions asked over `input_required`, awaiting the client's retry.
    rounds: input::Rounds,
    /// The clients told when a push arrives.
    clients: arrivals::Clients,
    /// Until the inbox listens: the node serving every send from one listener, bound by the
    /// first send.
    sends: Arc<OnceCell<Node>>,
    subscriptions: resources::Subscriptions,
    registry: Arc<Registry>,
    tasks: TaskManager,
    tool_router: ToolRouter<Self>,
}

/// Default and maximum wait of `check_session`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How often a wait re-reads the journal for a transfer run by another process.
const JOURNAL_POLL: Duration = Duration::from_millis(250);
/// How often an idle server looks for a first exported grant (one `stat` of the grant file in
/// the node home, read only when it changed), so that `agentferry export` run beside it takes
/// effect without a restart: a peer may push the moment the export is handed over.
const GRANT_POLL: Duration = Duration::from_millis(25);

impl FerryServer {
    /// A server for `node`. It binds nothing and creates no folder now: the inbox is bound as
    /// soon as this node has exported a grant (checked now, on every tool call and every
    /// [`GRANT_POLL`]), since only holders of a grant push here.
    pub async fn start(node: Node, roots: Roots) -> Self {
        Self::start_with(node, roots, InvitePolicy::default()).await
    }

    /// [`Self::start`] with the limits on what `create_invite` may mint.
    pub async fn start_with(node: Node, roots: Roots, invites: InvitePolicy) -> Self {
        let server = FerryServer {
            node,
            inbox: Arc::new(OnceCell::new()),
            roots: Arc::new(std::sync::RwLock::new(roots)),
            roots_stale: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            invites,
            invite_codes: Default::default(),
            rounds: Default::default(),
            clients: Default::default(),
            sends: Arc::new(OnceCell::new()),
            subscriptions: Default::default(),
            registry: Registry::new(),
            tasks: TaskManager::new(),
            tool_router: Self::router(),
        };
        server.node().await; // binds now when a grant exists
        if server.inbox.get().is_none() {
            let watcher = server.clone();
            tokio::spawn(async move {
                let mut seen = watcher.node.trust().grants_stamp();
                while watcher.inbox.get().is_none() {
                    tokio::time::sleep(GRANT_POLL).await;
                    let stamp = watcher.node.trust().grants_stamp();
                    if stamp != seen {
                        seen = stamp;
                        watcher.node().await;
                    }
                }
            });
        }
        server
    }

    /// The node to work with: the one serving from the inbox once a grant exists.
    async fn node(&self) -> Node {
        if let Some(node) = self.inbox.get() {
            return node.clone();
        }
        let has_grant = self.node.trust().grants().is_ok_and(|g| !g.is_empty());
        if !has_grant {
            return self.node.clone();
        }
        self.inbox.get_or_init(|| self.bind_inbox()).await.clone()
    }

    /// The node to send with: the inbox's listener serves every send once there is one; until
    /// then one listener on `AGENTFERRY_BIND`, bound by the first send and kept for the next, so
    /// that tickets waiting for their receivers (a day each by default) hold one port, not one
    /// each.
    async fn sending_node(&self) -> Node {
        let node = self.node().await;
        if node.has_shared_server() {
            return node;
        }
        let bind = async {
            match HttpServer::bind(node.config().bind).await {
                Ok(server) => {
                    let server = Arc::new(server);
                    server.start();
                    node.clone().with_shared_server(server)
                }
                Err(e) => {
                    tracing::warn!("no shared listener for sends ({e}); each send gets its own port");
                    node.clone()
                }
            }
        };
        self.sends.get_or_init(|| bind).await.clone()
    }

    /// Listen for pushes on the node's inbox address, unless another process (such as
    /// `agentferry listen`) already does.
    async fn bind_inbox(&self) -> Node {
        let node = self.node.clone();
        let addr = match node.inbox_bind() {
            Ok(addr) => addr,
            Err(e) => {
                tracing::warn!("no inbox address: {e}");
                return node;
            }
        };
        match HttpServer::bind(addr).await {
            Ok(server) => {
                let server = Arc::new(server);
                let download_dir = self.roots().download_dir().to_owned();
                let inbox = Inbox::new(node.clone(), download_dir, Arc::clone(&self.registry));
                self.clients.follow(inbox.arrivals());
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
        }
    }

    fn roots(&self) -> Roots {
        self.roots.read().expect("not poisoned").clone()
    }

    /// Ask the client for its roots if they replace ours and may have changed since we last
    /// asked. A client that announces changes is asked on every call: rmcp handles a
    /// notification and the request after it concurrently, so `roots/list_changed` sent just
    /// before a call may be seen after it; asking is one local round trip. With `inputs` (a
    /// 2026-07-28 connection) the roots come with the call's retry: until then they are wanted
    /// there, and the call ends asking for them; a later retry of the same call (answering an
    /// invite's confirmation) keeps them.
    #[allow(deprecated)] // roots are what today's hosts (Claude Code, Cursor) send
    async fn refresh_roots(&self, ctx: &RequestContext<RoleServer>, inputs: Option<&input::CallInputs>) {
        use std::sync::atomic::Ordering;
        let Some(declared) = ctx.client_capabilities().and_then(|caps| caps.roots) else { return };
        let announces_changes = declared.list_changed == Some(true);
        let first_try = inputs.is_none_or(|inputs| !inputs.is_retry());
        if !self.roots().client_may_replace()
            || !(self.roots_stale.swap(false, Ordering::SeqCst) || announces_changes && first_try)
        {
            return;
        }
        let listed: Result<rmcp::model::ListRootsResult, String> = match inputs {
            None => ctx.peer.list_roots().await.map_err(|e| e.to_string()),
            Some(inputs) => match inputs.answer(input::ROOTS) {
                Some(answer) => answer,
                None => {
                    self.roots_stale.store(true, Ordering::SeqCst);
                    inputs.want_roots();
                    return;
                }
            },
        };
        match listed {
            Ok(listed) => {
                let replaced = self.roots().with_client_roots(listed.roots.iter().map(|r| r.uri.as_str()));
                tracing::info!(roots = ?replaced.roots(), "using the client's roots");
                *self.roots.write().expect("not poisoned") = replaced;
            }
            Err(e) => {
                self.roots_stale.store(true, Ordering::SeqCst);
                tracing::warn!("the client declares roots but did not list them: {e}");
            }
        }
    }

    /// The tools, with integer formats that every client's validator knows.
    fn router() -> ToolRouter<Self> {
        let mut router = Self::tool_router();
        for route in router.map.values_mut() {
            crate::schemas::portable(Arc::make_mut(&mut route.attr.input_schema));
            if let Some(output) = &mut route.attr.output_schema {
                crate::schemas::portable(Arc::make_mut(output));
            }
        }
        router
    }

    /// Every tool with its schemas, as `tools/list` shows them.
    pub fn tools() -> Vec<Tool> {
        Self::router().list_all()
    }

    fn status_of(&self, node: &Node, id: &TransferId) -> Result<Vec<TransferStatus>, TransferError> {
        Ok(self.registry.status(node, id)?.into_iter().map(for_agent).collect())
    }

    fn track(&self, node: &Node, transfer: Transfer) -> Result<Started, TransferError> {
        let abort = transfer.canceller();
        let status = self.registry.track(node, transfer)?;
        Ok(Started { status, abort })
    }

    async fn start_send(&self, args: SendFileArgs) -> Result<(SendFileResult, Started), ToolError> {
        let path = self.roots().readable_file(&args.path)?;
        let minutes = args.expires_in_minutes.unwrap_or(1440).max(1);
        let options = SendOptions {
            path,
            expires_in: Duration::from_secs(minutes as u64 * 60),
            prefer: args.prefer.unwrap_or_default(),
        };
        // The page speaks HTTP and WebSocket; a WebRTC-only send serves neither.
        let linkable = options.prefer != crate::core::Prefer::Webrtc;
        let node = self.sending_node().await;
        let by_code = args.code == Some(true);
        if by_code && args.to.is_some() {
            return Err(ToolError::bad_arguments("send_file", "pass `to` or `code: true`, not both"));
        }
        if args.password.is_some() && (by_code || args.to.is_some()) {
            return Err(ToolError::bad_arguments("send_file", "`password` protects the link: not with `to` or `code`"));
        }
        let mut code = None;
        let (transfer, answer) = match &args.to {
            Some(peer) => {
                let (t, a) = node.push(options, peer).await?;
                (t, Some(a))
            }
            None if by_code => {
                let (t, c, expires_at) = node.send_by_code(options, false).await?;
                code = Some((c, expires_at));
                (t, None)
            }
            None => (node.send(options).await?, None),
        };
        let id = transfer.transfer_id;
        let record = node
            .journal()
            .load(&id, crate::journal::Role::Send)?
            .ok_or_else(|| TransferError::TransferNotFound(id.to_string()))?;
        let started = self.track(&node, transfer)?;
        let next = match &answer {
            Some(a) if a.state == "accepted" => format!(
                "{} is fetching the file; call check_session(transfer_id=\"{id}\", wait=true) to follow it",
                record.peer.as_deref().unwrap_or("the peer")
            ),
            Some(a) if a.state == "queued" => format!(
                "{} is not listening yet: the offer is tried again until it expires, then the transfer fails with \
peer_offline; call check_session(transfer_id=\"{id}\", wait=true) to follow it",
                record.peer.as_deref().unwrap_or("the peer")
            ),
            Some(_) => "the peer holds the offer until someone there accepts it; check_session shows the state".into(),
            None if code.is_some() => format!(
                "give the code (or the ticket) to the receiving side; a person can say the code: its agent calls receive_file(code) (or its person runs `agentferry receive CODE`) within 10 minutes, with the same relay. Then call check_session(transfer_id=\"{id}\", wait=true); a wrong or expired code fails the transfer with code_wrong or code_expired"
            ),
            None => format!(
                "give the ticket to the receiving agent (it calls receive_file(ticket)); then call check_session(transfer_id=\"{id}\", wait=true)"
            ),
        };
        let result = SendFileResult {
            transfer_id: id.to_string(),
            ticket: answer.is_none().then(|| record.ticket.clone()),
            link: answer
                .is_none()
                .then(|| record.ticket.parse().ok().filter(|_| linkable))
                .flatten()
                .and_then(|ticket| crate::web::link(&ticket, args.password.as_deref())),
            code_expires_at: code.as_ref().map(|(_, at)| *at),
            code: code.map(|(c, _)| c.to_string()),
            state: State::Active,
            file_name: record.name,
            bytes_total: record.size,
            peer: record.peer,
            peer_answer: answer.map(|a| a.state),
            messages: None,
            next,
        };
        Ok((result, started))
    }

    async fn start_receive(&self, args: ReceiveFileArgs) -> Result<Started, ToolError> {
        let output_dir = self.roots().writable_dir(args.output_dir.as_deref())?;
        let options =
            ReceiveOptions { output_dir, overwrite: args.overwrite.unwrap_or(false), peer: None, prefer: args.prefer };
        let node = self.node().await;
        if let Some(code) = &args.code {
            if args.ticket.is_some() || args.transfer_id.is_some() {
                return Err(ToolError::bad_arguments(
                    "receive_file",
                    "pass exactly one of ticket, code and transfer_id",
                ));
            }
            let (transfer, _redeemed) = node.receive_by_code(code, options).await?;
            let id = transfer.transfer_id.to_string();
            return self.track(&node, transfer).map_err(|e| ToolError::new(&e, Some(&id)));
        }
        match (&args.ticket, &args.transfer_id) {
            (Some(ticket), None) => {
                let ticket = ticket.parse::<Ticket>()?;
                let id = ticket.transfer_id.to_string();
                let started = node.receive(ticket, options).await.and_then(|t| self.track(&node, t));
                started.map_err(|e| ToolError::new(&e, Some(&id)))
            }
            (None, Some(id)) => {
                let explicit = args.output_dir.is_some() || args.overwrite.is_some();
                let started = match parse_id(id) {
                    Ok(parsed) => {
                        node.accept(parsed, explicit.then_some(options)).await.and_then(|t| self.track(&node, t))
                    }
                    Err(e) => Err(e),
                };
                started.map_err(|e| ToolError::new(&e, Some(id)))
            }
            _ => Err(ToolError::bad_arguments("receive_file", "pass exactly one of ticket, code and transfer_id")),
        }
    }

    /// `receive_file(via: "link")`: an upload link now, the receive once the person picked a file.
    async fn receive_by_link(&self, args: ReceiveFileArgs) -> Result<ReceiveFileResult, ToolError> {
        if args.ticket.is_some() || args.code.is_some() || args.transfer_id.is_some() {
            let why = "with via: \"link\" the person's browser makes the transfer: pass no ticket, code or transfer_id";
            return Err(ToolError::bad_arguments("receive_file", why));
        }
        if args.prefer.is_some_and(|p| p != crate::core::Prefer::Auto && p != crate::core::Prefer::Relay) {
            let why = "an upload link's file comes through the relay: leave prefer out";
            return Err(ToolError::bad_arguments("receive_file", why));
        }
        let output_dir = self.roots().writable_dir(args.output_dir.as_deref())?;
        let options =
            ReceiveOptions { output_dir, overwrite: args.overwrite.unwrap_or(false), peer: None, prefer: None };
        let node = self.node().await;
        let upload = node.upload_link(crate::UPLOAD_LINK_LIFETIME).await?;
        let (id, link, expires_at) = (upload.transfer_id(), upload.link(), upload.expires_at());
        let waiting = upload.status();
        let receiving = node.clone();
        let status =
            self.registry.track_later(&node, waiting, async move { upload.receive(&receiving, options).await });
        let next = format!(
            "give the link to the person, and only to them (it holds the key); their browser sends the file they pick. \
Call check_session(transfer_id=\"{id}\", wait=true) to follow it; the link works once, until {expires_at} (unix seconds)"
        );
        let status = for_agent(status.borrow().clone());
        Ok(ReceiveFileResult { status, link: Some(link), link_expires_at: Some(expires_at), next: Some(next) })
    }

    async fn start_resume(&self, args: ResumeArgs) -> Result<Started, ToolError> {
        // A send resumed here (after a failure) may have been served by the sends' listener.
        let node = match (self.node().await, self.sends.get()) {
            (node, Some(sends)) if !node.has_shared_server() => sends.clone(),
            (node, _) => node,
        };
        let started = match parse_id(&args.transfer_id) {
            Ok(id) => node.resume(id, args.role).await.and_then(|t| self.track(&node, t)),
            Err(e) => Err(e),
        };
        started.map_err(|e| ToolError::new(&e, Some(&args.transfer_id)))
    }
}

#[tool_router]
impl FerryServer {
    #[tool(
        title = "Send a file",
        description = "Start sending a file to another machine. Returns at once with a transfer_id and, \
unless `to` names a trusted peer, a ticket: give the ticket to the receiving agent, which calls receive_file \
with it. With `to`, the file is pushed to that peer (see list_peers), which fetches it on its own. With `code: true` \
it also returns a short code a person can say (like 7-guitar-nebula-acorn; one use, 10 minutes, through the \
relay) that receive_file(code) or `agentferry receive CODE` redeems. Then call check_session(transfer_id, \
wait=true) to follow it to completion. The file must be inside the allowed roots. The ticket is served by this \
MCP server process: it works until it expires (expires_in_minutes, default one day) or a receiver completes it, \
and only while this server runs; after a restart, resume_transfer(transfer_id) serves the same ticket again.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn send_file(&self, Parameters(args): Parameters<SendFileArgs>) -> Result<Json<SendFileResult>, ToolError> {
        if args.via.is_some() {
            return Ok(Json(messages::send(self, args).await?));
        }
        Ok(Json(self.start_send(args).await?.0))
    }

    #[tool(
        title = "Receive chat messages",
        description = "Carry a file as chat messages, for agents that share only a chat. Pass every message you see in the chat that holds `🔗FERRY:` (from send_file with via: \"messages\" on the other side, or replies from this tool there), in any order, repeats harmless. It stores what arrived and returns `messages` to post back in the chat; the other agent passes those to its receive_messages, and so on until the transfer is completed (`transfers[].state`, `saved_to`). Pass no messages to repeat what this server has to say (the chat went quiet, a restart). Files land in the download folder unless output_dir names another allowed folder; an existing file is never replaced unless overwrite is true.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn receive_messages(
        &self,
        Parameters(args): Parameters<messages::ReceiveMessagesArgs>,
    ) -> Result<Json<messages::ReceiveMessagesResult>, ToolError> {
        Ok(Json(messages::receive(self, args).await?))
    }

    #[tool(
        title = "Receive a file",
        description = "Fetch a file: pass the ticket that send_file printed on the other machine, or the short \
code it gave (send_file with code: true, or `agentferry send --code`), or the transfer_id of a pending incoming offer (listed by check_session) to accept it. Returns at once; the download \
runs in the background. Then call check_session(transfer_id, wait=true); when completed, `saved_to` is the \
file's path. Files land in the download folder unless output_dir names a folder inside it or an allowed root; \
an existing file is never replaced unless overwrite is true. For a person with only a browser, pass \
via: \"link\" instead: it returns an upload link to give them (it needs this server's relay); their browser sends \
the file they pick, and check_session(transfer_id, wait=true) follows it like any receive.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true)
    )]
    async fn receive_file(
        &self,
        Parameters(args): Parameters<ReceiveFileArgs>,
    ) -> Result<Json<ReceiveFileResult>, ToolError> {
        if args.via == Some(ReceiveVia::Link) {
            return Ok(Json(self.receive_by_link(args).await?));
        }
        let started = self.start_receive(args).await?;
        let status = for_agent(started.status.borrow().clone());
        Ok(Json(ReceiveFileResult { status, link: None, link_expires_at: None, next: None }))
    }

    #[tool(
        title = "Check transfers",
        description = "Show one transfer's status (state, bytes_done/bytes_total, rate, path, attempts, sha256, \
saved_to, error with code and hint), or, without transfer_id, a listing of transfers and pending incoming \
offers: active and pending first, then the most recently updated, at most limit (default 10), optionally only \
one state; `more` counts the rest. States: active, pending (an offer waiting for receive_file(transfer_id)), \
completed, failed, interrupted (call resume_transfer(transfer_id)). With wait=true and a transfer_id it blocks until a final state or timeout_seconds, \
sending progress notifications if you gave a progress token.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn check_session(
        &self,
        Parameters(args): Parameters<CheckSessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<SessionReport>, ToolError> {
        let node = self.node().await;
        let Some(id) = &args.transfer_id else {
            if args.wait == Some(true) {
                return Err(ToolError::bad_arguments("check_session", "wait needs a transfer_id"));
            }
            let all = self.registry.list(&node)?.into_iter().map(for_agent).collect();
            let limit = args.limit.map_or(DEFAULT_LIST_LIMIT, |l| l as usize);
            return Ok(Json(SessionReport::listing(all, args.state, limit)));
        };
        if args.limit.is_some() || args.state.is_some() {
            return Err(ToolError::bad_arguments(
                "check_session",
                "limit and state are for listings: omit transfer_id",
            ));
        }
        let parsed = parse_id(id)?;
        if args.wait != Some(true) {
            return Ok(Json(SessionReport::of(self.status_of(&node, &parsed)?, false)));
        }
        let timeout = args.timeout_seconds.map_or(DEFAULT_WAIT, |s| Duration::from_secs(s as u64)).min(MAX_WAIT);
        match self.wait(&node, parsed, timeout, &ctx).await {
            Ok((transfers, timed_out)) => Ok(Json(SessionReport::of(transfers, timed_out))),
            Err(e) => Err(ToolError::new(&e, Some(id))),
        }
    }

    #[tool(
        title = "Trust a peer",
        description = "Store a trusted peer from the invite URI it gave you (starts with `grant`; made by \
create_invite on its side, or by `agentferry export`), or the short code that create_invite(code: true) or \
`agentferry export --code` gave instead (one use, through the relay). Afterwards send_file(path, to=name) pushes files to it and it \
accepts them on its own, with no ticket. Adding the same grant again refreshes it; a different peer already stored \
under the name is replaced only with replace: true.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn add_peer(&self, Parameters(args): Parameters<AddPeerArgs>) -> Result<Json<PeerInfo>, ToolError> {
        let trust = self.node.trust();
        let text = match (args.uri, args.code) {
            (Some(uri), None) => uri,
            (None, Some(code)) => self.node.redeem_code(&code, crate::code::Purpose::Pair).await?.0,
            _ => return Err(ToolError::bad_arguments("add_peer", "pass exactly one of uri and code")),
        };
        if args.replace != Some(true) {
            let uri: GrantUri = text.parse()?;
            let name = args.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(&uri.name);
            let grant_id = data_encoding::HEXLOWER.encode(&uri.grant_id);
            if trust.peers()?.iter().any(|p| p.name == name && p.grant_id != grant_id) {
                return Err(TransferError::PeerExists(name.to_owned()).into());
            }
        }
        let ttl = args.ttl_hours.map(|h| (h.max(0.0) * 3600.0) as u64);
        let peer = trust.add_peer(&text, args.name.as_deref(), ttl)?;
        Ok(Json(PeerInfo::from(&peer)))
    }

    #[tool(
        title = "Invite a peer to send here",
        description = "Create an invite: a secret URI that lets one other agent push files to this machine \
without a ticket. Pairing: (1) you call create_invite; (2) you hand the returned uri to the sending agent by any \
means; (3) it calls add_peer(uri); (4) its send_file(path, to=name) reaches this node, which fetches the file on its \
own into the download folder (check_session lists it). Give the uri only to the agent that should send here. \
Invites expire (default 1 hour), are capped in number and in bytes per invite (beyond, pushes wait as pending \
offers), and may need the person's confirmation. revoke_invite ends one. With code: true it also returns a short \
code a person can say (one use, 10 minutes, through the relay) that add_peer(code) redeems for the uri.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_invite(
        &self,
        Parameters(args): Parameters<CreateInviteArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<CreateInviteResult>, ToolError> {
        let created = invites::create(&self.node, &self.invites, &ctx, args, &self.invite_codes).await?;
        self.node().await; // pushes under it must find the inbox listening now
        Ok(Json(created))
    }

    #[tool(
        title = "Revoke an invite",
        description = "Revoke an invite (by the grant_id create_invite or list_invites showed): pushes under \
it are no longer accepted on their own; they wait as pending offers that only receive_file(transfer_id) takes.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn revoke_invite(
        &self,
        Parameters(args): Parameters<RevokeInviteArgs>,
    ) -> Result<Json<GrantInfo>, ToolError> {
        Ok(Json(GrantInfo::from(&self.node.trust().revoke(&args.grant_id)?)))
    }

    #[tool(
        title = "List invites",
        description = "List the invites (grants) this node created, without their secrets: id, expiry, whether \
revoked, the sender name bound on first use, and bytes received against the quota.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn list_invites(&self) -> Result<Json<InviteList>, ToolError> {
        let grants = self.node.trust().grants()?;
        let codes = self.invite_codes.lock().expect("not poisoned").clone();
        Ok(Json(InviteList { invites: grants.iter().map(GrantInfo::from).collect(), codes }))
    }

    #[tool(
        title = "List trusted peers",
        description = "List the trusted peers send_file can push to by name, with their expiry.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn list_peers(&self) -> Result<Json<PeerList>, ToolError> {
        let peers = self.node.trust().peers()?;
        Ok(Json(PeerList { peers: peers.iter().map(PeerInfo::from).collect() }))
    }

    #[tool(
        title = "Resume a transfer",
        description = "Continue an interrupted or failed transfer, sending or receiving, from the last chunk \
that is safely on disk; also accepts a pending offer into the download folder. A send resumed after this \
server restarted serves its ticket again. When this node both sends and receives the transfer, role says which \
side. Returns at once; follow it with check_session(transfer_id, wait=true).",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn resume_transfer(
        &self,
        Parameters(args): Parameters<ResumeArgs>,
    ) -> Result<Json<TransferStatus>, ToolError> {
        let started = self.start_resume(args).await?;
        Ok(Json(for_agent(started.status.borrow().clone())))
    }
}

impl FerryServer {
    /// Wait for a final state; progress goes to the client if it asked for it, at most every
    /// [`crate::engine::PROGRESS_INTERVAL`] and whenever the state changes.
    async fn wait(
        &self,
        node: &Node,
        id: TransferId,
        timeout: Duration,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(Vec<TransferStatus>, bool), TransferError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let token = ctx.meta.get_progress_token();
        let mut reported: Option<(u64, State, tokio::time::Instant)> = None;
        let mut live: Option<watch::Receiver<TransferStatus>> = self.registry.watch(&id);
        loop {
            let now = match &mut live {
                Some(rx) => rx.borrow_and_update().clone(),
                None => self.status_of(node, &id)?.remove(0),
            };
            if let Some(token) = &token {
                let at = tokio::time::Instant::now();
                // Progress must grow from one notification to the next (MCP), so a state change
                // without new bytes waits for the next byte or the final answer.
                let due = match reported {
                    None => now.bytes_done > 0,
                    Some((bytes, state, last)) => {
                        now.bytes_done > bytes && (state != now.state || at - last >= crate::engine::PROGRESS_INTERVAL)
                    }
                };
                if due {
                    reported = Some((now.bytes_done, now.state, at));
                    let param = ProgressNotificationParam::new(token.clone(), now.bytes_done as f64)
                        .with_total(now.bytes_total as f64)
                        .with_message(tasks::describe(&now));
                    let _ = ctx.peer.notify_progress(param).await;
                }
            }
            if now.state.is_terminal() {
                return Ok((self.status_of(node, &id)?, false));
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
                _ = tokio::time::sleep_until(deadline) => return Ok((self.status_of(node, &id)?, true)),
                _ = ctx.ct.cancelled() => return Err(TransferError::Cancelled),
            }
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FerryServer {
    #[allow(deprecated)] // logging: see `arrivals`
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tasks()
            .enable_logging()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe();
        ServerConfig::new(capabilities.build())
            .with_server_info(Implementation::new("agentferry", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    /// Arguments are checked here so that a bad one is an `invalid_argument` tool error the
    /// agent can read, not a JSON-RPC error; long transfers become tasks for clients that speak
    /// them; everything else goes to the tool's method.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        self.node().await; // any call may be the first since `agentferry export`: bind the inbox
        let inputs = self.rounds.inputs(&request, &context);
        self.refresh_roots(&context, inputs.as_ref()).await;
        if let Some(inputs) = &inputs
            && let Some(asking) = self.rounds.ask(&request, inputs)
        {
            return Ok(asking.into());
        }
        let input_schema = self.tool_router.map.get(request.name.as_ref()).map(|route| &*route.attr.input_schema);
        if let Err(e) = types::check_arguments(&request.name, request.arguments.as_ref(), input_schema) {
            return Ok(e.into_result().into());
        }
        // A task only when this request asks for one: its `_meta` declares the tasks extension.
        // Declaring it for the session is not enough: the Inspector CLI 2.12 does that, and then
        // cannot read a task handle.
        let wants_task = context.meta.client_capabilities().is_some_and(|caps| caps.supports_tasks());
        if wants_task && let Some(response) = tasks::call(self, &request).await {
            return Ok(response);
        }
        let Some(inputs) = inputs else {
            return self.tool_router.call(ToolCallContext::new(self, request, context)).await;
        };
        let mut context = context;
        context.extensions.insert(inputs.clone());
        let result = self.tool_router.call(ToolCallContext::new(self, request.clone(), context)).await?;
        Ok(match self.rounds.ask(&request, &inputs) {
            Some(asking) => asking.into(),
            None => result,
        })
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        self.clients.add(context.peer);
    }

    /// `subscriptions/listen` (2026-07-28): resource list changes only, which tell of pushes
    /// (see `arrivals`); each transfer's own changes are followed with check_session.
    fn accepted_subscription_filter(
        &self,
        requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        let mut accepted = rmcp::model::SubscriptionFilter::new();
        accepted.resources_list_changed = requested.resources_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), rmcp::ErrorData> {
        if context.accepted().resources_list_changed == Some(true) {
            self.clients.listen(context.sink().clone());
        }
        context.cancelled().await;
        Ok(())
    }

    #[allow(deprecated)] // logging is how today's hosts show a server's messages (see `arrivals`)
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        self.clients.set_level(request.level);
        Ok(())
    }

    async fn on_roots_list_changed(&self, _: rmcp::service::NotificationContext<RoleServer>) {
        self.roots_stale.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, rmcp::ErrorData> {
        Ok(ListResourcesResult::with_all_items(resources::list(self).await?))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, rmcp::ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, rmcp::ErrorData> {
        Ok(resources::read(self, &request.uri).await?.into())
    }

    #[allow(deprecated)] // the 2025-11-25 protocol that today's clients speak subscribes this way
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        resources::subscribe(self, &request.uri, context.peer).await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        resources::unsubscribe(self, &request.uri);
        Ok(())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, rmcp::ErrorData> {
        Ok(GetTaskResult::new(self.tasks.get_task(&request.task_id)?))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        self.tasks.cancel_task(&request.task_id)
    }
}

/// Where received files go when nothing says otherwise.
pub fn default_download_dir(node_home: &std::path::Path) -> PathBuf {
    dirs::download_dir().map(|d| d.join("agentferry")).unwrap_or_else(|| node_home.join(crate::home::DOWNLOADS))
}
