//! What each fuzz target does with one input, shared by the cargo-fuzz targets (nightly, in
//! `fuzz_targets/`) and by `tests/fuzz_corpus.rs`, which replays the checked-in corpus and
//! every crash input on stable so CI keeps them. Each function must never panic, abort or
//! allocate without bound, whatever the bytes; where a parse succeeds, it checks what must hold
//! (round trips, invariants) with assertions, so a violation is a crash too.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use agentferry::{
    Ticket, codec,
    core::{Control, Output, ReceiveConfig, ReceiveCore, Request, SendCore, Transmit},
    crypto::SessionKey,
    frame::{self, FrameKind, Opener, Sealer},
    id::TransferId,
    manifest::{MAX_CHUNK_COUNT, Manifest},
    names::safe_file_name,
    offer::{Offer, answer_is_authentic, sanitized_code},
    peers::GrantUri,
    relay::proto::{Envelope, send_to_deliver},
};
use bytes::Bytes;

/// One target: what it does with an input.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay test.
pub const TARGETS: &[(&str, Target)] = &[
    ("ticket", ticket),
    ("grant_uri", grant_uri),
    ("codec", codec_unframe),
    ("frame", frame_open),
    ("envelope", envelope),
    ("offer", offer),
    ("manifest", manifest),
    ("receive_core", receive_core),
    ("names", names),
    ("send_core", send_core),
    ("chat_message", chat_message),
    ("chat_receive", chat_receive),
];

/// Ticket strings: a ticket that parses prints back to one that parses to the same ticket,
/// and declares only what a receiver accepts.
pub fn ticket(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = text.parse::<Ticket>() {
        assert!(t.chunk_size > 0 && t.size <= agentferry::manifest::MAX_FILE_SIZE);
        let again: Ticket = t.to_string().parse().expect("a printed ticket parses");
        assert_eq!(again, t);
    }
}

/// Grant URIs.
pub fn grant_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(uri) = text.parse::<GrantUri>() {
        let again: GrantUri = uri.to_string().parse().expect("a printed URI parses");
        assert_eq!(again.grant_id, uri.grant_id);
        assert_eq!(again.secret, uri.secret);
    }
}

