//! `agentferry send -` and `agentferry receive TICKET -o -` with real shell pipes: what was piped
//! in arrives byte for byte on the other side's stdout (`| sha256sum` against the source's hash),
//! with nothing else on stdout, and stdout gets the authenticated prefix in order while the
//! transfer still runs; a folder ticket is refused with `-o -`; neither end is
//! resumable, and `resume` says so; a reader that goes away ends the receive with an error
//! instead of a hang; a name that is not a plain file name is refused.

mod common;

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use common::{Node, Running, WAIT, random_file, sha256_file};

/// `script` run by bash in `node`'s environment (`$BIN` is agentferry).
fn shell(node: &Node, script: &str) -> Command {
    let template = node.command(&[]);
    let mut bash = Command::new("bash");
    bash.args(["-c", script]).env("BIN", common::BIN);
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => bash.env(k, v),
            None => bash.env_remove(k),
        };
    }
    bash.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    bash
}

/// `cat SRC | agentferry send - --file-name NAME --json`, with its ticket and transfer id.
fn send_stdin(node: &Node, src: &Path, name: &str) -> (Running, String, String) {
    let script = format!("set -euo pipefail; cat '{}' | \"$BIN\" send - --file-name '{name}' --json", src.display());
    let mut sender = Running::new_public(shell(node, &script).spawn().unwrap());
    let first = sender.next_event(WAIT).expect("send printed nothing");
    assert_eq!(first["event"], "ticket", "{first}");
    assert_eq!(first["file_name"], name, "{first}");
    (sender, first["ticket"].as_str().unwrap().to_owned(), first["transfer_id"].as_str().unwrap().to_owned())
}

fn error_code(stderr: &str) -> Option<String> {
    let start = stderr.find("error[")? + 6;
    Some(stderr[start..start + stderr[start..].find(']')?].to_owned())
}

#[test]
fn what_is_piped_in_comes_out_of_the_other_stdout_byte_for_byte() {
    let (alice, bob) = (Node::new(), Node::new());
    let src = random_file(alice.dir.path(), "source.bin", 9 * 1024 * 1024 + 123, 7);
    let (sender, ticket, id) = send_stdin(&alice, &src, "piped.bin");

    // JSON events go to stderr, so that stdout is the file and nothing else.
    let out = shell(&bob, "set -euo pipefail; \"$BIN\" receive \"$TICKET\" -o - --json | sha256sum")
        .env("TICKET", &ticket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let piped = String::from_utf8_lossy(&out.stdout);
    assert_eq!(piped.split_whitespace().next(), Some(sha256_file(&src).as_str()), "stderr: {stderr}");
    let completed = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "completed")
        .unwrap_or_else(|| panic!("a completed event on stderr: {stderr}"));
    assert_eq!(completed["sha256"], sha256_file(&src));
    assert_eq!(completed["saved_to"], "-", "{completed}");
    assert_eq!(completed["transfer_id"], id.as_str());

    let (code, last) = sender.finish();
    assert_eq!(code, 0, "{last}");
    assert_eq!(last["event"], "completed", "{last}");
    for node in [&alice, &bob] {
        let (_, status, _) = node.run(&["status", &id, "--json"]);
        let record = &status[0];
        assert_eq!(record["state"], "completed", "{record}");
    }
    // Both spools are gone once the commands ended.
    let spools: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(agentferry::pipe::SPOOL_PREFIX)
                && std::fs::read_dir(e.path())
                    .is_ok_and(|mut d| d.any(|f| f.is_ok_and(|f| f.file_name() == "piped.bin")))
        })
        .collect();
    assert!(spools.is_empty(), "left behind: {spools:?}");
}

