//! The receiver's side of a folder: read the listing back from the stream file, and once the
//! whole stream has verified, build the tree under a temp name beside the target, then place it.
//!
//! The stream file (`.<NAME>.<ID>.part`, see the receive driver) holds the listing and then every
//! file's bytes in order, and must still be the file that verified. Building copies each file's
//! range into a new file created exclusively inside a fresh staging folder `.<NAME>.<ID>.tree`,
//! every folder and file reached through held descriptors, never through a link (see [`held`]),
//! so a local writer who swaps a folder of it for a link cannot redirect a single file.
//! Permission bits follow the sender's, masked by the umask and never setuid, setgid or sticky.
//! The finished staging folder takes its final name with one `renameat2(NOREPLACE)`, so an
//! existing tree is never merged into or replaced unless asked, nothing ever appears under the
//! final name half-built, and a name that holds anything but the folder built is
//! `temp_file_swapped`.
//!
//! [`held`]: super::held

use std::{
    fs::{File, OpenOptions, Permissions},
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use super::{
    Kind,
    held::{FileId, HeldDir},
    listing::{self, HEADER_LEN, Listing},
};
use crate::error::{Result, TransferError};

/// Read and check the listing at the start of the stream file. Only its first bytes need to be
/// there: `available` is how many bytes of the stream are written so far. Returns `None` while
/// the listing is not all there yet.
pub fn read_listing(stream: &Path, stream_size: u64, available: u64) -> Result<Option<Listing>> {
    if stream_size < HEADER_LEN {
        return Err(TransferError::ListingRefused(format!(
            "a folder of {stream_size} bytes has no room for a listing"
        )));
    }
    if available < HEADER_LEN {
        return Ok(None);
    }
    let mut file = open_stream(stream, None)?;
    let mut head = vec![0u8; HEADER_LEN as usize];
    file.read_exact(&mut head).map_err(|e| TransferError::io(stream, e))?;
    let len = listing::declared_len(&head, stream_size)?;
    if available < len {
        return Ok(None);
    }
    let mut bytes = head;
    bytes.resize(len as usize, 0);
    file.read_exact(&mut bytes[HEADER_LEN as usize..]).map_err(|e| TransferError::io(stream, e))?;
    listing::decode(&bytes, stream_size).map(Some)
}

/// Open the stream file the way the disk worker does: never through a link, and only if it is a
/// regular file of ours with no other name (the output folder may be shared; see
/// `engine::receive::disk`) and, when known, the very file that was written (`written`), so
/// nobody can swap in other bytes after they verified.
fn open_stream(path: &Path, written: Option<FileId>) -> Result<File> {
    use std::os::unix::fs::MetadataExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| TransferError::io(path, e))?;
    let meta = file.metadata().map_err(|e| TransferError::io(path, e))?;
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.nlink() != 1 || meta.uid() != euid || written.is_some_and(|w| w != FileId::of(&meta)) {
        return Err(TransferError::TempFileSwapped(path.display().to_string()));
    }
    Ok(file)
}

/// The process umask, read without changing it (`umask(2)` can only be read by setting it, which
/// would race with other threads creating files).
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_owned())))
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}

/// Where a tree is built and where it goes.
pub struct Placement<'a> {
    /// The verified stream file.
    pub stream: &'a Path,
    /// The file the stream was written into and verified as.
    pub written: FileId,
    pub stream_size: u64,
    /// The staging folder (a temp name beside the target).
    pub staging: &'a Path,
    pub target: &'a Path,
    pub overwrite: bool,
}

