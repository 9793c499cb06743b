//! A client that only probes (`server/discover`, then EOF, as hosts do to learn what a server
//! speaks) gets its answer, and the server exits 0 without an error: run against the real
//! binary over its stdin and stdout.

mod common;

use std::{
    io::{Read, Write},
    process::Stdio,
};

use common::Node;
use serde_json::{Value, json};

#[test]
fn a_probe_is_answered_and_the_server_exits_cleanly() {
    let node = Node::new();
    let root = node.dir.path().join("files");
    std::fs::create_dir_all(&root).unwrap();
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "0"}}}});
    for probe in [format!("{discover}\n"), String::new()] {
        let mut child = node
            .command(&["mcp", "--root", root.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(probe.as_bytes()).unwrap(); // and closed
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "a probe ended the server with {status}: {stderr}");
        assert!(!stderr.contains("error"), "a probe is not an error: {stderr}");
        if !probe.is_empty() {
            let answer: Value = serde_json::from_str(stdout.lines().next().expect("an answer")).unwrap();
            assert_eq!(answer["id"], 1, "{answer}");
            assert!(
                answer["result"]["supportedVersions"].as_array().unwrap().contains(&json!("2026-07-28")),
                "{answer}"
            );
        }
    }
}
