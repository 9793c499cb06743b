//! The message-channel path end to end: real relay processes, real senders and receivers.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

use agentferry::Ticket;
use common::*;

#[test]
fn unreachable_direct_addresses_fall_back_to_the_relay() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "via-relay.bin", 6 * 1024 * 1024 + 11, 21);
    // Pinned to the relay, the sender declines WebRTC offers (the webrtc tests cover that path).
    let mut sender = Running::new_public(
        with_relay(&a, &url, &["send", src.to_str().unwrap(), "--prefer", "relay", "--json"]).spawn().unwrap(),
    );
    let ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    assert_eq!(ticket.channel.as_deref(), Some(url.as_str()), "the ticket carries the relay hint");
    let mut blocked = ticket.clone();
    blocked.addrs = vec!["127.0.0.1:1".parse().unwrap()]; // nothing listens there

    let (code, events, stderr) = b.run(&["receive", &blocked.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    let attempts: Vec<_> = events.iter().filter(|e| e["event"] == "attempt").collect();
    assert_eq!(attempts[0]["path"], "http");
    assert_eq!(attempts[0]["ok"], false);
    assert_eq!(attempts[0]["error_code"], "not_serving");
    // The sender serves the relay only: a WebRTC attempt, if it ends within the run, is declined.
    assert!(attempts.iter().all(|a| a["path"] != "webrtc" || a["error_code"] == "path_unavailable"));
    assert!(attempts.iter().any(|a| a["path"] == "relay" && a["ok"] == true));
    assert_eq!(events.last().unwrap()["path"], "relay");
    assert_same_file(&src, &b.out().join("via-relay.bin"));
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")));

    // With --prefer http the relay is never tried, and the failure says why.
    let src2 = random_file(a.dir.path(), "direct-only.bin", 1000, 22);
    let mut sender =
        Running::new_public(with_relay(&a, &url, &["send", src2.to_str().unwrap(), "--json"]).spawn().unwrap());
    let mut blocked: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    blocked.addrs = vec!["127.0.0.1:1".parse().unwrap()];
    let mut cmd =
        b.command(&["receive", &blocked.to_string(), "-o", b.out().to_str().unwrap(), "--prefer", "http", "--json"]);
    cmd.env("AGENTFERRY_PEER_TIMEOUT", "1");
    let out = cmd.output().unwrap();
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(last["code"], "not_serving");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("\"path\":\"relay\""), "the relay was not tried");
    sender.kill9();
}

