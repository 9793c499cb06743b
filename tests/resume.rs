//! Crash safety: `kill -9` either side at random moments, then `agentferry resume ID`.
//!
//! The moment of each kill is drawn from a seeded RNG as a fraction of the file and taken when
//! the receiver reports having passed it, so every run kills mid-transfer, at a different place.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;

const SIZE: usize = 96 * 1024 * 1024;

fn journal(home: &Path, id: &str, role: &str) -> Value {
    let text = std::fs::read_to_string(home.join("transfers").join(format!("{id}.{role}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn kill_point(seed: u64) -> u64 {
    SIZE as u64 * StdRng::seed_from_u64(seed).random_range(10..70) / 100
}

/// Start receiving and wait until the receiver has passed `threshold` bytes (not finished).
fn receive_until(b: &Node, ticket: &str, threshold: u64) -> Running {
    let mut receiver = b.spawn(&["receive", ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    receiver.wait_for("progress past the kill point", |e| {
        assert_ne!(e["event"], "completed", "finished before the kill point; use a larger file");
        e["event"] == "progress" && e["bytes_done"].as_u64().unwrap() >= threshold
    });
    receiver
}

/// What `kill -9` must leave: a durable prefix identical to the source, no final file.
fn assert_durable_prefix(b: &Node, id: &str, src: &Path) -> u64 {
    let record = journal(&b.home(), id, "receive");
    let durable =
        (record["durable_chunks"].as_u64().unwrap() * record["chunk_size"].as_u64().unwrap()).min(SIZE as u64);
    let temp = PathBuf::from(record["temp_path"].as_str().unwrap());
    let part = std::fs::read(&temp).unwrap();
    let source = std::fs::read(src).unwrap();
    assert!(part.len() as u64 >= durable, "the temp file holds every durable chunk");
    assert!(part[..durable as usize] == source[..durable as usize], "durable chunks match the source");
    assert!(!b.out().join(src.file_name().unwrap()).exists(), "no file under the final name before verification");
    durable
}

#[test]
fn receiver_killed_at_random_moments_resumes_to_an_identical_file() {
    for seed in [11, 22, 33] {
        let (a, b) = (Node::new(), Node::new());
        let src = random_file(a.dir.path(), "big.bin", SIZE, seed);
        let (sender, ticket, id) = a.send(&src, &[]);
        receive_until(&b, &ticket, kill_point(seed)).kill9();
        assert_durable_prefix(&b, &id, &src);

        let (_, status, _) = b.run(&["status", &id, "--json"]);
        assert_eq!(status[0]["state"], "interrupted", "seed {seed}: a record without a live owner");

        let (code, events, stderr) = b.run(&["resume", &id, "--json"]);
        assert_eq!(code, 0, "seed {seed}: {events:?} {stderr}");
        assert_eq!(events.last().unwrap()["event"], "completed");
        assert_same_file(&src, &b.out().join("big.bin"));
        assert_eq!(sender.finish().0, 0, "seed {seed}");
    }
}

#[test]
fn sender_killed_at_random_moments_is_resumed_on_the_same_ticket() {
    for seed in [44, 55, 66] {
        let (a, b) = (Node::new(), Node::new());
        let src = random_file(a.dir.path(), "big.bin", SIZE, seed);
        let (sender, ticket, id) = a.send(&src, &[]);
        let receiver = receive_until(&b, &ticket, kill_point(seed));
        sender.kill9();

        let (_, status, _) = a.run(&["status", &id, "--json"]);
        assert_eq!(status[0]["state"], "interrupted");
        // The restarted sender binds the port its ticket names, so the receiver, still retrying,
        // continues without being told anything.
        let mut resumed = a.spawn(&["resume", &id, "--json"]);
        let first = resumed.next_event(WAIT).unwrap();
        assert_eq!(first["event"], "ticket");
        assert_eq!(first["ticket"], ticket.as_str(), "the same ticket stays valid");

        let (code, last) = receiver.finish();
        assert_eq!(code, 0, "seed {seed}: {last}");
        assert_eq!(last["event"], "completed");
        assert_same_file(&src, &b.out().join("big.bin"));
        let (code, last) = resumed.finish();
        assert_eq!((code, last["event"].as_str()), (0, Some("completed")), "seed {seed}");
    }
}

#[test]
fn both_sides_killed_then_both_resumed() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "big.bin", SIZE, 77);
    let (sender, ticket, id) = a.send(&src, &[]);
    let receiver = receive_until(&b, &ticket, kill_point(77));
    receiver.kill9();
    sender.kill9();
    let durable = assert_durable_prefix(&b, &id, &src);

    let resumed_sender = a.spawn(&["resume", &id, "--json"]);
    let (code, events, stderr) = b.run(&["resume", &id, "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_same_file(&src, &b.out().join("big.bin"));
    // The receiver picked up from its durable point rather than from zero.
    let first_progress = events.iter().find(|e| e["event"] == "progress").unwrap();
    assert!(first_progress["bytes_done"].as_u64().unwrap() > durable || durable == 0);
    assert_eq!(resumed_sender.finish().0, 0);
}

#[test]
fn a_sender_whose_file_changed_refuses_to_resume() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "big.bin", SIZE, 88);
    let (sender, ticket, id) = a.send(&src, &[]);
    let receiver = receive_until(&b, &ticket, kill_point(88));
    sender.kill9();
    receiver.kill9();
    random_file(a.dir.path(), "big.bin", SIZE, 89); // same size, new content and mtime

    let (code, events, _) = a.run(&["resume", &id, "--json"]);
    assert_eq!(code, 7, "{events:?}");
    assert_eq!(events.last().unwrap()["code"], "source_changed");
    let (_, status, _) = a.run(&["status", &id, "--json"]);
    assert_eq!(status[0]["state"], "failed");
    assert_eq!(status[0]["error"]["code"], "source_changed");
}

#[test]
fn resuming_a_completed_transfer_says_so() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "small.bin", 1000, 99);
    let (sender, ticket, id) = a.send(&src, &[]);
    assert_eq!(b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]).0, 0);
    assert_eq!(sender.finish().0, 0);
    for node in [&a, &b] {
        let (code, events, _) = node.run(&["resume", &id, "--json"]);
        assert_eq!(code, 8);
        assert_eq!(events[0]["code"], "already_completed");
        assert!(events[0]["hint"].as_str().unwrap().contains(&format!("`agentferry status {id}`")), "{}", events[0]);
    }
}
