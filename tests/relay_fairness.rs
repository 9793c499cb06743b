//! Issue 9, items 4 and 5: one client cannot take the relay's shared limits for itself, and
//! readers that never read cannot grow the relay's memory outside its accounting.

mod attack;
mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::Child,
    time::{Duration, Instant},
};

use agentferry::mailbox::MailboxKey;
use attack::*;
use common::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Message, WebSocket, connect, stream::MaybeTlsStream};

struct Relay {
    child: Child,
    url: String,
}

impl Relay {
    fn start(home: &Node) -> Relay {
        let mut child = command(home, &["relay", "--listen", "127.0.0.1:0", "--json"]).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = serde_json::from_str::<Value>(&line).unwrap()["url"].as_str().unwrap().to_owned();
        Relay { child, url }
    }

    fn stats(&self) -> Value {
        let mut s = TcpStream::connect(self.url.trim_start_matches("ws://")).unwrap();
        s.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn client(&self) -> WebSocket<MaybeTlsStream<TcpStream>> {
        connect(format!("{}/v1/relay", self.url)).unwrap().0
    }

    /// Wait until the relay's counters satisfy `done`.
    fn wait_stats(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "{what}: {stats}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_envelope(mailbox: &[u8; 32], payload: &[u8]) -> Message {
    let mut m = Vec::with_capacity(33 + payload.len());
    m.push(0x02);
    m.extend_from_slice(mailbox);
    m.extend_from_slice(payload);
    Message::Binary(m.into())
}

fn numbered(tag: u8, i: u32) -> [u8; 32] {
    let mut m = [tag; 32];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

/// An honest push of a small file through `relay`, relay path pinned on both sides.
fn honest_transfer_through(relay: &Relay) -> Result<(), String> {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "honest.bin", 600_000, 91);
    let mut send = command(&a, &["send", src.to_str().unwrap(), "--json"]);
    send.env("AGENTFERRY_RELAY", &relay.url).env("AGENTFERRY_PREFER", "relay");
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket = sender.wait_for("the ticket", |e| e["event"] == "ticket")["ticket"].as_str().unwrap().to_owned();
    let out = command(&b, &["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"])
        .env("AGENTFERRY_PREFER", "relay")
        .env("AGENTFERRY_PEER_TIMEOUT", "10")
        .output()
        .unwrap();
    if out.status.code() != Some(0) {
        return Err(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert_same_file(&src, &b.out().join("honest.bin"));
    Ok(())
}

/// One connection creating 100 000 mailboxes, another queueing 300 MiB: both used to take all
/// of the relay's mailboxes and queue space, and honest transfers then failed.
#[test]
fn one_client_cannot_take_all_mailboxes_or_all_queue_space() {
    let home = Node::new();
    let relay = Relay::start(&home);

    let mut boxes = relay.client();
    const MAILBOXES: u32 = 100_000;
    for i in 0..MAILBOXES {
        boxes.write(send_envelope(&numbered(1, i), b"x")).unwrap();
    }
    boxes.flush().unwrap();
    let stats = relay.wait_stats("the mailbox flood was not processed", |s| {
        s["mailboxes"].as_u64().unwrap() + s["refused"].as_u64().unwrap() >= MAILBOXES as u64
    });
    assert!(stats["mailboxes"].as_u64().unwrap() < 2000, "one connection created {}", stats["mailboxes"]);

    let before = relay.stats()["refused"].as_u64().unwrap();
    let mut bytes = relay.client();
    let big = vec![0u8; (1 << 20) - 64];
    for i in 0..300 {
        bytes.write(send_envelope(&numbered(2, i), &big)).unwrap();
    }
    bytes.flush().unwrap();
    let stats = relay.wait_stats("the byte flood was not processed", |s| {
        s["queued_bytes"].as_u64().unwrap() >= 250 << 20 || s["refused"].as_u64().unwrap() >= before + 200
    });
    assert!(stats["queued_bytes"].as_u64().unwrap() <= 40 << 20, "one connection queued {}", stats["queued_bytes"]);

    honest_transfer_through(&relay).expect("an honest transfer failed next to the floods");
    drop((boxes, bytes));
}

/// Ten subscribers that never read, each sent 40 MiB: the relay's memory used to grow by the
/// unaccounted per-connection outbound buffers (32 messages each) beyond what its stats showed.
#[test]
fn readers_that_never_read_stay_within_the_accounting() {
    let home = Node::new();
    let relay = Relay::start(&home);
    let baseline = relay.rss_kib();
    const READERS: u8 = 10;
    let mut readers = Vec::new();
    let mut pushers = Vec::new();
    for r in 0..READERS {
        let key = MailboxKey::from_bytes([0x40 + r; 32]);
        let mailbox = key.id();
        let mut reader = relay.client();
        // Subscribe with the key, and the unproven way older relays took (one is refused).
        for (tag, id) in [(0x04u8, *key.as_bytes()), (0x01, *mailbox.as_bytes())] {
            let mut subscribe = vec![tag];
            subscribe.extend_from_slice(&id);
            reader.send(Message::Binary(subscribe.into())).unwrap();
        }
        readers.push(reader); // never read again
        let mut pusher = relay.client();
        let payload = vec![r; (1 << 20) - 64];
        for _ in 0..40 {
            pusher.write(send_envelope(mailbox.as_bytes(), &payload)).unwrap();
        }
        pusher.flush().unwrap();
        pushers.push(pusher);
    }
    // Every SEND is either queued, handed to a writer, or refused.
    let total = READERS as u64 * 40;
    let stats = relay.wait_stats("the pushes were not processed", |s| {
        s["refused"].as_u64().unwrap()
            + s["relayed_messages"].as_u64().unwrap()
            + s["queued_messages"].as_u64().unwrap()
            >= total
    });
    std::thread::sleep(Duration::from_millis(500)); // let the writers fill their buffers
    let stats_after = relay.stats();
    let accounted = stats_after["queued_bytes"].as_u64().unwrap() + stats_after["outbound_bytes"].as_u64().unwrap_or(0);
    let grown = (relay.rss_kib().saturating_sub(baseline)) * 1024;
    assert!(
        grown <= accounted + (80 << 20),
        "the relay grew by {} MiB while its accounting shows {} MiB: {stats}",
        grown >> 20,
        accounted >> 20
    );
    drop((readers, pushers));
}