impl Placement<'_> {
    /// Build the tree and place it; removes the stream file once placed. Returns the number of
    /// files placed.
    pub fn run(&self) -> Result<u64> {
        let listing = read_listing(self.stream, self.stream_size, self.stream_size)?
            .ok_or_else(|| TransferError::ListingRefused("the listing is cut short".into()))?;
        let (out, staging_name, target_name) = self.names()?;
        let out = HeldDir::open(out).map_err(io(out))?;
        let placed = self.build(&out, staging_name, &listing).and_then(|(staging, files)| {
            self.place(&out, staging_name, target_name, staging.id().map_err(io(self.staging))?)?;
            Ok(files)
        });
        if placed.is_err() {
            // Only a name that is still our staging folder's: remove_dir_all never follows links.
            let _ = std::fs::remove_dir_all(self.staging);
        }
        let files = placed?;
        let _ = std::fs::remove_file(self.stream);
        let _ = out.sync();
        Ok(files)
    }

    /// The output folder and the staging folder's and the target's names in it.
    fn names(&self) -> Result<(&Path, &str, &str)> {
        fn leaf(p: &Path) -> Option<&str> {
            p.file_name().and_then(|n| n.to_str())
        }
        match (self.target.parent(), leaf(self.staging), leaf(self.target)) {
            (Some(out), Some(staging), Some(target)) if self.staging.parent() == Some(out) => {
                Ok((out, staging, target))
            }
            _ => Err(TransferError::io(self.staging, io::Error::other("the staging folder is not beside the target"))),
        }
    }

    fn build(&self, out: &HeldDir, staging_name: &str, listing: &Listing) -> Result<(HeldDir, u64)> {
        // A staging folder left by an interrupted build is ours (its name carries the id): start over.
        match std::fs::symlink_metadata(self.staging) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(self.staging).map_err(io(self.staging))?,
            Ok(_) => std::fs::remove_file(self.staging).map_err(io(self.staging))?,
            Err(_) => {}
        }
        let root = out.create_dir(staging_name, 0o700).map_err(io(self.staging))?;
        let mask = !umask() & 0o777;
        let stream = open_stream(self.stream, Some(self.written))?;
        (&stream).seek(SeekFrom::Start(listing.len)).map_err(io(self.stream))?;
        let mut dirs = Dirs { root: &root, open: Vec::new() };
        let mut files = 0;
        for entry in &listing.entries {
            let path = self.staging.join(&entry.path);
            let (parent, leaf) = entry.path.rsplit_once('/').unwrap_or(("", &entry.path));
            let dir = dirs.get(parent).map_err(io(&path))?;
            match entry.kind {
                // Writable while it fills; its own mode is set once everything is in.
                Kind::Dir => drop(dir.create_dir(leaf, 0o700).map_err(io(&path))?),
                Kind::File => {
                    let mut out = dir.create_file(leaf, 0o600).map_err(io(&path))?;
                    let copied = io::copy(&mut (&stream).take(entry.size), &mut out).map_err(io(&path))?;
                    if copied != entry.size {
                        return Err(TransferError::io(self.stream, io::ErrorKind::UnexpectedEof.into()));
                    }
                    out.set_permissions(Permissions::from_mode(entry.mode & mask)).map_err(io(&path))?;
                    files += 1;
                }
            }
        }
        // Children first, so a read-only folder is closed only once it is full.
        for entry in listing.entries.iter().rev().filter(|e| e.kind == Kind::Dir) {
            let path = self.staging.join(&entry.path);
            dirs.get(&entry.path).and_then(|d| d.set_mode(entry.mode & mask)).map_err(io(&path))?;
        }
        drop(dirs);
        // One syncfs for the whole tree, instead of one fsync per file.
        root.sync_fs().map_err(io(self.staging))?;
        root.set_mode(listing.root_mode & mask).map_err(io(self.staging))?;
        Ok((root, files))
    }

    /// Give the staging folder (`built`) its final name, never merging into or replacing what
    /// is there unless asked, and only if the name still holds the folder that was built.
    fn place(&self, out: &HeldDir, staging: &str, target: &str, built: FileId) -> Result<()> {
        let holds_built = |name: &str, path: &Path| match out.id_of(name) {
            Ok(id) if id == built => Ok(()),
            Ok(_) => Err(TransferError::TempFileSwapped(path.display().to_string())),
            Err(e) => Err(TransferError::io(path, e)),
        };
        holds_built(staging, self.staging)?;
        match out.rename(staging, target, true) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.overwrite => {
                let old = aside(target);
                out.rename(target, &old, true).map_err(io(self.target))?;
                out.rename(staging, target, true).map_err(io(self.target))?;
                let old = self.target.with_file_name(old);
                let removed = match std::fs::symlink_metadata(&old) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&old),
                    _ => std::fs::remove_file(&old),
                };
                if let Err(e) = removed {
                    tracing::warn!(path = %old.display(), "could not remove the replaced tree: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(TransferError::FileExists(self.target.display().to_string()));
            }
            Err(e) => return Err(TransferError::io(self.target, e)),
        }
        holds_built(target, self.target)
    }
}

/// The folders of the tree being built, held open along the path of the last one asked for: the
/// listing is depth first, so each is opened once, and never more than the tree's depth at a
/// time.
struct Dirs<'a> {
    root: &'a HeldDir,
    /// Each a child of the one before, the first a child of `root`, by name.
    open: Vec<(String, HeldDir)>,
}

impl Dirs<'_> {
    /// The folder at `rel` (`/`-separated, empty for the root), opened without following links.
    fn get(&mut self, rel: &str) -> io::Result<&HeldDir> {
        let parts: Vec<&str> = if rel.is_empty() { Vec::new() } else { rel.split('/').collect() };
        let keep = self.open.iter().zip(&parts).take_while(|((name, _), part)| name == *part).count();
        self.open.truncate(keep);
        for part in &parts[keep..] {
            let next = self.open.last().map_or(self.root, |(_, d)| d).open_dir(part)?;
            self.open.push((part.to_string(), next));
        }
        Ok(self.open.last().map_or(self.root, |(_, d)| d))
    }
}

/// The error for an I/O failure on `path`.
fn io(path: &Path) -> impl Fn(io::Error) -> TransferError + '_ {
    move |e| TransferError::io(path, e)
}

/// A free name beside `target` for what it replaces.
fn aside(target: &str) -> String {
    let tag: u32 = rand::random();
    format!(".{target}.{tag:08x}.replaced")
}
