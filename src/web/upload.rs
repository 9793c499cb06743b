//! Upload links: a person's browser sends a file to this node (`receive --link`).
//!
//! The node cannot be dialled by a browser, and a browser cannot listen, so both meet on the
//! node's relay. The link (`http(s)://<relay>/r/<invite id>#k=<invite key>&e=…&via=relay&up=1`)
//! opens the same page in upload mode. Once the person picks a file, the page makes the
//! transfer's ticket itself (the invite's id as the transfer id, so the node can name the
//! transfer before a file is picked; a fresh session key; the file's name, size and chunk size;
//! the relay as its channel), seals it as an [`offer`](Invite::open) under the invite key
//! and posts it to the invite's mailbox, which only this node reads. The node then receives that
//! ticket like any other, over the relay path, and the page answers as a sender: manifest,
//! chunks under a fresh epoch per request, the trailer with the file's SHA-256.
//!
//! The offer is `nonce[12] ‖ AES-256-GCM(JSON)` with the associated data
//! `"agentferry upload offer" ‖ invite id`; its JSON names `transfer_id` (hex), `session_key`
//! (base64url), `name`, `size`, `chunk_size` and `expires_at`. An offer that fails to open (the
//! relay, or anyone who learnt the mailbox id, sending junk) is skipped, and so is one for
//! another transfer id; the first that opens and declares a receivable file is taken, and the
//! invite is used up.

use base64::Engine as _;
use ring::aead::{Aad, NONCE_LEN, Nonce};
use serde::Deserialize;

use super::PAGE_PREFIX;
use crate::{
    channel::MailboxKey, crypto::SessionKey, error::TransferError, id::TransferId, manifest::check_declared,
    ticket::Ticket,
};

const AAD: &[u8] = b"agentferry upload offer";

/// One upload link's secrets, held by the node that made it.
pub struct Invite {
    pub id: TransferId,
    key: SessionKey,
    relay: String,
    pub expires_at: u64,
}

#[derive(Deserialize)]
struct Offer {
    transfer_id: String,
    session_key: String,
    name: String,
    size: u64,
    chunk_size: u32,
    expires_at: u64,
}

impl Invite {
    /// A new invite through the relay at `relay` (`ws://…` or `wss://…`, at the root of its
    /// host), or `None` if the relay cannot serve the page.
    pub fn new(relay: &str, expires_at: u64) -> Option<Invite> {
        super::link::relay_origin(relay)?;
        Some(Invite { id: TransferId::random(), key: SessionKey::generate(), relay: relay.to_owned(), expires_at })
    }

