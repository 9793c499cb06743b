//! The MCP server driven in-process by rmcp's own client over a duplex pipe: two servers with
//! separate homes move real files over loopback between them.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use agentferry::{Node, engine::advertised_addrs};
use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{CallToolRequestParams, ProgressNotificationParam, object},
    service::{NotificationContext, RunningService},
};
use serde_json::{Value, json};

#[allow(deprecated)] // logging: see `agentferry::mcp::arrivals`
use rmcp::model::LoggingMessageNotificationParam;

#[derive(Clone, Default)]
struct Client {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    /// The data of each `notifications/message`, and a count of resource list changes.
    messages: Arc<Mutex<Vec<Value>>>,
    resource_list_changes: Arc<Mutex<usize>>,
    told: Arc<tokio::sync::Notify>,
}

impl ClientHandler for Client {
    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(p);
    }

    #[allow(deprecated)]
    async fn on_logging_message(&self, m: LoggingMessageNotificationParam, _: NotificationContext<RoleClient>) {
        self.messages.lock().unwrap().push(m.data);
        self.told.notify_one();
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        *self.resource_list_changes.lock().unwrap() += 1;
        self.told.notify_one();
    }
}

impl Client {
    /// The first message about `transfer_id`, and resource list changes by then; waits for both.
    async fn told_about(&self, transfer_id: &str) -> (Value, usize) {
        let found = || {
            let message = self.messages.lock().unwrap().iter().find(|m| m["transfer_id"] == transfer_id).cloned();
            let changes = *self.resource_list_changes.lock().unwrap();
            message.filter(|_| changes > 0).map(|m| (m, changes))
        };
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let told = self.told.notified();
                if let Some(found) = found() {
                    return found;
                }
                told.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no notification about {transfer_id}: {:?}", self.messages.lock().unwrap()))
    }
}

/// One node with an MCP server: `files/` is its root, `downloads/` its download folder.
struct Side {
    dir: PathBuf,
    node: Node,
    client: RunningService<RoleClient, Client>,
}

impl Side {
    async fn start(base: &Path, name: &str) -> Side {
        Side::start_with(base, name, None).await
    }

    async fn start_with(base: &Path, name: &str, relay: Option<&str>) -> Side {
        let (dir, node, client_io) = common::mcp_server::start_with(base, name, None, relay).await;
        let client = Client::default().serve(client_io).await.unwrap();
        Side { dir, node, client }
    }

    fn file(&self, name: &str, size: usize) -> PathBuf {
        common::mcp_server::file(&self.dir, name, size)
    }

    /// Call a tool; returns (is_error, structured content, or for an error the JSON in its
    /// text, which every error carries instead of structured content).
    async fn call(&self, tool: &'static str, args: Value) -> (bool, Value) {
        let result = self
            .client
            .call_tool(CallToolRequestParams::new(tool).with_arguments(object(args)))
            .await
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        if result.is_error != Some(true) {
            return (false, result.structured_content.unwrap_or(Value::Null));
        }
        assert!(result.structured_content.is_none(), "{tool}: an error result must not break the output schema");
        let text = &result.content[0].as_text().expect("an error is one text block").text;
        let error: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{tool}: error text is not JSON: {e}"));
        for field in ["code", "message", "hint"] {
            assert!(error[field].as_str().is_some_and(|v| !v.is_empty()), "{tool}: error without {field}: {error}");
        }
        (true, error)
    }

    async fn ok(&self, tool: &'static str, args: Value) -> Value {
        let (is_error, value) = self.call(tool, args).await;
        assert!(!is_error, "{tool} failed: {value}");
        value
    }

    async fn wait(&self, id: &str) -> Value {
        let report = self.ok("check_session", json!({ "transfer_id": id, "wait": true, "timeout_seconds": 60 })).await;
        assert_eq!(report["timed_out"], false, "{report}");
        report["transfers"][0].clone()
    }
}

