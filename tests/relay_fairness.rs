//! Issue 9, items 4 and 5: one client cannot take the relay's shared limits for itself, and
//! readers that never read cannot grow the relay's memory outside its accounting. Issue 26,
//! item 3: neither can four source addresses together, nor one address when the descriptor
//! limit lowers the connection cap, nor WebSockets that fell silent.
//!
//! Attackers connect from other loopback addresses (127.0.0.2 and up) than the honest
//! transfer (127.0.0.1); every flood is bounded in count.

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
        Relay::start_with(command(home, &["relay", "--listen", "127.0.0.1:0", "--json"]))
    }

    /// A relay limited to `fds` file descriptors (soft and hard), with `args` added.
    fn start_limited(home: &Node, fds: u32, args: &[&str]) -> Relay {
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\"")).arg(bin());
        sh.args(["relay", "--listen", "127.0.0.1:0", "--json"]).args(args);
        sh.env("AGENTFERRY_HOME", home.home()).env_remove("AGENTFERRY_LOG");
        sh.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        Relay::start_with(sh)
    }

    fn start_with(mut cmd: std::process::Command) -> Relay {
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = serde_json::from_str::<Value>(&line).unwrap()["url"].as_str().unwrap().to_owned();
        Relay { child, url }
    }

    fn stats(&self) -> Value {
        self.try_stats().expect("the relay answers /v1/stats")
    }

    /// The counters, unless the relay has no room for one more connection.
    fn try_stats(&self) -> Option<Value> {
        let mut s = TcpStream::connect(self.url.trim_start_matches("ws://")).ok()?;
        s.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        serde_json::from_str(answer.split_once("\r\n\r\n")?.1).ok()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn client(&self) -> WebSocket<MaybeTlsStream<TcpStream>> {
        connect(format!("{}/v1/relay", self.url)).unwrap().0
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.url.trim_start_matches("ws://").parse().unwrap()
    }

    /// A WebSocket from the loopback address `from`, or why not.
    fn client_from(&self, from: [u8; 4]) -> Result<WebSocket<TcpStream>, String> {
        let stream = connect_from(from, self.addr()).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let ws = tokio_tungstenite::tungstenite::client(format!("{}/v1/relay", self.url), stream)
            .map_err(|e| e.to_string())?
            .0;
        Ok(ws)
    }

    /// Wait until the relay's counters satisfy `done`.
    fn wait_stats(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = self.try_stats().unwrap_or_default();
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

/// Four source addresses, each within its quarter, used to fill the whole mailbox table (and
/// newcomers got `too_many_mailboxes` for the 120 s TTL), or the whole queue. The last eighth
/// is now kept for sources that hold little, and a full table evicts the biggest holder's idle
/// mailboxes for them.
#[test]
fn four_addresses_cannot_take_all_mailboxes() {
    let home = Node::new();
    let relay = Relay::start(&home);
    const PER_CONNECTION: u32 = 1000;
    const CONNECTIONS: u32 = 30;
    let mut clients = Vec::new();
    for source in 2..=5u8 {
        for c in 0..CONNECTIONS {
            let mut ws = relay.client_from([127, 0, 0, source]).unwrap();
            for i in 0..PER_CONNECTION {
                ws.write(send_envelope(&numbered(source, c * PER_CONNECTION + i), b"x")).unwrap();
            }
            ws.flush().unwrap();
            clients.push(ws);
        }
    }
    let tried = 4 * (CONNECTIONS * PER_CONNECTION) as u64;
    let stats = relay.wait_stats("the mailbox floods were not processed", |s| {
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        n("mailboxes") + n("refused") + n("evicted") >= tried
    });
    assert!(stats["mailboxes"].as_u64().unwrap() >= 80_000, "the flood was weaker than meant: {stats}");
    honest_transfer_through(&relay).expect("an honest transfer failed next to four addresses' mailboxes");
    drop(clients);
}

#[test]
fn four_addresses_cannot_take_all_queue_space() {
    let home = Node::new();
    let relay = Relay::start(&home);
    let big = vec![0u8; (1 << 20) - 64];
    let mut clients = Vec::new();
    for source in 2..=5u8 {
        // Two connections per address: a connection may hold an eighth, an address a quarter.
        for c in 0..2u32 {
            let mut ws = relay.client_from([127, 0, 0, source]).unwrap();
            for i in 0..40 {
                ws.write(send_envelope(&numbered(source, c * 100 + i), &big)).unwrap();
            }
            ws.flush().unwrap();
            clients.push(ws);
        }
    }
    let stats = relay.wait_stats("the byte floods were not processed", |s| {
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        n("queued_messages") + n("refused") + n("evicted") >= 4 * 2 * 40
    });
    assert!(stats["queued_bytes"].as_u64().unwrap() >= 200 << 20, "the flood was weaker than meant: {stats}");
    honest_transfer_through(&relay).expect("an honest transfer failed next to four addresses' queues");
    drop(clients);
}

/// Under `ulimit -n 256` the relay takes 64 connections; one address's share used to be a
/// quarter of the configured 4096, so it could hold them all. It is now a quarter of 64.
#[test]
fn one_address_cannot_hold_every_connection_when_descriptors_are_scarce() {
    let home = Node::new();
    let relay = Relay::start_limited(&home, 256, &[]);
    let held: Vec<_> = (0..80).filter_map(|_| relay.client_from([127, 0, 0, 2]).ok()).collect();
    assert!(held.len() <= 16, "one address holds {} WebSockets", held.len());
    honest_transfer_through(&relay).expect("an honest transfer failed next to one address's connections");
    drop(held);
}

/// A WebSocket that goes silent (never reads, never answers a ping) used to hold its slot for
/// good. The relay pings every third of `--idle-timeout` and drops it after that long; a
/// client that reads (and so answers pings) stays connected however long it is idle.
#[test]
fn silent_websockets_are_dropped_and_live_ones_kept() {
    let home = Node::new();
    let relay = Relay::start_with({
        let mut cmd = command(&home, &["relay", "--listen", "127.0.0.1:0", "--json", "--idle-timeout", "3"]);
        cmd.stderr(std::process::Stdio::null());
        cmd
    });
    let silent = relay.client_from([127, 0, 0, 2]).unwrap();
    let mut live = relay.client_from([127, 0, 0, 3]).unwrap();
    live.get_mut().set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let started = Instant::now();
    // Read (and so answer pings) for three idle timeouts.
    while started.elapsed() < Duration::from_secs(9) {
        match live.read() {
            Ok(_) => {}
            Err(tokio_tungstenite::tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("the live client was dropped after {:?}: {e}", started.elapsed()),
        }
    }
    let stats = relay.wait_stats("the silent client was never dropped", |s| s["idle_dropped"].as_u64() == Some(1));
    assert_eq!(stats["connections"], 1, "{stats}");
    // The live one still works: it can subscribe and be refused nothing.
    live.send(Message::Binary(vec![0x04; 33].into())).unwrap();
    drop(silent);
}

/// Issue 26, item 4: a sender whose first connection to the relay is refused (the relay full
/// for a moment) used to stay off the relay for good. It now tries again with the path
/// selector's backoff, and a receiver pinned to the relay gets the file once the flood is over.
#[test]
fn a_sender_refused_by_a_full_relay_at_its_start_serves_on_it_later() {
    let home = Node::new();
    let relay = Relay::start_limited(&home, 256, &[]);
    // 64 connections fit under 256 descriptors; four addresses take them all.
    let flood: Vec<_> = (2..=5u8)
        .flat_map(|source| std::iter::repeat_n(source, 16))
        .filter_map(|source| relay.client_from([127, 0, 0, source]).ok())
        .collect();
    assert_eq!(flood.len(), 64, "the flood did not fill the relay");

    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "late.bin", 400_000, 92);
    let mut send = command(&a, &["send", src.to_str().unwrap(), "--json"]);
    send.env("AGENTFERRY_RELAY", &relay.url).env("AGENTFERRY_PREFER", "relay");
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket = sender.wait_for("the ticket", |e| e["event"] == "ticket")["ticket"].as_str().unwrap().to_owned();
    drop(flood);
    relay.wait_stats("the flood's connections did not close", |s| s["connections"].as_u64() <= Some(1));
    let out = command(&b, &["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"])
        .env("AGENTFERRY_PREFER", "relay")
        .env("AGENTFERRY_PEER_TIMEOUT", "15")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_same_file(&src, &b.out().join("late.bin"));
}
