//! Moving between paths within one run, end to end: real processes in a private network
//! namespace, the direct path cut and restored by firewall rules (a proxy would not do: tickets
//! advertise the sender's own addresses). Loopback is shaped so a transfer lasts long enough to
//! act on mid-way. Runs serially (nextest group `netns`); without root, ip, tc or nft each test fails
//! and says why (`.ci/test` leaves them out only when asked: `AGENTFERRY_SKIP=netns`).

mod common;

use agentferry::Ticket;
use common::{netns::Netns, *};
use serde_json::Value;

/// 128 MiB at 400 Mbit/s: a few seconds on either path.
const SIZE: usize = 128 * 1024 * 1024;
const RATE_MBIT: u32 = 400;

/// A namespace with loopback shaped, and UDP dropped so that the paths here are HTTP and the
/// relay (WebRTC has its own tests).
fn namespace(test: &str) -> Netns {
    Netns::new(test).and_then(|ns| ns.limit_rate(RATE_MBIT).and_then(|()| ns.block_udp()).map(|()| ns)).unwrap_or_else(
        |why| {
            panic!(
                "cannot build a network namespace here ({why}): run as root with ip, tc and nft, or leave this group out with AGENTFERRY_SKIP=netns"
            )
        },
    )
}

/// A relay, a sender (direct and through the relay) and a receiver's node, all in `ns`.
struct Scene {
    _relay: Running,
    sender: Running,
    ticket: String,
    port: u16,
    src: std::path::PathBuf,
    _a: Node,
    b: Node,
}

fn scene(ns: &Netns, seed: u64) -> Scene {
    let r = Node::new();
    let mut relay =
        Running::new_public(r.command_in(ns, &["relay", "--listen", "127.0.0.1:0", "--json"]).spawn().unwrap());
    let ready = relay.next_event(WAIT).unwrap();
    let url = ready["url"].as_str().unwrap().to_owned();
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "big.bin", SIZE, seed);
    let mut send = a.command_in(ns, &["send", src.to_str().unwrap(), "--json"]);
    send.env("AGENTFERRY_RELAY", &url);
    let mut sender = Running::new_public(send.spawn().unwrap());
    let first = sender.next_event(WAIT).unwrap();
    let ticket = first["ticket"].as_str().unwrap().to_owned();
    let parsed: Ticket = ticket.parse().unwrap();
    assert_eq!(parsed.channel.as_deref(), Some(url.as_str()));
    let port = parsed.addrs[0].port();
    Scene { _relay: relay, sender, ticket, port, src, _a: a, b }
}

fn receive(ns: &Netns, s: &Scene) -> Running {
    let out = s.b.out();
    let mut cmd = s.b.command_in(ns, &["receive", &s.ticket, "-o", out.to_str().unwrap(), "--json"]);
    cmd.env("AGENTFERRY_PREFER", "auto");
    Running::new_public(cmd.spawn().unwrap())
}

fn progress_past(bytes: u64) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["event"] == "progress" && e["bytes_done"].as_u64().unwrap() >= bytes
}

/// Wait for a process to exit; its code, last event and every event it printed.
fn finish(mut running: Running) -> (i32, Value, Vec<Value>) {
    while running.next_event(WAIT).is_some() {}
    let code = running.child.wait().unwrap().code().unwrap_or(-1);
    let seen = std::mem::take(&mut running.seen);
    (code, seen.last().cloned().unwrap_or(Value::Null), seen)
}

fn attempts<'a>(events: &'a [Value], path: &str, ok: bool) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == "attempt" && e["path"] == path && e["ok"] == ok).collect()
}

#[test]
fn a_direct_path_cut_mid_transfer_continues_over_the_relay_in_the_same_run() {
    let ns = namespace("fallback");
    let s = scene(&ns, 71);
    let mut receiver = receive(&ns, &s);
    receiver.wait_for("progress over http", progress_past(8 * 1024 * 1024));
    ns.block_tcp_port(s.port).unwrap();
    let (code, done, receiver_seen) = finish(receiver);
    assert_eq!(code, 0, "{done}");
    assert_eq!(done["event"], "completed", "{done}");
    assert_eq!(done["sha256"], sha256_file(&s.src).as_str());
    assert_same_file(&s.src, &s.b.out().join("big.bin"));
    assert_eq!(done["path"], "relay", "the last chunk came through the relay");
    let by_path = &done["bytes_by_path"];
    assert!(by_path["http"].as_u64().unwrap() >= 8 * 1024 * 1024, "{by_path}");
    assert!(by_path["relay"].as_u64().unwrap() > 0, "{by_path}");
    assert!(!attempts(&receiver_seen, "http", true).is_empty(), "the direct attempt is on record");
    assert!(!attempts(&receiver_seen, "relay", true).is_empty(), "and the relay's");
    let moves: Vec<(&str, &str)> = receiver_seen
        .iter()
        .filter(|e| e["event"] == "path")
        .map(|e| (e["path"].as_str().unwrap(), e["state"].as_str().unwrap()))
        .collect();
    assert_eq!(moves, [("http", "using"), ("http", "left"), ("relay", "using")], "{receiver_seen:?}");
    // The sender hears of the completion through the relay and exits on its own.
    let (code, last) = s.sender.finish();
    assert_eq!(code, 0, "{last}");
    assert!(last["bytes_by_path"]["relay"].as_u64().unwrap() > 0, "{last}");
}

#[test]
fn a_transfer_started_on_the_relay_moves_to_the_direct_path_once_it_opens() {
    let ns = namespace("upgrade");
    let s = scene(&ns, 72);
    ns.block_tcp_port(s.port).unwrap();
    let mut receiver = receive(&ns, &s);
    receiver.wait_for("progress over the relay", progress_past(4 * 1024 * 1024));
    assert!(!attempts(&receiver.seen, "http", false).is_empty(), "direct was tried first: {:?}", receiver.seen);
    assert!(!attempts(&receiver.seen, "relay", true).is_empty(), "then the relay: {:?}", receiver.seen);
    ns.unblock().unwrap();
    let (code, done, _) = finish(receiver);
    assert_eq!(code, 0, "{done}");
    assert_eq!(done["event"], "completed", "{done}");
    assert_same_file(&s.src, &s.b.out().join("big.bin"));
    assert_eq!(done["path"], "http", "the receiver moved up to the direct path");
    let by_path = &done["bytes_by_path"];
    assert!(by_path["relay"].as_u64().unwrap() >= 4 * 1024 * 1024, "{by_path}");
    assert!(by_path["http"].as_u64().unwrap() > 0, "{by_path}");
    assert_eq!(s.sender.finish().0, 0);
}
