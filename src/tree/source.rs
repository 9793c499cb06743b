//! The sender's side of a folder: walk the tree once, then serve any byte range of its stream.
//!
//! The walk is depth-first with names in byte order, so the same tree always gives the same
//! listing (a restarted sender re-walks and must find the same stream). Symbolic links, sockets,
//! devices and names that are not UTF-8 are skipped, and the walk says which; so is the node's own
//! home (its journal holds session keys) when the tree holds it, say for `send ~`, and any file
//! that is one of the home's under another name (a hard link). Files are opened
//! when read (never through a link), one at a time, so memory holds the listing and one open file
//! whatever the tree's size. A file whose size, modification time or [`change_stamp`] differs
//! from the walk's makes the tree "changed", which a sender refuses to go on with, as for a
//! single file.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Mutex,
};

use sha2::{Digest, Sha256};

use super::{Entry, Kind, MAX_ENTRIES, MAX_LISTING_BYTES, MAX_PATH_BYTES, listing};
use crate::{error::TransferError, home::HomeInodes};

/// A file of the tree and where its bytes sit in the stream.
#[derive(Debug)]
struct Span {
    rel: String,
    start: u64,
    size: u64,
    mtime_ns: u64,
    change: u64,
}

/// A walked tree, ready to be read as one stream.
#[derive(Debug)]
pub struct TreeSource {
    root: PathBuf,
    listing: Vec<u8>,
    files: Vec<Span>,
    size: u64,
    /// Entries that were left out, as `path (why)`.
    pub skipped: Vec<String>,
    files_count: u64,
    dirs_count: u64,
    /// The file read last, kept open: consecutive chunks mostly read the same or the next file.
    open: Mutex<Option<(usize, File)>>,
}

fn unreadable(path: &Path, reason: impl ToString) -> TransferError {
    TransferError::SourceUnreadable { path: path.display().to_string(), reason: reason.to_string() }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    (meta.mtime() as u64).wrapping_mul(1_000_000_000).wrapping_add(meta.mtime_nsec() as u64)
}

/// What moves on whenever a file's content may have changed: its inode number (a file put in
/// its place) and its status-change time, which every write and every `utimes` sets to now and
/// no unprivileged writer can set back (the modification time can be put back after a rewrite).
/// Stable across reboots, so a journal may keep it.
pub fn change_stamp(meta: &std::fs::Metadata) -> u64 {
    let mut h = Sha256::new();
    h.update(meta.ino().to_be_bytes());
    h.update(meta.ctime().to_be_bytes());
    h.update(meta.ctime_nsec().to_be_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// Is `meta` still the file a span was walked as?
fn unchanged(meta: &std::fs::Metadata, span: &Span) -> bool {
    meta.is_file() && meta.len() == span.size && mtime_ns(meta) == span.mtime_ns && change_stamp(meta) == span.change
}

impl TreeSource {
    /// Walk the folder at `root`, leaving out whatever of the node's home (`private`) the tree
    /// holds.
    pub fn walk(root: &Path, private: &HomeInodes) -> Result<TreeSource, TransferError> {
        let meta = std::fs::metadata(root).map_err(|e| unreadable(root, e))?;
        let mut walk =
            Walk { root, private, entries: Vec::new(), spans: Vec::new(), skipped: Vec::new(), listing_bytes: 0 };
        walk.dir(root, "")?;
        let Walk { entries, mut spans, skipped, .. } = walk;
        let listing = listing::encode(meta.mode(), &entries);
        let mut at = listing.len() as u64;
        for span in &mut spans {
            span.start = at;
            at += span.size;
        }
        Ok(TreeSource {
            root: root.to_path_buf(),
            listing,
            files_count: spans.len() as u64,
            dirs_count: entries.iter().filter(|e| e.kind == Kind::Dir).count() as u64,
            files: spans,
            size: at,
            skipped,
            open: Mutex::new(None),
        })
    }

    /// Bytes in the stream: the listing and every file.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn file_count(&self) -> u64 {
        self.files_count
    }

    /// Where each file sits in the stream, for progress.
    pub fn file_index(&self) -> super::FileIndex {
        super::FileIndex::new(self.files.iter().map(|f| (f.rel.as_str(), f.start, f.size)))
    }

    /// Folders below the root.
    pub fn dir_count(&self) -> u64 {
        self.dirs_count
    }

    /// A fingerprint of the listing (names, kinds, sizes, modes) and every file's size and
    /// modification time, taken now: equal fingerprints mean the tree still holds what the
    /// listing says (it stands in for a file's mtime, also across a restart, which walks again).
    pub fn fingerprint(&self) -> Result<u64, TransferError> {
        let mut h = Sha256::new();
        h.update(&self.listing);
        for span in &self.files {
            let path = self.root.join(&span.rel);
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| TransferError::SourceChanged(format!("{}: {e}", span.rel)))?;
            if !unchanged(&meta, span) {
                return Err(TransferError::SourceChanged(format!("{} changed", span.rel)));
            }
            h.update(span.rel.as_bytes());
            h.update(span.size.to_be_bytes());
            h.update(span.mtime_ns.to_be_bytes());
        }
        Ok(u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes")))
    }

    /// Every file's [`change_stamp`] as walked, in one: a journal keeps it so that a sender
    /// restarted on a tree rewritten meanwhile (its modification times put back) finds it
    /// changed, where the [`fingerprint`](Self::fingerprint) of a fresh walk would not.
    pub fn change(&self) -> u64 {
        let mut h = Sha256::new();
        for span in &self.files {
            h.update(span.change.to_be_bytes());
        }
        u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
    }

    /// Fill `buf` with the stream's bytes from `offset`.
    pub fn read_at(&self, mut offset: u64, mut buf: &mut [u8]) -> Result<(), TransferError> {
        let l = self.listing.len() as u64;
        if offset < l {
            let n = ((l - offset) as usize).min(buf.len());
            buf[..n].copy_from_slice(&self.listing[offset as usize..offset as usize + n]);
            buf = &mut buf[n..];
            offset += n as u64;
        }
        let mut i = self.files.partition_point(|f| f.start + f.size <= offset);
        let mut open = self.open.lock().expect("not poisoned");
        while !buf.is_empty() {
            let span =
                self.files.get(i).ok_or_else(|| TransferError::Protocol("read past the end of the folder".into()))?;
            let n = ((span.start + span.size - offset) as usize).min(buf.len());
            if n > 0 {
                if open.as_ref().is_none_or(|(at, _)| *at != i) {
                    *open = Some((i, self.open_file(span)?));
                }
                let (_, file) = open.as_ref().expect("opened above");
                file.read_exact_at(&mut buf[..n], offset - span.start)
                    .map_err(|e| TransferError::SourceChanged(format!("{}: {e}", span.rel)))?;
                buf = &mut buf[n..];
                offset += n as u64;
            }
            i += 1;
        }
        Ok(())
    }

    fn open_file(&self, span: &Span) -> Result<File, TransferError> {
        let path = self.root.join(&span.rel);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| TransferError::SourceChanged(format!("{}: {e}", span.rel)))?;
        let meta = file.metadata().map_err(|e| TransferError::io(&path, e))?;
        if !unchanged(&meta, span) {
            return Err(TransferError::SourceChanged(format!("{} changed", span.rel)));
        }
        Ok(file)
    }
}

