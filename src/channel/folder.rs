//! The folder channel: the relay's mailboxes as files in a shared folder.
//!
//! For agents that share a synced or network folder but cannot reach each other or a relay.
//! A mailbox is a subfolder named by its hex id; a message is one file, written under a temp name
//! and renamed into place (readers never see half a message), named so that names sort in send
//! order. A subscriber polls its mailbox, delivers files in order and deletes them; messages
//! older than the TTL are removed by whoever sees them. Like the relay, the folder holds only
//! sealed bytes. Whoever can write the folder can drop anything there, so a reader takes only
//! small regular files and never follows a link (see `read_message`).

use std::{
    collections::HashSet,
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
        let dir = self.dir(&mailbox);
        std::fs::create_dir_all(&dir).map_err(|e| TransferError::io(&dir, e))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while count_messages(&dir) >= CAPACITY && std::time::Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut nonce = [0u8; 6];
        rand::rng().fill_bytes(&mut nonce);
        let name = format!("{nanos:024}-{}.msg", HEXLOWER.encode(&nonce));
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, payload).map_err(|e| TransferError::io(&tmp, e))?;
        std::fs::rename(&tmp, dir.join(&name)).map_err(|e| TransferError::io(&dir, e))
    }

    pub fn subscribe(&self, mailbox: MailboxId) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(CAPACITY);
        self.active.lock().expect("not poisoned").insert(mailbox);
        let (dir, active) = (self.dir(&mailbox), Arc::clone(&self.active));
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::create_dir_all(&dir);
            while active.lock().expect("not poisoned").contains(&mailbox) && !tx.is_closed() {
                let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map(|entries| {
                        entries
                            .flatten()
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "msg"))
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                for path in &names {
                    let stale =
                        path.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().unwrap_or_default() > TTL);
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

/// Largest message file read: a frame of the largest chunk size, with room for its header.
const MAX_MESSAGE: u64 = crate::manifest::MAX_CHUNK_SIZE as u64 + 4096;

/// Read one message file, if it is one: a regular file (never through a link, never a FIFO or
/// a device, which could hang or flood the poller) of at most [`MAX_MESSAGE`] bytes. Anything
/// else is skipped (and removed by the caller, as every message is once seen).
fn read_message(path: &Path) -> Option<Vec<u8>> {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};
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
