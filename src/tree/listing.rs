//! The listing: the canonical encoding of a tree that opens a folder's byte stream, and the
//! receiver's checks on it.
//!
//! ```text
//! magic      8 bytes   "AFTREE1\n"
//! len        u64 BE    bytes of the whole listing, this header included
//! count      u32 BE    entries
//! root_mode  u16 BE    permission bits of the folder itself
//! per entry, parents before children:
//!   kind u8 (0 folder, 1 file), mode u16 BE, size u64 BE, path_len u16 BE, path (UTF-8, `/`-separated)
//! ```
//!
//! The sender's names are suggestions, as for a single file ([`crate::names`]). A receiver
//! refuses the whole listing — before anything is written under the output folder — when a path
//! is absolute or empty, has a `.`/`..`/empty component, a backslash, a control or bidi control
//! character, when two entries collide once reduced and case-folded (a tree must arrive the same
//! on a case-insensitive file system), when an entry's parent is not a folder listed before it,
//! or when counts and sizes exceed the bounds or disagree with the stream. Other characters that
//! some file systems refuse (`:`, `*`, device names…) are reduced as for a single file.

use std::collections::HashSet;

use super::{Entry, Kind, MAX_ENTRIES, MAX_LISTING_BYTES, MAX_PATH_BYTES};
use crate::{error::TransferError, names::safe_file_name};

const MAGIC: &[u8; 8] = b"AFTREE1\n";
/// Bytes before the first entry.
pub const HEADER_LEN: u64 = 8 + 8 + 4 + 2;

/// A checked listing: reduced paths, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub struct Listing {
    pub root_mode: u32,
    pub entries: Vec<Entry>,
    /// Bytes of the encoded listing; file contents start here in the stream.
    pub len: u64,
}

impl Listing {
    /// Files with their offsets in the stream, in order.
    pub fn files(&self) -> impl Iterator<Item = (&Entry, u64)> {
        let mut at = self.len;
        self.entries.iter().filter(|e| e.kind == Kind::File).map(move |e| {
            let start = at;
            at += e.size;
            (e, start)
        })
    }
}

/// Encode a listing (the sender's side). Paths must already be relative and `/`-separated.
pub fn encode(root_mode: u32, entries: &[Entry]) -> Vec<u8> {
    let body: usize = entries.iter().map(|e| 1 + 2 + 8 + 2 + e.path.len()).sum();
    let len = HEADER_LEN as usize + body;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(len as u64).to_be_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&((root_mode & 0o777) as u16).to_be_bytes());
    for e in entries {
        out.push(match e.kind {
            Kind::Dir => 0,
            Kind::File => 1,
        });
        out.extend_from_slice(&((e.mode & 0o777) as u16).to_be_bytes());
        out.extend_from_slice(&e.size.to_be_bytes());
        out.extend_from_slice(&(e.path.len() as u16).to_be_bytes());
        out.extend_from_slice(e.path.as_bytes());
    }
    out
}

fn refused(why: impl Into<String>) -> TransferError {
    TransferError::ListingRefused(why.into())
}

/// The listing's length as its header declares it, checked against the bounds and the stream.
/// `head` holds at least [`HEADER_LEN`] bytes of the stream.
pub fn declared_len(head: &[u8], stream_size: u64) -> Result<u64, TransferError> {
    if head.len() < HEADER_LEN as usize || &head[..8] != MAGIC {
        return Err(refused("the stream does not start with a folder listing"));
    }
    let len = u64::from_be_bytes(head[8..16].try_into().expect("8 bytes"));
    let count = u32::from_be_bytes(head[16..20].try_into().expect("4 bytes"));
    if count > MAX_ENTRIES {
        return Err(refused(format!("it lists {count} entries; this receiver accepts at most {MAX_ENTRIES}")));
    }
    if len > MAX_LISTING_BYTES {
        return Err(refused(format!("it is {len} bytes long; this receiver accepts at most {MAX_LISTING_BYTES}")));
    }
    if len < HEADER_LEN || len > stream_size {
        return Err(refused(format!("it declares {len} bytes in a stream of {stream_size}")));
    }
    Ok(len)
}