#[tokio::test]
async fn tools_list_shows_every_tool_with_both_schemas_and_annotations() {
    let base = tempfile::tempdir().unwrap();
    let a = Side::start(base.path(), "alice").await;
    let tools = a.client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "add_peer",
            "check_session",
            "create_invite",
            "list_invites",
            "list_peers",
            "receive_file",
            "receive_messages",
            "resume_transfer",
            "revoke_invite",
            "send_file"
        ]
    );
    for tool in &tools {
        assert!(tool.output_schema.is_some(), "{} has an output schema", tool.name);
        assert_eq!(tool.input_schema["type"], "object");
        assert!(tool.title.is_some() && tool.description.as_ref().is_some_and(|d| d.len() > 60));
        assert!(tool.annotations.is_some());
    }
    let check = tools.iter().find(|t| t.name == "check_session").unwrap();
    assert_eq!(check.annotations.as_ref().unwrap().read_only_hint, Some(true));
    for tool in &tools {
        let schemas = json!([*tool.input_schema, tool.output_schema.as_deref()]).to_string();
        assert!(!schemas.contains("\"uint"), "{}: integer formats validators do not know: {schemas}", tool.name);
    }
    let add_peer = tools.iter().find(|t| t.name == "add_peer").unwrap();
    assert!(add_peer.input_schema["properties"]["replace"].is_object(), "add_peer replaces only when asked");
}

#[tokio::test]
async fn starting_a_server_binds_nothing_and_creates_no_folder_until_a_grant_exists() {
    let base = tempfile::tempdir().unwrap();
    let b = Side::start(base.path(), "bob").await;
    assert!(!b.dir.join("downloads").exists(), "no download folder before the first receive");
    let inbox = b.node.inbox_bind().unwrap();
    assert!(std::net::TcpStream::connect(inbox).is_err(), "nothing listens on the inbox before a grant exists");
    b.node.trust().export("bob", 3600, advertised_addrs(inbox), None).unwrap();
    b.ok("check_session", json!({})).await;
    assert!(std::net::TcpStream::connect(inbox).is_ok(), "the inbox listens once a grant exists");
}

#[tokio::test]
async fn an_idle_server_starts_listening_once_a_grant_is_exported_beside_it() {
    let base = tempfile::tempdir().unwrap();
    let b = Side::start(base.path(), "bob").await;
    let inbox = b.node.inbox_bind().unwrap();
    // `agentferry export` in a shell: no tool call follows, the server notices on its own.
    b.node.trust().export("bob", 3600, advertised_addrs(inbox), None).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(inbox).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the inbox never started listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn arguments_that_do_not_fit_are_invalid_argument_errors_naming_the_tool() {
    let base = tempfile::tempdir().unwrap();
    let a = Side::start(base.path(), "alice").await;
    let cases = [
        ("send_file", json!({})),
        ("send_file", json!({ "path": 7 })),
        ("receive_file", json!({ "overwrite": "yes" })),
        ("check_session", json!({ "timeout_seconds": -1 })),
        ("add_peer", json!({ "name": "x" })),
        ("resume_transfer", json!({})),
        // Within serde's reach but outside the schema's bounds: refused, not clamped.
        ("send_file", json!({ "path": "a", "expires_in_minutes": 0 })),
        ("send_file", json!({ "path": "a", "expires_in_minutes": 525601 })),
        ("check_session", json!({ "timeout_seconds": 601 })),
        ("check_session", json!({ "limit": 0 })),
        ("check_session", json!({ "state": "sleeping" })),
        ("check_session", json!({ "transfer_id": "0", "limit": 3 })),
        ("create_invite", json!({ "ttl_hours": 0 })),
        ("add_peer", json!({ "uri": "grantx", "ttl_hours": -1 })),
    ];
    for (tool, args) in cases {
        let (is_error, e) = a.call(tool, args.clone()).await;
        assert!(is_error, "{tool} {args}");
        assert_eq!(e["code"], "invalid_argument", "{tool} {args}: {e}");
        assert!(e["hint"].as_str().unwrap().contains(tool), "{tool}: the hint names the tool: {e}");
    }
}

#[tokio::test]
async fn a_listing_shows_active_transfers_first_then_the_latest_within_a_limit() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let mut done = Vec::new();
    for i in 0..3 {
        let path = a.file(&format!("done{i}.bin"), 1000);
        let sent = a.ok("send_file", json!({ "path": path })).await;
        let received = b.ok("receive_file", json!({ "ticket": sent["ticket"] })).await;
        b.wait(received["transfer_id"].as_str().unwrap()).await;
        a.wait(sent["transfer_id"].as_str().unwrap()).await;
        done.push(sent["transfer_id"].clone());
    }
    let waiting = a.ok("send_file", json!({ "path": a.file("waiting.bin", 1000) })).await;

    let default = a.ok("check_session", json!({})).await;
    assert_eq!(default["transfers"].as_array().unwrap().len(), 4, "{default}");
    assert_eq!(default["more"], 0, "{default}");
    let first_two = a.ok("check_session", json!({ "limit": 2 })).await;
    let shown = first_two["transfers"].as_array().unwrap();
    assert_eq!(shown[0]["transfer_id"], waiting["transfer_id"], "active first: {first_two}");
    assert_eq!(shown[1]["state"], "completed");
    let latest = done.iter().map(|id| a.ok("check_session", json!({ "transfer_id": id }))).collect::<Vec<_>>();
    let mut updated = Vec::new();
    for report in latest {
        updated.push(report.await["transfers"][0]["updated_at"].as_u64().unwrap());
    }
    assert_eq!(shown[1]["updated_at"].as_u64(), updated.iter().max().copied(), "then the latest: {first_two}");
    assert_eq!(first_two["more"], 2);
    let completed = a.ok("check_session", json!({ "state": "completed", "limit": 1 })).await;
    assert_eq!(completed["transfers"][0]["state"], "completed");
    assert_eq!(completed["more"], 2, "{completed}");
    let one = a.ok("check_session", json!({ "transfer_id": done[0] })).await;
    assert!(one.get("more").is_none(), "a single transfer's report has no count: {one}");
}

