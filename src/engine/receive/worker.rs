//! The receiver's disk worker: opens frames, writes chunks, hashes, syncs, verifies.
//!
//! Threads in a pipeline, each fed through a bounded channel so memory stays flat: the *opener*
//! authenticates and decrypts; the *hasher* ([`PrefixHash`]) extends the file's SHA-256 with each
//! chunk in order while the *writer* copies the same plaintext into the temp file and starts its
//! writeback early; the *syncer* runs `fdatasync` for checkpoints. Hashing and writing fresh
//! page-cache pages each cost more than decrypting, so overlapping them is what keeps up with
//! the network. Everything the driver hears passes through the writer, strictly in
//! input order: a chunk is reported only once written, and a `Sync` reaches the syncer only after
//! every chunk before it was written, so a checkpoint covers exactly what it claims.
//! Every chunk that authenticates is written at its offset (rewriting a duplicate is harmless);
//! the driver learns which index arrived and lets the core decide what that means.

use std::{fs::File, os::unix::fs::FileExt, path::PathBuf, sync::mpsc::SyncSender};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::engine::{
    prefix::{PrefixHash, ReadChunk},
    send::outgoing::hex,
};
use crate::{
    core::PathKind,
    error::TransferError,
    frame::{FrameKind, Opened, Opener},
    manifest::Manifest,
    tree::digest::Digests,
};

/// Work for the disk thread.
#[derive(Debug)]
pub(super) enum WorkerIn {
    /// One whole frame, as delimited by `frame::check`, and the path that carried it.
    Frame(BytesMut, PathKind),
    /// The expected whole-file hash, from an authenticated manifest.
    Expected([u8; 32]),
    /// The answer to the last request ended (reported back in order, after its frames).
    StreamEnd,
    Sync {
        upto: u64,
    },
    /// All chunks are durable: hash the file through and compare.
    Finish,
}

/// What the disk thread reports, in input order.
#[derive(Debug)]
pub(super) enum WorkerOut {
    /// Chunk `index`, carried by this path, is written.
    Chunk(u64, PathKind),
    Corrupt,
    Trailer,
    StreamEnd,
    Synced(u64),
    /// The whole file verified; it is the file known by this id.
    Verified(Digests, super::disk::FileId),
    Fatal(TransferError),
}

/// Frames queued between the opener and the writer.
const PIPELINE_DEPTH: usize = 2;
/// The writer starts writeback of what it wrote every this many bytes, so the disk works while
/// chunks arrive and a checkpoint's `fdatasync` finds little left to write: durable progress
/// keeps pace with received progress instead of trailing it by whole checkpoints.
const WRITEBACK_EVERY: usize = 4 << 20;

/// Work for the writer thread.
enum WriteOp {
    /// Write the opened frame's payload at `offset`, then report chunk `index`.
    Chunk { index: u64, offset: u64, frame: Bytes, path: PathKind },
    /// Pass a report on to the driver, in order.
    Report(WorkerOut),
    /// Everything before this is written: hand `upto` to the syncer.
    Sync(u64),
    /// Nothing to do.
    Skip,
}

pub(super) struct Worker {
    file: File,
    path: PathBuf,
    manifest: Manifest,
    opener: Opener,
    /// Taken by `finish`.
    prefix: Option<PrefixHash>,
    expected: Option<[u8; 32]>,
}

