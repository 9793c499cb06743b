//! The NATS channel: mailboxes as subjects on a NATS server or cluster a team already runs.
//!
//! A mailbox is the subject `agentferry.<hex id>` ([`subject`]): NATS sees the same ids, sealed bytes
//! and sizes as `agentferry relay`, never a key, a ticket or a name. NATS cannot check the
//! subscription proof the relay checks (whoever may subscribe to `agentferry.>` could read any
//! mailbox), so the safety rests on the end-to-end sealing and on account permissions that
//! limit agentferry's users to `agentferry.>`.
//!
//! Differences from the relay that the layers above rely on:
//! - core NATS stores nothing: a message to a subject nobody subscribes is gone, so
//!   [`NatsChannel::subscribe`] returns only once the server has the subscription, and an offer
//!   to an offline peer waits in JetStream when the server has it ([`offers`]), or
//!   is re-posted by the sender until the peer reads its inbox (see [`super::Posted`]);
//! - a slow subscriber loses messages (bounded buffers here, slow-consumer cuts at the server):
//!   the chunk relay's window and retransmission recover them;
//! - a message must fit the server's `max_payload` (1 MiB by default): larger ones are refused
//!   here with a clear error instead of vanishing.
//!
//! The URL names servers only. Credentials come from the URL given to this node (never copied
//! into a ticket or grant: [`NatsHint`]'s `Display` leaves them out) or from the environment:
//! `AGENTFERRY_NATS_TOKEN`, `AGENTFERRY_NATS_USER` + `AGENTFERRY_NATS_PASSWORD`,
//! `AGENTFERRY_NATS_CREDS` (a creds file) or `AGENTFERRY_NATS_NKEY` (an NKey seed file).
//!
//! With `tls://` the server's certificate is checked against the system's roots and the PEM file
//! named by `AGENTFERRY_NATS_CA` (a team's own CA), on every NATS connection. A client
//! certificate (`AGENTFERRY_NATS_CERT` and `AGENTFERRY_NATS_KEY`, PEM) goes, like the
//! credentials, only to this node's configured servers.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::{sync::mpsc, task::JoinHandle};

pub mod offers;
pub mod subject;

use offers::OfferStore;

use super::Posted;
use crate::{
    error::TransferError,
    mailbox::{MailboxId, MailboxKey},
    task::AbortOnDrop,
};
/// Deliveries waiting for each subscriber, like the relay client's.
const DELIVER_DEPTH: usize = 8;
/// Messages the client buffers per subscription before it drops (a slow consumer).
const SUBSCRIPTION_CAPACITY: usize = 64;
/// Commands queued toward the server before publishers wait (backpressure, not a flood).
const CLIENT_CAPACITY: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to prove who we are to the server.
#[derive(Clone, PartialEq, Eq)]
enum Auth {
    Token(String),
    UserPassword(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Token(_) => "Token(..)",
            Auth::UserPassword(..) => "UserPassword(..)",
        })
    }
}

/// `nats://[USER:PASS@|TOKEN@]HOST:PORT[,HOST:PORT…]`, or `tls://…` for TLS.
#[derive(Clone, Debug)]
pub struct NatsHint {
    tls: bool,
    servers: Vec<String>,
    auth: Option<Auth>,
}

/// Two hints are the same channel when they name the same servers; credentials do not count.
impl PartialEq for NatsHint {
    fn eq(&self, other: &Self) -> bool {
        (self.tls, &self.servers) == (other.tls, &other.servers)
    }
}
impl Eq for NatsHint {}

/// The servers this node was configured with (`--relay`, `AGENTFERRY_RELAY`, the config file),
/// and the credentials their URL carried. Only these servers get credentials: a ticket or grant
/// naming other servers must not make this node hand its password to them.
static CONFIGURED: Mutex<Vec<(String, Option<Auth>)>> = Mutex::new(Vec::new());

