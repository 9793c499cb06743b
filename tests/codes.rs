//! Issue 22: short codes a person can say, over a real `agentferry relay`, with real processes
//! on both sides: a transfer by code (then over direct HTTP, and pinned to the relay), pairing by
//! code then a push, a wrong code (both sides fail with `code_wrong`, nothing written), replayed
//! and expired codes (refused), no relay configured (a clear code and hint), and a flood of
//! claims (bounded, refused with a code, honest users still served). The PAKE's known-answer
//! test is a unit test (`code::pake`), beside the code it checks.
//!
//! The flood comes from 127.0.0.2 and 127.0.0.3, the honest users from 127.0.0.1; it is bounded
//! in count.

mod attack;
mod common;

use std::{path::Path, process::Command, time::Duration};

use common::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Message, client};

fn spawn_with(node: &Node, relay: &str, args: &[&str]) -> Running {
    Running::new_public(with_relay(node, relay, args).spawn().unwrap())
}

/// Run to the end: (exit code, events, stderr).
fn output(mut cmd: Command) -> (i32, Vec<Value>, String) {
    let out = cmd.output().unwrap();
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    (out.status.code().unwrap_or(-1), events, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn run_with(node: &Node, relay: &str, args: &[&str]) -> (i32, Vec<Value>, String) {
    output(with_relay(node, relay, args))
}

/// Wait for the `code` event; checks its shape and returns the code.
fn code_of(running: &mut Running, purpose: &str, relay: &str) -> String {
    let event = running.wait_for("the code", |e| e["event"] == "code");
    assert_eq!((event["purpose"].as_str(), event["relay"].as_str()), (Some(purpose), Some(relay)), "{event}");
    assert!(event["expires_at"].as_u64().unwrap() > attack::unix_now() + 500, "ten minutes: {event}");
    let code = event["code"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = code.split('-').collect();
    assert!(parts[0].parse::<u32>().is_ok_and(|n| n > 0), "{code}");
    assert!(parts.len() >= 4 && parts[1..].iter().all(|w| w.bytes().all(|b| b.is_ascii_lowercase())), "{code}");
    code
}

/// The same nameplate with other words.
fn wrong(code: &str) -> String {
    let (number, words) = code.split_once('-').unwrap();
    let other = if words.starts_with("acid-") { "zoom-zoom-zoom" } else { "acid-acid-acid" };
    format!("{number}-{other}")
}

fn last_error(events: &[Value]) -> &Value {
    let last = events.last().expect("an event");
    assert_eq!(last["event"], "error", "{events:?}");
    last
}

fn statuses(node: &Node) -> Vec<Value> {
    let (code, events, _) = node.run(&["status", "--json"]);
    assert_eq!(code, 0);
    events
}

fn same_tree(a: &Path, b: &Path) {
    for entry in std::fs::read_dir(a).unwrap().flatten() {
        let other = b.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            same_tree(&entry.path(), &other);
        } else {
            assert_same_file(&entry.path(), &other);
        }
    }
}

#[test]
fn a_file_sent_by_code_arrives_directly_and_a_folder_over_the_pinned_relay() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "by-code.bin", 3 * 1024 * 1024 + 7, 61);
    let mut sender = spawn_with(&a, &url, &["send", src.to_str().unwrap(), "--code", "--verify", "--json"]);
    let code = code_of(&mut sender, "transfer", &url);

    let out = b.out();
    let (rc, events, stderr) =
        run_with(&b, &url, &["receive", &code, "-o", out.to_str().unwrap(), "--verify", "--json"]);
    assert_eq!(rc, 0, "{events:?} {stderr}");
    assert_eq!(events[0]["event"], "code_redeemed", "{events:?}");
    let verifier = events[0]["verifier"].as_str().unwrap().to_owned();
    assert_eq!(verifier.split('-').count(), 2, "{verifier}");
    let completed = events.last().unwrap();
    assert_eq!((completed["event"].as_str(), completed["path"].as_str()), (Some("completed"), Some("http")));
    assert_same_file(&src, &out.join("by-code.bin"));
    let redeemed = sender.wait_for("code_redeemed", |e| e["event"] == "code_redeemed");
    assert_eq!(redeemed["verifier"], verifier.as_str(), "both sides show the same verifier");
    let (rc, last) = sender.finish();
    assert_eq!((rc, last["event"].as_str()), (0, Some("completed")), "{last}");
    // The code stood for a ticket: the journal holds an ordinary transfer, resumable as any.
    assert_eq!(statuses(&b)[0]["state"], "completed");

    // A folder, pinned to the relay on both sides.
    let tree = a.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("inner")).unwrap();
    random_file(&tree, "one.bin", 700_000, 62);
    random_file(&tree.join("inner"), "two.bin", 1_300_000, 63);
    let mut sender = spawn_with(&a, &url, &["send", tree.to_str().unwrap(), "--code", "--prefer", "relay", "--json"]);
    let first = sender.next_event(WAIT).unwrap();
    assert_eq!(first["event"], "ticket", "the ticket event still comes first: {first}");
    assert!(first["folder"].is_object());
    let code = code_of(&mut sender, "transfer", &url);
    let (rc, events, stderr) =
        run_with(&b, &url, &["receive", &code, "-o", out.to_str().unwrap(), "--prefer", "relay", "--json"]);
    assert_eq!(rc, 0, "{events:?} {stderr}");
    assert!(events[0]["verifier"].is_null(), "no verifier without --verify");
    assert_eq!(events.last().unwrap()["path"], "relay", "{events:?}");
    same_tree(&tree, &out.join("tree"));
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn pairing_by_code_then_a_push() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let mut export = spawn_with(&b, &url, &["export", "--code", "--name", "bob", "--verify", "--json"]);
    let code = code_of(&mut export, "pair", &url);
    let (rc, events, stderr) = run_with(&a, &url, &["peers", "add", &code, "--verify", "--json"]);
    assert_eq!(rc, 0, "{events:?} {stderr}");
    assert_eq!(events[0]["event"], "code_redeemed");
    assert_eq!((events[1]["event"].as_str(), events[1]["name"].as_str()), (Some("peer"), Some("bob")), "{events:?}");
    let redeemed = export.wait_for("code_redeemed", |e| e["event"] == "code_redeemed");
    assert_eq!(redeemed["verifier"], events[0]["verifier"]);
    let (rc, last) = export.finish();
    assert_eq!((rc, last["event"].as_str(), last["name"].as_str()), (0, Some("grant"), Some("bob")), "{last}");
    assert_eq!(last["revoked"], false);

    let downloads = b.dir.path().join("downloads");
    let mut listener = b.spawn(&["listen", "--download-dir", downloads.to_str().unwrap(), "--json"]);
    assert_eq!(listener.next_event(WAIT).unwrap()["event"], "inbox");
    let src = random_file(a.dir.path(), "pushed.bin", 1_500_000, 64);
    let mut pusher = a.spawn(&["send", src.to_str().unwrap(), "--to", "bob", "--json"]);
    let offered = pusher.next_event(WAIT).unwrap();
    assert_eq!((offered["event"].as_str(), offered["state"].as_str()), (Some("offered"), Some("accepted")));
    let (rc, last) = pusher.finish();
    assert_eq!((rc, last["event"].as_str()), (0, Some("completed")), "{last}");
    assert_same_file(&src, &downloads.join("pushed.bin"));
    listener.kill9();
}

