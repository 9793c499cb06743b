//! Offers: how a sender pushes a ticket to a trusted peer's inbox.
//!
//! An [`Offer`] is a small JSON envelope. Its ticket is sealed with AES-256-GCM under a key
//! derived (HKDF-SHA256) from the grant secret and the offer's random id, and the whole envelope
//! is authenticated with HMAC-SHA256 under another key derived from the same secret. The receiving
//! node checks, in this order: the grant id is one it exported; the MAC (constant time); the
//! offer's age; that the offer id was never seen (replay). Only then does it open the ticket and
//! look at whether the grant still allows auto-accept. The grant secret never travels.
//!
//! The inbox's answer is authenticated too ([`answer_mac`]): an HMAC under a third key from the
//! grant secret, bound to the offer id, so whoever sits between the two nodes (a relay, a
//! subscriber to the wrong mailbox, a LAN attacker) cannot make the pusher believe an offer was
//! accepted. A refusal from a node that does not know the grant cannot be authenticated; the
//! pusher treats an unauthenticated answer as a refusal, never as an acceptance.

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use data_encoding::HEXLOWER;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{journal::unix_now, ticket::Ticket};

/// How far an offer's `issued_at` may be from the receiver's clock.
pub const MAX_SKEW_SECS: u64 = 600;

/// Until when (unix seconds) an inbox must remember an offer id it accepted, so that a replay
/// is refused: the last second at which [`Offer::open`] still takes an offer issued at
/// `issued_at`. Retention keyed to the arrival time instead let a replay at the window's far
/// edge through.
pub fn remember_until(issued_at: u64) -> u64 {
    issued_at.saturating_add(MAX_SKEW_SECS)
}

/// The envelope posted to `POST /v1/inbox`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub grant_id: String,
    /// Random, hex; a receiver accepts each at most once.
    pub offer_id: String,
    pub issued_at: u64,
    /// The sending node's name, for display.
    pub from: String,
    /// base64 of the AES-256-GCM sealed ticket.
    pub sealed: String,
    /// base64 of HMAC-SHA256 over everything above.
    pub mac: String,
}

/// Why an offer is refused; the code is what the sender is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("offer_unauthentic")]
    Unauthentic,
    #[error("offer_stale")]
    Stale,
    #[error("offer_malformed")]
    Malformed,
}

fn keys(secret: &[u8; 32], offer_id: &[u8]) -> (Hmac<Sha256>, LessSafeKey) {
    let hk = Hkdf::<Sha256>::new(Some(b"agentferry v1 offer"), secret);
    let (mut mac_key, mut seal_key) = ([0u8; 32], [0u8; 32]);
    hk.expand(b"offer-mac", &mut mac_key).expect("length");
    hk.expand_multi_info(&[b"offer-key\0", offer_id], &mut seal_key).expect("length");
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(&mac_key).expect("any key length");
    (mac, LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &seal_key).expect("32 bytes")))
}

fn mac_input(mac: &mut Hmac<Sha256>, o: &Offer) {
    for field in [
        o.grant_id.as_bytes(),
        o.offer_id.as_bytes(),
        &o.issued_at.to_be_bytes(),
        o.from.as_bytes(),
        o.sealed.as_bytes(),
    ] {
        mac.update(&(field.len() as u32).to_be_bytes());
        mac.update(field);
    }
}

fn answer_key(secret: &[u8; 32]) -> Hmac<Sha256> {
    let hk = Hkdf::<Sha256>::new(Some(b"agentferry v1 offer"), secret);
    let mut key = [0u8; 32];
    hk.expand(b"answer-mac", &mut key).expect("length");
    <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length")
}

/// The fields of an inbox answer that the MAC covers.
const ANSWER_FIELDS: [&str; 4] = ["state", "reason", "transfer_id", "code"];

fn answer_input(mac: &mut Hmac<Sha256>, offer_id: &str, answer: &serde_json::Value) {
    let fields = ANSWER_FIELDS.iter().map(|f| answer[*f].as_str().unwrap_or_default());
    for field in std::iter::once(offer_id).chain(fields) {
        mac.update(&(field.len() as u32).to_be_bytes());
        mac.update(field.as_bytes());
    }
}

/// The MAC an inbox puts in its answer (`"mac"`) to the offer `offer_id`, under the grant's
/// `secret`: base64 HMAC-SHA256 over the offer id and the answer's state, reason, transfer id
/// and code.
pub fn answer_mac(secret: &[u8; 32], offer_id: &str, answer: &serde_json::Value) -> String {
    let mut mac = answer_key(secret);
    answer_input(&mut mac, offer_id, answer);
    B64.encode(mac.finalize().into_bytes())
}

/// Whether `answer` carries a valid [`answer_mac`] for the offer `offer_id` (constant time).
pub fn answer_is_authentic(secret: &[u8; 32], offer_id: &str, answer: &serde_json::Value) -> bool {
    let Some(tag) = answer["mac"].as_str().and_then(|m| B64.decode(m).ok()) else { return false };
    let mut mac = answer_key(secret);
    answer_input(&mut mac, offer_id, answer);
    mac.verify_slice(&tag).is_ok()
}

