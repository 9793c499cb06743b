//! Trusted peers and the grants that let them push files here.
//!
//! `agentferry export` mints a [`Grant`] on the receiving node: a random id and 256-bit secret
//! with an expiry, kept in `grants.json` and revocable. It prints a [`GrantUri`] (`grant…`)
//! carrying the id, the secret, the expiry, this node's suggested name and its inbox addresses.
//! The sending node stores it with `add_peer` as a [`Peer`] in `peers.json`. Pushing a file then
//! means posting an offer to the peer's inbox, authenticated by a MAC keyed from the grant secret
//! ([`crate::offer`]); the secret itself never travels again.

use std::{fmt, net::SocketAddr, str::FromStr};

use data_encoding::HEXLOWER;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{
    codec::{self, CodecError, Reader, Writer},
    error::{Result, TransferError},
    home::Home,
    journal::unix_now,
    mailbox::{MailboxId, MailboxKey},
    store::Store,
};

/// The kind prefix of peer grant URIs.
pub const GRANT_PREFIX: &str = "grant";

/// What `export` prints: the right to push files to the exporting node.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantUri {
    pub grant_id: [u8; 16],
    pub secret: [u8; 32],
    pub expires_at: u64,
    /// The name the exporting node suggests for itself.
    pub name: String,
    /// Where the exporting node's inbox listens.
    pub inbox: Vec<SocketAddr>,
    /// The message channel the exporting node listens on, and its inbox mailbox there.
    pub channel: Option<(String, MailboxId)>,
}

/// Extension tags of grant URIs.
const EXT_CHANNEL: u8 = 1;
const EXT_MAILBOX: u8 = 2;

impl fmt::Display for GrantUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.bytes(&self.grant_id).bytes(&self.secret).u64(self.expires_at).str(&self.name, 64).addrs(&self.inbox);
        if let Some((channel, mailbox)) = &self.channel {
            w.extension(EXT_CHANNEL, channel.as_bytes()).extension(EXT_MAILBOX, mailbox.as_bytes());
        }
        f.write_str(&codec::encode(GRANT_PREFIX, &w.0))
    }
}

impl fmt::Debug for GrantUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantUri")
            .field("grant_id", &HEXLOWER.encode(&self.grant_id))
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("name", &self.name)
            .field("inbox", &self.inbox)
            .field("channel", &self.channel.as_ref().map(|(c, _)| c))
            .finish()
    }
}

impl FromStr for GrantUri {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |e: CodecError| {
            TransferError::PeerUriInvalid(
                match e {
                    CodecError::WrongKind => "it does not start with `grant`",
                    CodecError::Truncated => "it is truncated",
                    CodecError::Tampered => "its checksum does not match (damaged or edited)",
                    CodecError::UnsupportedVersion(_) => "it was made by a newer agentferry",
                    CodecError::Malformed(why) => why,
                }
                .to_owned(),
            )
        };
        let body = codec::decode(GRANT_PREFIX, s).map_err(invalid)?;
        let mut r = Reader(&body);
        let mut uri = GrantUri {
            grant_id: r.array().map_err(invalid)?,
            secret: r.array().map_err(invalid)?,
            expires_at: r.u64().map_err(invalid)?,
            name: r.str().map_err(invalid)?,
            inbox: r.addrs().map_err(invalid)?,
            channel: None,
        };
        let (mut channel, mut mailbox) = (None, None);
        for (tag, value) in r.extensions().map_err(invalid)? {
            match tag {
                EXT_CHANNEL => channel = std::str::from_utf8(value).ok().map(str::to_owned),
                EXT_MAILBOX => mailbox = <[u8; 32]>::try_from(value).ok().map(MailboxId::from_bytes),
                _ => {}
            }
        }
        uri.channel = channel.zip(mailbox);
        Ok(uri)
    }
}

/// The key of grant `grant_id`'s inbox mailbox on the channel: HMAC-SHA256 of the grant id
/// under this node's inbox secret. Only this node can subscribe to it; the grant's holder knows
/// only its id, which lets it send there and nothing more.
pub fn grant_inbox_key(inbox_secret: &[u8; 32], grant_id: &str) -> MailboxKey {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(inbox_secret).expect("any key length");
    mac.update(b"agentferry grant inbox v1\0");
    mac.update(grant_id.as_bytes());
    MailboxKey::from_bytes(mac.finalize().into_bytes().into())
}