#[tokio::test]
async fn a_transfer_this_node_both_sends_and_receives_is_resumed_by_role() {
    let base = tempfile::tempdir().unwrap();
    let a = Side::start(base.path(), "alice").await;
    let sent = a.ok("send_file", json!({ "path": a.file("self.bin", 1000) })).await;
    let id = sent["transfer_id"].as_str().unwrap();
    a.ok("receive_file", json!({ "ticket": sent["ticket"] })).await;
    let report = a.ok("check_session", json!({ "transfer_id": id })).await;
    assert_eq!(report["transfers"].as_array().unwrap().len(), 2, "both roles: {report}");
    let (is_error, e) = a.call("resume_transfer", json!({ "transfer_id": id })).await;
    assert!(is_error);
    assert_eq!(e["code"], "ambiguous_transfer", "{e}");
    let hint = e["hint"].as_str().unwrap();
    assert!(
        hint.contains("resume_transfer") && hint.contains("role: \"send\""),
        "the hint names the tool and argument: {hint}"
    );
    assert!(!hint.contains("agentferry resume"), "{hint}");
    let (_, e) = a.call("resume_transfer", json!({ "transfer_id": id, "role": "receive" })).await;
    assert_ne!(e["code"], "ambiguous_transfer", "role picks one side: {e}");
}

