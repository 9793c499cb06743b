//! Mailbox names on a channel: the key only its readers hold, and the id everyone may send to.
//!
//! A mailbox is named twice. Its [`MailboxKey`] is a 32-byte secret derived from what only its
//! readers hold (a transfer's session key, a node's inbox secret and a grant id); its
//! [`MailboxId`] is a hash of the key, [`MailboxKey::id`]. Senders and the channel know only the
//! id; subscribing takes the key (the relay checks it, see [`crate::relay::proto`]). Two types
//! instead of two `[u8; 32]`s, so that posting to a key or subscribing to an id does not compile.
//!
//! This is a format, below everything that moves bytes: no IO here.

use std::fmt;

use data_encoding::HEXLOWER;

/// The secret that proves the right to read a mailbox. Not shown by `Debug`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MailboxKey([u8; 32]);

/// The public name of a mailbox: where messages are sent, what the channel routes by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId([u8; 32]);

impl MailboxKey {
    pub const fn from_bytes(bytes: [u8; 32]) -> MailboxKey {
        MailboxKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The mailbox whose readers must hold this key.
    pub fn id(&self) -> MailboxId {
        use sha2::{Digest, Sha256};
        MailboxId(Sha256::new().chain_update(b"agentferry relay mailbox v1\0").chain_update(self.0).finalize().into())
    }
}

impl fmt::Debug for MailboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxKey(for {})", self.id())
    }
}

impl MailboxId {
    pub const fn from_bytes(bytes: [u8; 32]) -> MailboxId {
        MailboxId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id from its lowercase hex form (as grant URIs and replies name it).
    pub fn from_hex(hex: &str) -> Option<MailboxId> {
        HEXLOWER.decode(hex.as_bytes()).ok()?.try_into().ok().map(MailboxId)
    }
}

/// Lowercase hex, the form folder names, NATS subjects and replies use.
impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_not_its_key_and_does_not_show_it() {
        let key = MailboxKey::from_bytes([7; 32]);
        assert_ne!(key.id().as_bytes(), key.as_bytes());
        assert!(!format!("{key:?}").contains(&HEXLOWER.encode(key.as_bytes())));
    }

    #[test]
    fn hex_round_trips_and_rejects_other_lengths() {
        let id = MailboxKey::from_bytes([1; 32]).id();
        assert_eq!(MailboxId::from_hex(&id.to_string()), Some(id));
        assert_eq!(MailboxId::from_hex("abcd"), None);
        assert_eq!(MailboxId::from_hex("zz"), None);
    }
}
