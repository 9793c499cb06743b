//! The sender's side of one transfer: the file (or folder), its manifest, what was served and
//! how it ended.
//!
//! An [`Outgoing`] is shared by every session that serves the transfer (a receiver may
//! reconnect, probe several addresses at once, or move between paths); the sessions themselves
//! are driven in [`super::session`]. It reads chunks, keeps the whole-file SHA-256 once a full
//! pass has computed it, refuses to go on when the file changed, and counts what each path
//! carried.

use std::{
    collections::BTreeMap,
    fs::File,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use tokio::sync::watch;

use crate::{
    core::PathKind,
    crypto::{SessionKey, ct_eq, random_epoch},
    error::TransferError,
    frame::{FrameKind, Sealer},
    home::HomeInodes,
    id::TransferId,
    journal::unix_now,
    manifest::Manifest,
    transport::http::TokenCheck,
    tree::{
        digest::{Digests, sha256sums},
        source::{TreeSource, change_stamp},
    },
};

/// What a transfer reads from: one file, or a folder read as one stream (see [`crate::tree`]).
#[derive(Debug)]
pub(crate) enum Source {
    File(File),
    Tree(TreeSource),
}

impl Source {
    /// Open the file or walk the folder at `path`; nothing in the node's `home` is ever sent.
    pub(crate) fn open(path: &std::path::Path, home: &std::path::Path) -> Result<Source, TransferError> {
        let unreadable = |reason: String| TransferError::SourceUnreadable { path: path.display().to_string(), reason };
        let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
        // By inode: a hard link to `grants.json` elsewhere is still the home's file.
        let private = HomeInodes::of(home);
        if private.holds_path(path) {
            return Err(TransferError::SourcePrivate(path.display().to_string()));
        }
        if meta.is_dir() {
            return TreeSource::walk(path, &private).map(Source::Tree);
        }
        if !meta.is_file() {
            return Err(unreadable("not a regular file or folder".into()));
        }
        File::open(path).map(Source::File).map_err(|e| unreadable(e.to_string()))
    }

    /// A file's permission bits (a folder carries its modes in its listing).
    pub(crate) fn mode(&self) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        match self {
            Source::File(file) => file.metadata().ok().map(|m| m.permissions().mode() & 0o777),
            Source::Tree(_) => None,
        }
    }

    /// Bytes in the stream (a file's size, or a folder's listing and files).
    pub(crate) fn size(&self) -> Result<u64, TransferError> {
        match self {
            Source::File(file) => Ok(file.metadata().map_err(|e| TransferError::SourceChanged(e.to_string()))?.len()),
            Source::Tree(tree) => Ok(tree.size()),
        }
    }
}

/// How the sender's side ended.
#[derive(Clone, Debug)]
pub enum SendOutcome {
    /// The receiver confirmed the file with this hash.
    Completed {
        sha256: String,
    },
    Failed(Arc<TransferError>),
}

/// One file being served to the holder of its ticket.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub transfer_id: TransferId,
    key: SessionKey,
    token: String,
    path: PathBuf,
    source: Source,
    /// A file's modification time; for a folder, the fingerprint of all its files.
    mtime_ns: u64,
    /// The source's change stamp (see [`crate::tree::source::change_stamp`]).
    change: u64,
    manifest: Manifest,
    pub expires_at: u64,
    sha256: Mutex<Option<String>>,
    /// A folder's list of each file's SHA-256 (`sha256sum` format), once its digest is computed
    /// here and until it is kept beside the record.
    sums: Mutex<Option<String>>,
    /// Bytes of the furthest chunk handed to the network, for progress.
    served: AtomicU64,
    /// Chunk bytes each path carried, and the path that carried the last chunk.
    carried: Mutex<Carried>,
    outcome: watch::Sender<Option<SendOutcome>>,
}