/// A grant this node exported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Grant {
    /// Hex grant id.
    pub id: String,
    /// Hex secret; never shown again after export.
    pub secret: String,
    pub name: String,
    pub expires_at: u64,
    #[serde(default)]
    pub revoked: bool,
    pub created_at: u64,
    /// The name the holder gave in its first accepted offer (trust on first use); offers under
    /// this grant naming anyone else are held (`grant_holder_mismatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// At most this many bytes are auto-accepted under this grant; beyond, offers are held
    /// (`grant_quota_exceeded`). `None`: no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// Bytes of the offers auto-accepted under this grant so far.
    #[serde(default)]
    pub bytes_accepted: u64,
}

/// A stored secret, or a clear error if the store was damaged: never a fallback key, which
/// anyone could compute.
fn stored_secret(hex: &str, what: &str) -> Result<[u8; 32]> {
    HEXLOWER
        .decode(hex.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| TransferError::Home(format!("the secret of {what} is damaged; export a fresh grant")))
}

impl Grant {
    /// The grant's secret; fails if `grants.json` was damaged.
    pub fn secret_bytes(&self) -> Result<[u8; 32]> {
        stored_secret(&self.secret, &format!("grant {}", self.id))
    }

    /// Why this grant no longer allows auto-accepted pushes, if it does not.
    pub fn invalid_reason(&self, now: u64) -> Option<&'static str> {
        if self.revoked {
            Some("grant_revoked")
        } else if now >= self.expires_at {
            Some("grant_expired")
        } else {
            None
        }
    }
}

/// A node this node may push files to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub grant_id: String,
    /// Hex grant secret; the MAC key for offers.
    pub secret: String,
    /// The earlier of the grant's expiry and the local TTL.
    pub expires_at: u64,
    pub inbox: Vec<SocketAddr>,
    /// The peer's message channel and inbox mailbox (hex), for pushes when its inbox is not
    /// reachable directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<(String, String)>,
    pub added_at: u64,
}

impl Peer {
    /// The grant secret this peer gave us; fails if `peers.json` was damaged.
    pub fn secret_bytes(&self) -> Result<[u8; 32]> {
        stored_secret(&self.secret, &format!("peer {:?}", self.name))
    }

    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

/// What a user may see of a peer (no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PeerInfo {
    pub name: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub expired: bool,
    pub inbox: Vec<String>,
}

impl From<&Peer> for PeerInfo {
    fn from(p: &Peer) -> Self {
        PeerInfo {
            name: p.name.clone(),
            expires_at: p.expires_at,
            expired: p.is_expired(unix_now()),
            inbox: p.inbox.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// What a user may see of an exported grant (no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct GrantInfo {
    pub id: String,
    /// The name this node gave itself in the grant.
    pub name: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub revoked: bool,
    pub expired: bool,
    /// The sender name its holder used in the first accepted push; pushes naming another are
    /// held. Absent until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Bytes auto-accepted under it at most; absent: no quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// Bytes auto-accepted under it so far.
    pub bytes_accepted: u64,
}

impl From<&Grant> for GrantInfo {
    fn from(g: &Grant) -> Self {
        GrantInfo {
            id: g.id.clone(),
            name: g.name.clone(),
            expires_at: g.expires_at,
            revoked: g.revoked,
            expired: unix_now() >= g.expires_at,
            holder: g.holder.clone(),
            quota_bytes: g.quota_bytes,
            bytes_accepted: g.bytes_accepted,
        }
    }
}

/// What a new grant may do, and how many may be open.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrantLimits {
    /// Bytes auto-accepted under the grant at most (see [`Grant::quota_bytes`]).
    pub quota_bytes: Option<u64>,
    /// Refuse to mint (`too_many_invites`) when this many usable grants exist already.
    pub max_open: Option<usize>,
}

/// The peer and grant stores of one home.
#[derive(Clone, Debug)]
pub struct Trust {
    peers: Store<Peer>,
    grants: Store<Grant>,
}

impl Trust {
    pub fn new(home: &Home) -> Self {
        Trust { peers: Store::new(home, "peers.json"), grants: Store::new(home, "grants.json") }
    }

    /// Mint a grant valid for `ttl_secs`, reachable at `inbox` and, when given a channel and
    /// this node's inbox secret, through the grant's own mailbox on that channel (see
    /// [`grant_inbox_key`]); the URI carries only the mailbox's id.
    pub fn export(
        &self,
        name: &str,
        ttl_secs: u64,
        inbox: Vec<SocketAddr>,
        channel: Option<(String, [u8; 32])>,
    ) -> Result<GrantUri> {
        self.mint(name, ttl_secs, inbox, channel, GrantLimits::default())
    }

