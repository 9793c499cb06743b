//! Issue 9, items 8 and 9: secrets stay out of places other local users or logs can see.

mod attack;
mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::Stdio,
    time::{Duration, Instant},
};

use attack::*;
use common::*;
use serde_json::{Value, json};

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).replace('\0', " ")
}

/// `receive -` reads the ticket from standard input, so `/proc/PID/cmdline` (readable by every
/// local user for the whole transfer) never holds it.
#[test]
fn receive_reads_the_ticket_from_standard_input() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "s.bin", 200_000, 81);
    let (sender, ticket, _) = a.send(&src, &[]);
    let mut cmd = command(&b, &["receive", "-", "-o", b.out().to_str().unwrap(), "--json"]);
    let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
    let seen = cmdline(child.id());
    writeln!(child.stdin.take().unwrap(), "{ticket}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!seen.contains(&ticket[..20]), "the ticket is in argv: {seen}");
    assert_same_file(&src, &b.out().join("s.bin"));
    assert_eq!(sender.finish().0, 0);
}

/// `AGENTFERRY_TICKET` works too (`/proc/PID/environ` is readable only by the same user).
#[test]
fn receive_takes_the_ticket_from_the_environment() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "e.bin", 100_000, 82);
    let (sender, ticket, _) = a.send(&src, &[]);
    let out = command(&b, &["receive", "-o", b.out().to_str().unwrap(), "--json"])
        .env("AGENTFERRY_TICKET", &ticket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_same_file(&src, &b.out().join("e.bin"));
    assert_eq!(sender.finish().0, 0);
    // `--help` names the variable but never shows its value.
    let help = command(&b, &["receive", "--help"]).env("AGENTFERRY_TICKET", &ticket).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("AGENTFERRY_TICKET") && !help.contains(&ticket[..20]), "{help}");
}

/// `peers add -` reads the grant URI from standard input; an empty input is a clear error.
#[test]
fn peers_add_reads_the_uri_from_standard_input() {
    let (a, b) = (Node::new(), Node::new());
    let (_, exported, _) = run(&b, &["export", "--name", "bob", "--json"]);
    let uri = exported[0]["uri"].as_str().unwrap().to_owned();
    let mut child = command(&a, &["peers", "add", "-", "--json"]).stdin(Stdio::piped()).spawn().unwrap();
    let seen = cmdline(child.id());
    writeln!(child.stdin.take().unwrap(), "{uri}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!seen.contains(&uri[..20]), "the URI is in argv: {seen}");
    let (_, listed, _) = run(&a, &["peers", "list", "--json"]);
    assert_eq!(listed[0]["name"], "bob");

    let mut child = command(&a, &["peers", "add", "-", "--json"]).stdin(Stdio::piped()).spawn().unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let event: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(event["code"], "invalid_argument");
}

/// With `AGENTFERRY_LOG=trace`, rmcp used to log whole tool calls and results: the ticket that
/// send_file returned and that receive_file was given reached stderr. Other crates are now
/// capped below the levels that carry them.
#[test]
fn tickets_never_reach_the_log_even_at_trace() {
    let node = Node::new();
    let files = node.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let file = random_file(&files, "m.bin", 10_000, 83);
    let mut cmd = command(&node, &["mcp", "--root", files.to_str().unwrap(), "--download-dir"]);
    cmd.arg(node.out()).env("AGENTFERRY_LOG", "trace").stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut call = |id: u64, method: &str, params: Value| -> Value {
        let msg = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        writeln!(stdin, "{msg}").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "the server closed stdout");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    call(
        1,
        "initialize",
        json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }),
    );
    let sent = call(2, "tools/call", json!({ "name": "send_file", "arguments": { "path": file } }));
    let ticket = sent["result"]["structuredContent"]["ticket"].as_str().unwrap().to_owned();
    let other = attack::HostileSender::start("x.bin", 10, 1 << 20).ticket.to_string();
    call(3, "tools/call", json!({ "name": "receive_file", "arguments": { "ticket": other } }));
    drop(stdin);
    let _ = child.wait();
    let log = log.join().unwrap();
    assert!(!log.is_empty(), "trace logging produced nothing at all");
    for secret in [&ticket, &other] {
        assert!(!log.contains(&secret[5..40]), "a ticket reached the log:\n{}", &log[..log.len().min(4000)]);
    }
}
