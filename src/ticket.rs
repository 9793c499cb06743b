//! Transfer tickets: everything a receiver needs, in one copy-pasteable string.
//!
//! A ticket is `ferry` followed by lowercase, unpadded base32 of a compact binary encoding
//! (see [`crate::codec`]).
//! Holding it is the authority to receive the file, so it is as secret as the file itself:
//! it carries the 256-bit session key. Fronts print it only to the user who asked for it.
//!
//! The encoding is versioned (the first byte selects the variant) so the format can grow:
//!
//! ```text
//! version   u8          0 = Variant0
//! body_len  u16 BE      length of `body`
//! checksum  [u8; 4]     first 4 bytes of SHA-256(body): catches damage and hand edits
//! body:
//!   transfer_id [u8; 16]
//!   session_key [u8; 32]
//!   expires_at  u64 BE  unix seconds
//!   size        u64 BE  file size in bytes
//!   chunk_size  u32 BE  bytes per chunk frame
//!   name_len    u16 BE, name (UTF-8)
//!   addr_count  u8, then per address: family u8 (4 | 6), ip (4 | 16 bytes), port u16 BE
//!   extensions  (tag u8, len u16 BE, value)* — unknown tags are skipped
//!               tag 1: the message channel the sender also serves on (`ws://…`, `folder:…`)
//!               tag 2 (empty): the transfer is a folder; its byte stream is a listing and
//!               then every file's contents (see [`crate::tree`])
//!               tag 3: the file's permission bits, u16 BE (the receiver masks them)
//! ```
//!
//! Parsing is separate from the expiry check ([`Ticket::check_expiry`]) so that parsing stays pure.
//! Parsing does bound what the sender declares (size, chunk size, chunk count, see
//! [`crate::manifest::check_declared`]): a ticket no receiver may act on never parses.

use std::{fmt, net::SocketAddr, str::FromStr};

use crate::{
    codec::{self, CodecError, Reader, Writer},
    crypto::SessionKey,
    error::TransferError,
    id::TransferId,
};

/// The kind prefix of transfer tickets.
pub const PREFIX: &str = "ferry";
const MAX_NAME: usize = 255;

/// The right to receive one transfer.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    pub transfer_id: TransferId,
    pub session_key: SessionKey,
    /// Unix seconds after which the sender stops serving.
    pub expires_at: u64,
    pub size: u64,
    pub chunk_size: u32,
    /// The file name as the sender named it; receivers must sanitise it before use.
    pub name: String,
    /// Every address the sender listens on, loopback included.
    pub addrs: Vec<SocketAddr>,
    /// The message channel the sender also serves on (`ws://…` relay or `folder:…`), if any.
    pub channel: Option<String>,
    /// The transfer carries a folder (`name` is the folder's name), not one file.
    pub folder: bool,
    /// The file's permission bits on the sender (`0o777` at most), for the receiver to keep.
    pub mode: Option<u32>,
}

/// Extension tag of the channel hint.
const EXT_CHANNEL: u8 = 1;
/// Extension tag that marks a folder transfer.
const EXT_FOLDER: u8 = 2;
/// Extension tag of the file's permission bits.
const EXT_MODE: u8 = 3;

impl Ticket {
    /// Fails with [`TransferError::TicketExpired`] once `now` (unix seconds) is past the expiry.
    pub fn check_expiry(&self, now: u64) -> Result<(), TransferError> {
        if now > self.expires_at {
            return Err(TransferError::TicketExpired { ago_secs: now - self.expires_at });
        }
        Ok(())
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(self.transfer_id.as_bytes())
            .bytes(self.session_key.as_bytes())
            .u64(self.expires_at)
            .u64(self.size)
            .u32(self.chunk_size)
            .str(&self.name, MAX_NAME)
            .addrs(&self.addrs);
        if let Some(channel) = &self.channel {
            w.extension(EXT_CHANNEL, channel.as_bytes());
        }
        if self.folder {
            w.extension(EXT_FOLDER, &[]);
        }
        if let Some(mode) = self.mode {
            w.extension(EXT_MODE, &((mode & 0o777) as u16).to_be_bytes());
        }
        w.0
    }

    fn from_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader(body);
        let mut ticket = Ticket {
            transfer_id: TransferId(r.array()?),
            session_key: SessionKey::from_bytes(r.array()?),
            expires_at: r.u64()?,
            size: r.u64()?,
            chunk_size: r.u32()?,
            name: r.str()?,
            addrs: r.addrs()?,
            channel: None,
            folder: false,
            mode: None,
        };
        for (tag, value) in r.extensions()? {
            if tag == EXT_MODE {
                let bits: [u8; 2] = value.try_into().map_err(|_| CodecError::Malformed("the mode is not 2 bytes"))?;
                ticket.mode = Some(u16::from_be_bytes(bits) as u32 & 0o777);
            }
            if tag == EXT_FOLDER {
                ticket.folder = true;
            }
            if tag == EXT_CHANNEL {
                ticket.channel = Some(
                    std::str::from_utf8(value)
                        .map_err(|_| CodecError::Malformed("the channel is not UTF-8"))?
                        .to_owned(),
                );
            }
        }
        Ok(ticket)
    }
}

