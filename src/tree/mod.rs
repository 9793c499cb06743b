//! Folders: how a tree travels as one byte stream, and how it is read and rebuilt.
//!
//! A folder transfer is an ordinary transfer of one logical byte stream: a [`listing`] of the
//! tree (relative paths, kinds, sizes, modes) followed by every file's contents, concatenated in
//! listing order. That stream is cut into the usual chunks, so small files share chunks (a
//! thousand files are not a thousand round trips), and resume, credit, path choice and the
//! digest in the trailer work unchanged, by chunk index. Because the listing is part of the
//! stream, the trailer's digest covers a canonical encoding of the tree *and* its contents, and
//! the listing itself arrives in bounded pieces (chunks) like any other bytes.
//!
//! - [`listing`] owns the encoding and every check a receiver makes before writing a name;
//! - [`digest`] is the folder's digest, which yields each file's own SHA-256 on the way;
//! - [`source`] is the sender's side: walk the tree once, then read any byte range of the stream;
//! - [`build`] is the receiver's side: turn the verified stream into a tree under temp names,
//!   then place it as `<output>/<NAME>/` in one rename;
//! - [`held`] reaches folders and files by held descriptors and knows them by inode, so a
//!   local writer in a shared output folder cannot redirect what is written or placed.
//!
//! Nothing here touches the network or the journal.

pub mod build;
pub mod digest;
pub mod held;
pub mod listing;
pub mod source;

/// Most entries (files and folders) a folder transfer may list. Both sides hold the listing in
/// memory, so this bounds their memory however many files a sender declares.
pub const MAX_ENTRIES: u32 = 200_000;
/// Largest encoded listing, in bytes.
pub const MAX_LISTING_BYTES: u64 = 32 << 20;
/// Longest relative path, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// One entry of a tree: its path relative to the tree's root, `/`-separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    /// Permission bits as the sender had them (`0o777` at most).
    pub mode: u32,
    /// Bytes of a file; 0 for a folder.
    pub size: u64,
}

/// Which file a byte of the stream belongs to, for progress: every file's end offset and path.
#[derive(Debug, Default)]
pub struct FileIndex {
    ends: Vec<(u64, String)>,
}

impl FileIndex {
    /// From files and their start offsets, in stream order.
    pub fn new<'a>(files: impl Iterator<Item = (&'a str, u64, u64)>) -> Self {
        FileIndex { ends: files.map(|(path, start, size)| (start + size, path.to_owned())).collect() }
    }

    /// Files complete once the stream's first `done` bytes are in, and the one being filled.
    pub fn at(&self, done: u64) -> (u64, Option<&str>) {
        let complete = self.ends.partition_point(|(end, _)| *end <= done);
        (complete as u64, self.ends.get(complete).map(|(_, p)| p.as_str()))
    }

    pub fn len(&self) -> u64 {
        self.ends.len() as u64
    }

    /// The files' paths, in stream order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.ends.iter().map(|(_, p)| p.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}