/// Is `offered` the transfer's token, before the ticket expires? In constant time.
fn token_valid(offered: &str, token: &str, expires_at: u64) -> bool {
    ct_eq(offered.as_bytes(), token.as_bytes()) && unix_now() <= expires_at
}

/// What each path carried.
#[derive(Clone, Debug, Default)]
pub(super) struct Carried {
    pub bytes_by_path: BTreeMap<PathKind, u64>,
    pub last_chunk: Option<PathKind>,
}

/// What the journal recorded of a source when its transfer began.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recorded {
    pub mtime_ns: u64,
    /// Absent in records from before it was kept.
    pub change: Option<u64>,
}

pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64)
}

impl Outgoing {
    /// Serve `source`, opened from `path`. `expected` is what the journal recorded when
    /// resuming (with the manifest's size and hash); a file or folder that no longer matches it
    /// is refused.
    pub(crate) fn open(
        transfer_id: TransferId,
        key: SessionKey,
        path: PathBuf,
        source: Source,
        manifest: Manifest,
        expires_at: u64,
        expected: Option<Recorded>,
    ) -> Result<Self, TransferError> {
        let size = source.size()?;
        let (mtime, change) = match &source {
            Source::File(file) => {
                let meta = file.metadata().map_err(|e| TransferError::io(&path, e))?;
                (mtime_ns(&meta), change_stamp(&meta))
            }
            Source::Tree(tree) => (tree.fingerprint()?, tree.change()),
        };
        if size != manifest.size {
            return Err(TransferError::SourceChanged(format!("size is {size} bytes, was {}", manifest.size)));
        }
        if expected.is_some_and(|e| e.mtime_ns != mtime) {
            return Err(TransferError::SourceChanged("modification time differs".into()));
        }
        if expected.and_then(|e| e.change).is_some_and(|c| c != change) {
            return Err(TransferError::SourceChanged(
                "the file was rewritten or replaced since the transfer began".into(),
            ));
        }
        let token = key.http_token(&transfer_id);
        Ok(Outgoing {
            transfer_id,
            token,
            key,
            path,
            source,
            mtime_ns: mtime,
            change,
            sha256: Mutex::new(manifest.sha256.clone()),
            sums: Mutex::default(),
            manifest,
            expires_at,
            served: AtomicU64::new(0),
            carried: Mutex::default(),
            outcome: watch::channel(None).0,
        })
    }

    /// The file or folder being sent.
    pub(super) fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub(crate) fn manifest(&self) -> Manifest {
        Manifest { sha256: self.sha256(), ..self.manifest.clone() }
    }

    /// The folder being sent, if this transfer carries one.
    pub(crate) fn tree(&self) -> Option<&TreeSource> {
        match &self.source {
            Source::Tree(tree) => Some(tree),
            Source::File(_) => None,
        }
    }

    /// What the journal keeps to tell, on a resume, whether the source changed.
    pub(crate) fn recorded(&self) -> Recorded {
        Recorded { mtime_ns: self.mtime_ns, change: Some(self.change) }
    }

    pub(crate) fn sha256(&self) -> Option<String> {
        self.sha256.lock().expect("not poisoned").clone()
    }

    pub(crate) fn bytes_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Does `token` authorise access to this transfer? Constant-time.
    pub(crate) fn authorises(&self, token: &str) -> bool {
        token_valid(token, &self.token, self.expires_at)
    }

    /// The token check alone, to outlive the transfer (see [`HttpServer::retire`]).
    ///
    /// [`HttpServer::retire`]: crate::transport::http::HttpServer::retire
    pub(crate) fn token_check(&self) -> TokenCheck {
        let (token, expires_at) = (self.token.clone(), self.expires_at);
        Box::new(move |offered: &str| token_valid(offered, &token, expires_at))
    }

    /// Resolves when the transfer completes or fails.
    pub(crate) fn outcome(&self) -> watch::Receiver<Option<SendOutcome>> {
        self.outcome.subscribe()
    }

