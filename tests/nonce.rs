//! No (key, nonce) pair ever seals two plaintexts, on any path: a receiver (or a relay dropping
//! frames) that asks for the same chunks again, even after the file was rewritten in place,
//! gets them under a fresh epoch, or not at all. One scenario, run against the real sender over
//! every path.

mod common;

use std::{
    collections::HashSet,
    io::{Seek, SeekFrom, Write},
    time::{Duration, Instant},
};

use agentferry::{
    PathKind, Ticket,
    core::Control,
    crypto::random_epoch,
    frame::{FrameKind, HEADER_LEN, Opener, Sealer},
    transport::{self, Connected, Incoming, channel::Mailboxes},
};
use bytes::{Bytes, BytesMut};
use common::*;

const CHUNK: usize = 256 * 1024;

struct Hostile {
    sealer: Sealer,
    sequence: u64,
    connected: Connected,
}

impl Hostile {
    async fn connect(ticket: Ticket, kind: PathKind) -> Hostile {
        let mut sealer = Sealer::new(&ticket.session_key, ticket.transfer_id, random_epoch());
        let hello = sealer.seal_bytes(FrameKind::Control, 1, br#"{"op":"hello"}"#).freeze();
        let (key, id) = (ticket.session_key.clone(), ticket.transfer_id);
        let check = move |frame: &mut BytesMut| {
            Opener::new(key.clone(), id, 0).open(frame).map(drop).map_err(|_| agentferry::TransferError::Unauthorized)
        };
        let budget = Duration::from_secs(5);
        let connected = match kind {
            PathKind::Http => {
                let token = ticket.session_key.http_token(&id);
                transport::http::connect(&ticket.addrs, id, &token, CHUNK, hello, budget, check).await.0
            }
            PathKind::Relay => {
                let key = &ticket.session_key;
                let boxes =
                    Mailboxes { to_sender: key.mailbox(&id, b"sender"), to_receiver: key.mailbox(&id, b"receiver") };
                transport::channel::connect(ticket.channel.as_deref().unwrap(), boxes, hello, budget, check).await.0
            }
            PathKind::Webrtc => {
                let key = &ticket.session_key;
                let signalling = transport::webrtc::Signalling {
                    offers: key.mailbox(&id, b"webrtc-offer"),
                    answers: key.mailbox(&id, b"webrtc-answer"),
                    cipher: key.signal_cipher(&id),
                };
                let (hint, ice) = (ticket.channel.as_deref().unwrap(), transport::webrtc::IceConfig::default());
                transport::webrtc::connect(hint, signalling, &ice, hello, CHUNK, budget * 2, check).await.0
            }
        };
        Hostile { sealer, sequence: 1, connected: connected.expect("the hostile receiver connects") }
    }

    /// Ask for chunks `[from, to)`; returns the chunk frames that arrive before the answer ends
    /// (HTTP), all of them arrived (a channel has no answers that end), or `deadline`.
    async fn want(&mut self, from: u64, to: u64, deadline: Instant) -> Vec<BytesMut> {
        self.sequence += 1;
        let json = serde_json::to_vec(&Control::Want { from, to }).unwrap();
        let control: Bytes = self.sealer.seal_bytes(FrameKind::Control, self.sequence, &json).freeze();
        self.connected.link.send(control).await.unwrap();
        let mut chunks = Vec::new();
        let ends = self.connected.link.kind() == PathKind::Http;
        while ends || chunks.len() < (to - from) as usize {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.connected.incoming.recv()).await {
                Ok(Some(Incoming::Frame(frame))) if frame.first() == Some(&(FrameKind::Chunk as u8)) => {
                    chunks.push(frame)
                }
                Ok(Some(Incoming::Frame(_))) => {}
                Ok(Some(Incoming::Lost(e))) => panic!("the path was lost: {e}"),
                Ok(Some(Incoming::StreamEnd) | None) | Err(_) => break,
            }
        }
        chunks
    }
}

/// (epoch, index) of a sealed chunk frame: its nonce is the index under the epoch's key.
fn nonce_of(frame: &[u8]) -> ([u8; 16], u64) {
    let index = u64::from_be_bytes(frame[8..16].try_into().unwrap());
    (frame[16..HEADER_LEN].try_into().unwrap(), index)
}

async fn resent_chunks_never_reuse_a_nonce(kind: PathKind) {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let a = Node::new();
    let src = random_file(a.dir.path(), "rewritten.bin", 4 * CHUNK, 40);
    let mut send = a.command(&["send", src.to_str().unwrap(), "--json"]);
    send.env("AGENTFERRY_RELAY", &url);
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    let mut hostile = Hostile::connect(ticket, kind).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut frames = hostile.want(0, 2, deadline).await;
    assert_eq!(frames.len(), 2, "the sender answers a want on {kind}");
    // Ask again for the same chunks, as a receiver that lost them (or a relay that dropped them)
    // would: they come again, under a new epoch.
    frames.extend(hostile.want(0, 2, deadline).await);
    assert_eq!(frames.len(), 4, "the sender answers a repeated want on {kind}");
    // Rewrite the file in place, same size, then ask once more.
    let mut file = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(&vec![0x5a; CHUNK]).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let after = hostile.want(0, 2, Instant::now() + Duration::from_secs(3)).await;
    assert!(after.is_empty(), "a changed source is not served on {kind}");
    frames.extend(after);

    let mut nonces = HashSet::new();
    for frame in &frames {
        assert!(nonces.insert(nonce_of(frame)), "chunk {} sealed twice under one nonce on {kind}", nonce_of(frame).1);
    }
    // The sender gave up on the changed file and says why.
    let (code, last) = sender.finish();
    assert_ne!(code, 0);
    assert_eq!(last["code"], "source_changed", "{last}");
}

#[tokio::test]
async fn over_http_a_repeated_request_is_sealed_under_a_fresh_epoch() {
    resent_chunks_never_reuse_a_nonce(PathKind::Http).await;
}

#[tokio::test]
async fn over_the_relay_a_repeated_request_is_sealed_under_a_fresh_epoch() {
    resent_chunks_never_reuse_a_nonce(PathKind::Relay).await;
}
