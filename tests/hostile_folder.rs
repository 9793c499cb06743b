//! A hostile sender of folders, over real sockets, against the real receiver binary: it holds
//! the session key (it made the ticket), so every frame it sends is authentic and every hash
//! matches; only the listing lies. The receiver must refuse the listing with `listing_refused`
//! and write nothing, whatever the listing claims.

mod common;

use std::{path::Path, sync::Arc};

use agentferry::{
    PathKind, Ticket,
    core::Control,
    crypto::SessionKey,
    frame::{FLAG_LAST, FrameKind, Opened, Opener, Sealer},
    id::TransferId,
    manifest::Manifest,
    transport::{Serve, Session, http::HttpServer},
    tree::{Entry, Kind, listing},
};
use bytes::{Bytes, BytesMut};
use common::*;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

const CHUNK: u32 = 64 * 1024;

/// Serves `stream` as a folder, honestly framed and hashed.
struct Liar {
    ticket: Ticket,
    stream: Arc<Vec<u8>>,
}

impl Serve for Liar {
    fn transfer_id(&self) -> TransferId {
        self.ticket.transfer_id
    }

    fn authorises(&self, token: &str) -> bool {
        token == self.ticket.session_key.http_token(&self.ticket.transfer_id)
    }

    fn open_session(&self, _path: PathKind) -> Session {
        let (controls, mut controls_rx) = mpsc::channel::<Bytes>(4);
        let (frames, frames_rx) = mpsc::channel(64);
        let (key, id, stream) = (self.ticket.session_key.clone(), self.ticket.transfer_id, Arc::clone(&self.stream));
        tokio::spawn(async move {
            let mut opener = Opener::new(key.clone(), id, 0);
            while let Some(control) = controls_rx.recv().await {
                let mut buf = BytesMut::from(&control[..]);
                let Ok(Opened { kind: FrameKind::Control, .. }) = opener.open(&mut buf) else { continue };
                let Ok(control) = serde_json::from_slice::<Control>(Opened::payload(&buf)) else { continue };
                let mut sealer = Sealer::new(&key, id, rand::random());
                let size = stream.len() as u64;
                let count = size.div_ceil(CHUNK as u64);
                match control {
                    Control::Hello => {
                        let m = Manifest { name: "loot".into(), size, chunk_size: CHUNK, sha256: None };
                        let json = serde_json::to_vec(&m).unwrap();
                        let _ = frames.send(sealer.seal_bytes(FrameKind::Manifest, 0, &json).freeze()).await;
                    }
                    Control::Want { from, to } => {
                        for i in from..to.min(count) {
                            let piece =
                                &stream[(i * CHUNK as u64) as usize..(((i + 1) * CHUNK as u64).min(size)) as usize];
                            let mut buf = Sealer::buffer(piece.len());
                            buf.extend_from_slice(piece);
                            let flags = if i + 1 == count { FLAG_LAST } else { 0 };
                            sealer.seal(FrameKind::Chunk, flags, i, &mut buf);
                            let _ = frames.send(buf.freeze()).await;
                        }
                        if to >= count {
                            let digest = Sha256::digest(&stream[..]);
                            let _ = frames.send(sealer.seal_bytes(FrameKind::Trailer, count, &digest).freeze()).await;
                        }
                    }
                    Control::Credit { .. } | Control::Complete { .. } | Control::Need { .. } => {}
                }
            }
        });
        Session { controls, frames: frames_rx }
    }
}

/// Serve `stream` as folder `loot` on loopback; returns the ticket and the server.
async fn serve(stream: Vec<u8>) -> (String, HttpServer) {
    let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let ticket = Ticket {
        transfer_id: TransferId::random(),
        session_key: SessionKey::generate(),
        expires_at: agentferry::journal::unix_now() + 3600,
        size: stream.len() as u64,
        chunk_size: CHUNK,
        name: "loot".into(),
        addrs: vec![server.local_addr()],
        channel: None,
        folder: true,
        mode: None,
    };
    server.register(Arc::new(Liar { ticket: ticket.clone(), stream: Arc::new(stream) }));
    server.start();
    (ticket.to_string(), server)
}

fn file(path: &str, size: u64) -> Entry {
    Entry { path: path.into(), kind: Kind::File, mode: 0o644, size }
}

/// A listing and its files' bytes.
fn stream(entries: &[Entry]) -> Vec<u8> {
    let mut out = listing::encode(0o755, entries);
    for e in entries {
        out.extend(std::iter::repeat_n(b'x', e.size as usize));
    }
    out
}

/// Receive with the real binary off the runtime's threads; the refusal and an empty output.
async fn assert_refused(ticket: String, out_parent: &Path) {
    let node = Node::new();
    let out = out_parent.join("out");
    let out2 = out.clone();
    let (code, events, stderr) =
        tokio::task::spawn_blocking(move || node.run(&["receive", &ticket, "-o", out2.to_str().unwrap(), "--json"]))
            .await
            .unwrap();
    assert_eq!(code, 5, "{events:?} {stderr}");
    let last = events.last().unwrap();
    assert_eq!(last["code"], "listing_refused", "{last}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the output folder holds {left:?}");
    let beside: Vec<_> = std::fs::read_dir(out_parent).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, ["out"], "nothing was written beside the output folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_climbs_out_of_the_folder_is_refused() {
    for path in ["../escape", "a/../../escape", "/tmp/escape"] {
        let dir = tempfile::tempdir().unwrap();
        let entries = if path.starts_with('a') {
            vec![Entry { path: "a".into(), kind: Kind::Dir, mode: 0o755, size: 0 }, file(path, 6)]
        } else {
            vec![file(path, 6)]
        };
        let (ticket, _server) = serve(stream(&entries)).await;
        assert_refused(ticket, dir.path()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_and_absurd_listings_are_refused() {
    let collide = stream(&[file("Makefile", 1), file("makefile", 1)]);
    let mut absurd = stream(&[file("a", 1)]);
    absurd[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    // Many chunks, so the listing is refused before the rest of the stream arrives.
    let mut lying_sizes = stream(&[file("a", 1)]);
    lying_sizes.extend(std::iter::repeat_n(0u8, 8 * CHUNK as usize));
    for bytes in [collide, absurd, lying_sizes] {
        let dir = tempfile::tempdir().unwrap();
        let (ticket, _server) = serve(bytes).await;
        assert_refused(ticket, dir.path()).await;
    }
}