#[test]
fn a_folder_ticket_is_refused_when_the_output_is_stdout() {
    let (alice, bob) = (Node::new(), Node::new());
    let tree = alice.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    random_file(&tree.join("sub"), "a.bin", 1000, 1);
    let (_sender, ticket, _) = alice.send(&tree, &[]);
    let out = bob.command(&["receive", &ticket, "-o", "-"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(error_code(&stderr).as_deref(), Some("folder_to_stdout"), "{stderr}");
    assert!(stderr.contains("-o DIR"), "the hint says what to do: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn neither_end_of_a_pipe_can_be_resumed() {
    let (alice, bob) = (Node::new(), Node::new());
    let src = random_file(alice.dir.path(), "source.bin", 200_000, 3);
    // Straight into the sender's stdin, so that the kill below reaches the sender itself.
    let mut child =
        alice.command(&["send", "-", "--file-name", "data.bin", "--json"]).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&src).unwrap()).unwrap();
    drop(stdin);
    let mut sender = Running::new_public(child);
    let first = sender.next_event(WAIT).expect("send printed nothing");
    let (ticket, id) =
        (first["ticket"].as_str().unwrap().to_owned(), first["transfer_id"].as_str().unwrap().to_owned());
    sender.kill9();

    // The sender's side: its standard input is gone.
    let (code, events, stderr) = alice.run(&["resume", &id, "--json"]);
    let error = events.iter().find(|e| e["event"] == "error").unwrap_or_else(|| panic!("{events:?} {stderr}"));
    assert_eq!((code, error["code"].as_str()), (8, Some("not_resumable")), "{error}");
    assert!(error["hint"].as_str().unwrap().contains("send -"), "{error}");

    // The receiver's side: a receive to stdout whose sender is gone fails, and cannot be
    // resumed, nor received again to stdout.
    let out = bob.command(&["receive", &ticket, "-o", "-"]).env("AGENTFERRY_PEER_TIMEOUT", "2").output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "nothing arrived, so nothing was written");
    let (code, _, stderr) = bob.run(&["resume", &id]);
    assert_eq!((code, error_code(&stderr).as_deref()), (8, Some("not_resumable")), "{stderr}");
    let out = bob.command(&["receive", &ticket, "-o", "-"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error_code(&stderr).as_deref(), Some("not_resumable"), "{stderr}");
}

#[test]
fn a_reader_that_goes_away_ends_the_receive_and_bad_names_are_refused() {
    let (alice, bob) = (Node::new(), Node::new());
    let src = random_file(alice.dir.path(), "source.bin", 24 * 1024 * 1024, 5);
    let (_sender, ticket, _) = alice.send(&src, &[]);
    // `head` reads 10 bytes and exits: the receiver's next write fails, and it must stop.
    let out = shell(&bob, "\"$BIN\" receive \"$TICKET\" -o - | head -c 10 | wc -c; echo \"${PIPESTATUS[0]}\"")
        .env("TICKET", &ticket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = text.lines();
    assert_eq!(lines.next().map(str::trim), Some("10"), "{text} {stderr}");
    let status: i32 = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("{text} {stderr}"));
    assert_ne!(status, 0, "the receive failed when its reader left: {stderr}");

    for bad in ["../up.bin", "a/b", ".hidden"] {
        let out = shell(&alice, &format!("echo data | \"$BIN\" send - --file-name '{bad}'")).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert_eq!(error_code(&stderr).as_deref(), Some("invalid_argument"), "{stderr}");
    }
}

#[test]
fn stdout_gets_the_authenticated_prefix_while_the_transfer_is_still_running() {
    let (alice, bob) = (Node::new(), Node::new());
    let size = 96 * 1024 * 1024;
    let src = random_file(alice.dir.path(), "big.bin", size, 11);
    let source = std::fs::read(&src).unwrap();
    let (sender, ticket, _) = alice.send(&src, &[]);
    let sender_pid = libc::pid_t::try_from(sender.child.id()).unwrap();
    let mut receiver = bob.command(&["receive", &ticket, "-o", "-", "--json"]).spawn().unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stdout = receiver.stdout.take().unwrap();
    let sink = std::sync::Arc::clone(&out);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buf) {
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let (tx, events) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = receiver.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line)
                && tx.send(event).is_err()
            {
                return;
            }
        }
    });

    // Stop the sender once part of the file has arrived: the rest cannot come until it goes on.
    loop {
        let event = events.recv_timeout(WAIT).expect("the receiver reports progress");
        assert_ne!(event["event"], "completed", "the transfer outran the test; make the file larger");
        if event["event"] == "progress" && event["bytes_done"].as_u64().is_some_and(|b| b > 0 && b < size as u64) {
            break;
        }
    }
    assert_eq!(unsafe { libc::kill(sender_pid, libc::SIGSTOP) }, 0);
    let deadline = std::time::Instant::now() + WAIT;
    let early = loop {
        let len = out.lock().unwrap().len();
        if len > 0 {
            break len;
        }
        assert!(std::time::Instant::now() < deadline, "nothing reached stdout while the transfer waited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(receiver.try_wait().unwrap().is_none(), "the receive is still running");
    assert!(early < size, "only part of the file so far: {early}");
    let prefix = out.lock().unwrap().clone();
    assert!(prefix[..] == source[..prefix.len()], "the prefix is the file's own bytes, in order");

    assert_eq!(unsafe { libc::kill(sender_pid, libc::SIGCONT) }, 0);
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = receiver.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = receiver.kill();
            let seen: Vec<_> = events.try_iter().collect();
            panic!(
                "the receive did not end after the sender went on; events {seen:?}, {} bytes out",
                out.lock().unwrap().len()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let deadline = std::time::Instant::now() + WAIT;
    while out.lock().unwrap().len() < size && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(out.lock().unwrap()[..] == source[..], "the whole file, byte for byte");
    drop(sender);
}
