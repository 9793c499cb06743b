//! `agentferry mcp --http` against hostile and careless clients, with raw HTTP over real sockets:
//! the token is made once, private, and printed only then; a token from the environment replaces
//! it and a short one is refused; addresses other machines reach are refused without
//! `--allow-remote`; a flood of requests without the token, and an oversized body, leave the
//! server serving. The SDK clients (tests/mcp_js, tests/mcp_e2e) cover the tools over HTTP.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt,
    process::{Child, Stdio},
    sync::mpsc,
    time::Instant,
};

use common::{Node, WAIT};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// A running `mcp --http` server: the process, its address, the stderr lines before it and the
/// ones still to come.
struct Server {
    child: Child,
    addr: SocketAddr,
    before: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Stop the server; every stderr line it wrote after the endpoint.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut after = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            after.push(line);
        }
        after
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(node: &Node, token: Option<&str>, extra: &[&str]) -> Server {
    start_with(node, token, extra, "warn")
}

fn start_with(node: &Node, token: Option<&str>, extra: &[&str], log: &str) -> Server {
    let files = node.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut args = vec!["mcp", "--http", "127.0.0.1:0", "--root", files.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut cmd = node.command(&args);
    cmd.env("AGENTFERRY_INBOX_BIND", "127.0.0.1:0").env("AGENTFERRY_LOG", log).stdout(Stdio::null());
    match token {
        Some(t) => cmd.env("AGENTFERRY_MCP_TOKEN", t),
        None => cmd.env_remove("AGENTFERRY_MCP_TOKEN"),
    };
    let mut child = cmd.spawn().unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut before = Vec::new();
    loop {
        let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no endpoint printed ({e}); stderr so far: {before:?}");
            }
        };
        if let Some(url) = line.strip_prefix("agentferry: MCP over Streamable HTTP at http://") {
            let addr = url.strip_suffix("/mcp").expect("the endpoint is /mcp").parse().unwrap();
            return Server { child, addr, before, lines };
        }
        before.push(line);
    }
}

/// One request on its own connection; the status and the body.
fn request(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (401, 413) and close before taking the whole body.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text:?}"));
    (status, text)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn the_token_is_made_once_private_and_printed_only_then() {
    let node = Node::new();
    let first = start(&node, None, &[]);
    let file = node.home().join("mcp-token");
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(token.len() >= 40, "32 random bytes: {token:?}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        first.before.iter().any(|l| l.contains("shown once") && l.ends_with(&token)),
        "printed at the first start: {:?}",
        first.before
    );
    assert_eq!(request(first.addr, &[("Authorization", &bearer(&token))], INITIALIZE.as_bytes()).0, 200);
    drop(first);

    let second = start(&node, None, &[]);
    assert!(!second.before.iter().any(|l| l.contains(&token)), "not printed again: {:?}", second.before);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token, "the same token");
    let (status, body) = request(second.addr, &[("Authorization", &bearer(&token))], INITIALIZE.as_bytes());
    assert_eq!(status, 200, "{body}");
    assert!(body.to_ascii_lowercase().contains("mcp-session-id:"), "a session id: {body}");
}

#[test]
fn a_token_from_the_environment_replaces_the_file_and_a_short_one_is_refused() {
    let node = Node::new();
    let token = "an-agreed-token-for-this-test-only";
    let server = start_with(&node, Some(token), &[], "trace");
    assert!(!node.home().join("mcp-token").exists(), "no file is made");
    assert!(!server.before.iter().any(|l| l.contains(token)), "a given token is never printed");
    assert_eq!(request(server.addr, &[("Authorization", &bearer(token))], INITIALIZE.as_bytes()).0, 200);
    let (status, body) = request(
        server.addr,
        &[("Authorization", &bearer("an-agreed-token-for-this-test-onlY"))],
        INITIALIZE.as_bytes(),
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"unauthorized\"") && !body.contains(token), "{body}");
    let logs = server.stop();
    assert!(logs.iter().any(|l| l.contains("create new session")), "the log was written at all: {logs:?}");
    assert!(!logs.iter().any(|l| l.contains(token)), "the token is in no log line");

    let files = node.dir.path().join("files");
    let out = node
        .command(&["mcp", "--http", "127.0.0.1:0", "--root", files.to_str().unwrap()])
        .env("AGENTFERRY_MCP_TOKEN", "short")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid_argument") && stderr.contains("AGENTFERRY_MCP_TOKEN"), "{stderr}");
}

#[test]
fn addresses_other_machines_reach_need_allow_remote_and_http_needs_a_root() {
    let node = Node::new();
    let files = node.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let root = files.to_str().unwrap();
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.7:8765"] {
        let out = node.command(&["mcp", "--http", addr, "--root", root]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{addr}: {stderr}");
        assert!(stderr.contains("error[address_not_loopback]") && stderr.contains("--allow-remote"), "{stderr}");
    }
    assert!(!node.home().join("mcp-token").exists(), "refused before a token is made");
    let out = node.command(&["mcp", "--http", "127.0.0.1:0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error[invalid_argument]") && stderr.contains("--root"), "{stderr}");
    let out = node.command(&["mcp", "--allow-remote"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--allow-remote means nothing without --http");

    // Allowed explicitly: it serves, and a client may name the machine as it reaches it.
    let server = start(&node, Some("a-token-long-enough-for-remote"), &["--allow-remote"]);
    let (status, body) = request(
        server.addr,
        &[("Authorization", "Bearer a-token-long-enough-for-remote"), ("Host", "ferry.example:8765")],
        INITIALIZE.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_flood_without_the_token_and_an_oversized_body_leave_the_server_serving() {
    let node = Node::new();
    let token = "flood-test-token-0123456789";
    let server = start(&node, Some(token), &[]);
    let addr = server.addr;
    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                for n in 0..50 {
                    let wrong = format!("Bearer guess-{i}-{n}");
                    let headers: &[(&str, &str)] = if n % 2 == 0 { &[] } else { &[("Authorization", &wrong)] };
                    let (status, body) = request(addr, headers, INITIALIZE.as_bytes());
                    assert_eq!(status, 401, "{body}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    println!("400 refused requests in {:?}", started.elapsed());

    // Larger than rmcp's 4 MiB limit: refused whole, authenticated or not.
    let big = vec![b' '; 5 << 20];
    assert_eq!(request(addr, &[], &big).0, 401);
    assert_eq!(request(addr, &[("Authorization", &bearer(token))], &big).0, 413);

    let (status, body) = request(addr, &[("Authorization", &bearer(token))], INITIALIZE.as_bytes());
    assert_eq!(status, 200, "still serving: {body}");
    assert!(body.contains("\"serverInfo\""), "{body}");

    // Without --allow-remote, a Host that is not this machine is a DNS rebinding: refused.
    let (status, body) =
        request(addr, &[("Authorization", &bearer(token)), ("Host", "attacker.example")], INITIALIZE.as_bytes());
    assert_eq!(status, 403, "{body}");
}
