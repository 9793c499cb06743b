//! The WebRTC path across simulated NATs: two hosts behind two routers and a public segment with
//! the relay (which also answers STUN) and coturn, built by `tests/lab/natlab.sh` in network
//! namespaces on documentation addresses. Real binaries on both sides; each test checks equal
//! hashes and the path (and route) reported. Runs serially (nextest group `netns`); where
//! namespaces, nftables or coturn are missing each test fails and says why (`.ci/test` leaves
//! them out only when asked: `AGENTFERRY_SKIP=netns`).

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const TURN: &str = "turn:lab:lab-pass@203.0.113.1:3478";

struct Lab {
    prefix: String,
    script: PathBuf,
    turn: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut turn) = self.turn.take() {
            let _ = turn.kill();
            let _ = turn.wait();
        }
        let _ = Command::new("bash").arg(&self.script).args([&self.prefix, "down"]).output();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}

impl Lab {
    /// Build the lab with NAT modes for routers A and B; the test fails, saying why, where it
    /// cannot be built.
    fn new(test: &str, a: &str, b: &str) -> Lab {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/natlab.sh");
        let lab = Lab { prefix: format!("afw{}{test}", std::process::id() % 100_000), script, turn: None };
        let built = run(Command::new("bash").arg(&lab.script).args([&lab.prefix, "up"]))
            .and_then(|()| run(Command::new("bash").arg(&lab.script).args([&lab.prefix, "nat", "A", a])))
            .and_then(|()| run(Command::new("bash").arg(&lab.script).args([&lab.prefix, "nat", "B", b])));
        if let Err(why) = built {
            panic!(
                "cannot build the NAT lab ({why}): it needs root, ip (iproute2) and nft (nftables); or leave this group out with AGENTFERRY_SKIP=netns"
            );
        }
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn command(&self, node: &Node, ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(ns), BIN]).args(args);
        cmd.env("AGENTFERRY_HOME", node.home())
            .env("AGENTFERRY_BIND", "0.0.0.0:0")
            .env("AGENTFERRY_PEER_TIMEOUT", "60")
            .env_remove("AGENTFERRY_LOG")
            .env_remove("AGENTFERRY_ICE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// The relay on the public segment; its URL.
    fn relay(&self, node: &Node) -> (Running, String) {
        let mut relay = Running::new_public(
            self.command(node, "pub", &["relay", "--listen", "203.0.113.1:0", "--json"]).spawn().unwrap(),
        );
        let ready = relay.next_event(WAIT).unwrap();
        (relay, ready["url"].as_str().unwrap().to_owned())
    }

    /// coturn on the public segment (Debian package `coturn`, which `.ci/run` installs).
    fn start_turn(&mut self) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns("pub"), "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls"])
            .args(["-L", "203.0.113.1", "-E", "203.0.113.1", "--listening-port", "3478"])
            .args(["--min-port", "49160", "--max-port", "49300", "--lt-cred-mech", "--fingerprint"])
            .args(["--realm", "lab", "--user", "lab:lab-pass", "--no-stdout-log", "--log-file", "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("ip netns exec turnserver");
        self.turn = Some(child);
        // Ready once it listens on UDP 3478.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out =
                Command::new("ip").args(["netns", "exec", &self.ns("pub"), "ss", "-Hlun", "sport = :3478"]).output();
            if out.is_ok_and(|o| !o.stdout.is_empty()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("coturn did not listen on UDP 3478 within 10 s: is `turnserver` (Debian coturn) installed?");
    }

    fn kill_turn(&mut self) {
        let mut turn = self.turn.take().expect("coturn runs");
        turn.kill().unwrap();
        turn.wait().unwrap();
    }
}

struct Transfer {
    sender: Running,
    receiver: Running,
    src: PathBuf,
    b: Node,
    _a: Node,
    ticket: String,
}

/// A sender on host A and a receiver on host B (preferring `prefer`), both with the relay
/// configured and `ice`.
fn transfer(lab: &Lab, url: &str, size: usize, seed: u64, ice: Option<&str>, prefer: &str) -> Transfer {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "lab.bin", size, seed);
    let mut send = lab.command(&a, "hostA", &["send", src.to_str().unwrap(), "--json"]);
    send.env("AGENTFERRY_RELAY", url);
    if let Some(ice) = ice {
        send.env("AGENTFERRY_ICE", ice);
    }
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().to_owned();
    let out = b.out();
    let mut receive =
        lab.command(&b, "hostB", &["receive", &ticket, "-o", out.to_str().unwrap(), "--prefer", prefer, "--json"]);
    receive.env("AGENTFERRY_RELAY", url);
    if let Some(ice) = ice {
        receive.env("AGENTFERRY_ICE", ice);
    }
    let receiver = Running::new_public(receive.spawn().unwrap());
    Transfer { sender, receiver, src, b, _a: a, ticket }
}