#[tokio::test]
async fn add_peer_replaces_a_different_peer_only_when_asked() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let inbox = advertised_addrs(b.node.inbox_bind().unwrap());
    let first = b.node.trust().export("bob", 3600, inbox.clone(), None).unwrap().to_string();
    let second = b.node.trust().export("bob", 3600, inbox, None).unwrap().to_string();
    a.ok("add_peer", json!({ "uri": first })).await;
    a.ok("add_peer", json!({ "uri": first })).await; // the same grant again: idempotent
    let (is_error, e) = a.call("add_peer", json!({ "uri": second })).await;
    assert!(is_error);
    assert_eq!(e["code"], "peer_exists");
    assert!(e["hint"].as_str().unwrap().contains("replace: true"), "{e}");
    a.ok("add_peer", json!({ "uri": second, "replace": true })).await;
    assert_eq!(a.ok("list_peers", json!({})).await["peers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_ticket_moves_a_file_between_two_servers_with_progress() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let src = a.file("report.bin", 3_000_000);
    let sent = a.ok("send_file", json!({ "path": "report.bin" })).await;
    let ticket = sent["ticket"].as_str().unwrap();
    assert!(ticket.starts_with("ferry"));
    assert!(sent["next"].as_str().unwrap().contains("receive_file"));

    let began = std::time::Instant::now();
    let started = b.ok("receive_file", json!({ "ticket": ticket })).await;
    let id = started["transfer_id"].as_str().unwrap();
    assert_eq!(id, sent["transfer_id"]);
    let done = b.wait(id).await;
    let elapsed = began.elapsed();
    assert_eq!(done["state"], "completed", "{done}");
    let saved = PathBuf::from(done["saved_to"].as_str().unwrap());
    assert!(saved.starts_with(b.dir.join("downloads").canonicalize().unwrap()));
    assert_eq!(std::fs::read(&saved).unwrap(), std::fs::read(&src).unwrap());
    assert_eq!(done["path"], "http");
    assert!(done["attempts"].as_array().unwrap().iter().any(|a| a["ok"] == true));

    let progress = b.client.service().progress.lock().unwrap().clone();
    assert!(!progress.is_empty(), "the wait sent progress notifications");
    assert!(progress.windows(2).all(|w| w[0].progress < w[1].progress), "progress only grows");
    assert_eq!(progress.last().unwrap().progress, 3_000_000.0);
    // At most ten a second, plus the first and the last.
    let allowed = 2 + (elapsed.as_millis() / 100) as usize;
    assert!(progress.len() <= allowed, "{} progress notifications in {elapsed:?}", progress.len());

    let sender_side = a.wait(id).await;
    assert_eq!(sender_side["state"], "completed");
    assert_eq!(sender_side["sha256"], done["sha256"]);
    // A completed status says how fast it went: no faster than the whole wait allows.
    let floor = 3_000_000 / elapsed.as_secs().max(1);
    for side in [&done, &sender_side] {
        let rate = side["rate"].as_u64().unwrap();
        assert!(rate >= floor, "a completed transfer's average rate is {rate} B/s, under {floor}: {side}");
    }
}

#[tokio::test]
async fn tickets_waiting_for_their_receivers_share_one_port() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let files = [a.file("one.bin", 200_000), a.file("two.bin", 300_000), a.file("three.bin", 1000)];
    let mut sent = Vec::new();
    for file in &files {
        sent.push(a.ok("send_file", json!({ "path": file })).await);
    }
    let ports: std::collections::BTreeSet<u16> = sent
        .iter()
        .flat_map(|s| s["ticket"].as_str().unwrap().parse::<agentferry::Ticket>().unwrap().addrs)
        .map(|addr| addr.port())
        .collect();
    assert_eq!(ports.len(), 1, "three waiting tickets, one port: {ports:?}");
    // Each is still served on its own, in any order.
    for (file, s) in files.iter().zip(&sent).rev() {
        let started = b.ok("receive_file", json!({ "ticket": s["ticket"] })).await;
        let done = b.wait(started["transfer_id"].as_str().unwrap()).await;
        assert_eq!(std::fs::read(done["saved_to"].as_str().unwrap()).unwrap(), std::fs::read(file).unwrap());
    }
}

#[tokio::test]
async fn a_server_that_completed_a_transfer_tells_a_late_receiver_so() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    // A server listening for pushes serves every send from that one listener, which outlives
    // the transfer.
    let inbox = advertised_addrs(a.node.inbox_bind().unwrap());
    a.node.trust().export("carol", 3600, inbox, None).unwrap();
    a.ok("list_peers", json!({})).await; // the first call after the export binds the inbox
    a.file("once.bin", 200_000);
    let sent = a.ok("send_file", json!({ "path": "once.bin" })).await;
    let (ticket, id) = (sent["ticket"].as_str().unwrap().to_owned(), sent["transfer_id"].as_str().unwrap());
    b.ok("receive_file", json!({ "ticket": ticket })).await;
    assert_eq!(b.wait(id).await["state"], "completed");
    assert_eq!(a.wait(id).await["state"], "completed");

    // The server is still up: someone else using the ticket learns at once that it is done,
    // from the real binary, with no retries.
    let late = common::Node::new();
    let out = late.out();
    let began = std::time::Instant::now();
    let (code, events, stderr) =
        tokio::task::spawn_blocking(move || late.run(&["receive", &ticket, "-o", out.to_str().unwrap(), "--json"]))
            .await
            .unwrap();
    let last = events.last().unwrap();
    assert_eq!((code, last["code"].as_str()), (8, Some("already_completed")), "{last} {stderr}");
    assert!(last["hint"].as_str().unwrap().contains("fresh ticket"), "{last}");
    assert!(began.elapsed() < Duration::from_secs(3), "answered without retrying: {:?}", began.elapsed());
}

