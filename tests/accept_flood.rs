//! Issue 9, item 3: floods of idle or half-sent connections, and running out of file
//! descriptors, leave a listener serving honest clients, with bounded logs and descriptors.
//!
//! Each attacked process runs under `ulimit -n 256` so that the flood exhausts its descriptors
//! with a few hundred loopback connections; the flood is bounded in count and time (the honest
//! client gets in once the idle connections time out after 10 s).

mod attack;
mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use agentferry::Ticket;
use attack::*;
use common::*;

const FLOOD: usize = 300;

/// A child that is killed when the test ends, whether it passes or panics.
struct Killed(Child);

impl std::ops::Deref for Killed {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `args` under a file descriptor limit of `fds` (soft and hard); stderr is counted.
fn spawn_limited(node: &Node, fds: u32, args: &[&str]) -> (Killed, Arc<AtomicUsize>) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\"")).arg(bin()).args(args);
    cmd.env("AGENTFERRY_HOME", node.home())
        .env("AGENTFERRY_BIND", "127.0.0.1:0")
        .env_remove("AGENTFERRY_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr_bytes = Arc::new(AtomicUsize::new(0));
    let (mut stderr, counter) = (child.stderr.take().unwrap(), Arc::clone(&stderr_bytes));
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n @ 1..) = stderr.read(&mut buf) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    });
    (Killed(child), stderr_bytes)
}

/// Open `n` connections to `addr` that then hold still: a third send nothing, a third half a
/// request head, a third one whole request (which the server answers) before going idle.
fn flood(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .enumerate()
        .map(|(i, mut s)| {
            let _ = match i % 3 {
                0 => Ok(()),
                1 => s.write_all(b"GET /v1/transfers/00 HTTP/1.1\r\nHost: x\r\n"),
                _ => s.write_all(b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n"),
            };
            s
        })
        .collect()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn kill(child: Killed) {
    drop(child);
}

/// 300 half-sent requests against a sender limited to 256 descriptors: the sender used to spin
/// on `accept failed: Too many open files` (gigabytes of log) and never serve the honest
/// receiver. Now it caps its connections, times the idle ones out and serves the receiver.
#[test]
fn a_sender_flooded_with_half_sent_requests_still_serves_an_honest_receiver() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "f.bin", 500_000, 31);
    let (mut sender, stderr_bytes) = spawn_limited(&a, 256, &["send", src.to_str().unwrap(), "--json"]);
    let mut stdout = BufReader::new(sender.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    let ticket_text = event["ticket"].as_str().unwrap().to_owned();
    let ticket: Ticket = ticket_text.parse().unwrap();
    let addr = ticket.addrs[0];

    let held = flood(addr, FLOOD);
    let started = Instant::now();
    let out = b.out();
    let mut receive = command(&b, &["receive", &ticket_text, "-o", out.to_str().unwrap(), "--json"]);
    receive.env("AGENTFERRY_PEER_TIMEOUT", "40");
    let result = receive.output().unwrap();
    let fds = open_fds(sender.id());
    let logged = stderr_bytes.load(Ordering::Relaxed);
    drop(held);
    kill(sender);
    assert_eq!(
        result.status.code(),
        Some(0),
        "the honest receive failed after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&result.stdout)
    );
    assert_same_file(&src, &out.join("f.bin"));
    assert!(logged < 16 * 1024, "the sender wrote {logged} bytes of log under the flood");
    assert!(fds < 200, "the sender holds {fds} descriptors");
}

/// The same flood against the relay: it keeps answering, and counts connections that were
/// never upgraded.
#[test]
fn a_relay_flooded_with_half_sent_requests_keeps_answering() {
    let node = Node::new();
    let (mut relay, stderr_bytes) = spawn_limited(&node, 256, &["relay", "--listen", "127.0.0.1:0", "--json"]);
    let mut stdout = BufReader::new(relay.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = event["url"].as_str().unwrap().to_owned();
    let addr: SocketAddr = url.trim_start_matches("ws://").parse().unwrap();

    let held = flood(addr, FLOOD);
    // The relay answers /v1/stats once the idle connections time out (10 s for the first byte
    // and the request head; after one request the relay closes).
    let deadline = Instant::now() + Duration::from_secs(40);
    let stats = loop {
        if let Some(stats) = get_stats(addr) {
            break stats;
        }
        assert!(Instant::now() < deadline, "the relay never answered under the flood");
        std::thread::sleep(Duration::from_millis(200));
    };
    let fds = open_fds(relay.id());
    let logged = stderr_bytes.load(Ordering::Relaxed);
    drop(held);
    kill(relay);
    assert!(stats["tcp_connections"].as_u64().unwrap() >= 1, "{stats}");
    assert!(logged < 16 * 1024, "the relay wrote {logged} bytes of log under the flood");
    assert!(fds < 200, "the relay holds {fds} descriptors");
}

fn get_stats(addr: SocketAddr) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let body = answer.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// The soft descriptor limit is raised to the hard one at start.
#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_limit() {
    let node = Node::new();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -Sn 100 && ulimit -Hn 4096 && exec \"$0\" \"$@\"")
        .arg(bin())
        .args(["relay", "--listen", "127.0.0.1:0", "--json"])
        .env("AGENTFERRY_HOME", node.home())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut relay = Killed(cmd.spawn().unwrap());
    // The relay prints its address once it listens, after start-up raised the limit.
    let mut line = String::new();
    BufReader::new(relay.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", relay.id())).unwrap();
    kill(relay);
    let row = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let numbers: Vec<&str> = row.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{row}");
}

/// Connections that never send a byte, or go idle after one request, are closed too (hyper's
/// header timeout, once it has a timer, also runs before the first byte and between keep-alive
/// requests); before, they held their slots and descriptors forever.
#[test]
fn silent_and_idle_keep_alive_connections_are_closed() {
    let a = Node::new();
    let src = random_file(a.dir.path(), "g.bin", 1000, 32);
    let mut sender = Running::new_public(command(&a, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let ticket = sender.wait_for("the ticket", |e| e["event"] == "ticket")["ticket"].as_str().unwrap().to_owned();
    let addr = ticket.parse::<Ticket>().unwrap().addrs[0];
    let started = Instant::now();
    let conns = flood(addr, 6);
    let closers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
                let mut sink = Vec::new();
                let closed = s.read_to_end(&mut sink).is_ok();
                (i % 3, closed, started.elapsed())
            })
        })
        .collect();
    for closer in closers {
        let (kind, closed, after) = closer.join().unwrap();
        let kind = ["silent", "half a head", "idle after a request"][kind];
        assert!(closed, "a {kind} connection was still open after {after:?}");
    }
    drop(sender);
}
