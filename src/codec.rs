//! The compact, copy-pasteable string form shared by tickets and peer grants.
//!
//! `<prefix><base32(version ‖ body_len u16 ‖ checksum[4] ‖ body)>`, lowercase and unpadded
//! (after iroh-tickets). The checksum (first 4 bytes of SHA-256 of the body) tells a damaged or
//! hand-edited string apart from one cut short in copying, so each gets its own error. Bodies are
//! written with `Writer` and read with `Reader`; a body may end with extensions
//! (`tag u8, len u16, value`) that older readers skip, so formats can grow within a version.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

const VERSION_0: u8 = 0;
const HEADER_LEN: usize = 1 + 2 + 4;

/// Why a string does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    WrongKind,
    Truncated,
    Tampered,
    UnsupportedVersion(u8),
    Malformed(&'static str),
}

fn checksum(body: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(body);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Frame `body` (version 0) and encode it behind `prefix`.
pub fn encode(prefix: &str, body: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.push(VERSION_0);
    bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&checksum(body));
    bytes.extend_from_slice(body);
    format!("{prefix}{}", BASE32_NOPAD.encode(&bytes).to_ascii_lowercase())
}

/// Check framing and checksum of the binary form; returns the body.
pub fn unframe(bytes: &[u8]) -> Result<&[u8], CodecError> {
    let Some(&version) = bytes.first() else { return Err(CodecError::Truncated) };
    if version != VERSION_0 {
        return Err(CodecError::UnsupportedVersion(version));
    }
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::Truncated);
    }
    let body_len = u16::from_be_bytes([bytes[1], bytes[2]]) as usize;
    let body = &bytes[HEADER_LEN..];
    if body.len() < body_len {
        return Err(CodecError::Truncated);
    }
    if body.len() > body_len {
        return Err(CodecError::Malformed("unexpected bytes after the end"));
    }
    if checksum(body) != bytes[3..7] {
        return Err(CodecError::Tampered);
    }
    Ok(body)
}

/// Decode a string made by [`encode`] with the same prefix; returns the body.
pub fn decode(prefix: &str, s: &str) -> Result<Vec<u8>, CodecError> {
    let s = s.trim();
    let rest = match s.get(..prefix.len()) {
        Some(p) if p.eq_ignore_ascii_case(prefix) => &s[prefix.len()..],
        _ => return Err(CodecError::WrongKind),
    };
    let upper = rest.to_ascii_uppercase();
    if upper.is_empty() {
        return Err(CodecError::Truncated);
    }
    if let Some(bad) = upper.bytes().find(|b| !matches!(b, b'A'..=b'Z' | b'2'..=b'7')) {
        return Err(CodecError::Malformed(if bad.is_ascii_whitespace() {
            "it contains white space"
        } else {
            "it contains characters that are not base32"
        }));
    }
    // A string cut short in copying may end where base32 cannot decode (a partial symbol);
    // decode the longest prefix that can be, and let the length check report the truncation.
    let (end, bytes) = (upper.len().saturating_sub(7)..=upper.len())
        .rev()
        .find_map(|end| BASE32_NOPAD.decode(&upper.as_bytes()[..end]).ok().map(|b| (end, b)))
        .ok_or(CodecError::Malformed("it is not valid base32"))?;
    let body = unframe(&bytes)?;
    if end < upper.len() {
        return Err(CodecError::Malformed("stray characters at the end"));
    }
    Ok(body.to_vec())
}

/// Builds a body.
#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// A string of at most `max` bytes (cut at a character boundary), length-prefixed.
    pub(crate) fn str(&mut self, s: &str, max: usize) -> &mut Self {
        let mut end = s.len().min(max).min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes(&(end as u16).to_be_bytes()).bytes(&s.as_bytes()[..end])
    }

    /// An extension field (after the fixed fields): readers that do not know `tag` skip it.
    pub(crate) fn extension(&mut self, tag: u8, value: &[u8]) -> &mut Self {
        let len = value.len().min(u16::MAX as usize);
        self.0.push(tag);
        self.bytes(&(len as u16).to_be_bytes()).bytes(&value[..len])
    }

    /// At most 32 socket addresses.
    pub(crate) fn addrs(&mut self, addrs: &[SocketAddr]) -> &mut Self {
        let addrs = &addrs[..addrs.len().min(32)];
        self.0.push(addrs.len() as u8);
        for addr in addrs {
            match addr.ip() {
                IpAddr::V4(ip) => self.bytes(&[4]).bytes(&ip.octets()),
                IpAddr::V6(ip) => self.bytes(&[6]).bytes(&ip.octets()),
            };
            self.bytes(&addr.port().to_be_bytes());
        }
        self
    }
}

/// Reads a body whose checksum matched, so any shortfall is a malformed encoder.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

const SHORT: CodecError = CodecError::Malformed("a field does not decode");

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(SHORT);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn str(&mut self) -> Result<String, CodecError> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| CodecError::Malformed("a text field is not UTF-8"))
    }

    pub(crate) fn addrs(&mut self) -> Result<Vec<SocketAddr>, CodecError> {
        let count = self.array::<1>()?[0] as usize;
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = match self.array::<1>()?[0] {
                4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
                6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
                _ => return Err(CodecError::Malformed("unknown address family")),
            };
            addrs.push(SocketAddr::new(ip, u16::from_be_bytes(self.array()?)));
        }
        Ok(addrs)
    }

    /// The remaining extensions as `(tag, value)`; callers ignore tags they do not know.
    pub(crate) fn extensions(&mut self) -> Result<Vec<(u8, &'a [u8])>, CodecError> {
        let mut found = Vec::new();
        while !self.0.is_empty() {
            let [tag] = self.array::<1>()?;
            let len = u16::from_be_bytes(self.array()?) as usize;
            found.push((tag, self.take(len)?));
        }
        Ok(found)
    }
}