/// The binary framing under tickets and URIs: version, length, checksum.
pub fn codec_unframe(data: &[u8]) {
    if let Ok(body) = codec::unframe(data) {
        assert!(body.len() <= data.len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = codec::decode("ferry", text);
    }
}

/// Frame check-then-parse, then authentication under a fixed key: a frame the check accepts
/// has the length it claims; nothing but a frame sealed under the key opens.
pub fn frame_open(data: &[u8]) {
    let Some((&max_sel, buf)) = data.split_first() else { return };
    let max_chunk = 1usize << (max_sel % 21);
    if let Ok(Some(len)) = frame::check(buf, max_chunk) {
        assert!(len <= buf.len());
        let mut frame = buf[..len].to_vec();
        let mut opener = Opener::new(SessionKey::from_bytes([7; 32]), TransferId([1; 16]), max_chunk);
        let _ = opener.open(&mut frame);
    }
    // And a genuine frame with the input as its payload opens to exactly that payload.
    let key = SessionKey::from_bytes([7; 32]);
    let mut sealer = Sealer::new(&key, TransferId([1; 16]), [3; 16]);
    let payload = &buf[..buf.len().min(4096)];
    let mut sealed = sealer.seal_bytes(FrameKind::Chunk, max_sel as u64, payload);
    assert_eq!(frame::check(&sealed, 4096), Ok(Some(sealed.len())));
    let opened = Opener::new(key, TransferId([1; 16]), 4096).open(&mut sealed).expect("genuine frame");
    assert_eq!(opened.index, max_sel as u64);
    assert_eq!(frame::Opened::payload(&sealed), payload);
}

/// Relay envelopes: decode, re-encode, and the SEND → DELIVER fast path.
pub fn envelope(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(e) = Envelope::decode(bytes.clone()) {
        assert_eq!(Envelope::decode(e.encode()), Ok(e));
    }
    if let Ok((mailbox, deliver)) = send_to_deliver(bytes) {
        match Envelope::decode(deliver) {
            Ok(Envelope::Deliver(m, payload)) => {
                assert_eq!(m, mailbox);
                assert_eq!(&payload[..], &data[33..]);
            }
            other => panic!("a SEND did not become a DELIVER: {other:?}"),
        }
    }
}

/// Offers and answers as they arrive at an inbox: JSON, then MAC, age and ticket.
pub fn offer(data: &[u8]) {
    if let Ok(offer) = serde_json::from_slice::<Offer>(data) {
        let _ = offer.open(&[9; 32], offer.issued_at);
    }
    if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = answer_is_authentic(&[9; 32], "offer", &answer);
        let code = sanitized_code(answer["code"].as_str());
        assert!(code.len() <= 48 && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    }
}

/// Manifests as a sender declares them: whatever passes the bounds can be chunked without
/// overflow.
pub fn manifest(data: &[u8]) {
    let Ok(m) = serde_json::from_slice::<Manifest>(data) else { return };
    if m.check_declared().is_ok() {
        let count = m.chunk_count();
        assert!(count <= MAX_CHUNK_COUNT);
        if count > 0 {
            let last = m.chunk_len(count - 1);
            assert!(last > 0 && last <= m.chunk_size as usize);
            assert_eq!(m.bytes_in(count), m.size);
        }
    }
}

/// The receive core fed an arbitrary sequence of events, as a hostile sender, a lossy path and
/// a slow disk could produce them. Its memory must not depend on the chunk count, and its
/// invariants must hold after every step.
pub fn receive_core(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let mut next_u64 = |n: usize| (0..n).fold(0u64, |acc, _| acc << 8 | bytes.next().unwrap_or(0) as u64);
    let count = next_u64(5) % (MAX_CHUNK_COUNT + 1);
    let durable = next_u64(5) % (count + 2);
    let window = match next_u64(1) {
        0 => u64::MAX,
        w => w,
    };
    let start = Instant::now();
    let mut now = start;
    let cfg = ReceiveConfig { window, ..ReceiveConfig::default() };
    let mut core = ReceiveCore::new(now, count, durable, cfg);
    let rest: Vec<u8> = data.iter().skip(11).copied().collect();
    for op in rest.chunks(3) {
        let arg = op.get(1..).map_or(0, |a| a.iter().fold(0u64, |acc, b| acc << 8 | *b as u64));
        match op[0] % 10 {
            // A frame near the first missing chunk, or anywhere.
            0 | 1 => {
                let index =
                    if op[0] % 10 == 0 { core.first_missing().saturating_add(arg % 300) } else { arg << 24 | arg };
                let _ = core.handle_frame(now, index);
            }
            2 => core.handle_trailer(now),
            3 => core.handle_corrupt(now),
            4 => core.handle_stream_end(now),
            5 => core.handle_synced(now, core.first_missing().saturating_sub(arg % 4)),
            6 => {
                now += Duration::from_millis(arg * 37);
                core.handle_timeout(now);
            }
            // The path in use breaks, or another takes over with its own window.
            7 => core.handle_path_lost(now),
            8 => core.handle_path_change(now, arg.max(1), Duration::from_millis(arg * 11)),
            _ => {
                if let Some(t) = core.poll_timeout() {
                    now = now.max(t);
                    core.handle_timeout(now);
                }
            }
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Request(r) => assert!(r.from <= r.to && r.to <= count, "{r:?} of {count}"),
                Output::Credit { to } => assert!(to <= count),
                Output::Sync { upto } => assert!(upto <= count),
                Output::Verify => assert_eq!(core.first_missing(), count),
                Output::Failed(_) | Output::Tampered { .. } => {}
            }
        }
        assert!(core.durable() <= core.first_missing() && core.first_missing() <= count);
        assert!(core.received() >= core.first_missing().min(count));
    }
}