#[test]
fn a_wrong_code_fails_both_sides_writes_nothing_and_uses_the_code_up() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "secret.bin", 200_000, 65);
    let mut sender = spawn_with(&a, &url, &["send", src.to_str().unwrap(), "--code", "--json"]);
    let code = code_of(&mut sender, "transfer", &url);
    let out = b.out();
    let (rc, events, _) = run_with(&b, &url, &["receive", &wrong(&code), "-o", out.to_str().unwrap(), "--json"]);
    assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_wrong")), "{events:?}");
    assert!(last_error(&events)["hint"].as_str().unwrap().contains("--code"), "{events:?}");
    let (rc, last) = sender.finish();
    assert_eq!((rc, last["code"].as_str()), (3, Some("code_wrong")), "the sender sees it too: {last}");
    assert!(!out.exists(), "nothing written");
    assert!(statuses(&b).is_empty(), "no transfer recorded on the receiver");
    let sent = statuses(&a);
    assert_eq!((sent[0]["state"].as_str(), sent[0]["error"]["code"].as_str()), (Some("failed"), Some("code_wrong")));
    // One try per code: the right words now come too late.
    let (rc, events, _) = run_with(&b, &url, &["receive", &code, "-o", out.to_str().unwrap(), "--json"]);
    assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_used")), "{events:?}");
    assert!(!out.exists());

    // Pairing: no peer stored, and the grant nobody got is revoked.
    let mut export = spawn_with(&b, &url, &["export", "--code", "--json"]);
    let code = code_of(&mut export, "pair", &url);
    let (rc, events, _) = run_with(&a, &url, &["peers", "add", &wrong(&code), "--json"]);
    assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_wrong")), "{events:?}");
    let (rc, last) = export.finish();
    assert_eq!((rc, last["code"].as_str()), (3, Some("code_wrong")), "{last}");
    assert!(a.run(&["peers", "list", "--json"]).1.is_empty(), "no peer stored");
    let grants = b.run(&["grants", "list", "--json"]).1;
    assert_eq!((grants.len(), grants[0]["revoked"].as_bool()), (1, Some(true)), "{grants:?}");
    // A code for pairing does not fetch a file, nor the reverse: the purpose is bound.
    let mut export = spawn_with(&b, &url, &["export", "--code", "--json"]);
    let code = code_of(&mut export, "pair", &url);
    let (rc, events, _) = run_with(&a, &url, &["receive", &code, "-o", out.to_str().unwrap(), "--json"]);
    assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_wrong")), "{events:?}");
    assert_eq!(export.finish().1["code"], "code_wrong");
}

