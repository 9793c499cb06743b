//! The relay's wire format: one binary WebSocket message per envelope.
//!
//! ```text
//! client → relay   0x04 SUBSCRIBE    key[32]       subscribes mailbox key.id()
//!                  0x02 SEND         mailbox[32] payload
//!                  0x03 UNSUBSCRIBE  mailbox[32]
//! relay → client   0x81 DELIVER      mailbox[32] payload
//!                  0x82 REFUSED      mailbox[32] code u8     (the SEND to mailbox was dropped)
//! ```
//!
//! Nameplates, for short codes ([`crate::code`]): a connection asks for a small number, another
//! connection claims it once, and the relay then passes messages between the two.
//!
//! ```text
//! client → relay   0x05 ALLOCATE                             a nameplate for this connection
//!                  0x06 CLAIM        nameplate u32           pair with its holder (burns it)
//!                  0x07 PEER         payload                 to the connection paired with this one
//! relay → client   0x85 ALLOCATED    nameplate u32
//!                  0x86 PAIRED                               (to both, once a claim succeeds)
//!                  0x87 FROM_PEER    payload
//!                  0x88 CODE_REFUSED code u8                 ([`Refusal`]: why not, or why no more)
//! ```
//!
//! Numbers are big-endian. A relay older than nameplates counts these as malformed and answers
//! nothing; the client's wait for `ALLOCATED` or `PAIRED` times out and says so.
//!
//! Subscribing proves the right to read: a mailbox id is [`MailboxKey::id`], a hash of a key only
//! its owner holds, and SUBSCRIBE carries the key. Whoever knows only the id (every sender, and
//! everyone who ever saw a grant URI naming it) can send there but cannot subscribe, so nobody
//! can silently take a mailbox over. The key is no other secret: it is derived for this use only,
//! so the relay learning it learns nothing it could not do anyway as the one routing the
//! messages. The unproven `0x01 SUBSCRIBE mailbox[32]` of earlier versions is refused
//! (`unproven`).
//!
//! Payloads are opaque to the relay. Parsing is check-then-parse: anything short or unknown is
//! `Malformed`, never a panic.

use bytes::{BufMut, Bytes, BytesMut};

use crate::mailbox::{MailboxId, MailboxKey};

/// The unproven subscription of earlier versions: refused.
pub const SUBSCRIBE_UNPROVEN: u8 = 0x01;
pub const SUBSCRIBE: u8 = 0x04;
pub const SEND: u8 = 0x02;
pub const UNSUBSCRIBE: u8 = 0x03;
pub const DELIVER: u8 = 0x81;
pub const REFUSED: u8 = 0x82;
pub const ALLOCATE: u8 = 0x05;
pub const CLAIM: u8 = 0x06;
pub const PEER: u8 = 0x07;
pub const ALLOCATED: u8 = 0x85;
pub const PAIRED: u8 = 0x86;
pub const FROM_PEER: u8 = 0x87;
pub const CODE_REFUSED: u8 = 0x88;

/// Why the relay dropped a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    QueueFull = 1,
    TooManyMailboxes = 2,
    OverCapacity = 3,
    /// A subscription without the mailbox's key.
    Unproven = 4,
    /// No such nameplate is open (never allocated, or the number is mistyped).
    NoSuchNameplate = 5,
    /// The nameplate was claimed already: a code works once.
    NameplateUsed = 6,
    /// The nameplate expired, or its holder left.
    NameplateExpired = 7,
    /// Too many nameplate requests from this source; wait.
    RateLimited = 8,
    /// The nameplate table is full (or this source's share of it, or this connection has one).
    NameplatesFull = 9,
    /// The paired connection is gone, or this connection is paired with nobody.
    PeerGone = 10,
}

impl Refusal {
    pub fn from_u8(b: u8) -> Option<Refusal> {
        match b {
            1 => Some(Refusal::QueueFull),
            2 => Some(Refusal::TooManyMailboxes),
            3 => Some(Refusal::OverCapacity),
            4 => Some(Refusal::Unproven),
            5 => Some(Refusal::NoSuchNameplate),
            6 => Some(Refusal::NameplateUsed),
            7 => Some(Refusal::NameplateExpired),
            8 => Some(Refusal::RateLimited),
            9 => Some(Refusal::NameplatesFull),
            10 => Some(Refusal::PeerGone),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::TooManyMailboxes => "too_many_mailboxes",
            Refusal::OverCapacity => "over_capacity",
            Refusal::Unproven => "unproven",
            Refusal::NoSuchNameplate => "no_such_nameplate",
            Refusal::NameplateUsed => "nameplate_used",
            Refusal::NameplateExpired => "nameplate_expired",
            Refusal::RateLimited => "rate_limited",
            Refusal::NameplatesFull => "nameplates_full",
            Refusal::PeerGone => "peer_gone",
        }
    }
}

