//! The receiver's side of the file system: room on the disk before a transfer starts (checked,
//! then reserved where the file system can), a temp file that is never a link or a file someone
//! else planted, and a final placement that never follows a link.
//!
//! The output folder may be shared with other local users (a download folder under `/tmp`, a
//! team share). Whoever can write there can plant `.NAME.ID.part` before the receiver opens it,
//! or swap it later; so the temp file is opened with `O_NOFOLLOW` and, when it must already
//! exist (a resume), checked to be a regular file of ours with one link, else started afresh
//! with `O_EXCL`. The file is then known by its device and inode ([`FileId`], taken from the
//! open descriptor the chunks were written through): placing refuses a temp path that no longer
//! names that very file (`temp_file_swapped`), so a file swapped in under the temp name, even a
//! hard link to a file of ours, never takes the final name as if it had verified.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

use crate::error::{Result, TransferError};
pub(crate) use crate::tree::held::FileId;

/// Bytes free for an unprivileged writer on the file system holding `dir`.
pub(super) fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Fail with `disk_full` before writing anything if the file system holding `temp` cannot take
/// `size` bytes (the sender's declared size, twice for a folder) less what the temp file already
/// holds or has reserved.
pub(in crate::engine) fn check_space(temp: &Path, size: u64) -> Result<()> {
    let Some(dir) = temp.parent() else { return Ok(()) };
    let have = std::fs::symlink_metadata(temp)
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len().max(m.blocks().saturating_mul(512)));
    let needed = size.saturating_sub(have);
    let free = free_bytes(dir).map_err(|e| TransferError::io(dir, e))?;
    if needed > free {
        return Err(TransferError::DiskFull(format!(
            "{}: the transfer needs {needed} more bytes and {free} are free",
            dir.display()
        )));
    }
    Ok(())
}

/// The error for a temp name that no longer names the file that was written and verified.
fn swapped(path: &Path) -> TransferError {
    TransferError::TempFileSwapped(path.display().to_string())
}

fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// A regular file owned by this process's user with no other name: nobody else can see or
/// change what we write through another path.
fn is_ours(file: &File) -> io::Result<bool> {
    let meta = file.metadata()?;
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    Ok(meta.file_type().is_file() && meta.nlink() == 1 && meta.uid() == euid)
}

/// Open the temp file at `path`. With `keep`, an existing temp file of ours is reopened as it is
/// (a resume); anything else at `path` (a link, a FIFO, a file with other links or owners) is
/// removed — the link itself, never its target — and a new empty file created exclusively.
/// Returns the file and whether it was kept.
pub(in crate::engine) fn open_temp(path: &Path, keep: bool) -> io::Result<(File, bool)> {
    if keep {
        match options().open(path) {
            Ok(file) if is_ours(&file)? => return Ok((file, true)),
            Ok(_) => tracing::warn!(path = %path.display(), "the temp file is not ours; starting it afresh"),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                tracing::warn!(path = %path.display(), "the temp file is a symbolic link; starting it afresh")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = options().create_new(true).open(path)?;
    Ok((file, false))
}

/// Reserve `size` bytes for `file` without changing its length, so a disk that fills up during
/// the transfer fails it at the start (`disk_full`) rather than at some chunk, and the file
/// system lays the file out once instead of chunk by chunk. File systems that cannot reserve
/// (`EOPNOTSUPP`, say) are left to allocate as the chunks are written.
pub(super) fn reserve(file: &File, path: &Path, size: u64) -> Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(size) else { return Ok(()) };
    if len == 0 {
        return Ok(());
    }
    // SAFETY: `file` is an open descriptor; fallocate reads nothing from our memory.
    if unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Err(TransferError::DiskFull(format!("{}: no room for {size} bytes", path.display()))),
        _ => Ok(()),
    }
}

/// Start writing `file`'s dirty pages to disk without waiting for them (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`); durability still comes from `fdatasync`. Best
/// effort: where it is not supported, writeback happens at the next sync as before.
pub(super) fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: `file` is an open descriptor; the call reads nothing from our memory.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Remove the temp file at `path` if it is still the empty file `file`: a transfer that ended
/// before its first chunk (the sender was unreachable) leaves nothing behind. A resume creates
/// it again.
pub(super) fn remove_if_empty(path: &Path, file: &File) {
    let (Ok(ours), Ok(there)) = (file.metadata(), std::fs::symlink_metadata(path)) else { return };
    if ours.len() == 0 && (ours.dev(), ours.ino()) == (there.dev(), there.ino()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Give the temp file its final name: atomically, without following a link at either name, and
/// without replacing an existing file unless asked to (a hard link fails if the target exists,
/// where a rename would clobber it). `written` is the file the chunks went into: the temp name
/// must still name it, and so must the final name once placed.
pub(crate) fn place(temp: &Path, written: FileId, target: &Path, overwrite: bool) -> Result<()> {
    let meta = std::fs::symlink_metadata(temp).map_err(|e| TransferError::io(temp, e))?;
    if !meta.file_type().is_file() || FileId::of(&meta) != written {
        return Err(swapped(temp));
    }
    if overwrite {
        // rename(2) replaces a link at `target` itself, never what it points to.
        std::fs::rename(temp, target).map_err(|e| TransferError::io(target, e))?;
    } else {
        // link(2) on Linux does not follow a link at `temp`; it was a regular file just above.
        std::fs::hard_link(temp, target).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => TransferError::FileExists(target.display().to_string()),
            _ => TransferError::io(target, e),
        })?;
        std::fs::remove_file(temp).map_err(|e| TransferError::io(temp, e))?;
    }
    let placed = std::fs::symlink_metadata(target).map_err(|e| TransferError::io(target, e))?;
    if FileId::of(&placed) != written {
        return Err(swapped(target));
    }
    if let Some(dir) = target.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
