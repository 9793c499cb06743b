//! A folder's digest, and each of its files' SHA-256 on the way.
//!
//! A single file's digest is the SHA-256 of its bytes. A folder's is one level of hash tree over
//! its stream:
//!
//! ```text
//! SHA-256( listing ‖ SHA-256(file₁) ‖ SHA-256(file₂) ‖ … ‖ SHA-256(fileₙ) )
//! ```
//!
//! with the listing's exact bytes (its canonical encoding, [`super::listing`]) and the files in
//! listing order. It is computed in one pass over the stream — the same pass that hashes a single
//! file, so the sender never reads the tree twice and hashing costs what it did — and it yields
//! every file's own SHA-256 as it goes. The trailer carries the folder's digest only, 32 bytes
//! however many files; a receiver whose digest matches it holds each file's SHA-256 as the sender
//! computed it (finding a file that differs but hashes the same within the tree would break
//! SHA-256 itself), so both sides can list them for `sha256sum -c` without a table on the wire.
//!
//! The digest depends on the stream's bytes alone: each side learns the files' sizes from the
//! listing at the head of the stream as it passes.

use sha2::{Digest, Sha256};

use super::listing::{self, HEADER_LEN};
use crate::error::TransferError;

/// Every digest of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    /// What the trailer carries: the file's SHA-256, or the folder's digest.
    pub whole: [u8; 32],
    /// A folder's files' own SHA-256, in listing order; empty for a single file.
    pub files: Vec<[u8; 32]>,
}

/// Each file's SHA-256 as `sha256sum` lists them, for `sha256sum -c` run in the folder that holds
/// `root` (the tree's own name): `paths` are the files' paths under it, in the order of `files`.
/// A name holding a newline or a backslash is escaped the way GNU coreutils does it.
pub fn sha256sums<'a>(root: &str, paths: impl Iterator<Item = &'a str>, files: &[[u8; 32]]) -> String {
    let mut out = String::new();
    for (path, digest) in paths.zip(files) {
        let name = format!("{root}/{path}");
        let escaped = name.contains(['\\', '\n', '\r']);
        if escaped {
            out.push('\\');
        }
        out.push_str(&data_encoding::HEXLOWER.encode(digest));
        out.push_str("  ");
        out.push_str(&name.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r"));
        out.push('\n');
    }
    out
}

/// The running digest of a stream, fed its bytes in order.
pub enum StreamHasher {
    File(Sha256),
    Tree(Box<TreeHasher>),
}

impl StreamHasher {
    pub fn new(folder: bool, stream_size: u64) -> Self {
        if folder {
            StreamHasher::Tree(Box::new(TreeHasher::new(stream_size)))
        } else {
            StreamHasher::File(Sha256::new())
        }
    }

    /// The stream's next bytes.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        match self {
            StreamHasher::File(h) => {
                h.update(bytes);
                Ok(())
            }
            StreamHasher::Tree(h) => h.update(bytes),
        }
    }

    /// The digests, once the whole stream went by.
    pub fn finish(self) -> Result<Digests, TransferError> {
        match self {
            StreamHasher::File(h) => Ok(Digests { whole: h.finalize().into(), files: Vec::new() }),
            StreamHasher::Tree(h) => h.finish(),
        }
    }
}

/// The running digest of a folder's stream, fed its bytes in order.
pub struct TreeHasher {
    stream_size: u64,
    root: Sha256,
    /// The listing's bytes until it is all in (it is bounded by
    /// [`MAX_LISTING_BYTES`](super::MAX_LISTING_BYTES)).
    listing: Vec<u8>,
    /// The files' sizes, once the listing is in.
    sizes: Option<Vec<u64>>,
    /// The file being filled: the one after those in `files`.
    file: Sha256,
    /// Bytes of that file still to come.
    left: u64,
    files: Vec<[u8; 32]>,
}

impl TreeHasher {
    pub fn new(stream_size: u64) -> Self {
        TreeHasher {
            stream_size,
            root: Sha256::new(),
            listing: Vec::new(),
            sizes: None,
            file: Sha256::new(),
            left: 0,
            files: Vec::new(),
        }
    }

    /// The stream's next bytes.
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<(), TransferError> {
        if self.sizes.is_none() {
            bytes = self.take_listing(bytes)?;
        }
        let Some(count) = self.sizes.as_ref().map(Vec::len) else { return Ok(()) };
        loop {
            self.close_finished_files();
            if bytes.is_empty() {
                return Ok(());
            }
            if self.files.len() == count {
                return Err(TransferError::Protocol("the folder's stream runs past its last file".into()));
            }
            let n = self.left.min(bytes.len() as u64) as usize;
            self.file.update(&bytes[..n]);
            self.left -= n as u64;
            bytes = &bytes[n..];
        }
    }

