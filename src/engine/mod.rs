//! The engine: one API that every front calls, driving the core over real files and sockets.
//!
//! A [`Node`] is one home (journal, config). [`Node::send`], [`Node::receive`] and
//! [`Node::resume`] start a transfer in the background and return a [`Transfer`] at once: its
//! `events` stream progress items ending in `Completed` or `Error`, and its `task` resolves to
//! the outcome. The engine owns the journal, the transports and the blocking disk threads; the
//! decisions (what to ask for, when to checkpoint, when to give up) come from [`crate::core`].
//!
//! | folder or file | job |
//! |---|---|
//! | `mod.rs` | [`Node`], its configuration, [`Transfer`] and the options of each operation |
//! | `send/` | the sender's side: serve a file or folder on every path until it is confirmed |
//! | `receive/` | the receiver's side: the IO shell of [`crate::core::Receiver`] and its disk threads |
//! | `trust/` | pushes to trusted peers, and the inbox where theirs arrive |
//! | `chat/` | the messages path: files carried as chat messages that agents post themselves |
//! | `events.rs` | the [`Event`] stream every front consumes |
//! | `registry.rs` | the live status of the transfers running in this process |
//! | `keys.rs` | what both sides derive from the session key to meet on a channel |
//! | `prefix.rs` | the running digest of a stream's leading chunks, for both sides |
//! | `rate.rs` | transfer rates as people expect them |

mod chat;
mod events;
mod keys;
mod prefix;
mod rate;
mod receive;
mod registry;
mod send;
mod trust;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};

pub use chat::{ChatTransfer, MessagesOptions, Opened as OpenedAsMessages, Taken};
pub use events::{Event, FilesProgress, FolderSummary, PROGRESS_INTERVAL, SKIPPED_SHOWN};
pub use receive::upload::{UPLOAD_LINK_LIFETIME, UploadLink};
pub use trust::PushAnswer;
// For the fronts in this package (MCP server, CLI), not a stable API.
#[doc(hidden)]
pub use events::Events;
#[doc(hidden)]
pub use registry::Registry;
#[doc(hidden)]
pub use send::advertised_addrs;
#[doc(hidden)]
pub use send::outgoing::SendOutcome;
#[doc(hidden)]
pub use trust::{Arrival, Inbox};

use crate::{
    channel::ChannelHint,
    code::{
        Purpose, ShortCode,
        rendezvous::{Offer, Redeemed},
    },
    core::Prefer,
    error::{Result, TransferError},
    home::Home,
    id::TransferId,
    journal::{Journal, Record, Role, TransferStatus},
    manifest::DEFAULT_CHUNK_SIZE,
    peers::Trust,
    ticket::Ticket,
    transport::http::HttpServer,
    transport::webrtc::IceConfig,
};

/// Node-wide settings; the CLI fills them from flags and `AGENTFERRY_*` variables.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's name, as peers see it.
    pub name: String,
    /// Where a sender listens. Port 0 picks a free port; the journal remembers the one chosen.
    pub bind: SocketAddr,
    /// Where the inbox (pushes from trusted peers) listens. Port 0: a port chosen once and
    /// remembered in the home, because export URIs name it.
    pub inbox_bind: SocketAddr,
    /// A receiver gives up after this long without new data (the journal keeps what arrived).
    pub peer_timeout: Duration,
    pub chunk_size: u32,
    /// The message channel (relay or shared folder) this node also serves and listens on.
    pub channel: Option<ChannelHint>,
    /// The receiver's default path preference.
    pub prefer: Prefer,
    /// STUN and TURN servers for the WebRTC path. Without a STUN server, the relay's own STUN
    /// responder is used.
    pub ice: IceConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: host_name(),
            bind: SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 0)),
            inbox_bind: SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 0)),
            peer_timeout: Duration::from_secs(30),
            chunk_size: DEFAULT_CHUNK_SIZE,
            channel: None,
            prefer: Prefer::Auto,
            ice: IceConfig::default(),
        }
    }
}

/// What to send.
#[derive(Clone, Debug)]
pub struct SendOptions {
    pub path: PathBuf,
    pub expires_in: Duration,
    /// Which paths to offer: `auto` both (the channel when configured), `http` direct only,
    /// `relay` the channel only (an error without one).
    pub prefer: Prefer,
}