impl Worker {
    /// Check that the disk has room for the file, open the temp file (never through a link, see
    /// [`super::disk::open_temp`]), reserve its space and re-hash its durable prefix. Returns the worker and the
    /// number of durable chunks actually present (fewer than claimed if the file was cut short
    /// or replaced).
    pub(crate) fn open(
        path: PathBuf,
        manifest: Manifest,
        folder: bool,
        opener: Opener,
        durable: u64,
    ) -> Result<(Worker, u64), TransferError> {
        // A folder's tree is built beside its stream, which goes only once the tree is placed:
        // room for both, or the whole stream travels only to fail at the end.
        let room = if folder { manifest.size.saturating_mul(2) } else { manifest.size };
        super::disk::check_space(&path, room)?;
        let (file, kept) = super::disk::open_temp(&path, durable > 0).map_err(|e| TransferError::io(&path, e))?;
        if let Err(e) = super::disk::reserve(&file, &path, manifest.size) {
            super::disk::remove_if_empty(&path, &file);
            return Err(e);
        }
        let len = file.metadata().map_err(|e| TransferError::io(&path, e))?.len();
        let durable = if kept && len >= manifest.bytes_in(durable) { durable } else { 0 };
        let (reader, m, p) =
            (file.try_clone().map_err(|e| TransferError::io(&path, e))?, manifest.clone(), path.clone());
        let read: ReadChunk = Box::new(move |index, buf| {
            reader.read_exact_at(buf, m.offset(index)).map_err(|e| TransferError::io(&p, e))
        });
        let mut prefix = PrefixHash::start(&manifest, folder, path.clone(), read)?;
        prefix.catch_up(durable);
        Ok((Worker { file, path, manifest, opener, prefix: Some(prefix), expected: None }, durable))
    }

