//! `send -` and `receive TICKET -o -`: the CLI's ends of a pipe (see `agentferry::pipe`).
//!
//! `send -` copies standard input whole into a private spool file, since the ticket states the
//! size and the receiver checks the SHA-256 of exactly these bytes, then sends that file like any
//! other. `receive -o -` receives into a private spool folder like any receive and copies the
//! file to standard output in order, only as far as the journal's checkpoint says chunks were
//! authenticated and synced; the rest is copied once the whole file verified. If it does not
//! verify, the command fails with `integrity_mismatch` (what was written so far was authentic
//! chunk by chunk, but the pipeline must not trust the whole). Standard output carries the
//! file's bytes only; events go to stderr. Neither is resumable: the pipe is gone. This module
//! holds no transfer logic.

use std::time::Duration;

use agentferry::{
    Node, ReceiveOptions, Ticket, Transfer, TransferError,
    journal::{Journal, Role, Side},
    pipe::{Spool, is_piped},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Failure, output::Reporter};

/// How often the checkpoint is read while the receive runs (besides after every event).
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);

/// Standard input, read to the end into a new spool as `name`: the spool (keep it until the
/// transfer ends) and the file's path.
pub async fn spool_stdin(name: String) -> Result<(Spool, std::path::PathBuf), TransferError> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!("reading standard input until end of file (Ctrl-D); the ticket is printed after it");
    }
    tokio::task::spawn_blocking(move || {
        let spool = Spool::new()?;
        let path = spool.fill(&name, &mut std::io::stdin().lock())?;
        Ok((spool, path))
    })
    .await
    .map_err(|_| TransferError::Cancelled)?
}

/// Receive the file `ticket` names and write it to standard output.
pub async fn receive_to_stdout(node: &Node, ticket: Ticket, reporter: &mut Reporter) -> Result<(), Failure> {
    let id = ticket.transfer_id;
    let with_id = |error| Failure { error, reported: false, transfer_id: Some(id) };
    if ticket.folder {
        return Err(with_id(TransferError::FolderToStdout(format!("{}/", ticket.name))));
    }
    let journal = Journal::new(node.home());
    if let Some(earlier) = journal.load(&id, Role::Receive).map_err(with_id)? {
        // Receiving a ticket again continues the earlier receive, which went elsewhere.
        return Err(with_id(if is_piped(&earlier) {
            TransferError::NotResumable(id.to_string())
        } else {
            let Side::Receive { output_dir, .. } = &earlier.side else { unreachable!("a receive record") };
            TransferError::InvalidArgument(format!(
                "this node already received transfer {id} into {}; continue it there with `agentferry resume {id}`",
                output_dir.display()
            ))
        }));
    }
    let spool = Spool::new().map_err(with_id)?;
    let options = ReceiveOptions { output_dir: spool.dir().to_owned(), overwrite: false, peer: None, prefer: None };
    let transfer = node.receive(ticket, options).await.map_err(with_id)?;
    let result = copy_out(&journal, transfer, reporter).await;
    drop(spool);
    result
}

/// Follow `transfer`, writing its durable prefix to stdout as it grows, then the rest once it
/// completed (verified).
async fn copy_out(journal: &Journal, mut transfer: Transfer, reporter: &mut Reporter) -> Result<(), Failure> {
    let id = transfer.transfer_id;
    let mut stdout = Stdout { out: tokio::io::stdout(), source: None, copied: 0 };
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut poll = tokio::time::interval(CHECKPOINT_POLL);
    let mut reported = false;
    // Held back until the last byte is out: `completed` means the reader has the whole file.
    let mut completed = None;
    let stopped = |transfer: &Transfer, error| {
        transfer.cancel();
        Err(Failure { error, reported: false, transfer_id: Some(id) })
    };
    loop {
        tokio::select! {
            event = transfer.events.recv() => match event {
                Some(mut event) => {
                    reported |= matches!(event, agentferry::Event::Error { .. });
                    if let agentferry::Event::Completed { saved_to, .. } = &mut event {
                        *saved_to = Some("-".into()); // the spool is removed; the file went to stdout
                        completed = Some(event);
                        continue;
                    }
                    reporter.event(&event);
                }
                None => break,
            },
            _ = poll.tick() => {}
            _ = &mut interrupted => return stopped(&transfer, TransferError::Cancelled),
        }
        let Some(record) = journal.load(&id, Role::Receive).ok().flatten() else { continue };
        let Side::Receive { durable_chunks, temp_path, .. } = &record.side else { continue };
        let durable = durable_chunks.saturating_mul(record.chunk_size as u64).min(record.size);
        if stdout.source.is_none() && durable > 0 {
            match stdout.open(temp_path) {
                Ok(()) => {}
                // Just renamed to its final name: it is complete, and copied below from there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return stopped(&transfer, TransferError::io(temp_path, e)),
            }
        }
        if let Err(e) = stdout.copy(temp_path.as_path(), durable).await {
            return stopped(&transfer, e);
        }
    }
    match transfer.outcome().await {
        Ok(done) => {
            let saved = done.saved_to.expect("a received file has a path");
            let size = std::fs::metadata(&saved).map(|m| m.len()).map_err(|e| TransferError::io(&saved, e));
            let copied = match size {
                Ok(size) => stdout.copy(&saved, size).await,
                Err(e) => Err(e),
            };
            copied.map_err(|error| Failure { error, reported: false, transfer_id: Some(id) })?;
            if let Some(event) = &completed {
                reporter.event(event);
            }
            Ok(())
        }
        Err(error) => Err(Failure { error, reported, transfer_id: Some(id) }),
    }
}

/// Standard output, and how much of the received file went there.
struct Stdout {
    out: tokio::io::Stdout,
    /// The file being received, opened once: the handle keeps its inode through the rename
    /// that gives the verified file its final name.
    source: Option<tokio::fs::File>,
    copied: u64,
}

impl Stdout {
    fn open(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
        self.source = Some(tokio::fs::File::from_std(file));
        Ok(())
    }

    /// Write the file's bytes from what was copied so far up to `upto`.
    async fn copy(&mut self, path: &std::path::Path, upto: u64) -> Result<(), TransferError> {
        if self.copied >= upto {
            return Ok(());
        }
        if self.source.is_none() {
            self.open(path).map_err(|e| TransferError::io(path, e))?;
        }
        let source = self.source.as_mut().expect("opened");
        let mut buf = vec![0u8; 256 * 1024];
        while self.copied < upto {
            let want = buf.len().min((upto - self.copied) as usize);
            let n = source.read(&mut buf[..want]).await.map_err(|e| TransferError::io(path, e))?;
            if n == 0 {
                return Err(TransferError::io(path, std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.out.write_all(&buf[..n]).await.map_err(|e| TransferError::io("standard output", e))?;
            self.copied += n as u64;
        }
        self.out.flush().await.map_err(|e| TransferError::io("standard output", e))
    }
}
