//! The code exchange as a sans-IO state machine: SPAKE2, key confirmation, the sealed payload.
//!
//! Both sides start SPAKE2 in symmetric mode (the RustCrypto `spake2` crate, Ed25519 group) with
//! the code's words as the password and an identity that binds the relay, the nameplate and the
//! purpose. From the SPAKE2 key, HKDF-SHA256 derives the two confirmation tags, the sealing key
//! and the verifier. Then, over the relay:
//!
//! ```text
//! offer (holds the payload)            redeem (typed the code)
//!   PAKE  msg_o          ─────►  ◄─────  PAKE  msg_r
//!                                ◄─────  CONFIRM tag_r     (the claimer proves its key first)
//!   tag_r wrong?  WRONG  ─────►                              both sides fail with code_wrong
//!   else  CONFIRM tag_o  ─────►
//!         SEALED payload ─────►          checks tag_o, opens the payload
//!                                ◄─────  ACK
//! ```
//!
//! The offering side seals only after the claimer proved it holds the same key, so a wrong
//! guess gets nothing encrypted under the real key, and the offering side learns of the guess
//! and stops. Tags are compared in constant time. The payload is sealed with AES-256-GCM (ring)
//! under a key used once, with the identity as associated data.
//!
//! Every message is one byte of type and a body; [`Exchange::receive`] takes one and says what to
//! send and whether the exchange is over.

use hkdf::Hkdf;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::{Purpose, ShortCode, relay_identity, words};
use crate::{crypto::ct_eq, error::TransferError};

const PAKE: u8 = 0x01;
const CONFIRM: u8 = 0x02;
const WRONG: u8 = 0x03;
const SEALED: u8 = 0x04;
const ACK: u8 = 0x05;

const SALT: &[u8] = b"agentferry code v1";

/// Which side of the exchange this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Allocated the nameplate, holds the payload.
    Offer,
    /// Typed the code, receives the payload.
    Redeem,
}

/// What the exchange came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// The payload (the redeeming side; `None` on the offering side).
    pub payload: Option<Vec<u8>>,
    /// Two words derived from the key: equal on both sides unless someone in the middle guessed
    /// the code.
    pub verifier: String,
}

/// What to do after a message.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to send to the other side, in order, before anything else.
    pub send: Vec<Vec<u8>>,
    /// Set once the exchange is over, well or not.
    pub outcome: Option<Result<Done, TransferError>>,
}

struct Keys {
    offer_tag: [u8; 32],
    redeem_tag: [u8; 32],
    seal: LessSafeKey,
    verifier: String,
}

enum Stage {
    /// Waiting for the other side's SPAKE2 message.
    Pake(Spake2<Ed25519Group>),
    /// Offer: waiting for the claimer's tag.
    Confirm(Keys),
    /// Redeem: waiting for the offer's tag, then its sealed payload.
    OfferTag(Keys),
    Sealed(Keys),
    /// Offer: sealed and sent, waiting for the acknowledgement.
    Ack(String),
    Over,
}

/// One side's exchange.
pub struct Exchange {
    side: Side,
    identity: Vec<u8>,
    payload: Option<Vec<u8>>,
    stage: Stage,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").field("side", &self.side).finish_non_exhaustive()
    }
}

/// The identity both sides bind: relay, nameplate, purpose.
pub fn identity(relay: &str, nameplate: u32, purpose: Purpose) -> Vec<u8> {
    format!("agentferry code v1\0{}\0{}\0{nameplate}", purpose.as_str(), relay_identity(relay)).into_bytes()
}

impl Exchange {
    /// Start the offering side with `payload` to hand over; returns the first message to send.
    pub fn offer(code: &ShortCode, relay: &str, purpose: Purpose, payload: Vec<u8>) -> (Exchange, Vec<u8>) {
        Self::start(Side::Offer, code, relay, purpose, Some(payload))
    }

    /// Start the redeeming side; returns the first message to send.
    pub fn redeem(code: &ShortCode, relay: &str, purpose: Purpose) -> (Exchange, Vec<u8>) {
        Self::start(Side::Redeem, code, relay, purpose, None)
    }

