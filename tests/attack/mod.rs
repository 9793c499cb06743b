//! Helpers for tests that attack the real binary: a hostile sender that speaks just enough of
//! the HTTP path, tickets that declare whatever the attacker likes, and a way to point the
//! tests at another build (`AGENTFERRY_TEST_BIN`) to show that they fail without the fixes.

#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use agentferry::{
    Ticket,
    crypto::SessionKey,
    frame::{FrameKind, Sealer},
    id::TransferId,
    manifest::Manifest,
};

use crate::common::{BIN, Node};

/// The binary under attack: this build's, unless `AGENTFERRY_TEST_BIN` names another.
pub fn bin() -> String {
    std::env::var("AGENTFERRY_TEST_BIN").unwrap_or_else(|_| BIN.to_owned())
}

/// Like [`Node::command`], for [`bin`].
pub fn command(node: &Node, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("AGENTFERRY_HOME", node.home())
        .env("AGENTFERRY_BIND", "127.0.0.1:0")
        .env("AGENTFERRY_PEER_TIMEOUT", "5")
        .env_remove("AGENTFERRY_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Run to the end: (exit code, JSON events, stderr).
pub fn run(node: &Node, args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let out = command(node, args).output().unwrap();
    let events = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.code().unwrap_or(-1), events, String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A sender that answers every request on the HTTP path with an authentic manifest declaring
/// `size` bytes in chunks of `chunk_size`, and never sends a chunk. Runs until the test ends.
pub struct HostileSender {
    pub ticket: Ticket,
}

impl HostileSender {
    pub fn start(name: &str, size: u64, chunk_size: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let ticket = Ticket {
            transfer_id: TransferId::random(),
            session_key: SessionKey::generate(),
            expires_at: unix_now() + 3600,
            size,
            chunk_size,
            name: name.into(),
            addrs: vec![addr],
            channel: None,
            folder: false,
            mode: None,
        };
        let manifest = Manifest { name: name.into(), size, chunk_size, sha256: None };
        let mut sealer = Sealer::new(&ticket.session_key, ticket.transfer_id, [7; 16]);
        let body = sealer.seal_bytes(FrameKind::Manifest, 0, &serde_json::to_vec(&manifest).unwrap()).to_vec();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let body = body.clone();
                std::thread::spawn(move || serve(stream, &body));
            }
        });
        HostileSender { ticket }
    }
}

fn serve(mut stream: TcpStream, body: &[u8]) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// `POST /v1/inbox` with `body` to `addr`: (status, JSON answer).
pub fn post_offer(addr: SocketAddr, body: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "POST /v1/inbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let json = answer.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or_default();
    (status, json)
}

/// A TCP connection to `addr` from the loopback address `from` (any of 127.0.0.0/8), so that a
/// flood comes from another source than the honest clients on 127.0.0.1.
pub fn connect_from(from: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((from, 0)))?;
        let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stream.into_std()
    })
    .and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

/// The real binary's MCP server over stdio, for attacks through its tools.
pub struct McpBinary {
    stdin: std::process::ChildStdin,
    server: crate::common::Running,
    next_id: u64,
}

impl McpBinary {
    /// `agentferry mcp --root ROOT` for `node`, initialised.
    pub fn start(node: &Node, root: &Path) -> McpBinary {
        let mut cmd = command(node, &["mcp", "--root", root.to_str().unwrap()]);
        cmd.env("AGENTFERRY_INBOX_BIND", "127.0.0.1:0").env("AGENTFERRY_PEER_TIMEOUT", "30");
        let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut mcp = McpBinary { stdin, server: crate::common::Running::new_public(child), next_id: 1 };
        mcp.request(
            "initialize",
            serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
        );
        mcp.say(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        mcp
    }

    fn say(&mut self, v: &serde_json::Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).unwrap();
    }

    fn request(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        self.say(&serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.server.wait_for("the answer", |v| v["id"] == id)
    }

    /// Call `tool`: (is it an error, the structured result or the error's JSON).
    pub fn call(&mut self, tool: &str, args: serde_json::Value) -> (bool, serde_json::Value) {
        let answer = self.request("tools/call", serde_json::json!({"name": tool, "arguments": args}));
        let result = &answer["result"];
        if result["isError"] == true {
            (true, serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap())
        } else {
            (false, result["structuredContent"].clone())
        }
    }

    /// End input and wait for a clean exit.
    pub fn finish(self) -> i32 {
        drop(self.stdin);
        self.server.finish().0
    }
}

/// `b` exports a grant and revokes it, then listens: an inbox whose offers under that grant are
/// authentic but may only be held. Returns the grant, the listener and the inbox address.
pub fn listening_under_a_revoked_grant(b: &Node) -> (agentferry::peers::GrantUri, crate::common::Running, SocketAddr) {
    let (_, exported, _) = run(b, &["export", "--name", "bob", "--json"]);
    let uri = exported[0]["uri"].as_str().unwrap().parse().unwrap();
    let grant_id = exported[0]["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(run(b, &["grants", "revoke", &grant_id, "--json"]).0, 0);

    let mut listen = command(b, &["listen", "--json"]);
    listen.env("AGENTFERRY_INBOX_BIND", "127.0.0.1:0").env("AGENTFERRY_DOWNLOAD_DIR", b.out());
    let mut listener = crate::common::Running::new_public(listen.spawn().unwrap());
    let inbox = listener.wait_for("the inbox", |e| e["event"] == "inbox");
    let addr = inbox["addrs"][0].as_str().unwrap().parse().unwrap();
    (uri, listener, addr)
}

/// A TCP proxy in front of a sender that holds the sender's bytes once `pause_at` of them have
/// passed (over all connections), until released: a transfer stopped at a known point, for an
/// attacker to act while the receiver waits.
pub struct PausingProxy {
    pub addr: SocketAddr,
    gate: std::sync::Arc<(std::sync::Mutex<Gate>, std::sync::Condvar)>,
}

#[derive(Default)]
struct Gate {
    passed: usize,
    holding: bool,
    released: bool,
}

impl PausingProxy {
    pub fn start(upstream: SocketAddr, pause_at: usize) -> PausingProxy {
        use std::sync::{Arc, Condvar, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new((Mutex::new(Gate::default()), Condvar::new()));
        let shared = Arc::clone(&gate);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write, gate) = (server, client, Arc::clone(&shared));
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let (lock, cv) = &*gate;
                        let mut g = lock.lock().unwrap();
                        while g.passed >= pause_at && !g.released {
                            g.holding = true;
                            cv.notify_all();
                            g = cv.wait(g).unwrap();
                        }
                        g.passed += n;
                        drop(g);
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        PausingProxy { addr, gate }
    }

    /// Wait until the sender's bytes are held (panics after a minute).
    pub fn wait_held(&self) {
        let (lock, cv) = &*self.gate;
        let (g, timeout) =
            cv.wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(60), |g| !g.holding).unwrap();
        assert!(!timeout.timed_out(), "the transfer never reached the pause ({} bytes passed)", g.passed);
    }

    /// Let everything through from now on.
    pub fn release(&self) {
        let (lock, cv) = &*self.gate;
        lock.lock().unwrap().released = true;
        cv.notify_all();
    }
}

/// `ticket` with its addresses replaced by `addr`.
pub fn via(ticket: &str, addr: SocketAddr) -> String {
    let mut t: Ticket = ticket.parse().unwrap();
    t.addrs = vec![addr];
    t.to_string()
}

/// Put `path`'s modification time back to `mtime` after a rewrite.
pub fn set_mtime(path: &Path, mtime: SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
}