    /// The link to hand to the person.
    pub fn link(&self) -> String {
        let origin = super::link::relay_origin(&self.relay).expect("checked in new");
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.key.as_bytes());
        format!("{origin}{PAGE_PREFIX}{}#k={key}&e={}&via=relay&up=1", self.id, self.expires_at)
    }

    /// The mailbox the page posts its offer to.
    pub fn mailbox(&self) -> MailboxKey {
        self.key.mailbox(&self.id, b"upload")
    }

    /// The ticket a message in the mailbox offers, if it is an authentic offer of a file this
    /// node can receive.
    pub fn open(&self, message: &[u8]) -> Result<Ticket, TransferError> {
        let unauthentic = || TransferError::TicketMalformed("an upload offer that does not open under the link's key");
        if message.len() < NONCE_LEN {
            return Err(unauthentic());
        }
        let (nonce, sealed) = message.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unauthentic())?;
        let mut buf = sealed.to_vec();
        let aad = [AAD, self.id.as_bytes()].concat();
        let plain = self
            .key
            .upload_cipher(&self.id)
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| unauthentic())?;
        let offer: Offer = serde_json::from_slice(plain)
            .map_err(|_| TransferError::TicketMalformed("an upload offer that is not the expected JSON"))?;
        check_declared(offer.size, offer.chunk_size)?;
        let malformed = || TransferError::TicketMalformed("an upload offer with a malformed id or key");
        let key: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&offer.session_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(malformed)?;
        let transfer_id: TransferId = offer.transfer_id.parse().map_err(|_| malformed())?;
        if transfer_id != self.id {
            return Err(TransferError::TicketMalformed("an upload offer for another transfer than its link's"));
        }
        Ok(Ticket {
            transfer_id,
            session_key: SessionKey::from_bytes(key),
            expires_at: offer.expires_at.min(self.expires_at),
            size: offer.size,
            chunk_size: offer.chunk_size,
            name: offer.name,
            addrs: Vec::new(),
            channel: Some(self.relay.clone()),
            folder: false,
            mode: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use ring::aead::{Aad, Nonce};

    use super::*;

    /// An offer as the page seals it (upload.js).
    fn seal(invite: &Invite, key: &SessionKey, json: &str) -> Vec<u8> {
        let nonce = [7u8; 12];
        let mut buf = json.as_bytes().to_vec();
        let aad = [AAD, invite.id.as_bytes()].concat();
        key.upload_cipher(&invite.id)
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .unwrap();
        [&nonce[..], &buf].concat()
    }

    fn offer(invite: &Invite, size: u64) -> String {
        offer_for(&invite.id.to_string(), size)
    }

    fn offer_for(transfer_id: &str, size: u64) -> String {
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([5u8; 32]);
        format!(
            r#"{{"transfer_id":"{transfer_id}","session_key":"{key}","name":"../../report.pdf","size":{size},"chunk_size":262144,"expires_at":99999999999}}"#
        )
    }

    #[test]
    fn an_authentic_offer_becomes_a_ticket_on_the_relay_bounded_by_the_links_expiry() {
        let invite = Invite::new("ws://relay.example:9000", 1_800_000_000).unwrap();
        let ticket = invite.open(&seal(&invite, &invite.key, &offer(&invite, 1000))).unwrap();
        assert_eq!((ticket.size, ticket.chunk_size, ticket.expires_at), (1000, 262144, 1_800_000_000));
        assert_eq!(ticket.transfer_id, invite.id);
        assert_eq!(ticket.channel.as_deref(), Some("ws://relay.example:9000"));
        assert!(ticket.addrs.is_empty() && !ticket.folder);
        // The name is the sender's suggestion, reduced where it is saved, as for every ticket.
        assert_eq!(ticket.name, "../../report.pdf");
        let link = invite.link();
        assert!(link.starts_with(&format!("http://relay.example:9000/r/{}#k=", invite.id)), "{link}");
        assert!(link.ends_with("&e=1800000000&via=relay&up=1"), "{link}");
    }

    #[test]
    fn offers_under_another_key_altered_for_another_transfer_or_declaring_too_much_are_refused() {
        let invite = Invite::new("ws://relay.example:9000", 1_800_000_000).unwrap();
        let stranger = SessionKey::generate();
        assert_eq!(
            invite.open(&seal(&invite, &stranger, &offer(&invite, 1000))).unwrap_err().code(),
            "ticket_malformed"
        );
        let mut altered = seal(&invite, &invite.key, &offer(&invite, 1000));
        altered[20] ^= 1;
        assert_eq!(invite.open(&altered).unwrap_err().code(), "ticket_malformed");
        assert_eq!(invite.open(b"short").unwrap_err().code(), "ticket_malformed");
        assert_eq!(invite.open(&seal(&invite, &invite.key, "{}")).unwrap_err().code(), "ticket_malformed");
        let elsewhere = offer_for(&"ab".repeat(16), 1000);
        assert_eq!(invite.open(&seal(&invite, &invite.key, &elsewhere)).unwrap_err().code(), "ticket_malformed");
        assert_eq!(
            invite.open(&seal(&invite, &invite.key, &offer(&invite, u64::MAX))).unwrap_err().code(),
            "size_limit_exceeded"
        );
    }

    #[test]
    fn no_upload_link_through_a_relay_behind_a_path_or_another_channel() {
        assert!(Invite::new("ws://relay.example/prefix", 1).is_none());
        assert!(Invite::new("folder:/shared", 1).is_none());
        assert!(Invite::new("wss://relay.example", 1).unwrap().link().starts_with("https://relay.example/r/"));
    }
}
