//! The receiver's side of a folder: read the listing back from the stream file, and once the
//! whole stream has verified, build the tree under a temp name beside the target, then place it.
//!
//! The stream file (`.<NAME>.<ID>.part`, see the receive driver) holds the listing and then every
//! file's bytes in order; building copies each file's range into a new file created exclusively,
//! never through a link, inside a fresh staging folder `.<NAME>.<ID>.tree` that only this process
//! writes. Permission bits follow the sender's, masked by the umask and never setuid, setgid or
//! sticky. The finished staging folder takes its final name with one `renameat2(NOREPLACE)`, so
//! an existing tree is never merged into or replaced unless asked, and nothing ever appears under
//! the final name half-built.

use std::{
    ffi::CString,
    fs::{DirBuilder, File, OpenOptions, Permissions},
    io::{self, Read, Seek, SeekFrom},
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use super::{
    Kind,
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
    let mut file = open_stream(stream)?;
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
/// `engine::disk`), so nobody can swap in other bytes after they verified.
fn open_stream(path: &Path) -> Result<File> {
    use std::os::unix::fs::MetadataExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| TransferError::io(path, e))?;
    let meta = file.metadata().map_err(|e| TransferError::io(path, e))?;
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.nlink() != 1 || meta.uid() != euid {
        return Err(TransferError::io(path, io::Error::other("the temp file was replaced by one that is not ours")));
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
        let files = self.build(&listing).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(self.staging);
        })?;
        self.place().inspect_err(|_| {
            let _ = std::fs::remove_dir_all(self.staging);
        })?;
        let _ = std::fs::remove_file(self.stream);
        if let Some(dir) = self.target.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(files)
    }

    fn build(&self, listing: &Listing) -> Result<u64> {
        // A staging folder left by an interrupted build is ours (its name carries the id): start over.
        match std::fs::symlink_metadata(self.staging) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(self.staging).map_err(io(self.staging))?,
            Ok(_) => std::fs::remove_file(self.staging).map_err(io(self.staging))?,
            Err(_) => {}
        }
        let mut private = DirBuilder::new();
        private.mode(0o700);
        private.create(self.staging).map_err(io(self.staging))?;
        let mask = !umask() & 0o777;
        let stream = open_stream(self.stream)?;
        (&stream).seek(SeekFrom::Start(listing.len)).map_err(io(self.stream))?;
        let mut files = 0;
        for entry in &listing.entries {
            let path = self.staging.join(&entry.path);
            match entry.kind {
                // Writable while it fills; its own mode is set once everything is in.
                Kind::Dir => private.create(&path).map_err(io(&path))?,
                Kind::File => {
                    let mut out = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                        .open(&path)
                        .map_err(io(&path))?;
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
            std::fs::set_permissions(&path, Permissions::from_mode(entry.mode & mask)).map_err(io(&path))?;
        }
        // One syncfs for the whole tree, instead of one fsync per file.
        let dir = File::open(self.staging).map_err(io(self.staging))?;
        // SAFETY: `dir` is an open descriptor for the call's duration.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
            return Err(TransferError::io(self.staging, io::Error::last_os_error()));
        }
        std::fs::set_permissions(self.staging, Permissions::from_mode(listing.root_mode & mask))
            .map_err(io(self.staging))?;
        Ok(files)
    }

    /// Give the staging folder its final name, never merging into or replacing what is there
    /// unless asked.
    fn place(&self) -> Result<()> {
        match rename_noreplace(self.staging, self.target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.overwrite => {
                let old = aside(self.target);
                std::fs::rename(self.target, &old).map_err(|e| TransferError::io(self.target, e))?;
                rename_noreplace(self.staging, self.target).map_err(|e| TransferError::io(self.target, e))?;
                let removed = match std::fs::symlink_metadata(&old) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&old),
                    _ => std::fs::remove_file(&old),
                };
                if let Err(e) = removed {
                    tracing::warn!(path = %old.display(), "could not remove the replaced tree: {e}");
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(TransferError::FileExists(self.target.display().to_string()))
            }
            Err(e) => Err(TransferError::io(self.target, e)),
        }
    }
}

/// The error for an I/O failure on `path`.
fn io(path: &Path) -> impl Fn(io::Error) -> TransferError + '_ {
    move |e| TransferError::io(path, e)
}

/// A free name beside `target` for what it replaces.
fn aside(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tag: u32 = rand::random();
    target.with_file_name(format!(".{name}.{tag:08x}.replaced"))
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing `to` (an empty folder there
/// would otherwise be replaced silently).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths. The raw system call, since musl (the static
    // build) has no renameat2 wrapper.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
