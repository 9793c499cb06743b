//! Issue 9, item 2: what a ticket declares cannot abort or exhaust a receiver.

mod attack;
mod common;

use attack::*;
use common::*;

/// A sender declaring 2^50 bytes in 1-byte chunks used to make the receiver allocate a bitmap
/// of 2^47 bytes and abort (exit 134). Now the ticket is refused before anything happens.
#[test]
fn an_absurd_declared_size_is_refused_with_a_clear_error() {
    let hostile = HostileSender::start("huge.bin", 1 << 50, 1);
    let b = Node::new();
    let ticket = hostile.ticket.to_string();
    let (code, events, stderr) = run(&b, &["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 5, "expected a clean size_limit error, got exit {code}: {events:?} {stderr}");
    let last = events.last().unwrap();
    assert_eq!(last["code"], "size_limit_exceeded");
    assert!(last["hint"].as_str().unwrap().contains("do not trust"));
    assert!(listing(&b.out()).is_empty(), "nothing is written for a refused ticket");
}

/// A declared size larger than the free space fails at once with `disk_full`, before any
/// temp file exists, and stays resumable.
#[test]
fn a_size_beyond_the_free_space_fails_at_once_with_disk_full() {
    let b = Node::new();
    std::fs::create_dir_all(b.out()).unwrap();
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(b.out()).output().unwrap();
    let free: u64 = String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap();
    let size = free + (1 << 30);
    assert!(size < agentferry::manifest::MAX_FILE_SIZE, "this disk is too large for the test");
    let hostile = HostileSender::start("big.bin", size, 1 << 20);
    let ticket = hostile.ticket.to_string();
    let started = std::time::Instant::now();
    let (code, events, stderr) = run(&b, &["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 6, "{events:?} {stderr}");
    let last = events.last().unwrap();
    assert_eq!(last["code"], "disk_full", "{events:?}");
    assert!(last["message"].as_str().unwrap().contains("free"), "{last}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "refused before waiting for the sender");
    assert!(listing(&b.out()).is_empty(), "no temp file: {:?}", listing(&b.out()));
    let id = hostile.ticket.transfer_id.to_string();
    let (_, status, _) = run(&b, &["status", &id, "--json"]);
    assert_eq!(status[0]["state"], "failed");
    assert_eq!(status[0]["error"]["code"], "disk_full");
}

/// The same ticket inside an authentic offer under a valid grant used to make `listen` abort,
/// and with it every transfer it ran. The offer is now refused and the inbox stays up.
#[test]
fn an_absurd_ticket_in_an_offer_does_not_take_the_inbox_down() {
    use agentferry::{offer::Offer, peers::GrantUri};
    let b = Node::new();
    let (_, exported, _) = run(&b, &["export", "--name", "bob", "--json"]);
    let uri: GrantUri = exported[0]["uri"].as_str().unwrap().parse().unwrap();
    let grant_id = exported[0]["grant_id"].as_str().unwrap().to_owned();
    let mut listen = command(&b, &["listen", "--json"]);
    listen.env("AGENTFERRY_INBOX_BIND", "127.0.0.1:0").env("AGENTFERRY_DOWNLOAD_DIR", b.out());
    let mut listener = Running::new_public(listen.spawn().unwrap());
    let inbox = listener.wait_for("the inbox", |e| e["event"] == "inbox");
    let addr: std::net::SocketAddr = inbox["addrs"][0].as_str().unwrap().parse().unwrap();

    let hostile = HostileSender::start("huge.bin", 1 << 50, 1);
    let offer = Offer::seal(&grant_id, &uri.secret, "mallory", &hostile.ticket);
    let (status, answer) = post_offer(addr, &serde_json::to_string(&offer).unwrap());
    assert!(status >= 400, "{status} {answer}");
    assert!(listener.child.try_wait().unwrap().is_none(), "listen exited");
    // And it still takes offers: a replay of the same id is recognised as one.
    let (status, _) = post_offer(addr, &serde_json::to_string(&offer).unwrap());
    assert!(status >= 400);
    assert!(listener.child.try_wait().unwrap().is_none(), "listen exited");
}
