//! Folders end to end with the real binary: a tree arrives identical (contents, empty files and
//! folders, modes) over HTTP and over the relay; a receiver killed mid-tree resumes without
//! fetching again what was durable; unsafe listings and existing trees are refused before
//! anything is written; each file's SHA-256, as both sides list it, checks with `sha256sum -c`.

mod common;

use std::{
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
};

use common::*;
use serde_json::Value;

/// The umask the binaries inherit from this test process.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap();
    u32::from_str_radix(line.trim(), 8).unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with nested and empty folders, empty files, `small` small files, one file of `large`
/// bytes, assorted modes and a symbolic link (which is not sent).
fn make_tree(parent: &Path, small: usize, large: usize) -> PathBuf {
    let root = parent.join("project");
    std::fs::create_dir_all(root.join("src/deep/er/still")).unwrap();
    std::fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    std::fs::write(root.join("README.md"), "hello\n").unwrap();
    std::fs::write(root.join("src/deep/er/still/leaf.txt"), "leaf").unwrap();
    std::fs::write(root.join("src/empty-file"), "").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    chmod(&root.join("run.sh"), 0o755);
    std::fs::write(root.join("secret.key"), "k").unwrap();
    chmod(&root.join("secret.key"), 0o600);
    std::fs::write(root.join("src/readonly.txt"), "ro").unwrap();
    chmod(&root.join("src/readonly.txt"), 0o444);
    for i in 0..small {
        std::fs::write(root.join(format!("many/f{i:05}.txt")), format!("file number {i}\n").repeat(i % 7)).unwrap();
    }
    random_file(&root.join("src"), "large.bin", large, 7);
    symlink("README.md", root.join("link-to-readme")).unwrap();
    chmod(&root.join("src/deep"), 0o750);
    root
}