/// One envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// Subscribe to `key.id()`, proving the right with the key.
    Subscribe(MailboxKey),
    /// The unproven subscription of earlier versions (decoded only to be refused).
    SubscribeUnproven(MailboxId),
    Send(MailboxId, Bytes),
    Unsubscribe(MailboxId),
    Deliver(MailboxId, Bytes),
    Refused(MailboxId, u8),
    /// Ask for a nameplate.
    Allocate,
    /// Claim a nameplate another connection holds.
    Claim(u32),
    /// To the paired connection.
    Peer(Bytes),
    /// The nameplate, and how many seconds it waits for its claim.
    Allocated(u32, u32),
    Paired,
    /// From the paired connection.
    FromPeer(Bytes),
    CodeRefused(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed relay envelope")]
pub struct Malformed;

/// Turn a SEND envelope into the DELIVER envelope for the same mailbox and payload, reusing
/// its buffer when nothing else shares it (the two differ only in the tag byte). Anything that
/// is not a routable SEND is handed back untouched.
pub fn send_to_deliver(msg: Bytes) -> Result<(MailboxId, Bytes), Bytes> {
    if msg.len() < 33 || msg[0] != SEND {
        return Err(msg);
    }
    let mailbox = MailboxId::from_bytes(msg[1..33].try_into().expect("32 bytes"));
    let deliver = match msg.try_into_mut() {
        Ok(mut owned) => {
            owned[0] = DELIVER;
            owned.freeze()
        }
        Err(shared) => {
            let mut copy = BytesMut::from(&shared[..]);
            copy[0] = DELIVER;
            copy.freeze()
        }
    };
    Ok((mailbox, deliver))
}

impl Envelope {
    pub fn encode(&self) -> Bytes {
        let short = |tag: u8, tail: &[u8]| {
            let mut buf = BytesMut::with_capacity(1 + tail.len());
            buf.put_u8(tag);
            buf.put_slice(tail);
            buf.freeze()
        };
        let (tag, mailbox, tail): (u8, &[u8; 32], &[u8]) = match self {
            Envelope::Allocate => return short(ALLOCATE, &[]),
            Envelope::Claim(n) => return short(CLAIM, &n.to_be_bytes()),
            Envelope::Peer(p) => return short(PEER, p),
            Envelope::Allocated(n, ttl) => return short(ALLOCATED, &[n.to_be_bytes(), ttl.to_be_bytes()].concat()),
            Envelope::Paired => return short(PAIRED, &[]),
            Envelope::FromPeer(p) => return short(FROM_PEER, p),
            Envelope::CodeRefused(code) => return short(CODE_REFUSED, std::slice::from_ref(code)),
            Envelope::Subscribe(key) => (SUBSCRIBE, key.as_bytes(), &[]),
            Envelope::SubscribeUnproven(m) => (SUBSCRIBE_UNPROVEN, m.as_bytes(), &[]),
            Envelope::Send(m, p) => (SEND, m.as_bytes(), p),
            Envelope::Unsubscribe(m) => (UNSUBSCRIBE, m.as_bytes(), &[]),
            Envelope::Deliver(m, p) => (DELIVER, m.as_bytes(), p),
            Envelope::Refused(m, code) => (REFUSED, m.as_bytes(), std::slice::from_ref(code)),
        };
        let mut buf = BytesMut::with_capacity(33 + tail.len());
        buf.put_u8(tag);
        buf.put_slice(mailbox);
        buf.put_slice(tail);
        buf.freeze()
    }

    pub fn decode(mut msg: Bytes) -> Result<Envelope, Malformed> {
        let number = |tail: &[u8]| <[u8; 4]>::try_from(tail).map(u32::from_be_bytes).map_err(|_| Malformed);
        match msg.first() {
            Some(&ALLOCATE) if msg.len() == 1 => return Ok(Envelope::Allocate),
            Some(&CLAIM) => return Ok(Envelope::Claim(number(&msg[1..])?)),
            Some(&PEER) => return Ok(Envelope::Peer(msg.split_off(1))),
            Some(&ALLOCATED) if msg.len() == 9 => {
                return Ok(Envelope::Allocated(number(&msg[1..5])?, number(&msg[5..])?));
            }
            Some(&PAIRED) if msg.len() == 1 => return Ok(Envelope::Paired),
            Some(&FROM_PEER) => return Ok(Envelope::FromPeer(msg.split_off(1))),
            Some(&CODE_REFUSED) if msg.len() == 2 => return Ok(Envelope::CodeRefused(msg[1])),
            Some(&(ALLOCATE | ALLOCATED | PAIRED | CODE_REFUSED)) => return Err(Malformed),
            _ => {}
        }
        if msg.len() < 33 {
            return Err(Malformed);
        }
        let tag = msg[0];
        let name: [u8; 32] = msg[1..33].try_into().expect("32 bytes");
        let mailbox = MailboxId::from_bytes(name);
        // Advance rather than split, so the payload stays the only view of its buffer and can
        // become mutable again without a copy.
        bytes::Buf::advance(&mut msg, 33);
        let tail = msg;
        Ok(match (tag, tail.len()) {
            (SUBSCRIBE, 0) => Envelope::Subscribe(MailboxKey::from_bytes(name)),
            (SUBSCRIBE_UNPROVEN, 0) => Envelope::SubscribeUnproven(mailbox),
            (UNSUBSCRIBE, 0) => Envelope::Unsubscribe(mailbox),
            (SEND, _) => Envelope::Send(mailbox, tail),
            (DELIVER, _) => Envelope::Deliver(mailbox, tail),
            (REFUSED, 1) => Envelope::Refused(mailbox, tail[0]),
            _ => return Err(Malformed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_garbage_is_malformed() {
        let key = MailboxKey::from_bytes([7u8; 32]);
        let m = key.id();
        for e in [
            Envelope::Subscribe(key),
            Envelope::SubscribeUnproven(m),
            Envelope::Send(m, Bytes::from_static(b"abc")),
            Envelope::Unsubscribe(m),
            Envelope::Deliver(m, Bytes::new()),
            Envelope::Refused(m, 1),
            Envelope::Allocate,
            Envelope::Claim(7),
            Envelope::Peer(Bytes::from_static(b"pake")),
            Envelope::Peer(Bytes::new()),
            Envelope::Allocated(u32::MAX, 600),
            Envelope::Paired,
            Envelope::FromPeer(Bytes::from_static(b"sealed")),
            Envelope::CodeRefused(Refusal::NameplateUsed as u8),
        ] {
            assert_eq!(Envelope::decode(e.encode()), Ok(e));
        }
        assert_eq!(Envelope::decode(Bytes::from_static(b"\x01short")), Err(Malformed));
        let mut bad = Envelope::Subscribe(key).encode().to_vec();
        bad.push(0);
        assert_eq!(Envelope::decode(Bytes::from(bad)), Err(Malformed));
        let mut unknown = Envelope::Subscribe(key).encode().to_vec();
        unknown[0] = 0x42;
        assert_eq!(Envelope::decode(Bytes::from(unknown)), Err(Malformed));
        for garbage in [&b"\x05x"[..], b"\x06\0\0\x01", b"\x06\0\0\0\x01\0", b"\x86x", b"\x88", b"\x85\x01"] {
            assert_eq!(Envelope::decode(Bytes::copy_from_slice(garbage)), Err(Malformed), "{garbage:?}");
        }
        // The old envelopes are byte for byte what they were.
        assert_eq!(Envelope::Refused(m, 1).encode()[..], [&[REFUSED][..], m.as_bytes(), &[1]].concat()[..]);
        for n in 1..=10 {
            assert_eq!(Refusal::from_u8(n).map(|r| r as u8), Some(n));
        }
        let (mailbox, deliver) = send_to_deliver(Envelope::Send(m, Bytes::from_static(b"xyz")).encode()).unwrap();
        assert_eq!(
            (mailbox, Envelope::decode(deliver).unwrap()),
            (m, Envelope::Deliver(m, Bytes::from_static(b"xyz")))
        );
    }
}
