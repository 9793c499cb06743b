//! A ticket whose sender no longer serves it: the receiver ends in seconds with one clear error,
//! not half a minute of retries. Real processes on both sides.

mod common;

use std::time::{Duration, Instant};

use common::{Node, Running, WAIT, random_file, start_relay, with_relay};

/// Send `name` from `a` to `b` to completion; returns the ticket. The sender has exited.
fn completed_ticket(a: &Node, b: &Node, relay: Option<&str>) -> String {
    let src = random_file(a.dir.path(), "done.bin", 70_000, 5);
    let args = ["send", src.to_str().unwrap(), "--json"];
    let mut send = match relay {
        Some(url) => with_relay(a, url, &args),
        None => a.command(&args),
    };
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().to_owned();
    let (code, _, stderr) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sender.finish().0, 0);
    ticket
}

/// Receive `ticket` on a fresh node; returns (exit code, last event, human output, time taken).
fn receive_again(ticket: &str) -> (i32, serde_json::Value, Duration) {
    let c = Node::new();
    let began = Instant::now();
    let (code, events, stderr) = c.run(&["receive", ticket, "-o", c.out().to_str().unwrap(), "--json"]);
    let took = began.elapsed();
    assert!(!c.out().join("done.bin").exists(), "{stderr}");
    (code, events.last().cloned().unwrap_or_default(), took)
}

#[test]
fn a_ticket_whose_sender_exited_ends_in_seconds_with_not_serving() {
    let (a, b) = (Node::new(), Node::new());
    let ticket = completed_ticket(&a, &b, None);
    let (code, last, took) = receive_again(&ticket);
    assert_eq!(
        (code, last["event"].as_str(), last["code"].as_str()),
        (4, Some("error"), Some("not_serving")),
        "{last}"
    );
    assert!(last["hint"].as_str().unwrap().contains("fresh ticket"), "{last}");
    // Three seconds of refusals is the grace for a sender still starting up.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn with_a_relay_no_sender_answering_there_ends_it_too() {
    let (relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let ticket = completed_ticket(&a, &b, Some(&url));
    let (code, last, took) = receive_again(&ticket);
    assert_eq!((code, last["code"].as_str()), (4, Some("not_serving")), "{last}");
    // One unanswered hello on the relay (5 s) decides it.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    relay.kill9();
}

#[test]
fn the_human_output_is_a_few_lines_not_one_per_try() {
    let (a, b) = (Node::new(), Node::new());
    let ticket = completed_ticket(&a, &b, None);
    let c = Node::new();
    let out = c.command(&["receive", &ticket, "-o", c.out().to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() <= 4, "{} lines:\n{text}", lines.len());
    assert!(text.contains("not serving"), "{text}");
}
