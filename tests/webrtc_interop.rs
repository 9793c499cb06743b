//! Interop: a receiver built on node-datachannel (libdatachannel, a WebRTC stack nobody here
//! wrote; `tests/webrtc_js/receiver.mjs`) completes our signalling through a shared folder, reads
//! the sealed frames off the data channel, opens them with Node's own AES-256-GCM and checks the
//! SHA-256 with Node's own hash. `.ci/test` installs it (`npm ci` in tests/webrtc_js).

mod common;

use std::process::Command;

use agentferry::Ticket;
use common::*;
use serde_json::Value;

#[test]
fn a_node_datachannel_receiver_reads_and_verifies_a_transfer() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webrtc_js");
    assert!(
        dir.join("node_modules/node-datachannel").exists(),
        "run `npm ci --prefix tests/webrtc_js` (.ci/test does)"
    );
    let a = Node::new();
    let folder = a.dir.path().join("channel");
    let src = random_file(a.dir.path(), "interop.bin", 5 * 1024 * 1024 + 333, 95);
    let mut send = a.command(&["send", src.to_str().unwrap(), "--prefer", "webrtc", "--json"]);
    send.env("AGENTFERRY_RELAY", format!("folder:{}", folder.display()));
    // The sender's log, shown if the receiver fails.
    let log = a.dir.path().join("sender.log");
    send.env("AGENTFERRY_LOG", "agentferry=debug").stderr(std::fs::File::create(&log).unwrap());
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let out = Command::new("node")
        .arg(dir.join("receiver.mjs"))
        .arg(&folder)
        .arg(hex(ticket.session_key.as_bytes()))
        .arg(hex(ticket.transfer_id.as_bytes()))
        .arg(ticket.size.to_string())
        .arg(ticket.chunk_size.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or(Value::Null);
    let sender_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "{stdout} {stderr}\nthe sender's log:\n{}", sender_log());
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["sha256"], sha256_file(&src).as_str());
    assert_eq!(result["bytes"].as_u64(), Some(ticket.size));
    // Frames of 262 192 bytes arrive as several messages each.
    assert!(result["messages"].as_u64().unwrap() > result["chunks"].as_u64().unwrap(), "{result}");

    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str(), last["path"].as_str()), (0, Some("completed"), Some("webrtc")), "{last}");
}
