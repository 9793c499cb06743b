//! Transfer tickets: everything a receiver needs, in one copy-pasteable string.
//!
//! A ticket is `ferry` followed by lowercase, unpadded base32 of a compact binary encoding.
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
//!   extensions  (tag u8, len u16 BE, value)* — unknown tags are skipped; room for channel hints
//! ```
//!
//! Parsing is separate from the expiry check ([`Ticket::check_expiry`]) so that parsing stays pure.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

use crate::{crypto::SessionKey, error::TransferError, id::TransferId};

/// The kind prefix of transfer tickets.
pub const PREFIX: &str = "ferry";
const VERSION_0: u8 = 0;
const HEADER_LEN: usize = 1 + 2 + 4;
const MAX_NAME: usize = 255;
const MAX_ADDRS: usize = 32;

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
}

impl Ticket {
    /// Fails with [`TransferError::TicketExpired`] once `now` (unix seconds) is past the expiry.
    pub fn check_expiry(&self, now: u64) -> Result<(), TransferError> {
        if now > self.expires_at {
            return Err(TransferError::TicketExpired { ago_secs: now - self.expires_at });
        }
        Ok(())
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(96 + self.name.len() + self.addrs.len() * 19);
        body.extend_from_slice(self.transfer_id.as_bytes());
        body.extend_from_slice(self.session_key.as_bytes());
        body.extend_from_slice(&self.expires_at.to_be_bytes());
        body.extend_from_slice(&self.size.to_be_bytes());
        body.extend_from_slice(&self.chunk_size.to_be_bytes());
        let name = truncate_utf8(&self.name, MAX_NAME);
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name.as_bytes());
        let addrs = &self.addrs[..self.addrs.len().min(MAX_ADDRS)];
        body.push(addrs.len() as u8);
        for addr in addrs {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    body.push(4);
                    body.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    body.push(6);
                    body.extend_from_slice(&ip.octets());
                }
            }
            body.extend_from_slice(&addr.port().to_be_bytes());
        }
        body
    }

    /// The binary encoding (before base32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = self.encode_body();
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.push(VERSION_0);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&checksum(&body));
        out.extend_from_slice(&body);
        out
    }

    /// Parse the binary encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TransferError> {
        let Some(&version) = bytes.first() else { return Err(TransferError::TicketTruncated) };
        if version != VERSION_0 {
            return Err(TransferError::TicketUnsupportedVersion(version));
        }
        if bytes.len() < HEADER_LEN {
            return Err(TransferError::TicketTruncated);
        }
        let body_len = u16::from_be_bytes([bytes[1], bytes[2]]) as usize;
        let body = &bytes[HEADER_LEN..];
        if body.len() < body_len {
            return Err(TransferError::TicketTruncated);
        }
        if body.len() > body_len {
            return Err(TransferError::TicketMalformed("unexpected bytes after the end"));
        }
        if checksum(body) != bytes[3..7] {
            return Err(TransferError::TicketTampered);
        }
        // The checksum matched, so any failure below is a malformed encoder, not damage.
        let mut r = Reader(body);
        let malformed = |_| TransferError::TicketMalformed("a field does not decode");
        let transfer_id = TransferId(r.array().map_err(malformed)?);
        let session_key = SessionKey::from_bytes(r.array().map_err(malformed)?);
        let expires_at = u64::from_be_bytes(r.array().map_err(malformed)?);
        let size = u64::from_be_bytes(r.array().map_err(malformed)?);
        let chunk_size = u32::from_be_bytes(r.array().map_err(malformed)?);
        let name_len = u16::from_be_bytes(r.array().map_err(malformed)?) as usize;
        let name = std::str::from_utf8(r.take(name_len).map_err(malformed)?)
            .map_err(|_| TransferError::TicketMalformed("the file name is not UTF-8"))?
            .to_owned();
        let count = r.array::<1>().map_err(malformed)?[0] as usize;
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = match r.array::<1>().map_err(malformed)?[0] {
                4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>().map_err(malformed)?)),
                6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>().map_err(malformed)?)),
                _ => return Err(TransferError::TicketMalformed("unknown address family")),
            };
            let port = u16::from_be_bytes(r.array().map_err(malformed)?);
            addrs.push(SocketAddr::new(ip, port));
        }
        // Extensions: skipped until a version of agentferry defines them.
        while !r.0.is_empty() {
            let _tag = r.array::<1>().map_err(malformed)?;
            let len = u16::from_be_bytes(r.array().map_err(malformed)?) as usize;
            r.take(len).map_err(malformed)?;
        }
        Ok(Ticket { transfer_id, session_key, expires_at, size, chunk_size, name, addrs })
    }
}

