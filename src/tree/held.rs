//! Folders and files held by descriptor, so a local writer cannot redirect what is written.
//!
//! An output folder may be shared (a download folder under `/tmp`, a team share): whoever can
//! write there can rename, replace or swap for a symbolic link anything in it, between two
//! calls that each name it by path. So a tree is built through descriptors instead: each folder
//! is created with `mkdirat` and opened relative to its parent's held descriptor, never through
//! a link (`O_NOFOLLOW | O_DIRECTORY`), and checked to be ours; files are created exclusively
//! relative to their folder. What finally takes a name is known by its [`FileId`] and compared
//! with what the name holds after the rename.

use std::{
    ffi::{CStr, CString},
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::Path,
};

/// Which file or folder a descriptor or a name refers to: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }

    /// The file `file` is open on.
    pub fn of_file(file: &File) -> io::Result<FileId> {
        file.metadata().map(|m| FileId::of(&m))
    }
}

/// A folder held open by descriptor.
#[derive(Debug)]
pub struct HeldDir {
    fd: OwnedFd,
}

fn name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not one path component")));
    }
    CString::new(name).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl HeldDir {
    /// Open the folder at `path` (the output folder, which the user chose: links in its own path
    /// are theirs to have).
    pub fn open(path: &Path) -> io::Result<HeldDir> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `c` is a valid NUL-terminated path; the descriptor returned is ours alone.
        let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(HeldDir { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// The child folder `child`, never through a link, and only if this user owns it.
    pub fn open_dir(&self, child: &str) -> io::Result<HeldDir> {
        let c = name(child)?;
        // SAFETY: a valid descriptor and NUL-terminated name; the descriptor returned is ours.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), DIR_FLAGS) })?;
        // SAFETY: as above.
        let dir = HeldDir { fd: unsafe { OwnedFd::from_raw_fd(fd) } };
        let meta = dir.as_file()?.metadata()?;
        // SAFETY: geteuid cannot fail.
        if meta.uid() != unsafe { libc::geteuid() } {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("{child} belongs to another user")));
        }
        Ok(dir)
    }

    /// Create the child folder `child` with `mode` (it must not exist) and hold it.
    pub fn create_dir(&self, child: &str, mode: u32) -> io::Result<HeldDir> {
        let c = name(child)?;
        // SAFETY: a valid descriptor and NUL-terminated name.
        check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })?;
        self.open_dir(child)
    }

    /// Create the file `child` exclusively (never through a link), for writing.
    pub fn create_file(&self, child: &str, mode: u32) -> io::Result<File> {
        let c = name(child)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid descriptor and NUL-terminated name; the descriptor returned is ours.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) })?;
        // SAFETY: as above.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// What the name `child` holds now, without following a link.
    pub fn id_of(&self, child: &str) -> io::Result<FileId> {
        let c = name(child)?;
        // SAFETY: a valid descriptor, NUL-terminated name and a properly sized out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        check(unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
        Ok(FileId { dev: st.st_dev, ino: st.st_ino })
    }

    /// This folder's own id.
    pub fn id(&self) -> io::Result<FileId> {
        FileId::of_file(&self.as_file()?)
    }

    /// Set this folder's permission bits.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        // SAFETY: a valid descriptor.
        check(unsafe { libc::fchmod(self.fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
    }

    /// Make this folder's entries (a rename into it) durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: a valid descriptor.
        check(unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(drop)
    }

    /// Write the dirty data of this folder's whole file system to disk.
    pub fn sync_fs(&self) -> io::Result<()> {
        // SAFETY: a valid descriptor.
        check(unsafe { libc::syncfs(self.fd.as_raw_fd()) }).map(drop)
    }

    /// Rename `from` to `to`, both in this folder; with `noreplace`, fail with `AlreadyExists`
    /// rather than replace `to` (an empty folder there would otherwise be replaced silently).
    pub fn rename(&self, from: &str, to: &str, noreplace: bool) -> io::Result<()> {
        let (from, to) = (name(from)?, name(to)?);
        rename_at(&self.fd, &from, &to, if noreplace { libc::RENAME_NOREPLACE } else { 0 })
    }

    fn as_file(&self) -> io::Result<File> {
        Ok(File::from(self.fd.try_clone()?))
    }
}

/// `renameat2(2)` within one folder, by its raw system call: musl (the static build) has no
/// wrapper for it.
fn rename_at(dir: &OwnedFd, from: &CStr, to: &CStr, flags: libc::c_uint) -> io::Result<()> {
    let fd = dir.as_raw_fd();
    // SAFETY: a valid descriptor and two NUL-terminated names.
    let rc = unsafe { libc::syscall(libc::SYS_renameat2, fd, from.as_ptr(), fd, to.as_ptr(), flags) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_swapped_for_a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("staging")).unwrap();
        let held = HeldDir::open(dir.path()).unwrap();
        let e = held.open_dir("staging").unwrap_err();
        // Linux says ENOTDIR when O_DIRECTORY meets the link, ELOOP elsewhere.
        assert!(matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)), "{e}");
        let e = held.create_file("staging", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    }

    #[test]
    fn names_are_single_components() {
        let dir = tempfile::tempdir().unwrap();
        let held = HeldDir::open(dir.path()).unwrap();
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert_eq!(held.create_dir(bad, 0o700).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn rename_without_replace_leaves_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let held = HeldDir::open(dir.path()).unwrap();
        let made = held.create_dir("new", 0o700).unwrap();
        held.create_dir("old", 0o700).unwrap();
        assert_eq!(held.rename("new", "old", true).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        held.rename("new", "placed", true).unwrap();
        assert_eq!(held.id_of("placed").unwrap(), made.id().unwrap());
    }
}
