//! WebRTC signalling through the channel the two nodes already share: one sealed offer from the
//! receiver, one sealed answer from the sender.
//!
//! An SDP carries the DTLS certificate fingerprints that authenticate the peer connection, so a
//! channel that could rewrite it could put itself in the middle. Every signal is therefore sealed
//! with AES-256-GCM under a key derived from the session key (`webrtc-signal`, see
//! [`crate::crypto`]), its direction bound into the associated data, and it names the attempt it
//! belongs to, so a replayed or stale answer is ignored and an altered one fails with
//! `integrity_mismatch`. Wire form: version byte 1, a random 12-byte nonce, the sealed JSON.
//!
//! The JSON inside is the common signalling form (`{"type":"offer","sdp":"…"}`, as browsers,
//! node-datachannel and webrtc-rs write it) plus `attempt`; non-trickle, so the SDP holds every
//! candidate.

use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use serde::{Deserialize, Serialize};

use crate::{channel::MailboxKey, error::TransferError};

const VERSION: u8 = 1;
/// Largest sealed signal accepted: an SDP with every candidate is a few KiB.
pub const MAX_SIGNAL: usize = 64 * 1024;

/// The two mailboxes and the key of one transfer's signalling, derived from the session key by
/// the engine.
pub struct Signalling {
    pub offers: MailboxKey,
    pub answers: MailboxKey,
    pub cipher: LessSafeKey,
}

/// Which way a signal travels; bound into the associated data, so an offer is never taken for an
/// answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ToSender,
    ToReceiver,
}

impl Direction {
    fn aad(self) -> &'static [u8] {
        match self {
            Direction::ToSender => b"agentferry webrtc offer",
            Direction::ToReceiver => b"agentferry webrtc answer",
        }
    }
}

/// What a signal says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// The receiver's offer (to the sender).
    Offer { sdp: String },
    /// The sender's answer to the offer of the same attempt.
    Answer { sdp: String },
    /// The sender does not serve WebRTC for this transfer (it pinned another path).
    Declined,
    /// The sender received an offer that failed authentication: the channel altered it.
    Tampered,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// Hex of 16 random bytes chosen by the receiver for one connection attempt; empty in
    /// `tampered` (the sender could not read the attempt).
    pub attempt: String,
    #[serde(flatten)]
    pub body: Body,
}

/// A fresh attempt id.
pub fn new_attempt() -> String {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    data_encoding::HEXLOWER.encode(&id)
}

impl Signalling {
    pub fn seal(&self, direction: Direction, signal: &Signal) -> bytes::Bytes {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(1 + NONCE_LEN + 256);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        let mut body = serde_json::to_vec(signal).expect("signal serialises");
        self.cipher
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(direction.aad()), &mut body)
            .expect("sealing cannot fail for this size");
        out.extend_from_slice(&body);
        out.into()
    }

    /// Open a signal travelling `direction`. Any failure means the bytes are not an authentic
    /// signal of this transfer: altered on the way, or not ours.
    pub fn open(&self, direction: Direction, message: &[u8]) -> Result<Signal, TransferError> {
        let tampered = || {
            TransferError::IntegrityMismatch(
                "a WebRTC signalling message failed authentication: the channel altered it".into(),
            )
        };
        if message.len() > MAX_SIGNAL || message.len() < 1 + NONCE_LEN || message[0] != VERSION {
            return Err(tampered());
        }
        let nonce = Nonce::try_assume_unique_for_key(&message[1..1 + NONCE_LEN]).map_err(|_| tampered())?;
        let mut body = message[1 + NONCE_LEN..].to_vec();
        let plain = self.cipher.open_in_place(nonce, Aad::from(direction.aad()), &mut body).map_err(|_| tampered())?;
        serde_json::from_slice(plain).map_err(|_| tampered())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{crypto::SessionKey, id::TransferId};

    fn signalling(key: u8) -> Signalling {
        let (key, id) = (SessionKey::from_bytes([key; 32]), TransferId([3; 16]));
        Signalling {
            offers: MailboxKey::from_bytes([0; 32]),
            answers: MailboxKey::from_bytes([1; 32]),
            cipher: key.signal_cipher(&id),
        }
    }

    #[test]
    fn a_signal_opens_only_unaltered_in_its_own_direction_under_its_own_key() {
        let s = signalling(7);
        let offer = Signal { attempt: new_attempt(), body: Body::Offer { sdp: "v=0\r\na=fingerprint:x".into() } };
        let sealed = s.seal(Direction::ToSender, &offer);
        assert_eq!(s.open(Direction::ToSender, &sealed).unwrap(), offer);
        assert_eq!(s.open(Direction::ToReceiver, &sealed).unwrap_err().code(), "integrity_mismatch");
        assert!(signalling(8).open(Direction::ToSender, &sealed).is_err());
        for i in 0..sealed.len() {
            let mut altered = sealed.to_vec();
            altered[i] ^= 0x01;
            assert!(s.open(Direction::ToSender, &altered).is_err(), "a flip at byte {i} went unnoticed");
        }
        assert!(s.open(Direction::ToSender, &sealed[..sealed.len() - 1]).is_err());
    }

    #[test]
    fn the_json_inside_is_the_common_signalling_form() {
        let json = serde_json::to_value(Signal { attempt: "ab".into(), body: Body::Answer { sdp: "v=0".into() } });
        assert_eq!(json.unwrap(), serde_json::json!({"attempt": "ab", "type": "answer", "sdp": "v=0"}));
    }
}
