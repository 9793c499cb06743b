//! The WebRTC data-channel path end to end on loopback: real relay, sender and receiver
//! processes; the relay also signals and answers STUN. Topologies with NATs are in `webrtc_lab`.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use agentferry::{Ticket, mailbox::MailboxId};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

fn attempts<'a>(events: &'a [Value], path: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == "attempt" && e["path"] == path).collect()
}

#[test]
fn a_file_crosses_a_pinned_webrtc_path_with_equal_hashes() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    // Not a multiple of the chunk size: the last frame is short and cut into fewer messages.
    let src = random_file(a.dir.path(), "over-webrtc.bin", 9 * 1024 * 1024 + 4321, 81);
    let mut sender =
        Running::new_public(with_relay(&a, &url, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().to_owned();

    let (code, events, stderr) =
        b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--prefer", "webrtc", "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    // The sender closes the data channel once it has taken the confirmation; without that the
    // receiver waits out its confirmation budget (5 s) and says so.
    assert!(!stderr.contains("did not take the confirmation"), "{stderr}");
    let tried = attempts(&events, "webrtc");
    assert_eq!(tried.len(), 1, "{events:?}");
    assert_eq!(tried[0]["ok"], true, "{events:?}");
    assert_eq!(tried[0]["route"], "direct", "host candidates on loopback: {events:?}");
    assert!(attempts(&events, "http").is_empty() && attempts(&events, "relay").is_empty(), "pinned: {events:?}");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "completed", "{done}");
    assert_eq!(done["path"], "webrtc");
    assert_eq!(done["route"], "direct");
    assert_eq!(done["sha256"], sha256_file(&src).as_str());
    assert_eq!(done["bytes_by_path"]["webrtc"].as_u64(), Some(9 * 1024 * 1024 + 4321), "{done}");
    assert_same_file(&src, &b.out().join("over-webrtc.bin"));
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str(), last["path"].as_str()), (0, Some("completed"), Some("webrtc")));
}