/// Where and how to receive.
#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    pub output_dir: PathBuf,
    pub overwrite: bool,
    /// The trusted peer that pushed this transfer, if any.
    pub peer: Option<String>,
    /// Which path to use; `None`: the node's default.
    pub prefer: Option<Prefer>,
}

/// The result of a transfer that finished well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub sha256: String,
    pub bytes: u64,
    pub saved_to: Option<PathBuf>,
}

/// A transfer running in the background.
#[derive(Debug)]
pub struct Transfer {
    pub transfer_id: TransferId,
    pub role: Role,
    /// Progress items; the last one is `Completed` or `Error`.
    pub events: mpsc::Receiver<Event>,
    task: JoinHandle<Result<Completion>>,
}

impl Transfer {
    /// Wait for the outcome, discarding events.
    pub async fn finish(mut self) -> Result<Completion> {
        while self.events.recv().await.is_some() {}
        self.outcome().await
    }

    /// Wait for the outcome; read [`Transfer::events`] first, or they are lost.
    pub async fn outcome(self) -> Result<Completion> {
        self.task.await.unwrap_or(Err(TransferError::Cancelled))
    }

    /// Stop the transfer where it is; the journal keeps it for `resume`.
    pub fn cancel(&self) {
        self.task.abort();
    }

    /// A handle that cancels the transfer later, from elsewhere.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.task.abort_handle())
    }
}

/// Cancels one transfer (see [`Transfer::canceller`]).
#[derive(Clone, Debug)]
pub struct Canceller(tokio::task::AbortHandle);

impl Canceller {
    /// Stop the transfer where it is; the journal keeps it for `resume`.
    pub fn cancel(&self) {
        self.0.abort();
    }
}

/// The machine's host name, or `agentferry` when it has none.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agentferry".into())
}

/// One installation of agentferry: a home and its settings.
#[derive(Clone, Debug)]
pub struct Node {
    home: Home,
    journal: Journal,
    trust: Trust,
    config: NodeConfig,
    /// A listener shared by every send of this process (and the inbox), when the front runs one.
    server: Option<Arc<HttpServer>>,
    /// The transfers on the messages path this process drives.
    chat: Arc<std::sync::Mutex<chat::Table>>,
}

impl Node {
    pub fn new(home: Home, config: NodeConfig) -> Self {
        Node {
            journal: Journal::new(&home),
            trust: Trust::new(&home),
            home,
            config,
            server: None,
            chat: Default::default(),
        }
    }

    /// Serve every send of this node from `server` instead of one listener per transfer.
    pub fn with_shared_server(mut self, server: Arc<HttpServer>) -> Self {
        self.server = Some(server);
        self
    }

    /// Whether sends are served from a shared listener ([`Self::with_shared_server`]).
    pub fn has_shared_server(&self) -> bool {
        self.server.is_some()
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    /// This node's inbox secret on its message channel: 32 random bytes chosen once per home,
    /// from which each grant's inbox mailbox key is derived (`peers::grant_inbox_key`). Never
    /// shown; `inbox_mailbox`, its predecessor, was shown in every grant URI and is not reused.
    pub fn inbox_mailbox(&self) -> Result<[u8; 32]> {
        let file = self.home.root().join("inbox_secret");
        let lock_path = file.with_extension("lock");
        let lock = crate::home::open_private(&lock_path).map_err(|e| TransferError::io(&lock_path, e))?;
        lock.lock().map_err(|e| TransferError::io(&lock_path, e))?;
        let remembered = std::fs::read_to_string(&file)
            .ok()
            .and_then(|hex| data_encoding::HEXLOWER.decode(hex.trim().as_bytes()).ok())
            .and_then(|raw| <[u8; 32]>::try_from(raw).ok());
        if let Some(mailbox) = remembered {
            return Ok(mailbox);
        }
        let mut mailbox = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut mailbox);
        crate::home::write_private_atomic(&file, data_encoding::HEXLOWER.encode(&mailbox).as_bytes())?;
        Ok(mailbox)
    }