struct Walk<'a> {
    root: &'a Path,
    /// What is never sent.
    private: &'a HomeInodes,
    entries: Vec<Entry>,
    spans: Vec<Span>,
    skipped: Vec<String>,
    listing_bytes: u64,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<(), TransferError> {
        let mut children: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| unreadable(dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| unreadable(dir, e))?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let name = child.file_name();
            let shown = format!("{rel}{}", name.to_string_lossy());
            let Some(name) = name.to_str() else {
                self.skipped.push(format!("{shown} (the name is not UTF-8)"));
                continue;
            };
            let path = format!("{rel}{name}");
            let meta = std::fs::symlink_metadata(child.path()).map_err(|e| unreadable(&child.path(), e))?;
            let kind = if self.private.holds(&meta) {
                self.skipped.push(format!("{path} (agentferry's own home: it holds session keys)"));
                continue;
            } else if meta.is_dir() {
                Kind::Dir
            } else if meta.is_file() {
                Kind::File
            } else {
                let what = if meta.file_type().is_symlink() { "a symbolic link" } else { "not a file or folder" };
                self.skipped.push(format!("{path} ({what})"));
                continue;
            };
            if path.len() > MAX_PATH_BYTES {
                return Err(unreadable(&child.path(), format!("the path is longer than {MAX_PATH_BYTES} bytes")));
            }
            self.listing_bytes += 13 + path.len() as u64;
            if self.entries.len() >= MAX_ENTRIES as usize || self.listing_bytes > MAX_LISTING_BYTES {
                return Err(unreadable(
                    self.root,
                    format!(
                        "the folder has more than {MAX_ENTRIES} entries (or a longer listing than a receiver accepts)"
                    ),
                ));
            }
            let size = if kind == Kind::File { meta.len() } else { 0 };
            self.entries.push(Entry { path: path.clone(), kind, mode: meta.mode() & 0o777, size });
            match kind {
                Kind::File => self.spans.push(Span {
                    rel: path,
                    start: 0,
                    size,
                    mtime_ns: mtime_ns(&meta),
                    change: change_stamp(&meta),
                }),
                Kind::Dir => self.dir(&child.path(), &format!("{path}/"))?,
            }
        }
        Ok(())
    }
}