/// Decode and check the listing at the start of a stream of `stream_size` bytes.
pub fn decode(bytes: &[u8], stream_size: u64) -> Result<Listing, TransferError> {
    let (len, mut raw_entries) = parse(bytes, stream_size)?;
    let root_mode = u16::from_be_bytes(bytes[20..22].try_into().expect("2 bytes")) as u32 & 0o777;
    let mut entries = Vec::with_capacity(raw_entries.left.min(4096) as usize);
    // Case-folded reduced paths seen, and which of them are folders.
    let mut seen = HashSet::new();
    let mut dirs = HashSet::new();
    let mut total: u64 = len;
    for raw in &mut raw_entries {
        let RawEntry { kind, mode, size, path: raw } = raw?;
        let path = reduce_path(raw)?;
        if kind == Kind::Dir && size != 0 {
            return Err(refused(format!("the folder {path:?} declares {size} bytes")));
        }
        let folded = path.to_lowercase();
        if let Some((parent, _)) = folded.rsplit_once('/')
            && !dirs.contains(parent)
        {
            return Err(refused(format!("{path:?} comes before its folder, or its parent is not a folder")));
        }
        if !seen.insert(folded.clone()) {
            return Err(refused(format!("{path:?} collides with another entry (names are compared ignoring case)")));
        }
        if kind == Kind::Dir {
            dirs.insert(folded);
        }
        total = total.checked_add(size).ok_or_else(|| refused("the sizes overflow"))?;
        entries.push(Entry { path, kind, mode, size });
    }
    if !raw_entries.rest.is_empty() {
        return Err(refused("bytes are left over after the last entry"));
    }
    check_total(total, stream_size)?;
    Ok(Listing { root_mode, entries, len })
}

/// The sizes of a listing's files, in stream order, reading only the entries' framing: what the
/// folder's digest ([`super::digest`]) needs on either side, without a receiver's checks on names
/// (which [`decode`] makes before anything is written).
pub fn file_sizes(bytes: &[u8], stream_size: u64) -> Result<Vec<u64>, TransferError> {
    let (len, entries) = parse(bytes, stream_size)?;
    let mut sizes = Vec::new();
    let mut total = len;
    for entry in entries {
        let entry = entry?;
        if entry.kind == Kind::File {
            total = total.checked_add(entry.size).ok_or_else(|| refused("the sizes overflow"))?;
            sizes.push(entry.size);
        }
    }
    check_total(total, stream_size)?;
    Ok(sizes)
}

/// The listing and its files must fill the stream exactly.
fn check_total(total: u64, stream_size: u64) -> Result<(), TransferError> {
    if total != stream_size {
        return Err(refused(format!(
            "the listing and its files add up to {total} bytes; the stream has {stream_size}"
        )));
    }
    Ok(())
}

/// The listing's length and its entries, once all its bytes are in `bytes`.
fn parse(bytes: &[u8], stream_size: u64) -> Result<(u64, RawEntries<'_>), TransferError> {
    let len = declared_len(bytes, stream_size)?;
    if (bytes.len() as u64) < len {
        return Err(refused("the listing is cut short"));
    }
    let count = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
    Ok((len, RawEntries { rest: &bytes[HEADER_LEN as usize..len as usize], left: count }))
}

/// One entry as encoded, before its path is checked.
struct RawEntry<'a> {
    kind: Kind,
    mode: u32,
    size: u64,
    path: &'a str,
}

