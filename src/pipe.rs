//! Pipes: the private spool folders behind `agentferry send -` and `agentferry receive TICKET -o -`,
//! and how a transfer that used one is recognised.
//!
//! The engine states a file's size in the ticket before anything is sent and verifies its SHA-256
//! at the end, so it serves files, not streams: standard input is first copied whole into a
//! spool file, then sent like any file (as croc does). A receive to standard output lands in a
//! spool folder like any receive, and the CLI copies out the chunks the engine has authenticated
//! and synced, in order, as they become durable (see `cli::pipe`).
//!
//! Spools are folders named [`SPOOL_PREFIX`]`<random>` in the system temp folder, made 0700
//! (never an existing one, so nobody can plant a link there), and removed when the command
//! ends; a process killed with `kill -9` leaves its spool behind. They are not in the node home:
//! nothing is sent from it or received into it. A pipe cannot be read or written twice, so these
//! transfers are not resumable: [`is_piped`] is how `resume` knows to refuse them
//! (`not_resumable`). This module moves no bytes over the network and decides nothing about a
//! transfer.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use crate::{
    error::{Result, TransferError},
    journal::{Record, Side},
};

/// The start of every spool folder's name.
pub const SPOOL_PREFIX: &str = "agentferry-pipe-";

/// A private folder for one piped transfer, removed on drop.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// A new, empty spool folder (0700) in the system temp folder.
    pub fn new() -> Result<Spool> {
        let parent = std::env::temp_dir();
        let dir = parent.join(format!("{SPOOL_PREFIX}{}", data_encoding::HEXLOWER.encode(&rand::random::<[u8; 8]>())));
        // Not recursive: an existing folder or link of that name is an error, never reused.
        fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| TransferError::io(&dir, e))?;
        let dir = fs::canonicalize(&dir).map_err(|e| TransferError::io(&dir, e))?;
        Ok(Spool { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copy all of `input` into a new file `name` (0600) in this spool; its path.
    pub fn fill(&self, name: &str, input: &mut impl std::io::Read) -> Result<PathBuf> {
        check_name(name)?;
        let path = self.dir.join(name);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| TransferError::io(&path, e))?;
        std::io::copy(input, &mut file).map_err(|e| TransferError::io(&path, e))?;
        Ok(path)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "could not remove the spool folder: {e}");
        }
    }
}

/// A name for piped data: a plain file name, as the receiver will save it.
fn check_name(name: &str) -> Result<()> {
    if crate::names::safe_file_name(name) != name {
        return Err(TransferError::InvalidArgument(format!(
            "{name:?} cannot be the name of piped data: give a plain file name (no `/`, not hidden, not `.` or `..`)"
        )));
    }
    Ok(())
}

/// Whether `record` is a transfer that read standard input or wrote standard output.
pub fn is_piped(record: &Record) -> bool {
    let folder = match &record.side {
        Side::Send { path, .. } => path.parent(),
        Side::Receive { output_dir, .. } => Some(output_dir.as_path()),
    };
    folder.and_then(Path::file_name).is_some_and(|n| n.to_string_lossy().starts_with(SPOOL_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_is_private_holds_what_was_piped_and_is_gone_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let spool = Spool::new().unwrap();
        let dir = spool.dir().to_owned();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let path = spool.fill("data.bin", &mut &b"piped bytes"[..]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"piped bytes");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        for bad in ["../x", "a/b", ".hidden", "..", ""] {
            assert_eq!(spool.fill(bad, &mut &b""[..]).unwrap_err().code(), "invalid_argument", "{bad:?}");
        }
        drop(spool);
        assert!(!dir.exists());
    }
}