    fn start(
        side: Side,
        code: &ShortCode,
        relay: &str,
        purpose: Purpose,
        payload: Option<Vec<u8>>,
    ) -> (Exchange, Vec<u8>) {
        let identity = identity(relay, code.nameplate, purpose);
        let (spake, msg) =
            Spake2::<Ed25519Group>::start_symmetric(&Password::new(code.password()), &Identity::new(&identity));
        let mut first = vec![PAKE];
        first.extend_from_slice(&msg);
        (Exchange { side, identity, payload, stage: Stage::Pake(spake) }, first)
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// The verifier, once the payload went out (the offering side, waiting for the
    /// acknowledgement).
    pub fn sealed_and_sent(&self) -> Option<&str> {
        match &self.stage {
            Stage::Ack(verifier) => Some(verifier),
            _ => None,
        }
    }

    /// Take one message from the other side.
    pub fn receive(&mut self, msg: &[u8]) -> Output {
        let Some((&kind, body)) = msg.split_first() else { return self.fail(protocol("an empty message")) };
        if kind == WRONG {
            self.stage = Stage::Over;
            return Output { send: Vec::new(), outcome: Some(Err(TransferError::CodeWrong)) };
        }
        match (std::mem::replace(&mut self.stage, Stage::Over), kind) {
            (Stage::Pake(spake), PAKE) => {
                let key = match spake.finish(body) {
                    Ok(key) => key,
                    Err(e) => return self.fail(protocol(&format!("its PAKE message does not decode ({e:?})"))),
                };
                let keys = derive(&key, &self.identity);
                match self.side {
                    Side::Offer => {
                        self.stage = Stage::Confirm(keys);
                        Output::default()
                    }
                    Side::Redeem => {
                        let mut confirm = vec![CONFIRM];
                        confirm.extend_from_slice(&keys.redeem_tag);
                        self.stage = Stage::OfferTag(keys);
                        Output { send: vec![confirm], outcome: None }
                    }
                }
            }
            (Stage::Confirm(keys), CONFIRM) => {
                if !ct_eq(body, &keys.redeem_tag) {
                    // Not a word of ours is sealed for a wrong guess; tell it, and stop.
                    return Output { send: vec![vec![WRONG]], outcome: Some(Err(TransferError::CodeWrong)) };
                }
                let mut confirm = vec![CONFIRM];
                confirm.extend_from_slice(&keys.offer_tag);
                let mut sealed = self.payload.take().unwrap_or_default();
                keys.seal
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key([0; 12]),
                        Aad::from(&self.identity),
                        &mut sealed,
                    )
                    .expect("a small payload seals");
                sealed.insert(0, SEALED);
                self.stage = Stage::Ack(keys.verifier);
                Output { send: vec![confirm, sealed], outcome: None }
            }
            (Stage::OfferTag(keys), CONFIRM) => {
                if !ct_eq(body, &keys.offer_tag) {
                    return Output { send: vec![vec![WRONG]], outcome: Some(Err(TransferError::CodeWrong)) };
                }
                self.stage = Stage::Sealed(keys);
                Output::default()
            }
            (Stage::Sealed(keys), SEALED) => {
                let mut sealed = body.to_vec();
                let opened = keys.seal.open_in_place(
                    Nonce::assume_unique_for_key([0; 12]),
                    Aad::from(&self.identity),
                    &mut sealed,
                );
                match opened {
                    Ok(payload) => {
                        let payload = payload.to_vec();
                        Output {
                            send: vec![vec![ACK]],
                            outcome: Some(Ok(Done { payload: Some(payload), verifier: keys.verifier })),
                        }
                    }
                    Err(_) => self.fail(TransferError::IntegrityMismatch(
                        "the payload sealed under the code's key does not open".into(),
                    )),
                }
            }
            (Stage::Ack(verifier), ACK) => {
                Output { send: Vec::new(), outcome: Some(Ok(Done { payload: None, verifier })) }
            }
            _ => self.fail(protocol(&format!("a message of type {kind} out of turn"))),
        }
    }

    fn fail(&mut self, e: TransferError) -> Output {
        self.stage = Stage::Over;
        Output { send: Vec::new(), outcome: Some(Err(e)) }
    }
}