/// Wait for the receiver to end; its exit code and every event.
fn finish(mut t: Transfer) -> (i32, Vec<Value>, Transfer) {
    while t.receiver.next_event(WAIT).is_some() {}
    let code = t.receiver.child.wait().unwrap().code().unwrap_or(-1);
    let seen = std::mem::take(&mut t.receiver.seen);
    (code, seen, t)
}

fn attempts(events: &[Value]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter(|e| e["event"] == "attempt")
        .map(|e| (e["path"].as_str().unwrap().to_owned(), e["ok"].as_bool().unwrap()))
        .collect()
}

fn check_same(t: &Transfer, done: &Value) {
    assert_eq!(done["event"], "completed", "{done}");
    assert_eq!(done["sha256"], sha256_file(&t.src).as_str());
    assert_same_file(&t.src, &t.b.out().join("lab.bin"));
}

/// Endpoint-independent NATs: the two hosts hole-punch with the relay's own STUN responder.
#[test]
fn full_cone_nats_on_both_sides_hole_punch_with_the_relays_stun_and_never_use_http() {
    let lab = Lab::new("fc", "eim", "eim");
    let r = Node::new();
    let (_relay, url) = lab.relay(&r);
    // No ICE server configured: the relay's own STUN responder is the default.
    let (code, events, t) = finish(transfer(&lab, &url, 24 * 1024 * 1024 + 3, 91, None, "webrtc"));
    let done = events.last().unwrap();
    assert_eq!(code, 0, "{events:?}");
    check_same(&t, done);
    assert_eq!(attempts(&events), [("webrtc".to_owned(), true)], "{events:?}");
    assert_eq!((done["path"].as_str(), done["route"].as_str()), (Some("webrtc"), Some("direct")), "{done}");
    assert_eq!(t.sender.finish().0, 0);

    // With `auto`, the sender's addresses are private to its NAT: direct TCP never reaches it.
    // (The relay answers first and may carry it all before WebRTC opens: see tests/webrtc.rs
    // for the move up to WebRTC.)
    let (code, events, t) = finish(transfer(&lab, &url, 4 * 1024 * 1024 + 3, 96, None, "auto"));
    assert_eq!(code, 0, "{events:?}");
    check_same(&t, events.last().unwrap());
    let tried = attempts(&events);
    assert!(tried.iter().all(|(p, ok)| p != "http" || !ok), "{tried:?}");
    assert_eq!(t.sender.finish().0, 0);
}

/// Symmetric NATs: no hole punching. `auto` takes the chunk relay rather than TURN (webrtc-rs
/// receives through TURN far slower, see docs/webrtc.md); pinned to WebRTC, the bytes go through TURN.
#[test]
fn symmetric_nats_take_the_relay_with_auto_and_turn_when_webrtc_is_pinned() {
    let mut lab = Lab::new("sy", "symmetric", "symmetric");
    lab.start_turn();
    let r = Node::new();
    let (_relay, url) = lab.relay(&r);

    let (code, events, t) = finish(transfer(&lab, &url, 4 * 1024 * 1024 + 1, 95, Some(TURN), "auto"));
    let done = events.last().unwrap();
    assert_eq!(code, 0, "{events:?}");
    check_same(&t, done);
    assert_eq!(done["path"], "relay", "{done}");
    assert!(done["bytes_by_path"].get("webrtc").is_none(), "{done}");
    assert_eq!(t.sender.finish().0, 0);

    let (code, events, t) = finish(transfer(&lab, &url, 8 * 1024 * 1024 + 5, 92, Some(TURN), "webrtc"));
    let done = events.last().unwrap();
    assert_eq!(code, 0, "{events:?}");
    check_same(&t, done);
    assert_eq!((done["path"].as_str(), done["route"].as_str()), (Some("webrtc"), Some("turn")), "{done}");
    // Through TURN without a stall (see flush_relayed): one connection carried everything.
    assert_eq!(attempts(&events), [("webrtc".to_owned(), true)], "{events:?}");
    let log: String = events.iter().map(|e| e.to_string()).collect();
    assert!(!log.contains("lab-pass"), "the TURN password appears in the events");
    assert_eq!(t.sender.finish().0, 0);
}