/// The entries of a listing's body, in order; an entry that runs past the body ends it with an
/// error.
struct RawEntries<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> RawEntries<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TransferError> {
        if self.rest.len() < n {
            return Err(refused("an entry runs past the end of the listing"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn entry(&mut self) -> Result<RawEntry<'a>, TransferError> {
        let kind = match self.take(1)?[0] {
            0 => Kind::Dir,
            1 => Kind::File,
            k => return Err(refused(format!("unknown entry kind {k}"))),
        };
        let mode = u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")) as u32 & 0o777;
        let size = u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
        let path_len = u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        let path = std::str::from_utf8(self.take(path_len)?).map_err(|_| refused("a path is not UTF-8"))?;
        Ok(RawEntry { kind, mode, size, path })
    }
}

impl<'a> Iterator for RawEntries<'a> {
    type Item = Result<RawEntry<'a>, TransferError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let entry = self.entry();
        if entry.is_err() {
            self.left = 0;
        }
        Some(entry)
    }
}

/// Bidirectional-text controls: they make a name read differently from what it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Check a relative path and reduce each component to a safe name.
pub fn reduce_path(raw: &str) -> Result<String, TransferError> {
    if raw.is_empty() || raw.len() > MAX_PATH_BYTES {
        return Err(refused(format!("a path is empty or longer than {MAX_PATH_BYTES} bytes")));
    }
    if raw.starts_with('/') {
        return Err(refused(format!("{raw:?} is absolute")));
    }
    let mut out = Vec::new();
    for component in raw.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(refused(format!("{raw:?} has an empty, `.` or `..` component")));
        }
        if component.chars().any(|c| c == '\\' || c.is_control() || is_bidi_control(c)) {
            return Err(refused(format!("{raw:?} holds a backslash, a control or a bidi control character")));
        }
        out.push(safe_file_name(component));
    }
    Ok(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry { path: path.into(), kind: Kind::File, mode: 0o644, size }
    }

    fn dir(path: &str) -> Entry {
        Entry { path: path.into(), kind: Kind::Dir, mode: 0o755, size: 0 }
    }

    fn stream_size(entries: &[Entry]) -> u64 {
        encode(0o755, entries).len() as u64 + entries.iter().map(|e| e.size).sum::<u64>()
    }

    fn code_of(entries: &[Entry]) -> String {
        let bytes = encode(0o755, entries);
        decode(&bytes, stream_size(entries)).unwrap_err().code().to_owned()
    }

    #[test]
    fn a_listing_round_trips_and_places_files_in_order() {
        let entries = vec![dir("a"), file("a/x", 3), dir("a/b"), file("a/b/y", 0), file("z", 5)];
        let bytes = encode(0o750, &entries);
        let listing = decode(&bytes, stream_size(&entries)).unwrap();
        assert_eq!(listing.entries, entries);
        assert_eq!(listing.root_mode, 0o750);
        let offsets: Vec<(String, u64)> = listing.files().map(|(e, at)| (e.path.clone(), at)).collect();
        let l = bytes.len() as u64;
        assert_eq!(offsets, [("a/x".into(), l), ("a/b/y".into(), l + 3), ("z".into(), l + 3)]);
    }

    #[test]
    fn hostile_listings_are_refused() {
        for entries in [
            vec![file("../escape", 1)],
            vec![dir("a"), file("a/../../escape", 1)],
            vec![file("/etc/passwd", 1)],
            vec![file("a//b", 1)],
            vec![file("./x", 1)],
            vec![file("", 1)],
            vec![file("a\\..\\b", 1)],
            vec![file("bad\nname", 1)],
            vec![file("evil\u{202e}gpj.exe", 1)],
            vec![file("README", 1), file("readme", 1)],
            vec![dir("Docs"), dir("docs")],
            vec![file("a", 1), file("a/b", 1)],
            vec![file("orphan/x", 1)],
            vec![dir("d"), dir("d")],
            vec![Entry { size: 7, ..dir("d") }],
        ] {
            assert_eq!(code_of(&entries), "listing_refused", "{entries:?}");
        }
    }

    #[test]
    fn counts_and_sizes_must_fit_the_bounds_and_the_stream() {
        let entries = vec![file("a", 10)];
        let bytes = encode(0o755, &entries);
        let size = stream_size(&entries);
        assert_eq!(decode(&bytes, size + 1).unwrap_err().code(), "listing_refused");
        assert_eq!(decode(&bytes, size - 1).unwrap_err().code(), "listing_refused");
        assert_eq!(decode(&bytes[..bytes.len() - 1], size).unwrap_err().code(), "listing_refused");
        let mut absurd = bytes.clone();
        absurd[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&absurd, size).unwrap_err().code(), "listing_refused");
        let mut huge = bytes.clone();
        huge[8..16].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(declared_len(&huge, 1 << 41).unwrap_err().code(), "listing_refused");
        let mut overflow = encode(0o755, &[file("a", u64::MAX), file("b", 2)]);
        let len = overflow.len() as u64;
        assert_eq!(decode(&overflow, len).unwrap_err().code(), "listing_refused");
        overflow[0] = b'X';
        assert_eq!(declared_len(&overflow, len).unwrap_err().code(), "listing_refused");
    }

    #[test]
    fn odd_but_harmless_names_are_reduced() {
        assert_eq!(reduce_path("notes/a:b").unwrap(), "notes/a_b");
        assert_eq!(reduce_path("CON/aux.txt").unwrap(), "_CON/_aux.txt");
    }
}
