//! The folder channel: the relay's mailboxes as files in a shared folder.
//!
//! For agents that share a synced or network folder but cannot reach each other or a relay.
//! A mailbox is a subfolder named by its hex id; a message is one file, written under a temp name
//! and renamed into place (readers never see half a message), named so that names sort in send
//! order. A subscriber polls its mailbox, delivers files in order and deletes them; messages
//! older than the TTL are removed by whoever sees them. Like the relay, the folder holds only
//! sealed bytes. Whoever can write the folder can drop anything there, so a reader takes only
//! small regular files and never follows a link (see `read_message`), and a mailbox folder is
//! opened once without following a link and then only used through that descriptor (see
//! `MailboxDir`): swapping it for a link to another folder, before or after, reaches nothing.

use std::{
    collections::HashSet,
    fs::File,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use data_encoding::HEXLOWER;
use rand::RngCore;
use tokio::sync::mpsc;

use crate::{error::TransferError, mailbox::MailboxId};

const POLL: Duration = Duration::from_millis(20);
const TTL: Duration = Duration::from_secs(600);
/// Messages queued in one mailbox folder before senders wait.
const CAPACITY: usize = 64;

#[derive(Debug)]
pub struct FolderChannel {
    root: PathBuf,
    active: Arc<Mutex<HashSet<MailboxId>>>,
}

impl FolderChannel {
    pub fn open(root: &Path) -> Result<Arc<Self>, TransferError> {
        std::fs::create_dir_all(root).map_err(|e| TransferError::io(root, e))?;
        Ok(Arc::new(FolderChannel { root: root.to_owned(), active: Arc::default() }))
    }

    fn dir(&self, mailbox: &MailboxId) -> PathBuf {
        self.root.join(mailbox.to_string())
    }

    /// Write one message; waits while the mailbox is full (its reader is away or slow).
    pub fn send(&self, mailbox: MailboxId, payload: &[u8]) -> Result<(), TransferError> {
        let dir = MailboxDir::open(&self.dir(&mailbox))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while count_messages(&dir.at("")) >= CAPACITY && std::time::Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut nonce = [0u8; 6];
        rand::rng().fill_bytes(&mut nonce);
        let name = format!("{nanos:024}-{}.msg", HEXLOWER.encode(&nonce));
        let tmp = dir.at(format!(".{name}.tmp"));
        std::fs::write(&tmp, payload).map_err(|e| TransferError::io(&dir.shown, e))?;
        std::fs::rename(&tmp, dir.at(&name)).map_err(|e| TransferError::io(&dir.shown, e))
    }

    pub fn subscribe(&self, mailbox: MailboxId) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(CAPACITY);
        self.active.lock().expect("not poisoned").insert(mailbox);
        let (dir, active) = (self.dir(&mailbox), Arc::clone(&self.active));
        tokio::task::spawn_blocking(move || {
            // A mailbox that cannot be opened safely is not read: the subscription ends.
            let dir = match MailboxDir::open(&dir) {
                Ok(dir) => dir,
                Err(e) => return tracing::warn!(code = e.code(), "not reading a mailbox: {e}"),
            };
            while active.lock().expect("not poisoned").contains(&mailbox) && !tx.is_closed() {
                let mut names: Vec<PathBuf> = std::fs::read_dir(dir.at(""))
                    .map(|entries| {
                        entries
                            .flatten()
                            .map(|e| dir.at(e.file_name()))
                            .filter(|p| p.extension().is_some_and(|x| x == "msg"))
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                for path in &names {
                    let stale = std::fs::symlink_metadata(path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().unwrap_or_default() > TTL);
                    let data = if stale { None } else { read_message(path) };
                    let _ = std::fs::remove_file(path);
                    if let Some(data) = data
                        && tx.blocking_send(Bytes::from(data)).is_err()
                    {
                        return;
                    }
                }
                if names.is_empty() {
                    std::thread::sleep(POLL);
                }
            }
        });
        rx
    }

    pub fn unsubscribe(&self, mailbox: MailboxId) {
        self.active.lock().expect("not poisoned").remove(&mailbox);
    }
}

/// A mailbox's folder, created if missing and opened without following a link; everything in
/// it is then reached through the descriptor (`/proc/self/fd/N/NAME`), so a folder swapped for a
/// link after the open changes nothing, and one that is a link already is refused.
struct MailboxDir {
    fd: File,
    shown: PathBuf,
}

impl MailboxDir {
    fn open(dir: &Path) -> Result<MailboxDir, TransferError> {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(TransferError::io(dir, e)),
        }
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) => TransferError::io(
                    dir,
                    std::io::Error::other("the mailbox is a symbolic link or not a folder; refusing to follow it"),
                ),
                _ => TransferError::io(dir, e),
            })?;
        Ok(MailboxDir { fd, shown: dir.to_owned() })
    }

    /// `name` inside the opened folder, whatever its path now leads to.
    fn at(&self, name: impl AsRef<Path>) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).join(name)
    }
}

/// Largest message file read: a frame of the largest chunk size, with room for its header.
const MAX_MESSAGE: u64 = crate::manifest::MAX_CHUNK_SIZE as u64 + 4096;

/// Read one message file, if it is one: a regular file (never through a link, never a FIFO or
/// a device, which could hang or flood the poller) of at most [`MAX_MESSAGE`] bytes. Anything
/// else is skipped (and removed by the caller, as every message is once seen).
fn read_message(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_MESSAGE {
        tracing::warn!(path = %path.display(), "skipping a message that is not a small regular file");
        return None;
    }
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_MESSAGE + 1).read_to_end(&mut data).ok()?;
    (data.len() as u64 <= MAX_MESSAGE).then_some(data)
}

fn count_messages(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|e| e.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "msg")).count())
        .unwrap_or(0)
}
