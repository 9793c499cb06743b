//! What the CLI tells a person: the sender's time and rate count from the first byte served,
//! not from launch; `status` has a header, says when the journal is empty, and shows what a
//! sender sent; `status` and `resume` take a unique prefix of an id.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_senders_elapsed_time_counts_from_the_first_byte_not_from_launch() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "late.bin", 4 * 1024 * 1024, 5);
    let (sender, ticket, _) = a.send(&src, &[]);
    // The receiver comes late: the scenario, not a wait for a condition.
    let launched = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (code, events, stderr) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    let receiver_ms = events.last().unwrap()["elapsed_ms"].as_u64().unwrap();
    let (code, done) = sender.finish();
    assert_eq!(code, 0);
    assert_eq!(done["event"], "completed");
    let sender_ms = done["elapsed_ms"].as_u64().unwrap();
    assert!(launched.elapsed() >= Duration::from_secs(3));
    assert!(
        sender_ms < 3000 && sender_ms <= receiver_ms + 1000,
        "the sender says {sender_ms} ms, the receiver {receiver_ms} ms, after a 3 s wait"
    );
}

#[test]
fn status_has_a_header_and_says_when_there_is_nothing() {
    let a = Node::new();
    let out = a.command(&["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no transfers yet"));
    assert!(out.stdout.is_empty());

    let src = random_file(a.dir.path(), "x.bin", 1000, 1);
    let b = Node::new();
    let (sender, ticket, id) = a.send(&src, &[]);
    let (code, _, _) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(sender.finish().0, 0);
    let out = a.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("ID "), "{text}");
    assert!(lines.next().unwrap().starts_with(&id), "{text}");
}

#[test]
fn status_and_resume_take_a_unique_prefix_of_six_or_more() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "p.bin", 1000, 2);
    let (sender, ticket, id) = a.send(&src, &[]);
    let (code, _, _) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(sender.finish().0, 0);

    let (code, events, _) = b.run(&["status", &id[..6], "--json"]);
    assert_eq!(code, 0);
    assert_eq!(events[0]["transfer_id"], id.as_str());
    assert_eq!(events[0]["state"], "completed");
    let (code, events, _) = b.run(&["status", &id[..12].to_uppercase(), "--json"]);
    assert_eq!((code, events[0]["transfer_id"].as_str()), (0, Some(id.as_str())));

    let (code, events, _) = b.run(&["resume", &id[..8], "--json"]);
    assert_eq!(code, 8);
    assert_eq!(events[0]["code"], "already_completed");

    let (code, events, _) = b.run(&["status", &id[..5], "--json"]);
    assert_eq!(code, 8);
    assert_eq!(events[0]["code"], "transfer_not_found");
    assert!(events[0]["message"].as_str().unwrap().contains("at least its first 6"));
    let other = if id.starts_with("ffffff") { "000000" } else { "ffffff" };
    let (code, events, _) = b.run(&["status", other, "--json"]);
    assert_eq!((code, events[0]["code"].as_str()), (8, Some("transfer_not_found")));
}