#[test]
fn auto_takes_webrtc_when_the_direct_address_is_dead_and_a_sender_pinned_to_webrtc_offers_no_http() {
    let (_relay, upstream) = start_relay("127.0.0.1:0");
    // The relay slowed to about 2.6 MB/s (each sealed chunk frame held 100 ms), so the run is
    // still going when WebRTC opens: the selector takes the relay first (it answers at once),
    // then moves up to the better path.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let url = rt.block_on(proxy(upstream.clone(), Arc::new(Mutex::new(None)), Duration::from_millis(100)));
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "auto.bin", 16 * 1024 * 1024 + 7, 82);
    let mut sender =
        Running::new_public(with_relay(&a, &url, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let mut ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    ticket.addrs = vec!["127.0.0.1:1".parse().unwrap()]; // nothing listens there
    let (code, events, stderr) = b.run(&["receive", &ticket.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    let order: Vec<(&str, bool)> = events
        .iter()
        .filter(|e| e["event"] == "attempt")
        .map(|e| (e["path"].as_str().unwrap(), e["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(order[0], ("http", false), "http first: {events:?}");
    assert!(order.contains(&("webrtc", true)), "{events:?}");
    let done = events.last().unwrap();
    assert_eq!(done["path"], "webrtc", "{done}");
    assert_eq!(done["route"], "direct", "{done}");
    assert!(done["bytes_by_path"]["webrtc"].as_u64().unwrap() > 0, "{done}");
    assert_same_file(&src, &b.out().join("auto.bin"));
    assert_eq!(sender.finish().0, 0);
    let url = upstream;

    // A sender pinned to WebRTC puts no address in its ticket and serves no relay path.
    let src = random_file(a.dir.path(), "pinned.bin", 100_000, 83);
    let mut send = with_relay(&a, &url, &["send", src.to_str().unwrap(), "--prefer", "webrtc", "--json"]);
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    assert!(ticket.addrs.is_empty() && ticket.channel.is_some());
    let (code, events, _) =
        b.run(&["receive", &ticket.to_string(), "-o", b.out().to_str().unwrap(), "--prefer", "relay", "--json"]);
    assert_ne!(code, 0, "the relay path is not served: {events:?}");
    let (code, events, stderr) = b.run(&["receive", &ticket.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_eq!(events.last().unwrap()["path"], "webrtc");
    assert_same_file(&src, &b.out().join("pinned.bin"));
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn a_transfer_begun_over_http_resumes_over_webrtc_and_one_begun_over_webrtc_resumes_over_the_relay() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let (a, b) = (Node::new(), Node::new());
    for (first, then, seed) in [("http", "webrtc", 84), ("webrtc", "relay", 85)] {
        let name = format!("{first}-{then}.bin");
        let src = random_file(a.dir.path(), &name, 48 * 1024 * 1024, seed);
        let mut sender =
            Running::new_public(with_relay(&a, &url, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
        let event = sender.next_event(WAIT).unwrap();
        let (ticket, id) =
            (event["ticket"].as_str().unwrap().to_owned(), event["transfer_id"].as_str().unwrap().to_owned());
        let mut receiver = b.spawn(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--prefer", first, "--json"]);
        receiver.wait_for("a quarter on the first path", |e| {
            assert_ne!(e["event"], "completed", "finished before the kill");
            e["event"] == "progress" && e["bytes_done"].as_u64().unwrap() > 12 * 1024 * 1024
        });
        receiver.kill9();

        let (code, events, stderr) = b.run(&["resume", &id, "--prefer", then, "--json"]);
        assert_eq!(code, 0, "{events:?} {stderr}");
        let done = events.last().unwrap();
        assert_eq!(done["path"], then, "{done}");
        let first_progress = events.iter().find(|e| e["event"] == "progress").unwrap();
        assert!(first_progress["bytes_done"].as_u64().unwrap() > 0, "it did not start over");
        assert_same_file(&src, &b.out().join(&name));
        let (code, last) = sender.finish();
        assert_eq!(code, 0, "{last}");
        let by_path = &last["bytes_by_path"];
        assert!(by_path[first].as_u64().unwrap() > 0 && by_path[then].as_u64().unwrap() > 0, "{by_path}");
    }
}

/// A relay in the middle that flips one bit in every message posted to `target` (the channel
/// tampering with WebRTC signalling) and holds each large message (a chunk frame) it hands
/// back for `delay` (a slow relay that still signals promptly).
async fn proxy(upstream: String, target: Arc<Mutex<Option<MailboxId>>>, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (upstream, target) = (format!("{upstream}/v1/relay"), Arc::clone(&target));
            tokio::spawn(async move {
                let Ok(client) = tokio_tungstenite::accept_async(stream).await else { return };
                let Ok((server, _)) = tokio_tungstenite::connect_async(upstream).await else { return };
                let (mut client_tx, mut client_rx) = client.split();
                let (mut server_tx, mut server_rx) = server.split();
                let up = async {
                    while let Some(Ok(message)) = client_rx.next().await {
                        let message = match message {
                            // SEND: tag 0x02, the mailbox id, the payload.
                            Message::Binary(data) if data.len() > 40 && data[0] == 0x02 => {
                                let mut data = data.to_vec();
                                if *target.lock().unwrap()
                                    == Some(MailboxId::from_bytes(data[1..33].try_into().unwrap()))
                                {
                                    let last = data.len() - 20;
                                    data[last] ^= 0x01;
                                }
                                Message::Binary(data.into())
                            }
                            other => other,
                        };
                        if server_tx.send(message).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async {
                    while let Some(Ok(message)) = server_rx.next().await {
                        if message.len() > 64 * 1024 {
                            tokio::time::sleep(delay).await;
                        }
                        if client_tx.send(message).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! { _ = up => {}, _ = down => {} }
            });
        }
    });
    url
}

#[test]
fn a_channel_that_alters_the_offer_is_caught_and_auto_moves_on_to_the_relay() {
    let (_relay, upstream) = start_relay("127.0.0.1:0");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let target = Arc::new(Mutex::new(None));
    let url = rt.block_on(proxy(upstream, Arc::clone(&target), Duration::ZERO));
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "tampered.bin", 2 * 1024 * 1024 + 5, 86);
    let mut send = with_relay(&a, &url, &["send", src.to_str().unwrap(), "--prefer", "webrtc", "--json"]);
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    let offers = ticket.session_key.mailbox(&ticket.transfer_id, b"webrtc-offer");
    *target.lock().unwrap() = Some(offers.id());

    let (code, events, stderr) =
        b.run(&["receive", &ticket.to_string(), "-o", b.out().to_str().unwrap(), "--prefer", "webrtc", "--json"]);
    assert_ne!(code, 0, "{events:?}");
    let tried = attempts(&events, "webrtc");
    assert_eq!(tried.len(), 1, "an unauthentic path is not tried again: {events:?}");
    assert_eq!(tried[0]["error_code"], "integrity_mismatch", "{events:?}");
    let error = events.last().unwrap();
    assert_eq!(
        (error["event"].as_str(), error["code"].as_str()),
        (Some("error"), Some("integrity_mismatch")),
        "{error}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!b.out().join("tampered.bin").exists());
    drop(sender);

    // With auto, the same tampering costs only the WebRTC attempt: the relay's frames are sealed
    // and untouched, so the transfer completes there.
    let src = random_file(a.dir.path(), "around.bin", 2 * 1024 * 1024 + 6, 87);
    let mut send = with_relay(&a, &url, &["send", src.to_str().unwrap(), "--prefer", "auto", "--json"]);
    let mut sender = Running::new_public(send.spawn().unwrap());
    let mut ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    ticket.addrs = vec!["127.0.0.1:1".parse().unwrap()];
    *target.lock().unwrap() = Some(ticket.session_key.mailbox(&ticket.transfer_id, b"webrtc-offer").id());
    let (code, events, stderr) = b.run(&["receive", &ticket.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    // The relay answers at once and may finish these 2 MiB before the WebRTC attempt ends (the
    // run then cancels it); whenever it does end, it is caught, never used.
    for tried in attempts(&events, "webrtc") {
        assert_eq!(tried["error_code"], "integrity_mismatch", "{events:?}");
    }
    assert_eq!(events.last().unwrap()["path"], "relay");
    assert_same_file(&src, &b.out().join("around.bin"));
    assert_eq!(sender.finish().0, 0);
}