impl NatsHint {
    /// Parse `s` if it is a NATS URL; `None` if it names another kind of channel.
    pub fn parse(s: &str) -> Option<Result<NatsHint, TransferError>> {
        let (tls, rest) = match s.split_once("://") {
            Some(("nats", rest)) => (false, rest),
            Some(("tls", rest)) => (true, rest),
            _ => return None,
        };
        let bad =
            |why: &str| TransferError::InvalidArgument(format!("{why}: use nats://[USER:PASS@]HOST:PORT[,HOST:PORT…]"));
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((userinfo, hosts)) => (
                Some(match userinfo.split_once(':') {
                    Some((user, password)) => Auth::UserPassword(user.to_owned(), password.to_owned()),
                    None => Auth::Token(userinfo.to_owned()),
                }),
                hosts,
            ),
            None => (None, rest),
        };
        let servers: Vec<String> = hosts.trim_end_matches('/').split(',').map(str::to_owned).collect();
        let valid =
            |h: &str| h.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if let Some(wrong) = servers.iter().find(|h| !valid(h)) {
            return Some(Err(bad(&format!("{wrong:?} is not HOST:PORT"))));
        }
        Some(Ok(NatsHint { tls, servers, auth }))
    }

    /// Whether the URL itself carries a secret (so showing the raw argument would leak it).
    pub fn has_credentials(&self) -> bool {
        self.auth.is_some()
    }

    /// Mark these servers as this node's own channel: they get its credentials, from this URL
    /// or the environment, also when a ticket's hint (which has none) names them.
    pub fn configure(&self) {
        let mut configured = CONFIGURED.lock().expect("not poisoned");
        let key = self.to_string();
        configured.retain(|(k, _)| *k != key);
        configured.push((key, self.auth.clone()));
    }

    /// The credentials to present, if these are this node's configured servers: the URL's,
    /// else the environment's. `None` for anything else (connect anonymously).
    fn credentials(&self) -> Option<Credentials> {
        let key = self.to_string();
        let configured = CONFIGURED.lock().expect("not poisoned");
        let (_, url_auth) = configured.iter().find(|(k, _)| *k == key)?;
        Some(Credentials { url: self.auth.clone().or_else(|| url_auth.clone()) })
    }
}

/// What a configured server gets: the URL's credentials, else those in the environment.
struct Credentials {
    url: Option<Auth>,
}

/// The URL without credentials: what tickets, grants and logs carry.
impl std::fmt::Display for NatsHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", if self.tls { "tls" } else { "nats" }, self.servers.join(","))
    }
}

/// One connection to a NATS server (or cluster: the client follows the servers it is told of).
#[derive(Debug)]
pub struct NatsChannel {
    client: async_nats::Client,
    label: String,
    /// The tasks delivering each subscribed mailbox (its core subscription, and for an inbox
    /// the offers kept for it).
    /// Each mailbox's delivery tasks, stopped when replaced, unsubscribed or dropped.
    subscriptions: Mutex<HashMap<MailboxId, Vec<AbortOnDrop>>>,
    /// The JetStream stream of waiting offers, looked up on first use; `None` without JetStream.
    offers: tokio::sync::OnceCell<Option<OfferStore>>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl NatsChannel {
    /// Connect now (a server that cannot be reached, or refuses our credentials, fails here);
    /// later losses are reconnected by the client, to any server of the cluster.
    pub async fn connect(hint: &NatsHint) -> Result<Arc<Self>, TransferError> {
        let label = hint.to_string();
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .client_capacity(CLIENT_CAPACITY)
            .require_tls(hint.tls)
            .max_reconnects(None)
            .name("agentferry");
        if let Some(ca) = env("AGENTFERRY_NATS_CA") {
            options = options.add_root_certificates(PathBuf::from(readable(&ca)?));
        }
        let Some(credentials) = hint.credentials() else {
            tracing::info!(nats = %label, "not this node's configured NATS servers: connecting without credentials");
            return Self::finish(hint, options).await;
        };
        let user = env("AGENTFERRY_NATS_USER");
        options = match (credentials.url, env("AGENTFERRY_NATS_TOKEN"), user) {
            (Some(Auth::Token(token)), ..) | (None, Some(token), _) => options.token(token),
            (Some(Auth::UserPassword(user, password)), ..) => options.user_and_password(user, password),
            (None, None, Some(user)) => {
                options.user_and_password(user, env("AGENTFERRY_NATS_PASSWORD").unwrap_or_default())
            }
            (None, None, None) => options,
        };
        if let Some(path) = env("AGENTFERRY_NATS_CREDS") {
            options = options
                .credentials_file(PathBuf::from(&path))
                .await
                .map_err(|e| TransferError::ChannelAuth(format!("cannot use the creds file {path}: {e}")))?;
        }
        if let Some(path) = env("AGENTFERRY_NATS_NKEY") {
            let seed = std::fs::read_to_string(&path).map_err(|e| TransferError::io(std::path::Path::new(&path), e))?;
            options = options.nkey(seed.trim().to_owned());
        }
        match (env("AGENTFERRY_NATS_CERT"), env("AGENTFERRY_NATS_KEY")) {
            (Some(cert), Some(key)) => {
                options = options.add_client_certificate(readable(&cert)?.into(), readable(&key)?.into());
            }
            (None, None) => {}
            _ => {
                return Err(TransferError::InvalidArgument(
                    "AGENTFERRY_NATS_CERT and AGENTFERRY_NATS_KEY go together: set both or neither".into(),
                ));
            }
        }
        Self::finish(hint, options).await
    }

    async fn finish(hint: &NatsHint, options: async_nats::ConnectOptions) -> Result<Arc<Self>, TransferError> {
        let label = hint.to_string();
        let scheme = if hint.tls { "tls" } else { "nats" };
        let addrs: Vec<async_nats::ServerAddr> = hint
            .servers
            .iter()
            .map(|s| format!("{scheme}://{s}").parse())
            .collect::<Result<_, _>>()
            .map_err(|e| TransferError::InvalidArgument(format!("{label}: {e}")))?;
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(addrs))
            .await
            .map_err(|_| TransferError::ChannelUnreachable(format!("NATS {label}: no answer")))?
            .map_err(|e| connect_error(&label, hint.tls, e))?;
        Ok(Arc::new(NatsChannel { client, label, subscriptions: Mutex::default(), offers: Default::default() }))
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Messages sent to mailbox `key.id()` from the moment this returns (the server has
    /// the subscription by then: core NATS keeps nothing for a subject nobody reads).
    pub async fn subscribe(&self, key: MailboxKey) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(DELIVER_DEPTH);
        let mailbox = key.id();
        let tasks = self.subscribe_into(&mailbox, tx).await.into_iter().collect();
        self.track(mailbox, tasks);
        rx
    }

    /// Like [`NatsChannel::subscribe`], for an inbox: also the offers JetStream kept for it
    /// while nobody read it (see [`offers`]).
    pub async fn subscribe_inbox(&self, key: MailboxKey) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(DELIVER_DEPTH);
        let mailbox = key.id();
        let mut tasks: Vec<JoinHandle<()>> = self.subscribe_into(&mailbox, tx.clone()).await.into_iter().collect();
        if let Some(store) = self.offer_store().await {
            tasks.extend(store.deliver(&self.client, &mailbox, tx).await);
        }
        self.track(mailbox, tasks);
        rx
    }