#[test]
fn replayed_unknown_and_expired_codes_are_refused() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "once.bin", 100_000, 66);
    let mut sender = spawn_with(&a, &url, &["send", src.to_str().unwrap(), "--code", "--json"]);
    let code = code_of(&mut sender, "transfer", &url);
    let out = b.out();
    assert_eq!(run_with(&b, &url, &["receive", &code, "-o", out.to_str().unwrap(), "--json"]).0, 0);
    assert_eq!(sender.finish().0, 0);
    // Replayed: by the same receiver, by another, and after a new code took the next number.
    let c = Node::new();
    let mut sender = spawn_with(&a, &url, &["send", src.to_str().unwrap(), "--code", "--json"]);
    let fresh = code_of(&mut sender, "transfer", &url);
    assert_ne!(fresh.split('-').next(), code.split('-').next(), "a used number is not handed out again at once");
    for node in [&b, &c] {
        let (rc, events, _) = run_with(node, &url, &["receive", &code, "-o", node.out().to_str().unwrap(), "--json"]);
        assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_used")), "{events:?}");
    }
    assert!(!c.out().exists());
    // The fresh code is untouched by the replays.
    assert_eq!(run_with(&c, &url, &["receive", &fresh, "-o", c.out().to_str().unwrap(), "--json"]).0, 0);
    assert_eq!(sender.finish().0, 0);
    // A number nobody holds, and a malformed code (refused before the relay is asked).
    let (rc, events, _) = run_with(&c, &url, &["receive", "4242-acid-acorn-acre", "--json"]);
    assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_unknown")), "{events:?}");
    let (rc, events, _) = run_with(&c, &url, &["receive", "7-acid-acorm-acre", "--json"]);
    assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_malformed")), "{events:?}");
    assert!(last_error(&events)["message"].as_str().unwrap().contains("acorm"));

    // Codes expire: a relay whose codes live two seconds.
    let home = Node::new();
    let mut relay = Running::new_public(
        home.command(&["relay", "--listen", "127.0.0.1:0", "--code-ttl", "2", "--json"]).spawn().unwrap(),
    );
    let short = relay.next_event(WAIT).unwrap()["url"].as_str().unwrap().to_owned();
    let mut export = spawn_with(&b, &short, &["export", "--code", "--json"]);
    let code = export.wait_for("the code", |e| e["event"] == "code")["code"].as_str().unwrap().to_owned();
    let (rc, last) = export.finish();
    assert_eq!((rc, last["code"].as_str()), (3, Some("code_expired")), "{last}");
    let (rc, events, _) = run_with(&a, &short, &["peers", "add", &code, "--json"]);
    assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_expired")), "{events:?}");
    let mut sender = spawn_with(&a, &short, &["send", src.to_str().unwrap(), "--code", "--json"]);
    sender.wait_for("the code", |e| e["event"] == "code");
    let (rc, last) = sender.finish();
    assert_eq!((rc, last["code"].as_str()), (3, Some("code_expired")), "a send by code ends with it: {last}");
}

#[test]
fn a_code_waits_longer_than_the_relays_idle_timeout() {
    // The relay drops a client that says nothing for 3 s; a code's connection answers pings.
    let home = Node::new();
    let mut relay = Running::new_public(
        home.command(&["relay", "--listen", "127.0.0.1:0", "--idle-timeout", "3", "--json"]).spawn().unwrap(),
    );
    let url = relay.next_event(WAIT).unwrap()["url"].as_str().unwrap().to_owned();
    let (a, b) = (Node::new(), Node::new());
    let mut export = spawn_with(&b, &url, &["export", "--code", "--name", "bob", "--json"]);
    let code = code_of(&mut export, "pair", &url);
    std::thread::sleep(Duration::from_secs(5));
    let (rc, events, stderr) = run_with(&a, &url, &["peers", "add", &code, "--json"]);
    assert_eq!(rc, 0, "{events:?} {stderr}");
    assert_eq!(export.finish().0, 0);
}