fn ticket_error(e: CodecError) -> TransferError {
    match e {
        CodecError::WrongKind => TransferError::TicketWrongKind { expected: PREFIX },
        CodecError::Truncated => TransferError::TicketTruncated,
        CodecError::Tampered => TransferError::TicketTampered,
        CodecError::UnsupportedVersion(v) => TransferError::TicketUnsupportedVersion(v),
        CodecError::Malformed(why) => TransferError::TicketMalformed(why),
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&codec::encode(PREFIX, &self.body()))
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("transfer_id", &self.transfer_id)
            .field("session_key", &self.session_key)
            .field("expires_at", &self.expires_at)
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("name", &self.name)
            .field("addrs", &self.addrs)
            .field("channel", &self.channel)
            .field("folder", &self.folder)
            .field("mode", &self.mode)
            .finish()
    }
}

impl FromStr for Ticket {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = codec::decode(PREFIX, s).map_err(ticket_error)?;
        let ticket = Ticket::from_body(&body).map_err(ticket_error)?;
        // Refuse what no receiver should act on before anyone allocates or dials for it.
        crate::manifest::check_declared(ticket.size, ticket.chunk_size)?;
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use data_encoding::BASE32_NOPAD;

    use super::*;

    fn sample() -> Ticket {
        Ticket {
            transfer_id: TransferId([0x11; 16]),
            session_key: SessionKey::from_bytes([0x22; 32]),
            expires_at: 0x0102030405060708,
            size: 1_000_000,
            chunk_size: 1 << 20,
            name: "report.pdf".into(),
            addrs: vec!["127.0.0.1:4242".parse().unwrap(), "[::1]:4242".parse().unwrap()],
            channel: None,
            folder: false,
            mode: None,
        }
    }

    #[test]
    fn round_trips_through_display_and_from_str() {
        let ticket = sample();
        let text = ticket.to_string();
        assert!(text.starts_with("ferry"));
        assert_eq!(text.parse::<Ticket>().unwrap(), ticket);
        assert_eq!(text.to_uppercase().parse::<Ticket>().unwrap(), ticket);
        let relayed = Ticket { channel: Some("ws://127.0.0.1:9000".into()), ..sample() };
        assert_eq!(relayed.to_string().parse::<Ticket>().unwrap(), relayed);
        let folder = Ticket { folder: true, ..sample() };
        assert_eq!(folder.to_string().parse::<Ticket>().unwrap(), folder);
        let moded = Ticket { mode: Some(0o755), ..sample() };
        assert_eq!(moded.to_string().parse::<Ticket>().unwrap(), moded);
        let setuid = Ticket { mode: Some(0o4755), ..sample() }.to_string().parse::<Ticket>().unwrap();
        assert_eq!(setuid.mode, Some(0o755), "never more than the permission bits");
    }

    /// Pins the wire format: changing it breaks every ticket in flight.
    #[test]
    fn encoding_is_pinned() {
        let text = sample().to_string();
        let bytes = BASE32_NOPAD.decode(text[PREFIX.len()..].to_ascii_uppercase().as_bytes()).unwrap();
        let expected: Vec<u8> = [
            &[0x00][..],                                                      // version 0
            &[0x00, 0x6b],                                                    // body length 107
            &bytes[3..7],                                                     // checksum, pinned below
            &[0x11; 16],                                                      // transfer id
            &[0x22; 32],                                                      // session key
            &[1, 2, 3, 4, 5, 6, 7, 8],                                        // expires_at
            &[0, 0, 0, 0, 0, 0x0f, 0x42, 0x40],                               // size 1_000_000
            &[0, 0x10, 0, 0],                                                 // chunk size 1 MiB
            &[0x00, 0x0a],                                                    // name length
            b"report.pdf",                                                    // name
            &[2],                                                             // two addresses
            &[4, 127, 0, 0, 1, 0x10, 0x92],                                   // 127.0.0.1:4242
            &[6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0x92], // [::1]:4242
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(&bytes[3..7], &[0xbd, 0xcc, 0x24, 0x36]);
    }

    #[test]
    fn each_kind_of_damage_has_its_own_error() {
        let text = sample().to_string();
        let code = |s: &str| s.parse::<Ticket>().unwrap_err().code();
        assert_eq!(code(&text[..text.len() - 9]), "ticket_truncated");
        assert_eq!(code(&text[..text.len() - 1]), "ticket_truncated");
        assert_eq!(code("ferry"), "ticket_truncated");
        let mut tampered = text.clone().into_bytes();
        let i = tampered.len() - 20;
        tampered[i] = if tampered[i] == b'a' { b'b' } else { b'a' };
        assert_eq!(code(std::str::from_utf8(&tampered).unwrap()), "ticket_tampered");
        assert_eq!(code(&text.replacen("ferry", "grant", 1)), "ticket_wrong_kind");
        assert_eq!(code("https://example.com"), "ticket_wrong_kind");
        assert_eq!(code(&format!("{text}!")), "ticket_malformed");
        let mut v1 = BASE32_NOPAD.decode(text[PREFIX.len()..].to_ascii_uppercase().as_bytes()).unwrap();
        v1[0] = 1;
        let v1 = format!("ferry{}", BASE32_NOPAD.encode(&v1).to_ascii_lowercase());
        assert_eq!(code(&v1), "ticket_unsupported_version");
        let absurd = Ticket { size: 1 << 50, chunk_size: 1, ..sample() }.to_string();
        assert_eq!(code(&absurd), "size_limit_exceeded");
        let no_chunks = Ticket { chunk_size: 0, ..sample() }.to_string();
        assert_eq!(code(&no_chunks), "ticket_malformed");
    }

    #[test]
    fn expiry_is_checked_against_the_given_clock() {
        let mut ticket = sample();
        ticket.expires_at = 1000;
        assert!(ticket.check_expiry(1000).is_ok());
        assert_eq!(ticket.check_expiry(1060).unwrap_err().code(), "ticket_expired");
    }
}