#[tokio::test]
async fn a_push_to_a_trusted_peer_is_accepted_and_revoked_grants_are_held() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let inbox = advertised_addrs(b.node.inbox_bind().unwrap());
    let uri = b.node.trust().export("bob", 3600, inbox, None).unwrap();
    b.ok("list_peers", json!({})).await; // bob's first call after the export binds its inbox
    let peer = a.ok("add_peer", json!({ "uri": uri.to_string() })).await;
    assert_eq!(peer["name"], "bob");
    let peers = a.ok("list_peers", json!({})).await;
    assert_eq!(peers["peers"][0]["name"], "bob");
    assert!(!peers.to_string().contains(&uri.to_string()[10..40]), "no secret in tool results");

    let src = a.file("pushed.bin", 700_000);
    let sent = a.ok("send_file", json!({ "path": src.to_str().unwrap(), "to": "bob" })).await;
    assert_eq!(sent["peer_answer"], "accepted");
    assert!(sent.get("ticket").is_none(), "a push shows no ticket");
    let id = sent["transfer_id"].as_str().unwrap();
    // bob's client hears of the push without polling.
    let (told, _) = b.client.service().told_about(id).await;
    assert_eq!(told["event"], "push_arrived", "{told}");
    assert_eq!(
        (&told["from"], &told["file_name"], &told["state"]),
        (&json!("alice"), &json!("pushed.bin"), &json!("active"))
    );
    assert!(told["next"].as_str().unwrap().contains("check_session"), "{told}");
    let done = b.wait(id).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["peer"], "alice");
    assert_eq!(std::fs::read(done["saved_to"].as_str().unwrap()).unwrap(), std::fs::read(&src).unwrap());

    // Revoked: the offer is authentic but no longer auto-accepted; it waits as pending.
    b.node.trust().revoke(&data_encoding::HEXLOWER.encode(&uri.grant_id)).unwrap();
    let src2 = a.file("second.bin", 10_000);
    let sent = a.ok("send_file", json!({ "path": src2.to_str().unwrap(), "to": "bob" })).await;
    assert_eq!(sent["peer_answer"], "pending");
    let id = sent["transfer_id"].as_str().unwrap();
    let (held, _) = b.client.service().told_about(id).await;
    assert_eq!((&held["state"], &held["held_because"]), (&json!("pending"), &json!("grant_revoked")), "{held}");
    assert!(held["next"].as_str().unwrap().contains(&format!("receive_file(transfer_id=\"{id}\")")), "{held}");
    let listed = b.ok("check_session", json!({})).await;
    let pending = listed["transfers"].as_array().unwrap().iter().find(|t| t["transfer_id"] == id).unwrap().clone();
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["held_because"], "grant_revoked");
    // Accepting it explicitly fetches it.
    b.ok("receive_file", json!({ "transfer_id": id })).await;
    assert_eq!(b.wait(id).await["state"], "completed");
}

#[tokio::test]
async fn expired_grants_are_refused_on_both_sides() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let inbox = advertised_addrs(b.node.inbox_bind().unwrap());
    b.ok("list_peers", json!({})).await; // binds bob's inbox
    // A grant of 2 s, imported at once (in process: no round trip a loaded machine could stretch
    // past its expiry).
    let uri = b.node.trust().export("bob", 2, inbox, None).unwrap().to_string();
    a.node.trust().add_peer(&uri, Some("bob-short"), None).unwrap();
    a.node.trust().add_peer(&uri, Some("bob-long"), None).unwrap();
    a.node.trust().extend_peer("bob-long", 3600).unwrap(); // alice trusts longer than bob's grant allows
    // Wait for the grant's expiry to pass: the condition is the clock itself.
    while b.node.trust().grants().unwrap()[0].invalid_reason(agentferry::journal::unix_now()).is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let src = a.file("late.bin", 1000);
    let (is_error, refused) = a.call("send_file", json!({ "path": src.to_str().unwrap(), "to": "bob-short" })).await;
    assert!(is_error);
    assert_eq!(refused["code"], "peer_expired");
    assert!(refused["hint"].as_str().unwrap().contains("export"));
    let sent = a.ok("send_file", json!({ "path": src.to_str().unwrap(), "to": "bob-long" })).await;
    assert_eq!(sent["peer_answer"], "pending", "bob does not auto-accept under an expired grant");
    let status = b.ok("check_session", json!({ "transfer_id": sent["transfer_id"] })).await;
    assert_eq!(status["transfers"][0]["held_because"], "grant_expired");
    assert!(!b.dir.join("downloads").join("late.bin").exists());
}