#[test]
fn without_a_relay_codes_say_which_flag_and_variable_to_set() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "f.bin", 1000, 67);
    let shared = tempfile::tempdir().unwrap();
    let folder = format!("folder:{}", shared.path().display());
    let cases: [(&Node, Vec<&str>); 4] = [
        (&a, vec!["send", src.to_str().unwrap(), "--code", "--json"]),
        (&b, vec!["receive", "7-acid-acorn-acre", "--json"]),
        (&b, vec!["export", "--code", "--json"]),
        (&a, vec!["peers", "add", "7-acid-acorn-acre", "--json"]),
    ];
    for (node, args) in &cases {
        let (rc, events, _) = node.run(args);
        let error = last_error(&events);
        assert_eq!((rc, error["code"].as_str()), (3, Some("code_needs_relay")), "{args:?}: {events:?}");
        let (message, hint) = (error["message"].as_str().unwrap(), error["hint"].as_str().unwrap());
        assert!(
            message.contains("--relay") && hint.contains("--relay") && hint.contains("AGENTFERRY_RELAY"),
            "{error}"
        );
        // A shared folder is a channel, but codes need a relay server.
        let (rc, events, _) = run_with(node, &folder, args);
        assert_eq!((rc, last_error(&events)["code"].as_str()), (3, Some("code_needs_relay")), "{events:?}");
    }
    assert!(statuses(&a).is_empty(), "no transfer started");
    assert!(b.run(&["grants", "list", "--json"]).1.is_empty(), "no grant minted");
}

#[test]
fn a_flood_of_claims_is_bounded_and_refused_and_honest_users_are_still_served() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let addr: std::net::SocketAddr = url.trim_start_matches("ws://").parse().unwrap();
    let endpoint = format!("{url}/v1/relay");
    // 300 guesses from one source, on one connection, as fast as the answers come (the relay
    // drops answers a client does not read, as it drops its other refusals).
    let stream = attack::connect_from([127, 0, 0, 2], addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut ws, _) = client(&endpoint, stream).unwrap();
    const GUESSES: u32 = 300;
    let mut refusals = std::collections::BTreeMap::<u8, u32>::new();
    for n in 0..GUESSES {
        let mut claim = vec![0x06];
        claim.extend_from_slice(&(1000 + n).to_be_bytes());
        ws.send(Message::Binary(claim.into())).unwrap();
        match ws.read().unwrap() {
            Message::Binary(m) if m.len() == 2 && m[0] == 0x88 => *refusals.entry(m[1]).or_default() += 1,
            other => panic!("every claim is refused: {other:?}"),
        }
    }
    let (unknown, limited) = (refusals.get(&5).copied().unwrap_or(0), refusals.get(&8).copied().unwrap_or(0));
    assert_eq!(unknown + limited, GUESSES, "{refusals:?}");
    assert!((1..=12).contains(&unknown), "a burst of 10 guesses, then rate_limited: {refusals:?}");
    // Nameplates from another source, each on its own connection: bounded the same way.
    let mut allocated = 0;
    let mut held = Vec::new();
    for _ in 0..30 {
        let stream = attack::connect_from([127, 0, 0, 3], addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (mut ws, _) = client(&endpoint, stream).unwrap();
        ws.send(Message::Binary(vec![0x05].into())).unwrap();
        match ws.read().unwrap() {
            Message::Binary(m) if m[0] == 0x85 => allocated += 1,
            Message::Binary(m) if m[..] == [0x88, 8] => {}
            other => panic!("allocated or rate_limited: {other:?}"),
        }
        held.push(ws);
    }
    assert!((1..=12).contains(&allocated), "{allocated} nameplates for one source in a burst");
    let stats: Value = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap()
    };
    assert_eq!(stats["nameplates"], allocated, "{stats}");
    assert!(stats["nameplates_refused"].as_u64().unwrap() >= (GUESSES - 12) as u64, "{stats}");

    // Meanwhile an honest pair from 127.0.0.1 gets its code and uses it.
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "honest.bin", 500_000, 68);
    let mut sender = spawn_with(&a, &url, &["send", src.to_str().unwrap(), "--code", "--json"]);
    let code = code_of(&mut sender, "transfer", &url);
    let (rc, events, stderr) = run_with(&b, &url, &["receive", &code, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(rc, 0, "{events:?} {stderr}");
    assert_same_file(&src, &b.out().join("honest.bin"));
    assert_eq!(sender.finish().0, 0);
    drop(held);
}
