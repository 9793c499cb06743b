//! Small JSON documents in the node home, shared safely by several processes.
//!
//! The MCP server, a `listen` process and CLI commands may run at once on one home. Each
//! document (peers, grants, seen offers) is read and rewritten under an exclusive lock on a
//! sibling `.lock` file, and written atomically (temp, fsync, rename), so no update is lost and no
//! reader sees a torn file. Files are 0600: peers and grants hold secrets.

use std::{fs::File, marker::PhantomData, path::PathBuf};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    error::{Result, TransferError},
    home::{Home, open_private, write_private_atomic},
};

/// A list of `T` kept in one file of the home.
#[derive(Clone, Debug)]
pub struct Store<T> {
    path: PathBuf,
    _items: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Store<T> {
    pub fn new(home: &Home, file_name: &str) -> Self {
        Store { path: home.root().join(file_name), _items: PhantomData }
    }

    fn lock(&self) -> Result<File> {
        let lock_path = self.path.with_extension("lock");
        let file = open_private(&lock_path).map_err(|e| TransferError::io(&lock_path, e))?;
        file.lock().map_err(|e| TransferError::io(&lock_path, e))?;
        Ok(file)
    }

    fn read(&self) -> Result<Vec<T>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| TransferError::Home(format!("{} is damaged: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(TransferError::io(&self.path, e)),
        }
    }

    /// Changes whenever the file is written (or appears, or goes): lets a watcher poll one
    /// `stat` instead of reading and parsing the file.
    pub fn stamp(&self) -> Option<(Option<std::time::SystemTime>, u64)> {
        std::fs::metadata(&self.path).ok().map(|m| (m.modified().ok(), m.len()))
    }

    /// A consistent snapshot.
    pub fn load(&self) -> Result<Vec<T>> {
        let _lock = self.lock()?;
        self.read()
    }

    /// Read, change and write back under the lock. The change's result is returned; the file is
    /// rewritten only when `change` succeeds.
    pub fn update<R>(&self, change: impl FnOnce(&mut Vec<T>) -> Result<R>) -> Result<R> {
        let _lock = self.lock()?;
        let mut items = self.read()?;
        let result = change(&mut items)?;
        let json = serde_json::to_vec_pretty(&items).expect("store items serialise");
        write_private_atomic(&self.path, &json)?;
        Ok(result)
    }
}