fn protocol(what: &str) -> TransferError {
    TransferError::Protocol(format!("the other side of the code exchange sent {what}"))
}

/// HKDF-SHA256 from the SPAKE2 key, one label per use.
fn derive(key: &[u8], identity: &[u8]) -> Keys {
    let hk = Hkdf::<Sha256>::new(Some(SALT), key);
    let expand = |label: &[u8]| {
        let mut out = [0u8; 32];
        hk.expand_multi_info(&[label, b"\0", identity], &mut out).expect("32 bytes is within bounds");
        out
    };
    let seal = expand(b"seal");
    let v = expand(b"verifier");
    let n = u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize;
    let verifier = format!("{}-{}", words::word(n % words::COUNT), words::word(n / words::COUNT % words::COUNT));
    Keys {
        offer_tag: expand(b"confirm offer"),
        redeem_tag: expand(b"confirm redeem"),
        seal: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &seal).expect("32-byte key")),
        verifier,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<Done, TransferError>;

    /// Run both sides to the end, passing messages; returns (offer's outcome, redeem's outcome,
    /// every message the offering side sent after its first).
    fn run(
        offer_code: &ShortCode,
        redeem_code: &ShortCode,
        purposes: (Purpose, Purpose),
    ) -> (Outcome, Outcome, Vec<Vec<u8>>) {
        let (mut o, o1) = Exchange::offer(offer_code, "ws://relay:1", purposes.0, b"ferry-ticket".to_vec());
        let (mut r, r1) = Exchange::redeem(redeem_code, "ws://relay:1", purposes.1);
        let (mut to_o, mut to_r) = (vec![r1], vec![o1]);
        let (mut oo, mut ro) = (None, None);
        let mut from_offer = Vec::new();
        while oo.is_none() || ro.is_none() {
            let (a, b) = (std::mem::take(&mut to_o), std::mem::take(&mut to_r));
            assert!(!(a.is_empty() && b.is_empty()), "stuck: {oo:?} {ro:?}");
            for m in a {
                if oo.is_none() {
                    let out = o.receive(&m);
                    from_offer.extend(out.send.clone());
                    to_r.extend(out.send);
                    oo = out.outcome.or(oo);
                }
            }
            for m in b {
                if ro.is_none() {
                    let out = r.receive(&m);
                    to_o.extend(out.send);
                    ro = out.outcome.or(ro);
                }
            }
            if oo.is_some() && ro.is_none() && to_r.is_empty() {
                break;
            }
        }
        (oo.unwrap(), ro.unwrap_or(Err(TransferError::Cancelled)), from_offer)
    }

    #[test]
    fn the_right_code_hands_the_payload_over_and_both_sides_agree_on_the_verifier() {
        let code = ShortCode::random(7);
        let (o, r, _) = run(&code, &code, (Purpose::Transfer, Purpose::Transfer));
        let (o, r) = (o.unwrap(), r.unwrap());
        assert_eq!(r.payload.as_deref(), Some(&b"ferry-ticket"[..]));
        assert_eq!(o.payload, None);
        assert_eq!(o.verifier, r.verifier);
        assert_eq!(o.verifier.split('-').count(), 2);
    }

    #[test]
    fn a_wrong_code_fails_both_sides_and_nothing_sealed_is_sent() {
        let code = ShortCode::random(7);
        let wrong: ShortCode = format!("7-{}", ShortCode::random(7).password()).parse().unwrap();
        assert_ne!(code, wrong);
        for (guess, purposes) in [
            (&wrong, (Purpose::Transfer, Purpose::Transfer)),
            (&code, (Purpose::Pair, Purpose::Transfer)),
            (&ShortCode { nameplate: 8, ..code.clone() }, (Purpose::Transfer, Purpose::Transfer)),
        ] {
            let (o, r, sent) = run(&code, guess, purposes);
            assert_eq!(o.unwrap_err().code(), "code_wrong");
            assert_eq!(r.unwrap_err().code(), "code_wrong");
            assert_eq!(sent, vec![vec![WRONG]], "only WRONG follows a wrong tag");
        }
    }

    #[test]
    fn garbage_and_messages_out_of_turn_are_protocol_errors() {
        let code = ShortCode::random(3);
        let (mut o, _) = Exchange::offer(&code, "ws://r", Purpose::Pair, vec![1]);
        assert_eq!(o.receive(&[CONFIRM; 33]).outcome.unwrap().unwrap_err().code(), "protocol_error");
        let (mut o, _) = Exchange::offer(&code, "ws://r", Purpose::Pair, vec![1]);
        assert_eq!(o.receive(&[PAKE, 1, 2]).outcome.unwrap().unwrap_err().code(), "protocol_error");
        let (mut r, _) = Exchange::redeem(&code, "ws://r", Purpose::Pair);
        assert_eq!(r.receive(&[]).outcome.unwrap().unwrap_err().code(), "protocol_error");
    }

    /// A fixed RNG that yields `bytes` and then zeros: `Scalar::random` reads 64 bytes and
    /// reduces them, so 32 little-endian bytes of a scalar below the group order, then 32 zero
    /// bytes, give exactly that scalar.
    struct Fixed(Vec<u8>);

    impl rand_core_06::RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            unimplemented!()
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = if self.0.is_empty() { 0 } else { self.0.remove(0) };
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl rand_core_06::CryptoRng for Fixed {}

    /// A decimal scalar as the 32 little-endian bytes the RNG must yield.
    fn scalar_le(decimal: &str) -> Vec<u8> {
        // Multiply-and-add in base 256, little-endian.
        let mut out = vec![0u8; 32];
        for digit in decimal.bytes().map(|d| (d - b'0') as u32) {
            let mut carry = digit;
            for byte in out.iter_mut() {
                let v = *byte as u32 * 10 + carry;
                *byte = v as u8;
                carry = v >> 8;
            }
            assert_eq!(carry, 0);
        }
        out
    }

    /// The spake2 crate's own known-answer vectors (`test_asymmetric` in its lib.rs, which
    /// match python-spake2's `test_compat`), reproduced through the public API this module
    /// uses, so that the pinned group, password hashing and transcript are the published ones.
    #[test]
    fn spake2_matches_the_crates_published_known_answer_vectors() {
        let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
        let scalar_a = "2611694063369306139794446498317402240796898290761098242657700742213257926693";
        let scalar_b = "7002393159576182977806091886122272758628412261510164356026361256515836884383";
        let (pw, id_a, id_b) = (Password::new(b"password"), Identity::new(b"idA"), Identity::new(b"idB"));
        let (s1, msg1) = Spake2::<Ed25519Group>::start_a_with_rng(&pw, &id_a, &id_b, Fixed(scalar_le(scalar_a)));
        assert_eq!(hex(&msg1), "416fc960df73c9cf8ed7198b0c9534e2e96a5984bfc5edc023fd24dacf371f2af9");
        let (s2, msg2) = Spake2::<Ed25519Group>::start_b_with_rng(&pw, &id_a, &id_b, Fixed(scalar_le(scalar_b)));
        assert_eq!(hex(&msg2), "42354e97b88406922b1df4bea1d7870f17aed3dba7c720b313edae315b00959309");
        let (k1, k2) = (s1.finish(&msg2).unwrap(), s2.finish(&msg1).unwrap());
        assert_eq!(hex(&k1), "712295de7219c675ddd31942184aa26e0a957cf216bc230d165b215047b520c1");
        assert_eq!(k1, k2);
        // Symmetric mode, as codes use it: the same password and identity agree, others do not.
        let id = Identity::new(b"idS");
        let (a, ma) = Spake2::<Ed25519Group>::start_symmetric(&pw, &id);
        let (b, mb) = Spake2::<Ed25519Group>::start_symmetric(&pw, &id);
        assert_eq!(ma[0], b'S');
        assert_eq!(a.finish(&mb).unwrap(), b.finish(&ma).unwrap());
        let (d, md) = Spake2::<Ed25519Group>::start_symmetric(&pw, &id);
        let (c, mc) = Spake2::<Ed25519Group>::start_symmetric(&Password::new(b"other"), &id);
        assert_ne!(d.finish(&mc).unwrap(), c.finish(&md).unwrap());
    }
}