/// A refusal code from the other side, fit to show: lowercase letters, digits and `_`, at most
/// 48 of them; anything else is `unexpected_answer`. The peer's words never reach the user or
/// the agent verbatim.
pub fn sanitized_code(code: Option<&str>) -> String {
    match code {
        Some(c)
            if !c.is_empty() && c.len() <= 48 && c.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')) =>
        {
            c.to_owned()
        }
        _ => "unexpected_answer".to_owned(),
    }
}

impl Offer {
    /// Seal `ticket` for the holder of `secret` (the peer that exported grant `grant_id`).
    pub fn seal(grant_id: &str, secret: &[u8; 32], from: &str, ticket: &Ticket) -> Offer {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let offer_id = HEXLOWER.encode(&id);
        let (mut mac, key) = keys(secret, offer_id.as_bytes());
        let mut sealed = ticket.to_string().into_bytes();
        // The key is unique to this offer id, so a fixed nonce never repeats under one key.
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(grant_id.as_bytes()),
            &mut sealed,
        )
        .expect("small payload");
        let mut offer = Offer {
            grant_id: grant_id.into(),
            offer_id,
            issued_at: unix_now(),
            from: from.into(),
            sealed: B64.encode(sealed),
            mac: String::new(),
        };
        mac_input(&mut mac, &offer);
        offer.mac = B64.encode(mac.finalize().into_bytes());
        offer
    }

    /// Authenticate with `secret` and open the ticket. Does not check replay: the caller keeps
    /// the set of seen offer ids.
    pub fn open(&self, secret: &[u8; 32], now: u64) -> Result<Ticket, OfferError> {
        let (mut mac, key) = keys(secret, self.offer_id.as_bytes());
        mac_input(&mut mac, self);
        let tag = B64.decode(&self.mac).map_err(|_| OfferError::Malformed)?;
        mac.verify_slice(&tag).map_err(|_| OfferError::Unauthentic)?; // constant time
        if now.abs_diff(self.issued_at) > MAX_SKEW_SECS {
            return Err(OfferError::Stale);
        }
        let mut sealed = B64.decode(&self.sealed).map_err(|_| OfferError::Malformed)?;
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(self.grant_id.as_bytes()), &mut sealed)
            .map_err(|_| OfferError::Unauthentic)?;
        std::str::from_utf8(plain).ok().and_then(|t| t.parse().ok()).ok_or(OfferError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{crypto::SessionKey, id::TransferId};

    fn ticket() -> Ticket {
        Ticket {
            transfer_id: TransferId::random(),
            session_key: SessionKey::generate(),
            expires_at: unix_now() + 60,
            size: 10,
            chunk_size: 1024,
            name: "x".into(),
            addrs: vec!["127.0.0.1:9".parse().unwrap()],
            channel: None,
            folder: false,
            mode: None,
        }
    }

    #[test]
    fn only_the_grant_secret_opens_an_offer_and_nothing_can_be_changed() {
        let secret = [9u8; 32];
        let t = ticket();
        let offer = Offer::seal("gid", &secret, "alice", &t);
        assert_eq!(offer.open(&secret, unix_now()).unwrap(), t);
        assert!(!serde_json::to_string(&offer).unwrap().contains(&t.to_string()), "the ticket is not in clear");
        assert_eq!(offer.open(&[8u8; 32], unix_now()), Err(OfferError::Unauthentic));
        let mut forged = offer.clone();
        forged.from = "mallory".into();
        assert_eq!(forged.open(&secret, unix_now()), Err(OfferError::Unauthentic));
        let mut moved = offer.clone();
        moved.grant_id = "other".into();
        assert_eq!(moved.open(&secret, unix_now()), Err(OfferError::Unauthentic));
        assert_eq!(offer.open(&secret, unix_now() + MAX_SKEW_SECS + 5), Err(OfferError::Stale));
    }

    #[test]
    fn offer_ids_are_remembered_for_as_long_as_the_offer_is_accepted() {
        let secret = [9u8; 32];
        let offer = Offer::seal("gid", &secret, "alice", &ticket());
        for now in offer.issued_at.saturating_sub(MAX_SKEW_SECS + 5)..offer.issued_at + MAX_SKEW_SECS + 5 {
            if offer.open(&secret, now).is_ok() {
                assert!(now <= remember_until(offer.issued_at), "accepted at {now} but forgotten");
            }
        }
    }

    #[test]
    fn answers_are_bound_to_the_grant_and_the_offer() {
        let secret = [9u8; 32];
        let mut answer = serde_json::json!({ "state": "accepted", "transfer_id": "abc" });
        answer["mac"] = answer_mac(&secret, "o1", &answer).into();
        assert!(answer_is_authentic(&secret, "o1", &answer));
        assert!(!answer_is_authentic(&secret, "o2", &answer), "another offer");
        assert!(!answer_is_authentic(&[8; 32], "o1", &answer), "another grant");
        let mut changed = answer.clone();
        changed["state"] = "pending".into();
        assert!(!answer_is_authentic(&secret, "o1", &changed));
        let mut bare = answer.clone();
        bare.as_object_mut().unwrap().remove("mac");
        assert!(!answer_is_authentic(&secret, "o1", &bare));
    }
}