    /// Keep `tasks` as the delivery of `mailbox`, stopping whatever delivered it before.
    fn track(&self, mailbox: MailboxId, tasks: Vec<JoinHandle<()>>) {
        let tasks = tasks.into_iter().map(AbortOnDrop).collect();
        self.subscriptions.lock().expect("not poisoned").insert(mailbox, tasks);
    }

    /// Subscribe the core subject of `mailbox`, delivering to `tx` from a task.
    async fn subscribe_into(&self, mailbox: &MailboxId, tx: mpsc::Sender<Bytes>) -> Option<JoinHandle<()>> {
        let mut subscriber = match self.client.subscribe(subject::mailbox(mailbox)).await {
            Ok(subscriber) => subscriber,
            // The receiver ends at once: the caller sees a closed mailbox.
            Err(e) => {
                tracing::warn!(nats = %self.label, "cannot subscribe: {e}");
                return None;
            }
        };
        if let Err(e) = self.client.flush().await {
            tracing::debug!(nats = %self.label, "subscription not confirmed: {e}");
        }
        Some(tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                // Waiting here fills the client's buffer, which then drops: the sender's
                // window and retransmission make up for it.
                if tx.send(message.payload).await.is_err() {
                    return;
                }
            }
        }))
    }

    pub fn unsubscribe(&self, key: MailboxKey) {
        // Dropping a subscriber unsubscribes; an ordered consumer lapses on the server.
        self.subscriptions.lock().expect("not poisoned").remove(&key.id());
    }

    async fn offer_store(&self) -> Option<&OfferStore> {
        self.offers.get_or_init(|| OfferStore::open(&self.client, &self.label)).await.as_ref()
    }

    /// Post an offer to the inbox `mailbox`: kept by JetStream if the server has it, else
    /// published if someone reads the inbox now, else not sent at all ([`Posted::Dropped`]:
    /// core NATS would lose it; the caller posts again later).
    pub async fn post_offer(&self, mailbox: MailboxId, payload: Bytes) -> Result<Posted, TransferError> {
        if let Some(store) = self.offer_store().await {
            store.keep(&mailbox, payload).await?;
            return Ok(Posted::Kept);
        }
        if !self.has_reader(mailbox).await {
            return Ok(Posted::Dropped);
        }
        self.send(mailbox, payload).await?;
        Ok(Posted::Delivered)
    }

    /// Publish `payload` to `mailbox`; waits while the connection's queue is full.
    pub async fn send(&self, mailbox: MailboxId, payload: Bytes) -> Result<(), TransferError> {
        let limit = self.client.server_info().max_payload;
        if payload.len() > limit {
            return Err(TransferError::SizeLimit(format!(
                "a {} byte message does not fit the NATS server's max_payload of {limit} bytes: raise max_payload on the server (1 MiB fits agentferry's 256 KiB chunks)",
                payload.len()
            )));
        }
        self.client
            .publish(subject::mailbox(&mailbox), payload)
            .await
            .map_err(|e| TransferError::ChannelUnreachable(format!("NATS {}: {e}", self.label)))
    }

    /// Publish, and return once the server has it (for a last message before exiting).
    pub async fn send_written(&self, mailbox: MailboxId, payload: Bytes) -> Result<(), TransferError> {
        self.send(mailbox, payload).await?;
        self.client.flush().await.map_err(|e| TransferError::ChannelUnreachable(format!("NATS {}: {e}", self.label)))
    }

    /// Whether anyone reads `mailbox` now (core NATS answers "no responders" at once if not).
    async fn has_reader(&self, mailbox: MailboxId) -> bool {
        let probe = self.client.request(subject::mailbox(&mailbox), Bytes::new());
        match tokio::time::timeout(Duration::from_millis(500), probe).await {
            Ok(Err(e)) => e.kind() != async_nats::RequestErrorKind::NoResponders,
            // A reader that never answers a request (ours never do) times out: it is there.
            _ => true,
        }
    }
}