#[test]
fn udp_blocked_at_one_router_leaves_the_relay() {
    let mut lab = Lab::new("nu", "noudp", "eim");
    lab.start_turn();
    let r = Node::new();
    let (_relay, url) = lab.relay(&r);
    let (code, events, t) = finish(transfer(&lab, &url, 4 * 1024 * 1024 + 9, 93, Some(TURN), "auto"));
    let done = events.last().unwrap();
    assert_eq!(code, 0, "{events:?}");
    check_same(&t, done);
    // WebRTC cannot connect (its attempt fails at its budget, or is cancelled when the relay
    // has carried it all): every byte came over the relay.
    let tried = attempts(&events);
    assert!(!tried.contains(&("webrtc".to_owned(), true)), "{tried:?}");
    assert_eq!(done["path"], "relay", "{done}");
    assert!(done["bytes_by_path"].get("webrtc").is_none(), "{done}");
    assert!(done.get("route").is_none(), "no route on the relay path: {done}");
    assert_eq!(t.sender.finish().0, 0);
}

/// TURN dies under a transfer pinned to WebRTC: the receiver is stopped, and `resume` with
/// `auto` finishes the same transfer over the chunk relay from where it was.
#[test]
fn the_turn_server_killed_mid_transfer_and_the_transfer_resumes_over_the_relay() {
    let mut lab = Lab::new("tk", "symmetric", "symmetric");
    lab.start_turn();
    let r = Node::new();
    let (_relay, url) = lab.relay(&r);
    let mut t = transfer(&lab, &url, 48 * 1024 * 1024, 94, Some(TURN), "webrtc");
    t.receiver.wait_for("progress through TURN", |e| {
        assert_ne!(e["event"], "completed", "finished before TURN was killed");
        e["event"] == "progress" && e["bytes_done"].as_u64().unwrap() >= 4 * 1024 * 1024
    });
    assert!(
        t.receiver.seen.iter().any(|e| e["event"] == "attempt" && e["path"] == "webrtc" && e["route"] == "turn"),
        "{:?}",
        t.receiver.seen
    );
    lab.kill_turn();
    t.receiver.wait_for("the TURN path lost", |e| {
        assert_ne!(e["event"], "completed", "finished after TURN was killed");
        e["event"] == "path" && e["path"] == "webrtc" && e["state"] == "left"
    });
    t.receiver.kill9();

    let id = t.ticket.parse::<agentferry::Ticket>().unwrap().transfer_id.to_string();
    let mut resume = lab.command(&t.b, "hostB", &["resume", &id, "--json"]);
    resume.env("AGENTFERRY_RELAY", &url).env("AGENTFERRY_ICE", TURN);
    t.receiver = Running::new_public(resume.spawn().unwrap());
    let (code, events, t) = finish(t);
    let done = events.last().unwrap();
    assert_eq!(code, 0, "{events:?}");
    check_same(&t, done);
    assert_eq!(done["path"], "relay", "{done}");
    let first_progress = events.iter().find(|e| e["event"] == "progress").unwrap();
    assert!(first_progress["bytes_done"].as_u64().unwrap() >= 4 * 1024 * 1024, "it did not start over");
    let (code, last) = t.sender.finish();
    assert_eq!(code, 0, "{last}");
    let by_path = &last["bytes_by_path"];
    assert!(
        by_path["webrtc"].as_u64().unwrap() >= 4 * 1024 * 1024 && by_path["relay"].as_u64().unwrap() > 0,
        "{by_path}"
    );
}
