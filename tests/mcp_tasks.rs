//! MCP tasks driven by rmcp's own client, which speaks the tasks extension: `receive_file`,
//! push-mode `send_file` and `resume_transfer` answer with a task, `tasks/get` shows progress
//! and the final result, and `tasks/cancel` stops the transfer so that it can be resumed.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use agentferry::{Node, engine::advertised_addrs};
use rmcp::{
    RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities, ClientConfig,
        GetTaskParams, Implementation, RequestMetaObject, TaskPayload, TaskStatus, object,
    },
    service::RunningService,
};
use serde_json::{Value, json};

/// One node with an MCP server and a client that declares the tasks extension (for the session,
/// and in each request's `_meta` unless told otherwise).
struct Side {
    dir: PathBuf,
    node: Node,
    client: RunningService<RoleClient, ClientConfig>,
}

impl Side {
    async fn start(base: &Path, name: &str) -> Side {
        let (dir, node, client_io) = common::mcp_server::start(base, name, Some(Duration::from_secs(60))).await;
        let info = ClientConfig::new(
            ClientCapabilities::builder().enable_tasks().build(),
            Implementation::new("agentferry-tasks-test", "0"),
        );
        let client = info.serve(client_io).await.unwrap();
        Side { dir, node, client }
    }

    fn file(&self, name: &str, size: usize) -> PathBuf {
        common::mcp_server::file(&self.dir, name, size)
    }

    /// Call a tool; `ask_for_task` declares the tasks extension in the request's `_meta`.
    async fn call_with(&self, tool: &'static str, args: Value, ask_for_task: bool) -> CallToolResponse {
        let mut params = CallToolRequestParams::new(tool).with_arguments(object(args));
        if ask_for_task {
            let mut meta = RequestMetaObject::default();
            meta.set_client_capabilities(ClientCapabilities::builder().enable_tasks().build());
            params.meta = Some(meta);
        }
        self.client.call_tool_once(params).await.unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    async fn call(&self, tool: &'static str, args: Value) -> CallToolResponse {
        self.call_with(tool, args, true).await
    }

    /// A call that must answer with a task; returns its id.
    async fn task(&self, tool: &'static str, args: Value) -> String {
        match self.call(tool, args).await {
            CallToolResponse::Task(created) => {
                assert_eq!(created.task.status, TaskStatus::Working);
                created.task.task_id
            }
            other => panic!("{tool}: expected a task, got {other:?}"),
        }
    }

    /// A call that must answer at once, successfully; returns its structured content.
    async fn now(&self, tool: &'static str, args: Value) -> Value {
        match self.call(tool, args).await {
            CallToolResponse::Complete(r) if r.is_error != Some(true) => r.structured_content.unwrap(),
            other => panic!("{tool}: expected a result, got {other:?}"),
        }
    }

    /// Poll `tasks/get` at the suggested interval until the task ends; returns the final
    /// payload and every status message seen on the way.
    async fn settle(&self, task_id: &str) -> (TaskPayload, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut messages = Vec::new();
        loop {
            let got = self.client.peer().get_task(GetTaskParams::new(task_id.to_owned())).await.unwrap().task;
            messages.extend(got.task.status_message.clone());
            if got.status().is_terminal() {
                return (got.payload, messages);
            }
            assert!(Instant::now() < deadline, "task {task_id} still {:?}; messages {messages:?}", got.status());
            tokio::time::sleep(Duration::from_millis(got.task.poll_interval_ms.unwrap_or(100).min(100))).await;
        }
    }
}

fn completed(payload: TaskPayload) -> CallToolResult {
    match payload {
        TaskPayload::Completed { result } => serde_json::from_value(Value::Object(result)).unwrap(),
        other => panic!("expected a completed task, got {other:?}"),
    }
}

#[tokio::test]
async fn receive_file_as_a_task_reports_progress_and_ends_with_the_saved_file() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let src = a.file("big.bin", 40_000_000);
    let sent = a.now("send_file", json!({ "path": "big.bin" })).await;
    assert!(sent["ticket"].is_string(), "ticket-mode send_file answers at once, even to a tasks client");

    let task = b.task("receive_file", json!({ "ticket": sent["ticket"] })).await;
    let (payload, messages) = b.settle(&task).await;
    let result = completed(payload);
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let status = result.structured_content.unwrap();
    assert_eq!(status["state"], "completed");
    assert_eq!(status["transfer_id"], sent["transfer_id"]);
    assert_eq!(std::fs::read(status["saved_to"].as_str().unwrap()).unwrap(), std::fs::read(&src).unwrap());
    assert!(messages.iter().all(|m| m.contains(" of 40000000 bytes")), "{messages:?}");
    assert!(messages.last().unwrap().starts_with("completed: 40000000 of 40000000"), "{messages:?}");
}