#[tokio::test]
async fn paths_outside_the_roots_and_unknown_ids_are_refused_with_a_next_step() {
    let base = tempfile::tempdir().unwrap();
    let a = Side::start(base.path(), "alice").await;
    let outside = base.path().join("secret.txt");
    std::fs::write(&outside, b"top secret").unwrap();
    for path in [outside.to_str().unwrap(), "../../secret.txt", "/etc/passwd"] {
        let (is_error, e) = a.call("send_file", json!({ "path": path })).await;
        assert!(is_error);
        assert_eq!(e["code"], "path_not_allowed", "{path}: {e}");
        assert!(e["message"].as_str().unwrap().contains("outside the allowed roots"));
    }
    let (is_error, e) = a.call("receive_file", json!({ "ticket": "ferryaaaa", "output_dir": "/var/tmp" })).await;
    assert!(is_error);
    assert_eq!(e["code"], "path_not_allowed");
    let (is_error, e) = a.call("check_session", json!({ "transfer_id": "00112233445566778899aabbccddeeff" })).await;
    assert!(is_error);
    assert_eq!(e["code"], "transfer_not_found");
    assert!(e["hint"].as_str().unwrap().contains("check_session without transfer_id"));
    let (is_error, e) = a.call("receive_file", json!({})).await;
    assert!(is_error);
    assert_eq!(e["code"], "invalid_argument");
    let (is_error, e) = a.call("receive_file", json!({ "ticket": "grantabc" })).await;
    assert!(is_error);
    assert_eq!(e["code"], "ticket_wrong_kind");
}

