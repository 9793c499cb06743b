//! Replays the fuzz corpus and every crash input found so far (`fuzz/corpus/<target>/`,
//! `fuzz/artifacts/<target>/`) through the same harness the cargo-fuzz targets run, on stable,
//! so CI keeps what fuzzing found. See `fuzz/run.sh` to fuzz further.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_corpus_and_crash_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, run) in harness::TARGETS {
        let corpus = inputs(&root.join("corpus").join(target));
        assert!(!corpus.is_empty(), "no corpus for fuzz target {target}: run fuzz/run.sh");
        let crashes = inputs(&root.join("artifacts").join(target));
        for input in corpus.iter().chain(&crashes) {
            let data = std::fs::read(input).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "fuzz target {target} fails on {}", input.display());
        }
    }
}

/// The inputs that made the receive core abort before issue 9 was fixed, kept in plain sight.
#[test]
fn the_receive_core_survives_the_chunk_counts_that_aborted_it() {
    // 2^32 chunks, nothing durable, unbounded window; then frames far ahead and near.
    let mut input = vec![0x01, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0];
    input.extend_from_slice(&[1, 0xff, 0xff, 0, 0, 5, 2, 0, 0, 6, 0xff, 0xff]);
    harness::receive_core(&input);
}

/// Writes the seed inputs of every target (run once with `--ignored`; fuzzing grows the rest).
#[test]
#[ignore]
fn write_seeds() {
    use agentferry::{
        Ticket,
        crypto::SessionKey,
        frame::{FrameKind, Sealer},
        id::TransferId,
        mailbox::{MailboxId, MailboxKey},
        offer::Offer,
        peers::GrantUri,
        relay::proto::Envelope,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    let ticket = Ticket {
        transfer_id: TransferId([0x11; 16]),
        session_key: SessionKey::from_bytes([0x22; 32]),
        expires_at: 4_000_000_000,
        size: 1_000_000,
        chunk_size: 1 << 18,
        name: "report.pdf".into(),
        addrs: vec!["127.0.0.1:4242".parse().unwrap(), "[::1]:4242".parse().unwrap()],
        channel: Some("ws://127.0.0.1:9000".into()),
        folder: false,
        mode: None,
    };
    write("ticket", "valid", ticket.to_string().as_bytes());
    write("ticket", "absurd", Ticket { size: 1 << 50, chunk_size: 1, ..ticket.clone() }.to_string().as_bytes());
    let uri = GrantUri {
        grant_id: [3; 16],
        secret: [4; 32],
        expires_at: 4_000_000_000,
        name: "bob".into(),
        inbox: vec!["10.0.0.2:47000".parse().unwrap()],
        channel: Some(("ws://relay:47020".into(), agentferry::mailbox::MailboxId::from_bytes([5; 32]))),
    };
    write("grant_uri", "valid", uri.to_string().as_bytes());
    let text = ticket.to_string();
    let raw = data_encoding::BASE32_NOPAD.decode(text[5..].to_ascii_uppercase().as_bytes()).unwrap();
    write("codec", "ticket-bytes", &raw);
    write("codec", "ticket-text", text.as_bytes());
    let mut sealer = Sealer::new(&SessionKey::from_bytes([7; 32]), TransferId([1; 16]), [3; 16]);
    let mut frame = vec![12u8];
    frame.extend_from_slice(&sealer.seal_bytes(FrameKind::Chunk, 5, b"hello chunk"));
    write("frame", "chunk", &frame);
    let mut manifest_frame = vec![16u8];
    manifest_frame.extend_from_slice(&sealer.seal_bytes(
        FrameKind::Manifest,
        0,
        br#"{"name":"a","size":3,"chunk_size":1}"#,
    ));
    write("frame", "manifest", &manifest_frame);
    for (name, e) in [
        ("subscribe", Envelope::Subscribe(MailboxKey::from_bytes([1; 32]))),
        ("send", Envelope::Send(MailboxId::from_bytes([2; 32]), bytes::Bytes::from_static(b"payload"))),
        ("refused", Envelope::Refused(MailboxId::from_bytes([3; 32]), 4)),
        ("unsubscribe", Envelope::Unsubscribe(MailboxId::from_bytes([4; 32]))),
    ] {
        write("envelope", name, &e.encode());
    }
    let offer = Offer::seal("0303", &[9; 32], "alice", &ticket);
    write("offer", "valid", &serde_json::to_vec(&offer).unwrap());
    write("offer", "answer", br#"{"state":"accepted","transfer_id":"ab","mac":"AAAA","code":"x"}"#);
    write("manifest", "valid", br#"{"name":"a.bin","size":1000000,"chunk_size":262144,"sha256":"00"}"#);
    write("manifest", "absurd", br#"{"name":"a.bin","size":18446744073709551615,"chunk_size":1}"#);
    write("receive_core", "small", &[0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 1, 2, 0, 0, 5, 0, 0, 7, 0, 0]);
    write("receive_core", "huge", &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 6, 0xff, 0xff]);
    write("names", "rlo", "invoice\u{202E}fdp.exe".as_bytes());
    write("names", "traversal", b"../../etc/passwd");
    write("names", "hidden", b".bashrc");
}
