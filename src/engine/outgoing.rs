//! The sender's side of one transfer: the file, its manifest, and the frames it serves.
//!
//! An [`Outgoing`] is shared by every stream that serves the transfer (a receiver may reconnect,
//! or probe several addresses at once). Each stream gets a fresh epoch, asks the [`SendCore`]
//! what to send, reads chunks from disk and seals them on a blocking thread, and hands sealed
//! frames to the transport through a small bounded channel, so memory stays flat whatever the
//! file size. The whole-file SHA-256 is computed while the first full pass streams (or from disk
//! when a resumed stream starts past chunk 0) and then kept.

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::{
    core::{Request, SendCore, Transmit},
    crypto::{SessionKey, ct_eq, random_epoch},
    error::TransferError,
    frame::{FLAG_LAST, FrameKind, Sealer},
    id::TransferId,
    journal::unix_now,
    manifest::Manifest,
};

/// Sealed frames in flight between the disk thread and the socket, per stream.
const STREAM_DEPTH: usize = 4;

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
pub struct Outgoing {
    pub transfer_id: TransferId,
    key: SessionKey,
    token: String,
    path: PathBuf,
    file: File,
    mtime_ns: u64,
    manifest: Manifest,
    pub expires_at: u64,
    sha256: Mutex<Option<String>>,
    /// Bytes of the furthest chunk handed to the network, for progress.
    served: AtomicU64,
    outcome: watch::Sender<Option<SendOutcome>>,
}

/// Modification time of a file in ns since the epoch.
pub fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64)
}

impl Outgoing {
    /// Open `path` for serving. `expect` is what the journal recorded (size, mtime, hash) when
    /// resuming; a file that no longer matches it is refused.
    pub fn open(
        transfer_id: TransferId,
        key: SessionKey,
        path: PathBuf,
        manifest: Manifest,
        expires_at: u64,
        expected_mtime_ns: Option<u64>,
    ) -> Result<Self, TransferError> {
        let file = File::open(&path)
            .map_err(|e| TransferError::SourceUnreadable { path: path.display().to_string(), reason: e.to_string() })?;
        let meta = file.metadata().map_err(|e| TransferError::io(&path, e))?;
        let mtime = mtime_ns(&meta);
        if meta.len() != manifest.size {
            return Err(TransferError::SourceChanged(format!("size is {} bytes, was {}", meta.len(), manifest.size)));
        }
        if expected_mtime_ns.is_some_and(|m| m != mtime) {
            return Err(TransferError::SourceChanged("modification time differs".into()));
        }
        let token = key.http_token(&transfer_id);
        Ok(Outgoing {
            transfer_id,
            token,
            key,
            path,
            file,
            mtime_ns: mtime,
            sha256: Mutex::new(manifest.sha256.clone()),
            manifest,
            expires_at,
            served: AtomicU64::new(0),
            outcome: watch::channel(None).0,
        })
    }

    pub fn manifest(&self) -> Manifest {
        Manifest { sha256: self.sha256(), ..self.manifest.clone() }
    }

    pub fn mtime_ns(&self) -> u64 {
        self.mtime_ns
    }

    pub fn sha256(&self) -> Option<String> {
        self.sha256.lock().expect("not poisoned").clone()
    }

    pub fn bytes_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Does `token` authorise access to this transfer? Constant-time.
    pub fn authorises(&self, token: &str) -> bool {
        ct_eq(token.as_bytes(), self.token.as_bytes()) && unix_now() <= self.expires_at
    }

    /// Resolves when the transfer completes or fails.
    pub fn outcome(&self) -> watch::Receiver<Option<SendOutcome>> {
        self.outcome.subscribe()
    }

    pub fn fail(&self, error: TransferError) {
        self.outcome
            .send_if_modified(|o| o.is_none().then(|| *o = Some(SendOutcome::Failed(Arc::new(error)))).is_some());
    }