#[tokio::test]
async fn send_file_sends_a_folder_whole_and_never_follows_links_out_of_the_roots() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (Side::start(base.path(), "alice").await, Side::start(base.path(), "bob").await);
    let proj = a.dir.join("files/proj");
    std::fs::create_dir_all(proj.join("sub/empty")).unwrap();
    std::fs::write(proj.join("sub/a.txt"), "alpha").unwrap();
    std::fs::write(proj.join("b.bin"), vec![7u8; 300_000]).unwrap();
    let outside = base.path().join("outside-secret");
    std::fs::write(&outside, "not yours").unwrap();
    std::os::unix::fs::symlink(&outside, proj.join("sub/escape")).unwrap();

    let sent = a.ok("send_file", json!({ "path": "proj" })).await;
    assert_eq!(sent["file_name"], "proj");
    let started = b.ok("receive_file", json!({ "ticket": sent["ticket"] })).await;
    let done = b.wait(started["transfer_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "completed", "{done}");
    let saved = PathBuf::from(done["saved_to"].as_str().unwrap());
    assert_eq!(saved, b.dir.join("downloads").canonicalize().unwrap().join("proj"));
    assert_eq!(std::fs::read_to_string(saved.join("sub/a.txt")).unwrap(), "alpha");
    assert_eq!(std::fs::read(saved.join("b.bin")).unwrap(), vec![7u8; 300_000]);
    assert!(saved.join("sub/empty").is_dir());
    assert!(std::fs::symlink_metadata(saved.join("sub/escape")).is_err(), "the link is skipped, not followed");
}

/// A ticket whose sending process is gone: the agent hears that the sender stopped serving it,
/// and what to call, in tools and arguments rather than CLI commands.
#[tokio::test]
async fn a_ticket_whose_sender_is_gone_says_so_with_a_hint_in_tools() {
    let base = tempfile::tempdir().unwrap();
    let b = Side::start(base.path(), "bob").await;
    let sender = common::Node::new();
    let src = common::random_file(sender.dir.path(), "gone.bin", 10_000, 5);
    let (running, ticket, id) = sender.send(&src, &[]);
    running.kill9();
    b.ok("receive_file", json!({ "ticket": ticket })).await;
    let done = b.wait(&id).await;
    let error = &done["error"];
    assert_eq!((done["state"].as_str(), error["code"].as_str()), (Some("failed"), Some("not_serving")), "{done}");
    assert!(error["message"].as_str().unwrap().contains("the sender"), "{error}");
    let hint = error["hint"].as_str().unwrap();
    assert!(hint.contains("resume_transfer") && hint.contains(&id) && hint.contains("send_file"), "{hint}");
    assert!(!hint.contains("agentferry "), "no CLI commands for an agent: {hint}");
}

#[tokio::test]
async fn codes_carry_a_transfer_and_an_invite_between_servers() {
    let relay = agentferry::relay::server::RelayServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        agentferry::relay::server::RelayConfig::default(),
    )
    .await
    .unwrap();
    let url = relay.url();
    let base = tempfile::tempdir().unwrap();
    let a = Side::start_with(base.path(), "alice", Some(&url)).await;
    let b = Side::start_with(base.path(), "bob", Some(&url)).await;

    // A transfer: the code stands for the ticket, returned beside it.
    let src = a.file("coded.bin", 900_000);
    let sent = a.ok("send_file", json!({ "path": src.to_str().unwrap(), "code": true })).await;
    let code = sent["code"].as_str().unwrap().to_owned();
    assert!(sent["ticket"].as_str().unwrap().starts_with("ferry") && sent["code_expires_at"].as_u64().is_some());
    assert!(sent["next"].as_str().unwrap().contains("receive_file(code)"), "{sent}");
    let started = b.ok("receive_file", json!({ "code": code })).await;
    let done = b.wait(started["transfer_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(a.wait(sent["transfer_id"].as_str().unwrap()).await["state"], "completed");
    // Once only; and not with a ticket too.
    let (is_error, error) = b.call("receive_file", json!({ "code": code })).await;
    assert!(is_error && error["code"] == "code_used", "{error}");
    let (is_error, error) = b.call("receive_file", json!({ "code": code, "ticket": sent["ticket"] })).await;
    assert!(is_error && error["code"] == "invalid_argument", "{error}");

    // A wrong code fails the sender's transfer with code_wrong.
    let sent = a.ok("send_file", json!({ "path": src.to_str().unwrap(), "code": true })).await;
    let (number, _) = sent["code"].as_str().unwrap().split_once('-').unwrap();
    let (is_error, error) = b.call("receive_file", json!({ "code": format!("{number}-acid-acid-acid") })).await;
    let (is_error, error) = if error["code"] == "code_wrong" {
        (is_error, error)
    } else {
        // The real code was acid-acid-acid: one chance in two billion, but not none.
        b.call("receive_file", json!({ "code": format!("{number}-zoom-zoom-zoom") })).await
    };
    assert!(is_error && error["code"] == "code_wrong", "{error}");
    let failed = a.wait(sent["transfer_id"].as_str().unwrap()).await;
    assert_eq!((failed["state"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("code_wrong")));

    // Pairing: create_invite's code, redeemed by add_peer, then a push.
    let invite = b.ok("create_invite", json!({ "code": true })).await;
    let code = invite["code"].as_str().unwrap().to_owned();
    let peer = a.ok("add_peer", json!({ "code": code })).await;
    assert_eq!(peer["name"], "bob");
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = b.ok("list_invites", json!({})).await;
        if listed["codes"][0]["state"] == "redeemed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed["codes"][0]["state"], "redeemed", "{listed}");
    let other = a.file("pushed.bin", 300_000);
    let pushed = a.ok("send_file", json!({ "path": other.to_str().unwrap(), "to": "bob" })).await;
    assert_eq!(pushed["peer_answer"], "accepted", "{pushed}");
    assert_eq!(a.wait(pushed["transfer_id"].as_str().unwrap()).await["state"], "completed");
    let (is_error, error) = a.call("add_peer", json!({ "code": code })).await;
    assert!(is_error && error["code"] == "code_used", "{error}");
    let (is_error, error) =
        a.call("send_file", json!({ "path": src.to_str().unwrap(), "to": "bob", "code": true })).await;
    assert!(is_error && error["code"] == "invalid_argument", "{error}");
    relay.shutdown().await;
}