#[tokio::test]
async fn a_push_as_a_task_ends_when_the_peer_has_the_file() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let inbox = advertised_addrs(b.node.inbox_bind().unwrap());
    let uri = b.node.trust().export("bob", 3600, inbox, None).unwrap();
    b.now("list_peers", json!({})).await; // binds bob's inbox
    a.now("add_peer", json!({ "uri": uri.to_string() })).await;
    let src = a.file("pushed.bin", 2_000_000);

    let task = a.task("send_file", json!({ "path": "pushed.bin", "to": "bob" })).await;
    let result = completed(a.settle(&task).await.0);
    let sent = result.structured_content.expect("the send result");
    assert_eq!(sent["state"], "completed");
    assert_eq!(sent["peer"], "bob");
    assert!(sent["next"].as_str().unwrap().starts_with("done"), "{sent}");
    let saved = b.dir.join("downloads").join("pushed.bin");
    assert_eq!(std::fs::read(saved).unwrap(), std::fs::read(&src).unwrap());
}

#[tokio::test]
async fn cancelling_a_task_interrupts_the_transfer_and_resume_transfer_finishes_it() {
    let base = tempfile::tempdir().unwrap();
    let b = Side::start(base.path(), "bob").await;
    // The sender is a real CLI process, stopped before the receiver starts: bob's transfer
    // keeps retrying it, and the task stays working until cancelled.
    let sender = common::Node::new();
    let src = common::random_file(sender.dir.path(), "later.bin", 3_000_000, 7);
    let (running, ticket, id) = sender.send(&src, &[]);
    running.kill9();

    let task = b.task("receive_file", json!({ "ticket": ticket })).await;
    b.client.peer().cancel_task(CancelTaskParams::new(task.clone())).await.unwrap();
    assert!(matches!(b.settle(&task).await.0, TaskPayload::Cancelled));
    let report = b.now("check_session", json!({ "transfer_id": id, "wait": true, "timeout_seconds": 30 })).await;
    let status = &report["transfers"][0];
    assert_eq!(status["state"], "interrupted", "{report}");
    assert!(status["error"]["hint"].as_str().unwrap().contains(&format!("resume_transfer with transfer_id \"{id}\"")));

    // The sender comes back on the same port; resuming as a task completes the file.
    let mut resumed = sender.command(&["resume", &id, "--json"]);
    let resumed = common::Running::new_public(resumed.stdin(Stdio::null()).spawn().unwrap());
    let task = b.task("resume_transfer", json!({ "transfer_id": id })).await;
    let result = completed(b.settle(&task).await.0);
    let status = result.structured_content.expect("the final status");
    assert_eq!(status["state"], "completed", "{status}");
    common::assert_same_file(Path::new(status["saved_to"].as_str().unwrap()), &src);
    let (code, last) = resumed.finish();
    assert_eq!((code, &last["event"]), (0, &json!("completed")), "{last}");
}

#[tokio::test]
async fn a_request_that_does_not_ask_for_a_task_gets_the_status_at_once() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    a.file("now.bin", 1000);
    let sent = a.now("send_file", json!({ "path": "now.bin" })).await;
    // The session declared tasks (as the Inspector CLI does), this request did not.
    match b.call_with("receive_file", json!({ "ticket": sent["ticket"] }), false).await {
        CallToolResponse::Complete(r) => assert_eq!(r.structured_content.unwrap()["transfer_id"], sent["transfer_id"]),
        other => panic!("expected the status, got {other:?}"),
    }
}

#[tokio::test]
async fn a_push_to_a_peer_that_is_not_listening_waits_as_a_task_until_cancelled() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    // A grant that names an inbox address nobody listens on (bob's server never binds it:
    // the grant is minted behind its back, and it is not asked for anything).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let inbox = vec![closed.local_addr().unwrap()];
    drop(closed);
    let uri = b.node.trust().export("bob", 3600, inbox, None).unwrap();
    a.now("add_peer", json!({ "uri": uri.to_string() })).await;
    a.file("waits.bin", 1000);

    let task = a.task("send_file", json!({ "path": "waits.bin", "to": "bob" })).await;
    // Working, and the transfer says why: the peer is not listening yet.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let listed = a.now("check_session", json!({})).await;
        let queued = listed["transfers"].as_array().unwrap().iter().find(|t| t["held_because"].is_string()).cloned();
        if let Some(t) = queued {
            assert!(t["held_because"].as_str().unwrap().contains("bob is not listening yet"), "{t}");
            assert_eq!(t["state"], "active", "{t}");
            break t["transfer_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no queued push: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    a.client.peer().cancel_task(CancelTaskParams::new(task.clone())).await.unwrap();
    assert!(matches!(a.settle(&task).await.0, TaskPayload::Cancelled));
    let report = a.now("check_session", json!({ "transfer_id": id, "wait": true, "timeout_seconds": 30 })).await;
    assert_eq!(report["transfers"][0]["state"], "interrupted", "{report}");
}
