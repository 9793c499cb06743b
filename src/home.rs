//! The node home: where one installation keeps its journal (and, later, identity and peers).
//!
//! `$AGENTFERRY_HOME` selects it, else the platform data folder (`dirs::data_dir()/agentferry`).
//! Folders are created 0700 and files 0600, because journal entries hold session keys. Every
//! write of state goes through [`write_private_atomic`]: temp file, fsync, rename, fsync of the
//! folder, so a crash leaves either the old or the new version, never a torn one.
//!
//! Nothing is ever sent from the home, and nothing received is ever written into it: a planted
//! `grants.json` would be a grant the attacker holds. [`HomeInodes`] decides what is in the
//! home by device and inode, not by name, so a symlink, a bind mount or a hard link to a file
//! kept there is recognised as well.

use std::{
    collections::HashSet,
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
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

/// Entries of the home looked at, at most: a home holds a few files per transfer, and a home
/// grown past this is still refused by its top levels.
const MAX_HOME_ENTRIES: usize = 100_000;

/// Device and inode of the home and of everything in it, taken when made.
#[derive(Debug, Default)]
pub struct HomeInodes {
    inside: HashSet<(u64, u64)>,
    /// The real path of `<home>/downloads`, the download folder's fallback, unless it is a link.
    downloads: Option<PathBuf>,
}

/// The folder in the home that received files may land in (see [`HomeInodes::holds_target`]).
pub const DOWNLOADS: &str = "downloads";

fn id(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl HomeInodes {
    /// Walk the home at `root` (without following links; breadth first, so a huge home still
    /// counts its top levels). An unreadable home holds nothing.
    pub fn of(root: &Path) -> HomeInodes {
        let mut inside = HashSet::new();
        let mut dirs = std::collections::VecDeque::from([root.to_path_buf()]);
        if let Ok(meta) = fs::metadata(root) {
            inside.insert(id(&meta));
        }
        while let Some(dir) = dirs.pop_front() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if inside.len() >= MAX_HOME_ENTRIES {
                    break;
                }
                let Ok(meta) = entry.path().symlink_metadata() else { continue };
                if meta.is_dir() {
                    dirs.push_back(entry.path());
                }
                if meta.is_dir() || meta.is_file() {
                    inside.insert(id(&meta));
                }
            }
        }
        let link = root.join(DOWNLOADS).symlink_metadata().is_ok_and(|m| !m.is_dir());
        let downloads = fs::canonicalize(root).ok().filter(|_| !link).map(|r| r.join(DOWNLOADS));
        HomeInodes { inside, downloads }
    }

    /// Is this the home, a folder in it, or a file kept there (under any name)?
    pub fn holds(&self, meta: &fs::Metadata) -> bool {
        self.inside.contains(&id(meta))
    }

    /// Is `path`, or any folder it lies in, in the home? What nothing may be sent from.
    pub fn holds_path(&self, path: &Path) -> bool {
        Resolved::of(path).ancestors.iter().any(|a| self.inside.contains(a))
    }

    /// Would a file received into the folder `dir` land in the home? Like [`Self::holds_path`],
    /// except for `<home>/downloads` and below, which the node never reads (the download
    /// folder's fallback when the platform has none).
    pub fn holds_target(&self, dir: &Path) -> bool {
        let resolved = Resolved::of(dir);
        let in_downloads = resolved.path.as_ref().zip(self.downloads.as_ref()).is_some_and(|(p, d)| p.starts_with(d));
        !in_downloads && resolved.ancestors.iter().any(|a| self.inside.contains(a))
    }
}

/// Where a path leads: its deepest existing part with links resolved, then the rest.
struct Resolved {
    /// The whole path, resolved; `None` if what does not exist yet holds a `..`.
    path: Option<PathBuf>,
    /// Device and inode of the deepest existing part and of every folder it lies in.
    ancestors: Vec<(u64, u64)>,
}

impl Resolved {
    fn of(path: &Path) -> Resolved {
        let mut at = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut rest = Vec::new();
        while fs::symlink_metadata(&at).is_err() {
            rest.push(at.file_name().map(|n| n.to_owned()));
            if !at.pop() {
                return Resolved { path: None, ancestors: Vec::new() };
            }
        }
        let real = fs::canonicalize(&at).unwrap_or(at);
        let ancestors = real.ancestors().filter_map(|p| fs::metadata(p).ok()).map(|m| id(&m)).collect();
        let path = rest.into_iter().rev().try_fold(real, |mut p, name| {
            p.push(name?);
            Some(p)
        });
        Resolved { path, ancestors }
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
