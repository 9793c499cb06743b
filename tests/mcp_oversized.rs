//! A request line over the 16 MiB limit gets a JSON-RPC error with its id, and the server
//! keeps answering: run against the real binary over its stdin and stdout.

mod common;

use std::{io::Write, process::Stdio, time::Duration};

use common::{Node, Running};
use serde_json::{Value, json};

const LIMIT: usize = 16 * 1024 * 1024;

fn line(v: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(v).unwrap();
    bytes.push(b'\n');
    bytes
}

/// The next message that is an answer (has an id), skipping notifications.
fn answer(server: &mut Running) -> Value {
    loop {
        let v = server.next_event(Duration::from_secs(30)).expect("the server is still answering");
        if v.get("id").is_some() {
            return v;
        }
    }
}

#[test]
fn an_oversized_request_is_answered_with_its_id_and_the_server_lives_on() {
    let node = Node::new();
    let root = node.dir.path().join("files");
    std::fs::create_dir_all(&root).unwrap();
    let mut cmd = node.command(&["mcp", "--root", root.to_str().unwrap()]);
    let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut server = Running::new_public(child);

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    stdin.write_all(&line(&init)).unwrap();
    assert_eq!(answer(&mut server)["id"], 1);
    stdin.write_all(&line(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))).unwrap();

    let padding = "x".repeat(LIMIT + 1024);
    // The id first (as the Python SDK writes it) and last (as the TypeScript SDK does).
    let first = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"send_file","arguments":{{"path":"{padding}"}}}}}}"#
    );
    let last = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"send_file","arguments":{{"path":"{padding}"}}}},"id":"eight"}}"#
    );
    for (request, id) in [(first, json!(7)), (last, json!("eight"))] {
        stdin.write_all(request.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        let refused = answer(&mut server);
        assert_eq!(refused["id"], id, "{refused}");
        assert_eq!(refused["error"]["code"], -32600, "{refused}");
        assert_eq!(refused["error"]["data"]["code"], "request_too_large", "{refused}");
    }

    // Still serving, and a request just under the limit still passes through.
    stdin.write_all(&line(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))).unwrap();
    let tools = answer(&mut server);
    assert_eq!(tools["id"], 9);
    assert!(tools["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{tools}");
    let near = "y".repeat(LIMIT - 200);
    let request = json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
        "params": {"name": "check_session", "arguments": {"transfer_id": near}}});
    stdin.write_all(&line(&request)).unwrap();
    let served = answer(&mut server);
    assert_eq!(served["id"], 10, "a line under the limit reaches the server");
    assert!(served.get("result").is_some(), "{}", &served.to_string()[..200.min(served.to_string().len())]);

    drop(stdin); // end of input: the server exits cleanly
    let (code, _) = server.finish();
    assert_eq!(code, 0);
}