/// `path`, once it is known to be a readable file: the client reads it only while connecting,
/// where a missing file would surface as a TLS failure naming no file.
fn readable(path: &str) -> Result<&str, TransferError> {
    std::fs::File::open(path).map_err(|e| TransferError::io(std::path::Path::new(path), e))?;
    Ok(path)
}

fn io_kind(e: &async_nats::ConnectError) -> Option<std::io::ErrorKind> {
    std::error::Error::source(e)?.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
}

fn connect_error(label: &str, tls: bool, e: async_nats::ConnectError) -> TransferError {
    use async_nats::ConnectErrorKind as Kind;
    match e.kind() {
        Kind::AuthorizationViolation | Kind::Authentication => {
            TransferError::ChannelAuth(format!("NATS {label} refused this node's credentials"))
        }
        Kind::Tls => TransferError::ChannelTls(format!("NATS {label}: {e}")),
        // rustls reports a certificate it refuses as invalid data on the stream.
        Kind::Io if tls && io_kind(&e) == Some(std::io::ErrorKind::InvalidData) => {
            TransferError::ChannelTls(format!("NATS {label}: {e}"))
        }
        _ => TransferError::ChannelUnreachable(format!("NATS {label}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_their_credentials() {
        let hint = NatsHint::parse("nats://alice:s3cr3t@127.0.0.1:4222,[::1]:4223").unwrap().unwrap();
        assert_eq!(hint.to_string(), "nats://127.0.0.1:4222,[::1]:4223");
        assert!(!format!("{hint:?}").contains("s3cr3t"));
        assert!(hint.has_credentials());
        let token = NatsHint::parse("tls://tok3n@nats.example:4222").unwrap().unwrap();
        assert_eq!(token.to_string(), "tls://nats.example:4222");
        // A ticket's hint to the same servers uses the credentials given to this process, and
        // a hint to other servers gets none.
        let bare = NatsHint::parse("tls://nats.example:4222").unwrap().unwrap();
        assert_eq!(bare, token);
        assert!(bare.credentials().is_none(), "not configured yet");
        token.configure();
        assert_eq!(bare.credentials().and_then(|c| c.url), Some(Auth::Token("tok3n".into())));
        let other = NatsHint::parse("tls://attacker.example:4222").unwrap().unwrap();
        assert!(other.credentials().is_none());
        assert!(NatsHint::parse("ws://127.0.0.1:1").is_none());
        for wrong in ["nats://", "nats://host", "nats://host:port", "nats://:4222"] {
            assert_eq!(NatsHint::parse(wrong).unwrap().unwrap_err().code(), "invalid_argument", "{wrong}");
        }
    }
}