    /// What an export URI says about this node's channel, if it has one.
    pub fn channel_inbox(&self) -> Result<Option<(String, [u8; 32])>> {
        match &self.config.channel {
            Some(hint) => Ok(Some((hint.to_string(), self.inbox_mailbox()?))),
            None => Ok(None),
        }
    }

    /// The inbox address: the configured one, or the configured IP with the port this home
    /// chose the first time it needed one.
    pub fn inbox_bind(&self) -> Result<SocketAddr> {
        let mut addr = self.config.inbox_bind;
        if addr.port() != 0 {
            return Ok(addr);
        }
        let file = self.home.root().join("inbox_port");
        // Several processes may ask at once; the first to hold the lock chooses for all.
        let lock_path = file.with_extension("lock");
        let lock = crate::home::open_private(&lock_path).map_err(|e| TransferError::io(&lock_path, e))?;
        lock.lock().map_err(|e| TransferError::io(&lock_path, e))?;
        let remembered = std::fs::read_to_string(&file).ok().and_then(|p| p.trim().parse::<u16>().ok());
        let port = match remembered {
            Some(port) => port,
            None => {
                let probe = std::net::TcpListener::bind(addr).map_err(|e| TransferError::io(addr.to_string(), e))?;
                let port = probe.local_addr().map_err(|e| TransferError::io(addr.to_string(), e))?.port();
                crate::home::write_private_atomic(&file, port.to_string().as_bytes())?;
                port
            }
        };
        addr.set_port(port);
        Ok(addr)
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Start serving a file; the first event is the ticket.
    pub async fn send(&self, options: SendOptions) -> Result<Transfer> {
        send::start(self, options, None).await
    }

    /// The relay codes meet on: this node's channel, which must be a relay server.
    pub fn code_relay(&self) -> Result<String> {
        match &self.config.channel {
            Some(ChannelHint::Relay(url)) => Ok(url.clone()),
            Some(_) => Err(TransferError::CodeNeedsRelay(
                "this node's channel is a shared folder or NATS, not a relay server (ws://HOST:PORT)".into(),
            )),
            None => Err(TransferError::CodeNeedsRelay(
                "none is configured: pass --relay ws://HOST:PORT or set AGENTFERRY_RELAY".into(),
            )),
        }
    }

    /// Allocate a code of `purpose` on this node's relay ([`Node::code_relay`]).
    pub async fn offer_code(&self, purpose: Purpose) -> Result<Offer> {
        Offer::allocate(&self.code_relay()?, purpose).await
    }

    /// Start serving a file behind a short code: the events are those of [`Node::send`], with
    /// `code` after the ticket and `code_redeemed` once the receiver typed it (its verifier when
    /// `verify`). The ticket goes to whoever redeems the code; if the code fails (`code_wrong`,
    /// `code_expired`) the transfer fails with it, since no one else has the ticket.
    /// Returns the transfer, the code, and when the code expires unredeemed (unix seconds).
    pub async fn send_by_code(&self, options: SendOptions, verify: bool) -> Result<(Transfer, ShortCode, u64)> {
        let offer = self.offer_code(Purpose::Transfer).await?;
        let (code, expires_at) = (offer.code().clone(), offer.expires_at());
        let transfer = send::start(self, options, Some((offer, verify))).await?;
        Ok((transfer, code, expires_at))
    }

    /// Redeem a code of `purpose` on this node's relay: the text it stood for (a ticket or a
    /// grant URI) and the verifier.
    pub async fn redeem_code(&self, code: &str, purpose: Purpose) -> Result<(String, Redeemed)> {
        let relay = self.code_relay()?;
        let code: ShortCode = code.parse()?;
        let (payload, redeemed) = crate::code::rendezvous::redeem(&relay, &code, purpose).await?;
        let text = String::from_utf8(payload)
            .map_err(|_| TransferError::Protocol("the code stood for something that is not text".into()))?;
        Ok((text, redeemed))
    }

    /// Redeem a transfer code and fetch the file its ticket names.
    pub async fn receive_by_code(&self, code: &str, options: ReceiveOptions) -> Result<(Transfer, Redeemed)> {
        let (ticket, redeemed) = self.redeem_code(code, Purpose::Transfer).await?;
        let ticket: Ticket = ticket.parse()?;
        Ok((self.receive(ticket, options).await?, redeemed))
    }

    /// Make an upload link on this node's relay, open for `lifetime`: a person's browser sends a
    /// file through it, which [`UploadLink::receive`] waits for and fetches.
    pub async fn upload_link(&self, lifetime: Duration) -> Result<UploadLink> {
        UploadLink::open(self.config.channel.as_ref(), lifetime).await
    }

    /// Start fetching the file a ticket names.
    pub async fn receive(&self, ticket: Ticket, options: ReceiveOptions) -> Result<Transfer> {
        receive::start(self, ticket, options).await
    }

    /// Open a transfer of one file as chat messages that the agents post themselves; returns the
    /// first messages. Blocking (it reads the file, at most [`crate::chat::MAX_FILE_SIZE`]).
    pub fn send_as_messages(&self, options: MessagesOptions) -> Result<OpenedAsMessages> {
        chat::start(self, options)
    }

    /// Take the chat messages an agent saw (any side, any transfer, any order, repeats welcome)
    /// and answer with the messages to post back; none asks this node to repeat its answers for
    /// every unfinished transfer on the messages path. New transfers land in `options`' folder.
    /// Blocking (file writes and syncs).
    pub fn take_messages(&self, texts: &[String], options: &ReceiveOptions) -> Result<Taken> {
        chat::take(self, texts, options)
    }

    /// Push a file to a trusted peer: start serving it, then post a sealed offer to the peer's
    /// inbox. Returns the transfer and the peer's answer (`accepted` or `pending`).
    pub async fn push(&self, options: SendOptions, peer: &str) -> Result<(Transfer, PushAnswer)> {
        trust::push(self, options, peer).await
    }

    /// Hold a pushed offer as `pending` instead of fetching it.
    pub fn hold(&self, ticket: Ticket, options: &ReceiveOptions, because: &str) -> Result<TransferId> {
        Ok(receive::hold(self, ticket, options, because)?.transfer_id)
    }

    /// Accept a pending offer (into `options`' folder if given), or resume an unfinished receive.
    pub async fn accept(&self, id: TransferId, options: Option<ReceiveOptions>) -> Result<Transfer> {
        let record =
            self.journal.load(&id, Role::Receive)?.ok_or_else(|| TransferError::TransferNotFound(id.to_string()))?;
        receive::accept(self, record, options).await
    }

    /// Continue an interrupted transfer from its journal. `role` picks one when this node both
    /// sends and receives `id` (two nodes sharing one home).
    pub async fn resume(&self, id: TransferId, role: Option<Role>) -> Result<Transfer> {
        let mut records = self.journal.find(&id)?;
        records.retain(|r| role.is_none_or(|role| r.role() == role));
        let record = match records.len() {
            0 => return Err(TransferError::TransferNotFound(id.to_string())),
            1 => records.pop().expect("one"),
            _ => return Err(TransferError::AmbiguousTransfer(id.to_string())),
        };
        if record.messages {
            // No path of the engine carries it: the agents do, one call at a time.
            return Err(TransferError::InvalidArgument(format!(
                "transfer {id} travels as chat messages: it continues when messages (or none, to repeat) are passed to receive_messages"
            )));
        }
        match record.role() {
            Role::Send => send::resume(self, record).await,
            Role::Receive => receive::resume(self, record, None).await,
        }
    }

    /// The transfer that `id` (a whole id, or a unique prefix of at least six hex digits) names.
    pub fn resolve_id(&self, id: &str) -> Result<TransferId> {
        self.journal.resolve(id)
    }

    /// The journal's view of one transfer (both roles) or of all of them; no secret in it.
    pub fn status(&self, id: Option<TransferId>) -> Result<Vec<TransferStatus>> {
        Ok(self.records(id)?.iter().map(Record::status).collect())
    }

    /// The journal's records of one transfer (both roles) or of all of them.
    pub(crate) fn records(&self, id: Option<TransferId>) -> Result<Vec<Record>> {
        match id {
            Some(id) => {
                let found = self.journal.find(&id)?;
                if found.is_empty() {
                    return Err(TransferError::TransferNotFound(id.to_string()));
                }
                Ok(found)
            }
            None => self.journal.list(),
        }
    }
}
