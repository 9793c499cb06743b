//! Files carried as chat messages: two real `agentferry mcp` processes (separate homes) whose
//! only link is this test, which plays the chat and the two agents. The chat shuffles, drops and
//! duplicates messages (seeded); either server is killed with SIGKILL mid-way and restarted on its
//! home; a file over the cap is refused; a tampered message is rejected and nothing lands under
//! the final name.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, object},
    service::RunningService,
};
use serde_json::{Value, json};

/// One node: an `agentferry mcp` process over stdio, with `files/` as its root and
/// `downloads/` as its download folder.
struct Server {
    dir: PathBuf,
    client: RunningService<RoleClient, ()>,
    child: tokio::process::Child,
}

impl Server {
    async fn start(dir: &Path) -> Server {
        for sub in ["files", "downloads"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut command = tokio::process::Command::new(common::BIN);
        command
            .args(["mcp", "--root"])
            .arg(dir.join("files"))
            .arg("--download-dir")
            .arg(dir.join("downloads"))
            .env("AGENTFERRY_HOME", dir.join("home"))
            .env("AGENTFERRY_BIND", "127.0.0.1:0")
            .env("AGENTFERRY_INBOX_BIND", "127.0.0.1:0")
            .env_remove("AGENTFERRY_RELAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start the MCP server");
        let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
        let client = ().serve(io).await.expect("MCP initialisation");
        Server { dir: dir.to_owned(), client, child }
    }

    /// SIGKILL, then a new server on the same home.
    async fn kill9_and_restart(mut self) -> Server {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        let dir = self.dir.clone();
        drop(self);
        Server::start(&dir).await
    }

    async fn call(&self, tool: &'static str, args: Value) -> (bool, Value) {
        let params = CallToolRequestParams::new(tool).with_arguments(object(args));
        let result = self.client.call_tool(params).await.unwrap_or_else(|e| panic!("{tool}: {e}"));
        if result.is_error == Some(true) {
            let text = &result.content[0].as_text().unwrap().text;
            return (true, serde_json::from_str(text).unwrap());
        }
        (false, result.structured_content.unwrap())
    }

    async fn ok(&self, tool: &'static str, args: Value) -> Value {
        let (is_error, value) = self.call(tool, args).await;
        assert!(!is_error, "{tool}: {value}");
        value
    }

    async fn take(&self, messages: &[String]) -> Value {
        self.ok("receive_messages", json!({ "messages": messages })).await
    }

    fn file(&self, name: &str, size: usize, seed: u64) -> PathBuf {
        common::random_file(&self.dir.join("files"), name, size, seed)
    }
}

fn strings(v: &Value) -> Vec<String> {
    v["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

/// The transfer `id` as a result of receive_messages lists it.
fn transfer<'v>(result: &'v Value, id: &str) -> Option<&'v Value> {
    result["transfers"].as_array().unwrap().iter().find(|t| t["transfer_id"] == id)
}

/// The chat: loses, repeats and reorders what is posted.
struct Chat {
    rng: StdRng,
}

impl Chat {
    fn carry(&mut self, mut posted: Vec<String>) -> Vec<String> {
        posted.retain(|_| self.rng.random_bool(0.85));
        let repeats: Vec<String> = posted.iter().filter(|_| self.rng.random_bool(0.15)).cloned().collect();
        posted.extend(repeats);
        posted.shuffle(&mut self.rng);
        posted
    }
}

/// What to do mid-way through a run.
#[derive(Clone, Copy, PartialEq)]
enum Crash {
    None,
    Receiver,
    Sender,
}

/// Move transfer `id` through the chat until the receiver has placed it; with `crash`, kill
/// that side once a third of the chunks arrived and go on with a restarted server. Returns the
/// servers and the receiver's final view of the transfer.
async fn run(
    mut sender: Server,
    mut receiver: Server,
    id: &str,
    opening: Vec<String>,
    seed: u64,
    crash: Crash,
) -> (Server, Server, Value) {
    let mut chat = Chat { rng: StdRng::seed_from_u64(seed) };
    let mut to_receiver = opening;
    let mut crashed = false;
    let (mut own_posts, mut own_replies) = (Vec::new(), Vec::new());
    for _round in 0..2000 {
        for m in &to_receiver {
            assert!(m.chars().count() <= 3500, "a message of {} characters", m.chars().count());
        }
        // A group chat: each side also sees what it posted itself, and skips it.
        let mut seen = chat.carry(std::mem::take(&mut to_receiver));
        seen.extend(std::mem::take(&mut own_replies));
        let mut answer = receiver.take(&seen).await;
        assert!(answer["rejected"].as_array().unwrap().is_empty(), "{answer}");
        if let Some(t) = transfer(&answer, id).cloned() {
            assert!(t.get("error").is_none(), "{answer}");
            if t["state"] == "completed" {
                // The completion reaches the sender (it may be lost too: repeat until it lands).
                for _ in 0..50 {
                    let done = sender.take(&chat.carry(strings(&answer))).await;
                    if transfer(&done, id).is_some_and(|t| t["state"] == "completed") {
                        assert_eq!(crashed, crash != Crash::None, "the crash happened");
                        return (sender, receiver, t);
                    }
                    answer = receiver.take(&[]).await;
                }
                panic!("the sender never took the completion");
            }
            let third = t["chunks_total"].as_u64().unwrap() / 3;
            if !crashed && crash != Crash::None && t["chunks_done"].as_u64().unwrap() > third {
                crashed = true;
                if crash == Crash::Receiver {
                    receiver = receiver.kill9_and_restart().await;
                    // Asked to repeat itself, the new process takes the transfer up from the
                    // journal: what was synced before the kill is still there.
                    answer = receiver.take(&[]).await;
                    let t = transfer(&answer, id).expect("the restarted receiver knows the transfer");
                    assert!(t["chunks_done"].as_u64().unwrap() > 0, "resumed from nothing: {answer}");
                } else {
                    sender = sender.kill9_and_restart().await;
                }
            }
        }
        if answer["messages"].as_array().unwrap().is_empty() {
            answer = receiver.take(&[]).await; // a quiet chat: ask the receiver to repeat itself
        }
        own_replies = strings(&answer);
        let mut seen = chat.carry(strings(&answer));
        seen.extend(std::mem::take(&mut own_posts));
        let mut next = sender.take(&seen).await;
        assert!(next["rejected"].as_array().unwrap().is_empty(), "{next}");
        if next["messages"].as_array().unwrap().is_empty() {
            next = sender.take(&[]).await;
        }
        to_receiver = strings(&next);
        own_posts = to_receiver.clone();
    }
    panic!("transfer {id} did not complete");
}

async fn pair(tmp: &Path) -> (Server, Server) {
    (Server::start(&tmp.join("alice")).await, Server::start(&tmp.join("bob")).await)
}

async fn send(sender: &Server, name: &str, extra: Value) -> (String, Vec<String>) {
    let mut args = json!({ "path": name, "via": "messages" });
    args.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let sent = sender.ok("send_file", args).await;
    assert!(sent.get("ticket").is_none(), "the ticket travels in the first message only: {sent}");
    (sent["transfer_id"].as_str().unwrap().to_owned(), strings(&sent))
}

async fn one_mebibyte_arrives(seed: u64, crash: Crash) {
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = pair(tmp.path()).await;
    let source = alice.file("report.pdf", 1 << 20, seed);
    let (id, opening) = send(&alice, "report.pdf", json!({})).await;
    // A person who sees the first message learns what it is and what to do with it.
    assert!(opening[0].starts_with("agentferry file \"report.pdf\", 1.0 MiB"), "{}", opening[0]);
    assert!(opening[0].contains("receive_messages") && opening[0].contains("Anyone who can read this chat"));
    assert!(opening.len() > 1, "the first batch carries chunks too");
    let own = alice.take(&opening).await;
    assert!(own["rejected"].as_array().unwrap().is_empty() && own["skipped"] == opening.len(), "{own}");
    let (_alice, bob, done) = run(alice, bob, &id, opening, seed, crash).await;
    let saved = PathBuf::from(done["saved_to"].as_str().unwrap());
    assert_eq!(saved, bob.dir.join("downloads").canonicalize().unwrap().join("report.pdf"));
    assert_eq!(common::sha256_file(&saved), common::sha256_file(&source));
    assert_eq!(done["sha256"].as_str().unwrap(), common::sha256_file(&source));
    let status = bob.ok("check_session", json!({ "transfer_id": id })).await;
    assert_eq!(status["transfers"][0]["state"], "completed", "{status}");
    let leftovers: Vec<_> =
        std::fs::read_dir(bob.dir.join("downloads")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["report.pdf"], "no temp file is left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mebibyte_crosses_a_lossy_chat_byte_for_byte() {
    one_mebibyte_arrives(1, Crash::None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_killed_mid_way_resumes_from_its_journal() {
    one_mebibyte_arrives(2, Crash::Receiver).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_killed_mid_way_resumes_from_its_journal() {
    one_mebibyte_arrives(3, Crash::Sender).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_over_the_cap_is_refused_with_its_code() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = Server::start(&tmp.path().join("alice")).await;
    alice.file("big.bin", (4 << 20) + 1, 4);
    let (is_error, e) = alice.call("send_file", json!({ "path": "big.bin", "via": "messages" })).await;
    assert!(is_error);
    assert_eq!(e["code"], "too_large_for_messages", "{e}");
    assert!(e["hint"].as_str().unwrap().contains("send_file"), "{e}");
    let (is_error, e) =
        alice.call("send_file", json!({ "path": "big.bin", "via": "messages", "max_message_chars": 10 })).await;
    assert!(is_error && e["code"] == "invalid_argument", "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_message_is_rejected_and_nothing_lands_under_the_final_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = pair(tmp.path()).await;
    let source = alice.file("notes.txt", 20_000, 5);
    let (id, opening) = send(&alice, "notes.txt", json!({ "max_message_chars": 1000 })).await;
    assert!(opening.iter().all(|m| m.chars().count() <= 1000));
    // Change one character of the encoded part of a chunk message.
    let mut tampered = opening[1].clone();
    let at = tampered.len() - 40;
    let c = tampered.as_bytes()[at];
    tampered.replace_range(at..at + 1, if c == b'A' { "B" } else { "A" });
    let target = bob.dir.join("downloads/notes.txt");

    let answer = bob.take(&[opening[0].clone(), tampered, "hello from a person".into()]).await;
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{answer}");
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["code"], "message_tampered", "{answer}");
    assert!(rejected[0]["hint"].as_str().unwrap().contains("receive_messages"));
    assert_eq!(answer["skipped"], 1, "the person's words are skipped: {answer}");
    assert!(!target.exists());

    // A tampered first message opens nothing.
    let (_, other) = send(&alice, "notes.txt", json!({})).await;
    let mut other_ticket = other[0].clone();
    let at = other_ticket.len() - 10;
    let c = other_ticket.as_bytes()[at];
    other_ticket.replace_range(at..at + 1, if c == b'A' { "B" } else { "A" });
    let answer = bob.take(&[other_ticket]).await;
    let code = answer["rejected"][0]["code"].as_str().unwrap();
    assert!(code.starts_with("ticket_") || code == "message_malformed", "{answer}");
    assert_eq!(answer["transfers"].as_array().unwrap().len(), 0, "{answer}");

    // The rest of the chat is untouched: the transfer completes, the chunk asked for again.
    let (_alice, _bob, done) = run(alice, bob, &id, opening, 6, Crash::None).await;
    assert_eq!(common::sha256_file(&target), common::sha256_file(&source));
    assert_eq!(done["saved_to"].as_str().unwrap(), target.canonicalize().unwrap().to_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn to_a_paired_peer_the_first_message_is_sealed_for_it_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = pair(tmp.path()).await;
    let carol = Server::start(&tmp.path().join("carol")).await;
    let invite = bob.ok("create_invite", json!({})).await;
    alice.ok("add_peer", json!({ "uri": invite["uri"], "name": "bob" })).await;
    let source = alice.file("private.bin", 100_000, 7);
    let (id, opening) = send(&alice, "private.bin", json!({ "to": "bob" })).await;
    assert!(opening[0].contains("sealed for a paired peer") && !opening[0].contains("private.bin"), "{}", opening[0]);

    // alice sees her own messages in the chat: skipped, none refused.
    let own = alice.take(&opening).await;
    assert!(own["rejected"].as_array().unwrap().is_empty(), "{own}");
    assert_eq!(own["skipped"], opening.len(), "{own}");

    // Someone else in the chat holds no grant of bob's: the offer opens nothing there, and the
    // chunks, sealed under the key inside it, are not even addressed to anyone it knows.
    let seen = carol.take(&opening).await;
    assert_eq!(seen["rejected"][0]["code"], "offer_refused", "{seen}");
    assert_eq!(seen["transfers"].as_array().unwrap().len(), 0, "{seen}");
    assert_eq!(seen["messages"].as_array().unwrap().len(), 0, "{seen}");

    let (_alice, bob, done) = run(alice, bob, &id, opening, 8, Crash::None).await;
    assert_eq!(common::sha256_file(Path::new(done["saved_to"].as_str().unwrap())), common::sha256_file(&source));
    let status = bob.ok("check_session", json!({ "transfer_id": id })).await;
    assert!(status["transfers"][0]["peer"].is_string(), "bob knows who sent it: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_transfer_points_a_messages_transfer_to_receive_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = Server::start(&tmp.path().join("alice")).await;
    alice.file("a.bin", 10_000, 9);
    let (id, _) = send(&alice, "a.bin", json!({})).await;
    let (is_error, e) = alice.call("resume_transfer", json!({ "transfer_id": id })).await;
    assert!(is_error && e["code"] == "invalid_argument" && e["message"].as_str().unwrap().contains("receive_messages"));
}

/// Run `agentferry` on `node` with `input` on stdin; its stdout lines.
fn cli(node: &common::Node, args: &[&str], input: &[String]) -> Vec<String> {
    use std::io::Write;
    let mut cmd = node.command(args);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.join("\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn the_cli_prints_messages_and_reads_pasted_ones() {
    let (alice, bob) = (common::Node::new(), common::Node::new());
    let source = common::random_file(alice.dir.path(), "pasted.bin", 30_000, 10);
    let mut to_bob = cli(&alice, &["send", source.to_str().unwrap(), "--via", "messages"], &[]);
    assert!(to_bob[0].starts_with("agentferry file \"pasted.bin\""), "{to_bob:?}");
    let out = bob.out();
    let target = out.join("pasted.bin");
    for _ in 0..20 {
        let replies = cli(&bob, &["messages", "-o", out.to_str().unwrap()], &to_bob);
        if target.exists() {
            assert_eq!(common::sha256_file(&target), common::sha256_file(&source));
            let last = cli(&alice, &["messages"], &replies);
            assert!(last.is_empty(), "nothing to post after the completion: {last:?}");
            let (_, events, _) = alice.run(&["status", "--json"]);
            assert_eq!(events[0]["state"], "completed", "{events:?}");
            return;
        }
        to_bob = cli(&alice, &["messages"], &replies);
    }
    panic!("the pasted transfer did not complete");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewrite_with_its_modification_time_put_back_stops_the_sender() {
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = pair(tmp.path()).await;
    // More chunks than the first batch holds: the rest are read after the rewrite.
    let source = alice.file("swapped.bin", 100_000, 11);
    let (id, to_bob) = send(&alice, "swapped.bin", json!({})).await;
    // The bytes change under the sender after it hashed them, size kept and modification time
    // put back: only the change stamp (inode and ctime) can tell.
    let mtime = std::fs::metadata(&source).unwrap().modified().unwrap();
    std::fs::write(&source, vec![0x5a; 100_000]).unwrap();
    std::fs::File::options().write(true).open(&source).unwrap().set_modified(mtime).unwrap();
    let replies = bob.take(&to_bob).await;
    let answer = alice.take(&strings(&replies)).await;
    let t = transfer(&answer, &id).unwrap();
    assert_eq!(t["error"]["code"], "source_changed", "{answer}");
    assert!(answer["messages"].as_array().unwrap().is_empty(), "nothing of the new bytes is posted: {answer}");
    let downloads = bob.dir.join("downloads");
    assert!(!downloads.join("swapped.bin").exists(), "nothing under the final name");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_whose_file_changed_stops_with_source_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = pair(tmp.path()).await;
    let source = alice.file("edited.bin", 100_000, 12); // more than the first batch
    let (id, to_bob) = send(&alice, "edited.bin", json!({})).await;
    let replies = bob.take(&to_bob).await;
    std::fs::write(&source, b"edited").unwrap();
    let answer = alice.take(&strings(&replies)).await;
    let t = transfer(&answer, &id).unwrap();
    assert_eq!(t["error"]["code"], "source_changed", "{answer}");
    assert!(answer["messages"].as_array().unwrap().is_empty(), "nothing of the new bytes is posted: {answer}");
}