    pub(crate) fn fail(&self, error: TransferError) {
        self.outcome
            .send_if_modified(|o| o.is_none().then(|| *o = Some(SendOutcome::Failed(Arc::new(error)))).is_some());
    }

    /// The receiver reports the hash it verified; accepted only if it is ours.
    pub(crate) fn handle_complete(&self, sha256: &str) -> bool {
        let ours = self.sha256();
        let matches = ours.as_deref().is_some_and(|h| ct_eq(h.as_bytes(), sha256.as_bytes()));
        if matches {
            self.outcome.send_if_modified(|o| {
                o.is_none().then(|| *o = Some(SendOutcome::Completed { sha256: sha256.to_owned() })).is_some()
            });
        }
        matches
    }

    /// The manifest, sealed under a fresh epoch: proves to a prober that we hold the session key.
    pub(crate) fn sealed_manifest(&self) -> Bytes {
        let mut sealer = Sealer::new(&self.key, self.transfer_id, random_epoch());
        let json = serde_json::to_vec(&self.manifest()).expect("manifest serialises");
        sealer.seal_bytes(FrameKind::Manifest, 0, &json).freeze()
    }

    pub(super) fn check_unchanged(&self) -> Result<(), TransferError> {
        if let Source::Tree(tree) = &self.source {
            return match tree.fingerprint()? == self.mtime_ns {
                true => Ok(()),
                false => Err(TransferError::SourceChanged("a file in the folder changed".into())),
            };
        }
        let meta = std::fs::metadata(&self.path).map_err(|e| TransferError::SourceChanged(e.to_string()))?;
        if meta.len() != self.manifest.size || mtime_ns(&meta) != self.mtime_ns {
            return Err(TransferError::SourceChanged("size or modification time differs".into()));
        }
        if change_stamp(&meta) != self.change {
            return Err(TransferError::SourceChanged("the file was rewritten or replaced".into()));
        }
        Ok(())
    }

    pub(super) fn read_chunk(&self, index: u64, into: &mut [u8]) -> Result<(), TransferError> {
        let offset = self.manifest.offset(index);
        match &self.source {
            Source::File(file) => file.read_exact_at(into, offset).map_err(|e| TransferError::io(&self.path, e)),
            Source::Tree(tree) => tree.read_at(offset, into),
        }
    }

    /// A path handed the network `bytes` of chunk `index`.
    pub(super) fn record_served(&self, path: PathKind, index: u64, bytes: u64) {
        self.served.fetch_max(self.manifest.bytes_in(index + 1), Ordering::Relaxed);
        let mut carried = self.carried.lock().expect("not poisoned");
        *carried.bytes_by_path.entry(path).or_default() += bytes;
        if index + 1 == self.manifest.chunk_count() {
            carried.last_chunk = Some(path);
        }
    }

    pub(super) fn carried(&self) -> Carried {
        self.carried.lock().expect("not poisoned").clone()
    }

    pub(super) fn session_key(&self) -> &SessionKey {
        &self.key
    }

    /// Keep the hash of a full pass; a second pass that disagrees means the file changed.
    pub(super) fn record_hash(&self, digests: &Digests) -> Result<String, TransferError> {
        let digest = hex(&digests.whole);
        let mut known = self.sha256.lock().expect("not poisoned");
        match known.as_deref() {
            Some(k) if k != digest => Err(TransferError::SourceChanged("its SHA-256 differs".into())),
            _ => {
                if let Some(tree) = self.tree() {
                    let root = self.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
                    let text = sha256sums(&root, tree.file_index().paths(), &digests.files);
                    *self.sums.lock().expect("not poisoned") = Some(text);
                }
                *known = Some(digest.clone());
                Ok(digest)
            }
        }
    }

    /// A folder's per-file SHA-256 list, computed here and not yet taken.
    pub(super) fn take_sums(&self) -> Option<String> {
        self.sums.lock().expect("not poisoned").take()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}