    /// [`Self::export`] within `limits`. The count of open grants is taken under the store's
    /// lock, so the cap holds even when several processes mint at once.
    pub fn mint(
        &self,
        name: &str,
        ttl_secs: u64,
        inbox: Vec<SocketAddr>,
        channel: Option<(String, [u8; 32])>,
        limits: GrantLimits,
    ) -> Result<GrantUri> {
        let expires_at = unix_now() + ttl_secs;
        let mut uri =
            GrantUri { grant_id: [0; 16], secret: [0; 32], expires_at, name: name.into(), inbox, channel: None };
        rand::rng().fill_bytes(&mut uri.grant_id);
        rand::rng().fill_bytes(&mut uri.secret);
        // The grant's own inbox mailbox: revoking the grant closes it and no one else's.
        uri.channel = channel
            .map(|(hint, inbox_secret)| (hint, grant_inbox_key(&inbox_secret, &HEXLOWER.encode(&uri.grant_id)).id()));
        let grant = Grant {
            id: HEXLOWER.encode(&uri.grant_id),
            secret: HEXLOWER.encode(&uri.secret),
            name: name.into(),
            expires_at: uri.expires_at,
            revoked: false,
            created_at: unix_now(),
            holder: None,
            quota_bytes: limits.quota_bytes,
            bytes_accepted: 0,
        };
        self.grants.update(|grants| {
            let now = unix_now();
            grants.retain(|g| g.expires_at + 30 * 86_400 > now); // forget long-dead grants
            if let Some(max) = limits.max_open
                && grants.iter().filter(|g| g.invalid_reason(now).is_none()).count() >= max
            {
                return Err(TransferError::TooManyGrants(max));
            }
            grants.push(grant);
            Ok(())
        })?;
        Ok(uri)
    }

    pub fn grants(&self) -> Result<Vec<Grant>> {
        self.grants.load()
    }

    /// Changes whenever a grant is minted, revoked or deleted (see [`Store::stamp`]).
    pub fn grants_stamp(&self) -> Option<(Option<std::time::SystemTime>, u64)> {
        self.grants.stamp()
    }

    pub fn grant(&self, id: &str) -> Result<Option<Grant>> {
        Ok(self.grants.load()?.into_iter().find(|g| g.id == id))
    }

    /// Take an authentic offer of `bytes` from `from` under grant `id`: `None` when it may be
    /// auto-accepted (its bytes are then counted against the quota and, on first use, `from`
    /// becomes the grant's holder), else why it must be held instead.
    pub fn claim(&self, id: &str, from: &str, bytes: u64, now: u64) -> Result<Option<&'static str>> {
        self.grants.update(|grants| {
            let g = grants.iter_mut().find(|g| g.id == id).ok_or_else(|| TransferError::GrantNotFound(id.into()))?;
            if let Some(reason) = g.invalid_reason(now) {
                return Ok(Some(reason));
            }
            if g.holder.as_deref().is_some_and(|h| h != from) {
                return Ok(Some("grant_holder_mismatch"));
            }
            if g.quota_bytes.is_some_and(|q| g.bytes_accepted.saturating_add(bytes) > q) {
                return Ok(Some("grant_quota_exceeded"));
            }
            g.holder.get_or_insert_with(|| from.to_owned());
            g.bytes_accepted = g.bytes_accepted.saturating_add(bytes);
            Ok(None)
        })
    }

    pub fn revoke(&self, id: &str) -> Result<Grant> {
        self.grants.update(|grants| {
            let g = grants.iter_mut().find(|g| g.id == id).ok_or_else(|| TransferError::GrantNotFound(id.into()))?;
            g.revoked = true;
            Ok(g.clone())
        })
    }

    /// Store a peer's grant. `name` overrides the name the peer suggested; `ttl_secs` may only
    /// shorten the grant's own life. A peer of the same name is replaced.
    pub fn add_peer(&self, uri: &str, name: Option<&str>, ttl_secs: Option<u64>) -> Result<Peer> {
        let uri: GrantUri = uri.parse()?;
        let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(&uri.name).to_owned();
        if name.is_empty() {
            return Err(TransferError::PeerUriInvalid("it names no peer; pass a name".into()));
        }
        let now = unix_now();
        if now >= uri.expires_at {
            return Err(TransferError::PeerExpired(name));
        }
        let expires_at = ttl_secs.map_or(uri.expires_at, |ttl| uri.expires_at.min(now + ttl));
        let peer = Peer {
            name: name.clone(),
            grant_id: HEXLOWER.encode(&uri.grant_id),
            secret: HEXLOWER.encode(&uri.secret),
            expires_at,
            inbox: uri.inbox,
            channel: uri.channel.map(|(c, m)| (c, m.to_string())),
            added_at: now,
        };
        self.peers.update(|peers| {
            peers.retain(|p| p.name != name);
            peers.push(peer.clone());
            Ok(())
        })?;
        Ok(peer)
    }

