//! Issue 9, item 6: a holder of a revoked grant cannot take over a node's inbox mailbox on the
//! relay, intercept pushes from other peers, or forge the answer to them.

mod attack;
mod common;

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use agentferry::peers::GrantUri;
use attack::*;
use common::*;
use tokio_tungstenite::tungstenite::{Message, connect};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn relay_mailboxes(url: &str) -> u64 {
    let addr = url.trim_start_matches("ws://");
    let Ok(mut s) = TcpStream::connect(addr) else { return 0 };
    use std::io::{Read, Write};
    let _ = s.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["mailboxes"].as_u64()).unwrap_or(0)
}

#[test]
fn a_revoked_grant_cannot_hijack_the_inbox_or_forge_an_acceptance() {
    let (a, b, relay_home) = (Node::new(), Node::new(), Node::new());
    let mut relay = command(&relay_home, &["relay", "--listen", "127.0.0.1:0", "--json"]).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(relay.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _relay = Killed(relay);
    let url = serde_json::from_str::<serde_json::Value>(&line).unwrap()["url"].as_str().unwrap().to_owned();
    let with_relay = |node: &Node, args: &[&str]| {
        let mut cmd = command(node, args);
        cmd.env("AGENTFERRY_RELAY", &url).env("AGENTFERRY_INBOX_BIND", "127.0.0.1:0");
        cmd
    };
    let export = |name: &str| -> (String, String) {
        let out = with_relay(&b, &["export", "--name", name, "--json"]).output().unwrap();
        let event: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (event["uri"].as_str().unwrap().to_owned(), event["grant_id"].as_str().unwrap().to_owned())
    };
    // bob trusted mallory once, then revoked the grant; alice's grant is live.
    let (for_alice, _) = export("bob");
    let (for_mallory, mallory_grant) = export("bob");
    assert_eq!(run(&b, &["grants", "revoke", &mallory_grant, "--json"]).0, 0);
    assert_eq!(run(&a, &["peers", "add", &for_alice, "--json"]).0, 0);

    let mut listen = with_relay(&b, &["listen", "--json"]);
    listen.env("AGENTFERRY_DOWNLOAD_DIR", b.out());
    let _listen = Killed(listen.spawn().unwrap());
    let deadline = Instant::now() + WAIT;
    while relay_mailboxes(&url) == 0 {
        assert!(Instant::now() < deadline, "bob never subscribed on the relay");
        std::thread::sleep(Duration::from_millis(50));
    }

    // mallory subscribes to the mailbox its revoked URI names, both ways a client can.
    let (_, mailbox) = for_mallory.parse::<GrantUri>().unwrap().channel.unwrap();
    let (mut ws, _) = connect(format!("{url}/v1/relay")).unwrap();
    for tag in [0x01u8, 0x04] {
        let mut subscribe = vec![tag];
        subscribe.extend_from_slice(mailbox.as_bytes());
        ws.send(Message::Binary(subscribe.into())).unwrap();
    }
    // Whatever reaches mallory is answered with a forged acceptance.
    let intercepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&intercepted);
    std::thread::spawn(move || {
        while let Ok(msg) = ws.read() {
            let Message::Binary(data) = msg else { continue };
            if data.len() < 33 || data[0] != 0x81 {
                continue;
            }
            seen.fetch_add(1, Ordering::Relaxed);
            let Ok(delivery) = serde_json::from_slice::<serde_json::Value>(&data[33..]) else { continue };
            let Some(reply) =
                delivery["reply"].as_str().and_then(|r| data_encoding::HEXLOWER.decode(r.as_bytes()).ok())
            else {
                continue;
            };
            let mut forged = vec![0x02];
            forged.extend_from_slice(&reply);
            forged.extend_from_slice(br#"{"state":"accepted","transfer_id":"00000000000000000000000000000000"}"#);
            let _ = ws.send(Message::Binary(forged.into()));
        }
    });
    std::thread::sleep(Duration::from_millis(300)); // let mallory's subscriptions land first

    let src = random_file(a.dir.path(), "for-bob.bin", 300_000, 61);
    let mut push = with_relay(&a, &["send", src.to_str().unwrap(), "--to", "bob", "--json"]);
    push.env("AGENTFERRY_PREFER", "relay");
    let mut pusher = Running::new_public(push.spawn().unwrap());
    let offered = pusher.wait_for("the offer's answer", |e| e["event"] == "offered" || e["event"] == "error");
    assert_eq!(offered["state"], "accepted", "{offered}");
    let arrived = b.out().join("for-bob.bin");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !arrived.exists() {
        assert!(
            Instant::now() < deadline,
            "alice was told `accepted` but nothing arrived at bob (mallory intercepted {} messages)",
            intercepted.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_same_file(&src, &arrived);
    assert_eq!(intercepted.load(Ordering::Relaxed), 0, "mallory read bob's mailbox");
}