/// File names from the other side.
pub fn names(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let safe = safe_file_name(&name);
    assert!(!safe.is_empty() && safe.len() <= 200, "{safe:?}");
    assert!(!safe.contains(['/', '\\', '\0']) && !safe.starts_with('.'), "{safe:?}");
    assert!(safe != "." && safe != "..");
    assert!(!safe.chars().any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')));
}

/// The sender session's control handling: control frames (JSON, as a receiver seals them) in
/// any order and with any numbers, fed to the send core as the session does (a fresh epoch per
/// `want`). Nothing is transmitted before the first `want`, and under one epoch indices only
/// increase and stay within the file (the trailer, at `chunk_count`, last): what the sealer
/// would otherwise refuse by panicking.
pub fn send_core(data: &[u8]) {
    let Some((&count_sel, rest)) = data.split_first() else { return };
    let count = count_sel as u64 % 40;
    let mut core = SendCore::new(count);
    // The last index sent under the current epoch; `None` before the first want.
    let mut epoch: Option<Option<u64>> = None;
    for line in rest.split(|b| *b == b'\n') {
        let Ok(control) = serde_json::from_slice::<Control>(line) else { continue };
        match control {
            Control::Want { from, to } => {
                core.handle_request(Request { from, to });
                epoch = Some(None);
            }
            Control::Credit { to } => {
                assert_eq!(core.handle_credit(to).is_ok(), epoch.is_some(), "a credit is taken only after a want");
            }
            Control::Need { chunks, trailer, have } => {
                // The messages path answers a need on its own, under a fresh epoch each time:
                // in sealing order, within the file and the window.
                let need = agentferry::core::Need { chunks, trailer, have };
                let sent = agentferry::core::transmits(&need, count, 16);
                assert!(sent.len() <= 16 + 1);
                let mut last = None;
                for transmit in sent {
                    let index = match transmit {
                        Transmit::Chunk { index, last } => {
                            assert!(index < count && last == (index + 1 == count), "{transmit:?} of {count}");
                            index
                        }
                        Transmit::Trailer => count,
                    };
                    assert!(last.is_none_or(|l| index > l), "index {index} after {last:?} in one answer");
                    last = Some(index);
                }
            }
            Control::Hello | Control::Complete { .. } => {}
        }
        while let Some(transmit) = core.poll_transmit() {
            let index = match transmit {
                Transmit::Chunk { index, last } => {
                    assert!(index < count && last == (index + 1 == count), "{transmit:?} of {count}");
                    index
                }
                Transmit::Trailer => count,
            };
            let last = epoch.as_mut().expect("nothing is transmitted before a want");
            assert!(last.is_none_or(|l| index > l), "index {index} after {last:?} under one epoch");
            *last = Some(index);
        }
    }
}

/// Pasted chat text: every envelope found re-encodes to the same bytes and round-trips through
/// its text form; nothing else is ever found in the words around it.
pub fn chat_message(data: &[u8]) {
    use agentferry::chat::{Envelope, parse};
    let text = String::from_utf8_lossy(data);
    for envelope in parse(&text).into_iter().flatten() {
        assert_eq!(Envelope::decode(&envelope.encode()).ok().as_ref(), Some(&envelope));
        let again = parse(&envelope.to_text("agentferry 1/2"));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].as_ref().ok(), Some(&envelope));
    }
}

/// The messages path's receiver under any order of chunk arrivals (u16 indices, some beyond
/// the file): a need lists only missing chunks, in order, at most a window, from the first
/// missing; the durable prefix holds only chunks that arrived; complete means nothing is needed.
pub fn chat_receive(data: &[u8]) {
    use agentferry::core::ChatReceive;
    let Some((&count_sel, rest)) = data.split_first() else { return };
    let count = count_sel as u64 * 3;
    let mut core = ChatReceive::new(count, rest.first().map_or(0, |&d| d as u64 % (count + 1)));
    let mut arrived = std::collections::BTreeSet::new();
    arrived.extend(0..core.durable_prefix());
    for pair in rest.chunks(2) {
        let index = pair.iter().fold(0u64, |acc, &b| acc << 8 | b as u64);
        if index == 0xffff {
            core.handle_trailer();
        } else if let Ok(verdict) = core.handle_chunk(index) {
            assert_eq!(verdict == agentferry::core::Verdict::Write, arrived.insert(index));
        } else {
            assert!(index >= count);
        }
        assert!((0..core.durable_prefix()).all(|i| arrived.contains(&i)));
        assert_eq!(core.have(), arrived.len() as u64);
        match core.need(8) {
            None => assert!(core.is_complete() && arrived.len() as u64 == count),
            Some(need) => {
                assert!(need.chunks.len() <= 8 && need.chunks.windows(2).all(|w| w[0] < w[1]));
                assert!(need.chunks.iter().all(|i| !arrived.contains(i) && *i < count));
                assert!(need.chunks.first().is_none_or(|&f| f == core.durable_prefix()));
            }
        }
    }
}