    pub fn peers(&self) -> Result<Vec<Peer>> {
        self.peers.load()
    }

    /// The peer called `name`, if it may still be pushed to.
    pub fn usable_peer(&self, name: &str) -> Result<Peer> {
        let peer = self.peers.load()?.into_iter().find(|p| p.name == name);
        let peer = peer.ok_or_else(|| TransferError::PeerNotFound(name.into()))?;
        if peer.is_expired(unix_now()) {
            return Err(TransferError::PeerExpired(name.into()));
        }
        Ok(peer)
    }

    pub fn remove_peer(&self, name: &str) -> Result<Peer> {
        self.peers.update(|peers| {
            let i =
                peers.iter().position(|p| p.name == name).ok_or_else(|| TransferError::PeerNotFound(name.into()))?;
            Ok(peers.remove(i))
        })
    }

    /// Extend a peer's local TTL (never past what its grant allows is the peer's business: its
    /// node refuses expired grants whatever we store).
    pub fn extend_peer(&self, name: &str, ttl_secs: u64) -> Result<Peer> {
        self.peers.update(|peers| {
            let p =
                peers.iter_mut().find(|p| p.name == name).ok_or_else(|| TransferError::PeerNotFound(name.into()))?;
            p.expires_at = unix_now() + ttl_secs;
            Ok(p.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_uris_round_trip_and_reject_damage() {
        let uri = GrantUri {
            grant_id: [1; 16],
            secret: [2; 32],
            expires_at: 1234,
            name: "alice".into(),
            inbox: vec!["127.0.0.1:5000".parse().unwrap()],
            channel: Some(("ws://127.0.0.1:6000".into(), MailboxId::from_bytes([3; 32]))),
        };
        let text = uri.to_string();
        assert!(text.starts_with("grant"));
        assert_eq!(text.parse::<GrantUri>().unwrap(), uri);
        assert!(!format!("{uri:?}").contains("0202"));
        assert_eq!(text[..text.len() - 3].parse::<GrantUri>().unwrap_err().code(), "peer_uri_invalid");
        assert_eq!("ferryabc".parse::<GrantUri>().unwrap_err().code(), "peer_uri_invalid");
    }

    #[test]
    fn peers_and_grants_persist_across_store_instances() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path().join("h")).unwrap();
        let trust = Trust::new(&home);
        let uri = trust.export("bob", 3600, vec!["127.0.0.1:1".parse().unwrap()], None).unwrap();
        let other = Trust::new(&home);
        assert_eq!(other.grants().unwrap().len(), 1);
        other.add_peer(&uri.to_string(), None, Some(60)).unwrap();
        let peer = trust.usable_peer("bob").unwrap();
        assert!(peer.expires_at <= unix_now() + 60);
        trust.revoke(&HEXLOWER.encode(&uri.grant_id)).unwrap();
        assert_eq!(other.grants().unwrap()[0].invalid_reason(unix_now()), Some("grant_revoked"));
        assert_eq!(trust.remove_peer("nobody").unwrap_err().code(), "peer_not_found");
    }

    #[test]
    fn a_grant_binds_its_first_holder_and_counts_its_quota() {
        let dir = tempfile::tempdir().unwrap();
        let trust = Trust::new(&Home::open(dir.path().join("h")).unwrap());
        let limits = GrantLimits { quota_bytes: Some(100), max_open: Some(1) };
        let uri = trust.mint("bob", 3600, vec![], None, limits).unwrap();
        let id = HEXLOWER.encode(&uri.grant_id);
        let now = unix_now();
        assert_eq!(trust.claim(&id, "alice", 60, now).unwrap(), None);
        assert_eq!(trust.claim(&id, "mallory", 1, now).unwrap(), Some("grant_holder_mismatch"));
        assert_eq!(trust.claim(&id, "alice", 41, now).unwrap(), Some("grant_quota_exceeded"));
        assert_eq!(trust.claim(&id, "alice", 40, now).unwrap(), None);
        let grant = trust.grant(&id).unwrap().unwrap();
        assert_eq!((grant.holder.as_deref(), grant.bytes_accepted), (Some("alice"), 100));
        let full = trust.mint("bob", 3600, vec![], None, limits).unwrap_err();
        assert_eq!(full.code(), "too_many_invites", "the cap sees the open grant");
        trust.revoke(&id).unwrap();
        assert_eq!(trust.claim(&id, "alice", 0, now).unwrap(), Some("grant_revoked"));
    }
}