    /// The folder's digest and its files', once the whole stream went by.
    pub fn finish(mut self) -> Result<Digests, TransferError> {
        let count = self.sizes.as_ref().map(Vec::len);
        if count.is_some() {
            self.close_finished_files();
        }
        if count != Some(self.files.len()) {
            return Err(TransferError::Protocol("the folder's stream ended before its last file".into()));
        }
        Ok(Digests { whole: self.root.finalize().into(), files: self.files })
    }

    /// Keep the listing's bytes from the head of `bytes`; once it is whole, learn the files'
    /// sizes and start the first. Returns what follows the listing.
    fn take_listing<'a>(&mut self, mut bytes: &'a [u8]) -> Result<&'a [u8], TransferError> {
        let mut fill = |listing: &mut Vec<u8>, upto: u64| {
            let n = (upto as usize).saturating_sub(listing.len()).min(bytes.len());
            listing.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            listing.len() as u64 >= upto
        };
        if !fill(&mut self.listing, HEADER_LEN) {
            return Ok(bytes);
        }
        let len = listing::declared_len(&self.listing, self.stream_size)?;
        if !fill(&mut self.listing, len) {
            return Ok(bytes);
        }
        let sizes = listing::file_sizes(&self.listing, self.stream_size)?;
        self.root.update(std::mem::take(&mut self.listing));
        self.left = sizes.first().copied().unwrap_or(0);
        self.sizes = Some(sizes);
        Ok(bytes)
    }

    /// Fold every file whose bytes are all in (an empty one at once) into the root.
    fn close_finished_files(&mut self) {
        let sizes = self.sizes.as_ref().expect("called once the listing is in");
        while self.left == 0 && self.files.len() < sizes.len() {
            let digest: [u8; 32] = std::mem::take(&mut self.file).finalize().into();
            self.root.update(digest);
            self.files.push(digest);
            self.left = sizes.get(self.files.len()).copied().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Entry, Kind};

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    /// A stream for these files (path, contents) under one folder, and its digests computed the
    /// obvious way.
    fn stream(files: &[(&str, &[u8])]) -> (Vec<u8>, Digests) {
        let mut entries = vec![Entry { path: "d".into(), kind: Kind::Dir, mode: 0o755, size: 0 }];
        entries.extend(files.iter().map(|(p, c)| Entry {
            path: (*p).into(),
            kind: Kind::File,
            mode: 0o644,
            size: c.len() as u64,
        }));
        let listing = listing::encode(0o755, &entries);
        let mut root = listing.clone();
        let mut stream = listing;
        for (_, contents) in files {
            stream.extend_from_slice(contents);
            root.extend_from_slice(&sha(contents));
        }
        (stream, Digests { whole: sha(&root), files: files.iter().map(|(_, c)| sha(c)).collect() })
    }

    fn digest_in_pieces(stream: &[u8], piece: usize) -> Result<Digests, TransferError> {
        let mut h = TreeHasher::new(stream.len() as u64);
        for part in stream.chunks(piece) {
            h.update(part)?;
        }
        h.finish()
    }

    #[test]
    fn the_digest_is_the_listing_then_each_files_hash_however_the_stream_is_cut() {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let (bytes, expected) =
            stream(&[("d/empty", b""), ("d/a", b"alpha"), ("d/big", &big), ("d/also-empty", b""), ("z", b"zed")]);
        for piece in [1, 3, 22, 23, 4096, 65_536, bytes.len()] {
            assert_eq!(digest_in_pieces(&bytes, piece).unwrap(), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn sums_read_as_sha256sum_writes_them() {
        let d = [[0xab; 32], [0x01; 32]];
        let text = sha256sums("tree", ["a b.txt", "odd\na\\me"].into_iter(), &d);
        let ab = "ab".repeat(32);
        let one = "01".repeat(32);
        assert_eq!(text, format!("{ab}  tree/a b.txt\n\\{one}  tree/odd\\na\\\\me\n"));
    }

    #[test]
    fn a_folder_with_no_files_has_a_digest_of_its_listing() {
        let (bytes, expected) = stream(&[]);
        assert_eq!(expected.whole, sha(&bytes));
        assert_eq!(digest_in_pieces(&bytes, 5).unwrap(), expected);
    }

    #[test]
    fn a_stream_longer_or_shorter_than_its_listing_says_has_no_digest() {
        let (bytes, _) = stream(&[("d/a", b"alpha")]);
        let mut h = TreeHasher::new(bytes.len() as u64);
        h.update(&bytes).unwrap();
        assert!(h.update(b"x").is_err());
        let mut h = TreeHasher::new(bytes.len() as u64);
        h.update(&bytes[..bytes.len() - 1]).unwrap();
        assert!(h.finish().is_err());
        assert!(TreeHasher::new(bytes.len() as u64 + 1).update(&bytes).is_err(), "sizes disagree with the stream");
    }
}