fn checksum(body: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(body);
    [digest[0], digest[1], digest[2], digest[3]]
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader<'a>(&'a [u8]);

struct Short;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if self.0.len() < n {
            return Err(Short);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = BASE32_NOPAD.encode(&self.to_bytes()).to_ascii_lowercase();
        write!(f, "{PREFIX}{encoded}")
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
            .finish()
    }
}

impl FromStr for Ticket {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some(rest) = s.get(..PREFIX.len()).filter(|p| p.eq_ignore_ascii_case(PREFIX)).map(|_| &s[PREFIX.len()..])
        else {
            return Err(TransferError::TicketWrongKind { expected: PREFIX });
        };
        let upper = rest.to_ascii_uppercase();
        if upper.is_empty() {
            return Err(TransferError::TicketTruncated);
        }
        if let Some(bad) = upper.bytes().find(|b| !matches!(b, b'A'..=b'Z' | b'2'..=b'7')) {
            return Err(TransferError::TicketMalformed(if bad.is_ascii_whitespace() {
                "it contains white space"
            } else {
                "it contains characters that are not base32"
            }));
        }
        // A ticket cut short in copying may end where base32 cannot decode (a partial symbol);
        // decode the longest prefix that can be, and let the length check report the truncation.
        let (end, bytes) = (upper.len().saturating_sub(7)..=upper.len())
            .rev()
            .find_map(|end| BASE32_NOPAD.decode(&upper.as_bytes()[..end]).ok().map(|b| (end, b)))
            .ok_or(TransferError::TicketMalformed("it is not valid base32"))?;
        if end < upper.len() {
            return Err(match Ticket::from_bytes(&bytes) {
                Err(e) => e,
                Ok(_) => TransferError::TicketMalformed("stray characters at the end"),
            });
        }
        Ticket::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
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
        }
    }

    #[test]
    fn round_trips_through_display_and_from_str() {
        let ticket = sample();
        let text = ticket.to_string();
        assert!(text.starts_with("ferry"));
        assert_eq!(text.parse::<Ticket>().unwrap(), ticket);
        assert_eq!(text.to_uppercase().parse::<Ticket>().unwrap(), ticket);
    }

    /// Pins the wire format: changing it breaks every ticket in flight.
    #[test]
    fn encoding_is_pinned() {
        let bytes = sample().to_bytes();
        let expected: Vec<u8> = [
            &[0x00][..],                                                      // version 0
            &[0x00, 0x6b],                                                    // body length 107
            &checksum(&bytes[7..]),                                           // checksum (recomputed; pinned below)
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
        let mut v1 = sample().to_bytes();
        v1[0] = 1;
        let v1 = format!("ferry{}", BASE32_NOPAD.encode(&v1).to_ascii_lowercase());
        assert_eq!(code(&v1), "ticket_unsupported_version");
    }

    #[test]
    fn expiry_is_checked_against_the_given_clock() {
        let mut ticket = sample();
        ticket.expires_at = 1000;
        assert!(ticket.check_expiry(1000).is_ok());
        assert_eq!(ticket.check_expiry(1060).unwrap_err().code(), "ticket_expired");
    }
}
