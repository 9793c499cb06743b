//! The node home: where one installation keeps its journal (and, later, identity and peers).
//!
//! `$AGENTFERRY_HOME` selects it, else the platform data folder (`dirs::data_dir()/agentferry`).
//! Folders are created 0700 and files 0600, because journal entries hold session keys. Every
//! write of state goes through [`write_private_atomic`]: temp file, fsync, rename, fsync of the
//! folder, so a crash leaves either the old or the new version, never a torn one.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use crate::error::{Result, TransferError};

/// The folder of one node.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `explicit`, else `$AGENTFERRY_HOME`, else the platform data folder.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Home> {
        let root = explicit
            .or_else(|| std::env::var_os("AGENTFERRY_HOME").filter(|v| !v.is_empty()).map(PathBuf::from))
            .or_else(|| dirs::data_dir().map(|d| d.join("agentferry")))
            .ok_or_else(|| TransferError::Home("no AGENTFERRY_HOME and no platform data folder".into()))?;
        Home::open(root)
    }

    /// Open (creating if needed) the home at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Home> {
        let home = Home { root: root.into() };
        create_private_dir(&home.root)?;
        create_private_dir(&home.transfers_dir())?;
        Ok(home)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn transfers_dir(&self) -> PathBuf {
        self.root.join("transfers")
    }

    /// Settings from `<home>/config.json`; absent or unreadable means defaults.
    pub fn config(&self) -> HomeConfig {
        std::fs::read(self.root.join("config.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }
}

/// `<home>/config.json`: settings used when no flag or environment variable gives them.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct HomeConfig {
    /// A relay (`ws://host:port`) or shared folder (`folder:/path`).
    #[serde(default)]
    pub relay: Option<String>,
    /// STUN/TURN servers for WebRTC (`stun:HOST:PORT`, `turn:USER:PASS@HOST:PORT`): a list, or
    /// one comma-separated string. The place for a TURN password (this file is 0600).
    #[serde(default)]
    pub ice: Option<IceList>,
}

/// `ice` in `config.json`: `["stun:…", "turn:…"]` or `"stun:…,turn:…"`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum IceList {
    List(Vec<String>),
    Joined(String),
}

impl IceList {
    pub fn urls(&self) -> Vec<String> {
        match self {
            IceList::List(list) => list.clone(),
            IceList::Joined(joined) => {
                joined.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
            }
        }
    }
}

/// Create `dir` (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TransferError::Home(format!("cannot create {}: {e}", dir.display())))
}

/// Open `path` for reading and writing, creating it with mode 0600; never truncates.
pub fn open_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)
}

/// Replace `path` with `bytes` atomically and durably, mode 0600.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("state files live in a folder");
    let tmp =
        dir.join(format!(".{}.{}.tmp", path.file_name().expect("file name").to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        TransferError::io(path, e)
    })
}
