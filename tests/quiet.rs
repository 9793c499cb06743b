//! What the binary says besides its answers: progress at most ten times a second, logs
//! without colour codes when stderr is not a terminal, and no warning for the method probes
//! every MCP host makes.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Instant,
};

use common::{BIN, Node, random_file};
use serde_json::{Value, json};

#[test]
fn json_progress_comes_at_most_ten_times_a_second() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "big.bin", 48 * 1024 * 1024, 3);
    let (sender, ticket, _) = a.send(&src, &[]);
    let began = Instant::now();
    let (code, events, stderr) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    let elapsed = began.elapsed();
    assert_eq!(code, 0, "{stderr}");
    let progress: Vec<&Value> = events.iter().filter(|e| e["event"] == "progress").collect();
    let allowed = 2 + (elapsed.as_millis() / 100) as usize;
    assert!(!progress.is_empty());
    assert!(progress.len() <= allowed, "{} progress events in {elapsed:?}", progress.len());
    assert_eq!(events.last().unwrap()["event"], "completed");
    let (code, sent) = sender.finish();
    assert_eq!(code, 0, "{sent}");
}

/// An MCP session over the binary's stdio that initialises and then probes methods the server
/// does not offer, as hosts do; returns what the server wrote to stderr.
fn probing_session(log: Option<&str>) -> String {
    let node = Node::new();
    let mut command = Command::new(BIN);
    command
        .args(["mcp", "--root", node.dir.path().to_str().unwrap()])
        .env("AGENTFERRY_HOME", node.home())
        .env_remove("AGENTFERRY_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(log) = log {
        command.env("AGENTFERRY_LOG", log);
    }
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |message: Value| writeln!(stdin, "{message}").unwrap();
    let mut answer = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "probe", "version": "0" } } }));
    assert!(answer()["result"]["capabilities"]["tools"].is_object());
    send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    for (id, method) in [(2, "resources/list"), (3, "prompts/list"), (4, "resources/templates/list")] {
        send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": {} }));
        let reply = answer();
        assert_eq!(reply["id"], id, "{reply}");
    }
    drop(stdin); // EOF: the server ends
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn probing_methods_the_server_does_not_offer_logs_no_warning() {
    let stderr = probing_session(None);
    assert!(!stderr.contains("WARN"), "probes are not warnings: {stderr}");
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal() {
    let stderr = probing_session(Some("debug"));
    // Other crates stop at info (their debug lines carry tool arguments: tickets, grant URIs);
    // the session still logs.
    assert!(stderr.contains("INFO") && stderr.contains("rmcp::service"), "the session logged: {stderr}");
    assert!(!stderr.contains("DEBUG rmcp"), "rmcp's debug dumps stay out of the log: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI escape codes in logs to a pipe: {stderr:?}");
}