    /// The receiver reports the hash it verified; accepted only if it is ours.
    pub fn handle_complete(&self, sha256: &str) -> bool {
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
    pub fn sealed_manifest(&self) -> Bytes {
        let sealer = Sealer::new(&self.key, self.transfer_id, random_epoch());
        let json = serde_json::to_vec(&self.manifest()).expect("manifest serialises");
        sealer.seal_bytes(FrameKind::Manifest, 0, &json).freeze()
    }

    /// Stream the frames answering `request`. Frames are produced on a blocking thread; the
    /// channel closes after the last one, or carries an error if the file went bad.
    pub fn frames(self: &Arc<Self>, request: Request) -> mpsc::Receiver<io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = this.produce(request, &tx) {
                tracing::warn!(transfer = %this.transfer_id, code = e.code(), "stream aborted: {e}");
                if matches!(e, TransferError::SourceChanged(_)) {
                    this.fail(e);
                }
                let _ = tx.blocking_send(Err(io::Error::other("frame stream aborted")));
            }
        });
        rx
    }

    fn check_unchanged(&self) -> Result<(), TransferError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| TransferError::SourceChanged(e.to_string()))?;
        if meta.len() != self.manifest.size || mtime_ns(&meta) != self.mtime_ns {
            return Err(TransferError::SourceChanged("size or modification time differs".into()));
        }
        Ok(())
    }

    fn read_chunk(&self, index: u64, into: &mut [u8]) -> Result<(), TransferError> {
        self.file.read_exact_at(into, self.manifest.offset(index)).map_err(|e| TransferError::io(&self.path, e))
    }

    fn produce(&self, request: Request, tx: &mpsc::Sender<io::Result<Bytes>>) -> Result<(), TransferError> {
        self.check_unchanged()?;
        let m = &self.manifest;
        let count = m.chunk_count();
        let sealer = Sealer::new(&self.key, self.transfer_id, random_epoch());
        let mut core = SendCore::new(count);
        core.handle_request(request);

        // Hash along the way when the hash is unknown and this stream reaches the end; a stream
        // that starts past chunk 0 first hashes the prefix from disk.
        let mut hasher = (self.sha256().is_none() && request.to >= count).then(Sha256::new);
        if let Some(h) = hasher.as_mut() {
            let mut buf = vec![0u8; m.chunk_size as usize];
            for index in 0..request.from.min(count) {
                let chunk = &mut buf[..m.chunk_len(index)];
                self.read_chunk(index, chunk)?;
                h.update(&*chunk);
            }
        }

        while let Some(transmit) = core.poll_transmit() {
            let frame = self.seal_transmit(&sealer, transmit, &mut hasher)?;
            if tx.blocking_send(Ok(frame.freeze())).is_err() {
                return Ok(()); // the receiver hung up; nothing to report
            }
        }
        Ok(())
    }

    /// Read and seal what `transmit` names. `hasher`, when present, has seen every chunk before
    /// this one; without it the trailer uses the known hash, or reads the file through once.
    pub(super) fn seal_transmit(
        &self,
        sealer: &Sealer,
        transmit: Transmit,
        hasher: &mut Option<Sha256>,
    ) -> Result<BytesMut, TransferError> {
        let m = &self.manifest;
        Ok(match transmit {
            Transmit::Chunk { index, last } => {
                let len = m.chunk_len(index);
                let mut buf = Sealer::buffer(len);
                let start = buf.len();
                buf.resize(start + len, 0);
                self.read_chunk(index, &mut buf[start..])?;
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf[start..]);
                }
                sealer.seal(FrameKind::Chunk, if last { FLAG_LAST } else { 0 }, index, &mut buf);
                self.served.fetch_max(m.bytes_in(index + 1), Ordering::Relaxed);
                buf
            }
            Transmit::Trailer => {
                let digest = match (hasher.take(), self.sha256()) {
                    (Some(h), _) => self.record_hash(&hex(&h.finalize()))?,
                    (None, Some(known)) => known,
                    (None, None) => self.hash_from_disk()?,
                };
                self.check_unchanged()?;
                let raw = data_encoding::HEXLOWER.decode(digest.as_bytes()).expect("hex");
                sealer.seal_bytes(FrameKind::Trailer, m.chunk_count(), &raw)
            }
        })
    }

    /// Read the whole file once to learn its hash.
    fn hash_from_disk(&self) -> Result<String, TransferError> {
        let m = &self.manifest;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; m.chunk_size as usize];
        for index in 0..m.chunk_count() {
            let chunk = &mut buf[..m.chunk_len(index)];
            self.read_chunk(index, chunk)?;
            hasher.update(&*chunk);
        }
        self.record_hash(&hex(&hasher.finalize()))
    }

    pub(super) fn session_key(&self) -> &SessionKey {
        &self.key
    }

    /// Keep the hash of a full pass; a second pass that disagrees means the file changed.
    fn record_hash(&self, digest: &str) -> Result<String, TransferError> {
        let mut known = self.sha256.lock().expect("not poisoned");
        match known.as_deref() {
            Some(k) if k != digest => Err(TransferError::SourceChanged("its SHA-256 differs".into())),
            _ => {
                *known = Some(digest.to_owned());
                Ok(digest.to_owned())
            }
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}