/// Every entry under `root` (links left out): relative path, mode bits, contents (None for folders).
fn snapshot(root: &Path) -> Vec<(String, u32, Option<Vec<u8>>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u32, Option<Vec<u8>>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.push((rel, mode, None));
                walk(root, &path, out);
            } else if meta.is_file() {
                out.push((rel, mode, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    let mut out = vec![(String::new(), std::fs::metadata(root).unwrap().permissions().mode() & 0o7777, None)];
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The received tree holds exactly the source's files, folders and contents, with the source's
/// modes as the umask lets them be.
fn assert_same_tree(src: &Path, dst: &Path) {
    let mask = !umask();
    let expected: Vec<_> = snapshot(src).into_iter().map(|(p, m, c)| (p, m & mask, c)).collect();
    let got = snapshot(dst);
    assert_eq!(got.len(), expected.len(), "entry counts differ");
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!((&e.0, e.1), (&g.0, g.1), "path or mode differs");
        assert!(e.2 == g.2, "{} differs in content", e.0);
    }
}

/// Nothing but `expected` in the output folder: no temp stream, no staging tree.
fn assert_only(out: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(names, expected, "what the output folder holds");
}

/// The `sums` a completed event names: `sha256sum -c` run from `dir` (which holds the tree)
/// finds every one of `files` files intact. Returns the list.
fn assert_sums_check(completed: &Value, dir: &Path, files: usize) -> String {
    let sums = completed["sums"].as_str().unwrap_or_else(|| panic!("no sums in {completed}"));
    let out = std::process::Command::new("sha256sum").args(["-c", "--strict", sums]).current_dir(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sha256sum -c {sums}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.ends_with(": OK")).count(), files, "{stdout}");
    std::fs::read_to_string(sums).unwrap()
}

fn receive(b: &Node, ticket: &str, extra: &[&str]) -> (i32, Vec<Value>, String) {
    let out = b.out();
    let mut args = vec!["receive", ticket, "-o", out.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    b.run(&args)
}

#[test]
fn a_tree_with_a_thousand_small_files_arrives_identical_over_http() {
    let (a, b) = (Node::new(), Node::new());
    let src = make_tree(a.dir.path(), 1000, 5 * 1024 * 1024 + 3);
    let mut sender = a.spawn(&["send", src.to_str().unwrap(), "--json"]);
    let first = sender.next_event(WAIT).unwrap();
    assert_eq!(first["event"], "ticket");
    assert_eq!(first["file_name"], "project");
    assert_eq!(first["folder"]["files"], 1000 + 7);
    assert_eq!(first["folder"]["folders"], 7);
    assert_eq!(first["folder"]["skipped_count"], 1);
    assert_eq!(first["folder"]["skipped"][0], "link-to-readme (a symbolic link)");
    let ticket = first["ticket"].as_str().unwrap();

    let (code, events, stderr) = receive(&b, ticket, &[]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "completed");
    let saved_to = b.out().canonicalize().unwrap().join("project");
    assert_eq!(done["saved_to"], saved_to.to_str().unwrap());
    assert_same_tree(&src, &saved_to);
    assert!(!saved_to.join("link-to-readme").exists(), "links are not sent");
    assert_only(&b.out(), &["project"]);
    assert_eq!(done["path"], "http");
    // Progress counts files once the listing is in; the last one has them all.
    let last = events.iter().rev().find(|e| e["event"] == "progress").unwrap();
    assert_eq!((last["files"]["done"].as_u64(), last["files"]["total"].as_u64()), (Some(1007), Some(1007)), "{last}");
    // Both sides list each file's SHA-256, the same way, and the lists check.
    let received = assert_sums_check(done, &b.out(), 1007);
    let (code, sent) = sender.finish();
    assert_eq!(code, 0);
    assert_eq!(assert_sums_check(&sent, a.dir.path(), 1007), received);
}

#[test]
fn a_tree_arrives_identical_over_the_relay() {
    let relay_node = Node::new();
    let mut relay =
        Running::new_public(relay_node.command(&["relay", "--listen", "127.0.0.1:0", "--json"]).spawn().unwrap());
    let url = relay.next_event(WAIT).unwrap()["url"].as_str().unwrap().to_owned();
    let (a, b) = (Node::new(), Node::new());
    let src = make_tree(a.dir.path(), 1000, 3 * 1024 * 1024);
    let mut cmd = a.command(&["send", src.to_str().unwrap(), "--json"]);
    cmd.env("AGENTFERRY_RELAY", &url);
    let mut sender = Running::new_public(cmd.spawn().unwrap());
    let ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().to_owned();

    let (code, events, stderr) = receive(&b, &ticket, &["--prefer", "relay"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    let done = events.last().unwrap();
    assert_eq!(done["path"], "relay");
    assert_same_tree(&src, &b.out().join("project"));
    assert_only(&b.out(), &["project"]);
    assert_sums_check(done, &b.out(), 1007);
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn a_receiver_killed_mid_tree_resumes_without_fetching_durable_chunks_again() {
    let (a, b) = (Node::new(), Node::new());
    let src = make_tree(a.dir.path(), 500, 0);
    // Large enough that a checkpoint (every 128 chunks of 256 KiB) falls before the kill.
    for i in 0..48 {
        random_file(&src.join("many"), &format!("chunky{i:02}.bin"), 2 * 1024 * 1024 + i, i as u64);
    }
    let (sender, ticket, id) = a.send(&src, &[]);
    let mut receiver = b.spawn(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    let total = receiver.wait_for("progress past three quarters of the tree", |e| {
        assert_ne!(e["event"], "completed", "finished before the kill point");
        e["event"] == "progress" && e["bytes_done"].as_u64().unwrap() * 4 >= e["bytes_total"].as_u64().unwrap() * 3
    })["bytes_total"]
        .as_u64()
        .unwrap();
    receiver.kill9();
    assert!(!b.out().join("project").exists(), "no tree under the final name before it verifies");

    let (code, events, stderr) = b.run(&["resume", &id, "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "completed");
    let fetched: u64 = done["bytes_by_path"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(fetched < total, "the resumed run fetched {fetched} of {total} bytes: durable chunks were sent again");
    assert_same_tree(&src, &b.out().join("project"));
    assert_only(&b.out(), &["project"]);
    // The per-file digests came out right though part of the stream was hashed from disk.
    assert_sums_check(done, &b.out(), 507 + 48);
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn names_that_collide_ignoring_case_are_refused_before_anything_is_written() {
    for (first, second) in [("README", "readme"), ("notes\u{202e}txt.exe", "plain")] {
        let (a, b) = (Node::new(), Node::new());
        let src = a.dir.path().join("clash");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join(first), "one").unwrap();
        std::fs::write(src.join(second), "two").unwrap();
        let (_sender, ticket, id) = a.send(&src, &[]);
        let (code, events, _) = receive(&b, &ticket, &[]);
        assert_eq!(code, 5, "{events:?}");
        let error = events.last().unwrap();
        assert_eq!(error["code"], "listing_refused", "{error}");
        assert!(error["hint"].as_str().unwrap().contains("nothing was written"));
        assert_only(&b.out(), &[]);
        let (_, status, _) = b.run(&["status", &id, "--json"]);
        assert_eq!(status[0]["state"], "failed");
    }
}

#[test]
fn an_existing_tree_is_kept_unless_overwrite_is_asked() {
    let (a, b) = (Node::new(), Node::new());
    let src = make_tree(a.dir.path(), 3, 1000);
    let existing = b.out().join("project");
    std::fs::create_dir_all(&existing).unwrap();
    std::fs::write(existing.join("mine.txt"), "keep me").unwrap();

    let (_sender, ticket, _) = a.send(&src, &[]);
    let (code, events, _) = receive(&b, &ticket, &[]);
    assert_eq!(code, 6);
    assert_eq!(events.last().unwrap()["code"], "file_exists");
    assert_eq!(std::fs::read_to_string(existing.join("mine.txt")).unwrap(), "keep me");

    let (code, events, stderr) = receive(&b, &ticket, &["--overwrite"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_same_tree(&src, &existing);
    assert_only(&b.out(), &["project"]);
}

#[test]
fn a_single_file_keeps_its_mode_without_setuid() {
    let (a, b) = (Node::new(), Node::new());
    for (name, mode) in [("tool.sh", 0o755), ("private.txt", 0o600), ("setuid", 0o4755), ("shared", 0o664)] {
        let src = random_file(a.dir.path(), name, 1000, 3);
        chmod(&src, mode);
        let (sender, ticket, _) = a.send(&src, &[]);
        let (code, events, stderr) = receive(&b, &ticket, &[]);
        assert_eq!(code, 0, "{events:?} {stderr}");
        let got = std::fs::metadata(b.out().join(name)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, mode & 0o777 & !umask(), "{name}");
        assert_eq!(sender.finish().0, 0);
    }
}

#[test]
fn a_sender_whose_folder_changed_refuses_to_resume_it() {
    for change in ["edit", "chmod", "add"] {
        let a = Node::new();
        let src = make_tree(a.dir.path(), 5, 1000);
        let (sender, _, id) = a.send(&src, &[]);
        sender.kill9();
        match change {
            "edit" => std::fs::write(src.join("README.md"), "changed, and longer\n").unwrap(),
            "chmod" => chmod(&src.join("run.sh"), 0o700),
            _ => std::fs::write(src.join("many/new.txt"), "new").unwrap(),
        }
        let (code, events, stderr) = a.run(&["resume", &id, "--json"]);
        assert_eq!(code, 7, "{change}: {events:?} {stderr}");
        assert_eq!(events.last().unwrap()["code"], "source_changed", "{change}");
    }
}

#[test]
fn the_node_home_is_left_out_of_a_folder_and_never_sent_itself() {
    let (a, b) = (Node::new(), Node::new());
    assert_eq!(a.run(&["status"]).0, 0, "creates the home");
    std::fs::write(a.home().join("transfers/planted.json"), "stands for a record with a session key").unwrap();
    let parent = a.dir.path().join("everything");
    std::fs::create_dir(&parent).unwrap();
    std::fs::write(parent.join("notes.txt"), "n").unwrap();
    // `send ~` where the home is below: it is named as skipped and does not travel.
    let nested = parent.join("home");
    std::fs::rename(a.home(), &nested).unwrap();
    std::os::unix::fs::symlink(&nested, a.home()).unwrap();
    let mut sender = a.spawn(&["send", parent.to_str().unwrap(), "--json"]);
    let first = sender.next_event(WAIT).unwrap();
    assert_eq!(first["folder"]["skipped"][0], "home (agentferry's own home: it holds session keys)", "{first}");
    let (code, events, stderr) = receive(&b, first["ticket"].as_str().unwrap(), &[]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    let saved_to = b.out().join("everything");
    assert!(saved_to.join("notes.txt").is_file());
    assert!(!saved_to.join("home").exists(), "the home was sent");
    assert_eq!(sender.finish().0, 0);

    // The home itself, anything in it, or a link to it: refused before any ticket.
    let alias = a.dir.path().join("alias");
    std::os::unix::fs::symlink(&nested, &alias).unwrap();
    for path in [nested.clone(), nested.join("transfers/planted.json"), nested.join("transfers"), alias] {
        let (code, events, stderr) = a.run(&["send", path.to_str().unwrap(), "--json"]);
        assert_eq!(code, 6, "{path:?}: {events:?} {stderr}");
        assert_eq!(events.len(), 1, "no ticket: {events:?}");
        assert_eq!(events[0]["code"], "source_private", "{events:?}");
    }
}