    /// Run until the input closes, `Finish` completes, or a fatal error.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<WorkerIn>, tx: mpsc::UnboundedSender<WorkerOut>) {
        let writer = match self.spawn_writer(tx.clone()) {
            Ok(writer) => writer,
            Err(e) => {
                let _ = tx.send(WorkerOut::Fatal(e));
                return;
            }
        };
        // The driver dropping its end means it gave up (or was cancelled) before finishing.
        let mut gave_up = true;
        while let Some(input) = rx.blocking_recv() {
            let op = match input {
                WorkerIn::Frame(frame, path) => self.frame(frame, path),
                WorkerIn::Expected(hash) => self.expect(hash).map(WriteOp::Report),
                WorkerIn::StreamEnd => Ok(WriteOp::Report(WorkerOut::StreamEnd)),
                WorkerIn::Sync { upto } => Ok(WriteOp::Sync(upto)),
                // The core asks to finish only once every chunk is written and synced.
                WorkerIn::Finish => self.finish().map(WriteOp::Report),
            };
            let op = op.unwrap_or_else(|e| WriteOp::Report(WorkerOut::Fatal(e)));
            let last = matches!(op, WriteOp::Report(WorkerOut::Verified(..) | WorkerOut::Fatal(_)));
            if writer.send(op).is_err() || last {
                gave_up = false;
                break;
            }
        }
        if gave_up {
            // Only an empty file goes: nothing in it can be durable (a checkpoint follows
            // writes), so even a chunk still queued in the writer would be fetched again.
            drop(writer);
            super::disk::remove_if_empty(&self.path, &self.file);
        }
    }

    /// The writer thread, and behind it the syncer.
    fn spawn_writer(&self, tx: mpsc::UnboundedSender<WorkerOut>) -> Result<SyncSender<WriteOp>, TransferError> {
        let io = |e| TransferError::io(&self.path, e);
        let (file, sync_file, path) =
            (self.file.try_clone().map_err(io)?, self.file.try_clone().map_err(io)?, self.path.clone());
        let (syncs, sync_rx) = std::sync::mpsc::channel::<u64>();
        let sync_tx = tx.clone();
        let sync_path = path.clone();
        std::thread::Builder::new()
            .name("agentferry-sync".into())
            .spawn(move || {
                for upto in sync_rx {
                    let out = match sync_file.sync_data() {
                        Ok(()) => WorkerOut::Synced(upto),
                        Err(e) => WorkerOut::Fatal(TransferError::io(&sync_path, e)),
                    };
                    if sync_tx.send(out).is_err() {
                        return;
                    }
                }
            })
            .map_err(io)?;
        let (ops, rx) = std::sync::mpsc::sync_channel::<WriteOp>(PIPELINE_DEPTH);
        std::thread::Builder::new()
            .name("agentferry-write".into())
            .spawn(move || {
                let mut unflushed = 0usize;
                for op in rx {
                    let out = match op {
                        WriteOp::Chunk { index, offset, frame, path: carried_by } => {
                            let payload = Opened::payload(&frame);
                            match file.write_all_at(payload, offset) {
                                Ok(()) => {
                                    unflushed += payload.len();
                                    if unflushed >= WRITEBACK_EVERY {
                                        unflushed = 0;
                                        super::disk::start_writeback(&file);
                                    }
                                    WorkerOut::Chunk(index, carried_by)
                                }
                                Err(e) => WorkerOut::Fatal(TransferError::io(&path, e)),
                            }
                        }
                        WriteOp::Sync(upto) => {
                            let _ = syncs.send(upto);
                            continue;
                        }
                        WriteOp::Report(out) => out,
                        WriteOp::Skip => continue,
                    };
                    let last = matches!(out, WorkerOut::Verified(..) | WorkerOut::Fatal(_));
                    if tx.send(out).is_err() || last {
                        return;
                    }
                }
            })
            .map_err(io)?;
        Ok(ops)
    }

    fn expect(&mut self, hash: [u8; 32]) -> Result<WorkerOut, TransferError> {
        if self.expected.is_some_and(|h| h != hash) {
            return Err(TransferError::IntegrityMismatch("the sender announced two different hashes".into()));
        }
        self.expected = Some(hash);
        Ok(WorkerOut::Trailer)
    }

    fn frame(&mut self, mut frame: BytesMut, path: PathKind) -> Result<WriteOp, TransferError> {
        let Ok(opened) = self.opener.open(&mut frame) else { return Ok(WriteOp::Report(WorkerOut::Corrupt)) };
        let frame = frame.freeze();
        let payload = Opened::payload(&frame);
        let m = &self.manifest;
        match opened.kind {
            FrameKind::Chunk => {
                let index = opened.index;
                if index >= m.chunk_count() || payload.len() != m.chunk_len(index) {
                    return Err(TransferError::SizeLimit(format!(
                        "the sender sent {} bytes as chunk {index}; the file has {} chunks of {} bytes",
                        payload.len(),
                        m.chunk_count(),
                        m.chunk_size
                    )));
                }
                // The hasher reads the plaintext while the writer writes it.
                let prefix = self.prefix.as_mut().expect("taken only by finish");
                prefix.feed(index, || frame.slice_ref(payload));
                Ok(WriteOp::Chunk { index, offset: m.offset(index), frame, path })
            }
            FrameKind::Trailer => {
                let hash: [u8; 32] =
                    payload.try_into().map_err(|_| TransferError::Protocol("the trailer is not a SHA-256".into()))?;
                self.expect(hash).map(WriteOp::Report)
            }
            // Answers to a channel hello, and our own control frames echoed back by a hostile
            // channel: authentic, but nothing to write.
            FrameKind::Manifest | FrameKind::Control => Ok(WriteOp::Skip),
        }
    }

    fn finish(&mut self) -> Result<WorkerOut, TransferError> {
        let m = self.manifest.clone();
        self.file.set_len(m.size).map_err(|e| TransferError::io(&self.path, e))?;
        self.file.sync_all().map_err(|e| TransferError::io(&self.path, e))?;
        let digests = self.prefix.take().expect("finish runs once").finish()?;
        let expected = self.expected.ok_or_else(|| TransferError::Protocol("no hash arrived".into()))?;
        if digests.whole != expected {
            return Err(TransferError::IntegrityMismatch(format!(
                "the received file's SHA-256 is {}, the sender's is {}",
                hex(&digests.whole),
                hex(&expected)
            )));
        }
        Ok(WorkerOut::Verified(
            digests,
            super::disk::FileId::of_file(&self.file).map_err(|e| TransferError::io(&self.path, e))?,
        ))
    }
}