#[test]
fn the_folder_channel_carries_a_transfer_and_leaves_nothing_behind() {
    let shared = tempfile::tempdir().unwrap();
    let channel = format!("folder:{}", shared.path().display());
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "shared.bin", 3 * 1024 * 1024, 23);
    let mut sender =
        Running::new_public(with_relay(&a, &channel, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().to_owned();
    // Both sides are configured with the shared folder.
    let out = b.out();
    let output =
        with_relay(&b, &channel, &["receive", &ticket, "-o", out.to_str().unwrap(), "--prefer", "relay", "--json"])
            .output()
            .unwrap();
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(output.status.code(), Some(0), "{events:?}");
    assert_eq!(events.last().unwrap()["path"], "relay");
    assert_same_file(&src, &b.out().join("shared.bin"));
    assert_eq!(sender.finish().0, 0);
    let leftovers: usize = std::fs::read_dir(shared.path())
        .unwrap()
        .flatten()
        .map(|mailbox| std::fs::read_dir(mailbox.path()).unwrap().count())
        .sum();
    assert_eq!(leftovers, 0, "every message was consumed");
}

#[test]
fn a_ticket_cannot_make_the_receiver_use_a_folder_it_did_not_configure() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "plain.bin", 300_000, 26);
    let (sender, ticket, _) = a.send(&src, &[]);
    let mut hostile: agentferry::Ticket = ticket.parse().unwrap();
    let planted = b.dir.path().join("planted").join("deep");
    hostile.channel = Some(format!("folder:{}", planted.display()));
    // Pinned to the channel: refused, and the folder is not created.
    let (code, events, _) =
        b.run(&["receive", &hostile.to_string(), "-o", b.out().to_str().unwrap(), "--prefer", "relay", "--json"]);
    assert_ne!(code, 0);
    assert_eq!(events.last().unwrap()["code"], "path_unavailable", "{events:?}");
    assert!(!b.dir.path().join("planted").exists(), "the ticket's folder was created");
    // Otherwise the folder is ignored and the direct path carries the file.
    let (code, events, _) = b.run(&["receive", &hostile.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?}");
    assert_same_file(&src, &b.out().join("plain.bin"));
    assert!(!b.dir.path().join("planted").exists(), "the ticket's folder was created");
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn a_transfer_begun_over_http_resumes_over_the_relay() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "switch.bin", 40 * 1024 * 1024, 24);
    let mut sender =
        Running::new_public(with_relay(&a, &url, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let first = sender.next_event(WAIT).unwrap();
    let (ticket, id) =
        (first["ticket"].as_str().unwrap().to_owned(), first["transfer_id"].as_str().unwrap().to_owned());
    let mut receiver = b.spawn(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    receiver.wait_for("a third over http", |e| {
        assert_ne!(e["event"], "completed", "finished before the kill");
        e["event"] == "progress" && e["bytes_done"].as_u64().unwrap() > 12 * 1024 * 1024
    });
    assert!(receiver.seen.iter().any(|e| e["event"] == "attempt" && e["path"] == "http" && e["ok"] == true));
    receiver.kill9();

    let (code, events, stderr) = b.run(&["resume", &id, "--prefer", "relay", "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_eq!(events.last().unwrap()["path"], "relay");
    let first_progress = events.iter().find(|e| e["event"] == "progress").unwrap();
    assert!(first_progress["bytes_done"].as_u64().unwrap() > 0, "it did not start over");
    assert_same_file(&src, &b.out().join("switch.bin"));
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn a_relay_killed_and_restarted_mid_transfer_is_survived() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let (relay, url) = start_relay(&listen);
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "bumpy.bin", 40 * 1024 * 1024, 25);
    let mut sender =
        Running::new_public(with_relay(&a, &url, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().to_owned();
    let mut receiver = b.spawn(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--prefer", "relay", "--json"]);
    receiver.wait_for("some progress over the relay", |e| {
        assert_ne!(e["event"], "completed", "finished before the kill");
        e["event"] == "progress" && e["bytes_done"].as_u64().unwrap() > 8 * 1024 * 1024
    });
    relay.kill9();
    let (_relay, _) = start_relay(&listen);

    let (code, last) = receiver.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")), "{last}");
    assert_same_file(&src, &b.out().join("bumpy.bin"));
    assert_eq!(sender.finish().0, 0);
}

/// A TCP proxy that records every byte both ways.
fn recording_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let server = TcpStream::connect(upstream).unwrap();
            for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, seen)
}

#[test]
fn the_relay_sees_neither_secrets_nor_plaintext() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (proxy, seen) = recording_proxy(url.trim_start_matches("ws://").parse().unwrap());
    let via_proxy = format!("ws://{proxy}");
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "confidential-report.bin", 2 * 1024 * 1024, 26);
    let mut sender =
        Running::new_public(with_relay(&a, &via_proxy, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let ticket_text = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().to_owned();
    let (code, events, _) =
        b.run(&["receive", &ticket_text, "-o", b.out().to_str().unwrap(), "--prefer", "relay", "--json"]);
    assert_eq!(code, 0, "{events:?}");
    assert_eq!(sender.finish().0, 0);

    let wire = seen.lock().unwrap().clone();
    assert!(wire.len() > 2 * 1024 * 1024, "the transfer went through the proxy");
    let ticket: Ticket = ticket_text.parse().unwrap();
    let contains = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(ticket.session_key.as_bytes()), "session key on the wire");
    assert!(!contains(ticket_text.as_bytes()), "ticket on the wire");
    assert!(!contains(ticket.session_key.http_token(&ticket.transfer_id).as_bytes()), "token on the wire");
    assert!(!contains(b"confidential-report"), "file name on the wire");
    let plain = std::fs::read(&src).unwrap();
    for offset in [0, 100_000, 1_000_000, 2 * 1024 * 1024 - 64] {
        assert!(!contains(&plain[offset..offset + 32]), "plaintext at {offset} on the wire");
    }
}

#[test]
fn offers_travel_through_the_relay_and_wait_for_a_peer_that_connects_later() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let out = with_relay(&b, &url, &["export", "--name", "bob", "--json"]).output().unwrap();
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let uri: agentferry::peers::GrantUri = exported["uri"].as_str().unwrap().parse().unwrap();
    assert_eq!(uri.channel.as_ref().map(|(c, _)| c.as_str()), Some(url.as_str()), "the grant carries the relay hint");
    assert_eq!(a.run(&["peers", "add", exported["uri"].as_str().unwrap(), "--json"]).0, 0);

    // Bob is not listening yet: the offer waits in the relay.
    let src = random_file(a.dir.path(), "later.bin", 2 * 1024 * 1024, 27);
    let args = ["send", src.to_str().unwrap(), "--to", "bob", "--prefer", "relay", "--json"];
    let mut sender = Running::new_public(with_relay(&a, &url, &args).spawn().unwrap());
    let offered = sender.next_event(WAIT).unwrap();
    assert_eq!((offered["event"].as_str(), offered["state"].as_str()), (Some("offered"), Some("queued")), "{offered}");

    let downloads = b.dir.path().join("downloads");
    let listen = ["listen", "--download-dir", downloads.to_str().unwrap(), "--json"];
    let listener = Running::new_public(with_relay(&b, &url, &listen).spawn().unwrap());
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")), "{last}");
    assert_same_file(&src, &downloads.join("later.bin"));
    listener.kill9();
}

/// Who is at fault, in code, message and hint: a relay that is down is not a sender that
/// stopped serving.
#[test]
fn a_relay_that_is_down_is_named_as_the_channel_not_the_sender() {
    let (relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "stuck.bin", 100_000, 23);
    let mut sender = Running::new_public(
        with_relay(&a, &url, &["send", src.to_str().unwrap(), "--prefer", "relay", "--json"]).spawn().unwrap(),
    );
    let mut ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    ticket.addrs = vec!["127.0.0.1:1".parse().unwrap()]; // no direct path either
    relay.kill9();

    let mut cmd = b.command(&["receive", &ticket.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    cmd.env("AGENTFERRY_PEER_TIMEOUT", "2");
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((out.status.code(), last["code"].as_str()), (Some(4), Some("channel_unreachable")), "{stdout}");
    let message = last["message"].as_str().unwrap();
    assert!(message.contains(&url) && !message.contains("sender"), "names the relay: {message}");
    assert!(last["hint"].as_str().unwrap().contains("relay"), "{last}");
    assert!(!b.out().join("stuck.bin").exists());
    sender.kill9();
}
