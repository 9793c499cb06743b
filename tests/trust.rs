//! Trust management through the CLI: export, peers, grants, on homes shared by several processes.

mod common;

use common::*;

#[test]
fn export_prints_a_uri_and_peers_add_list_extend_remove_round_trip() {
    let (a, b) = (Node::new(), Node::new());
    let (code, events, _) = b.run(&["export", "--name", "bob", "--ttl", "2h", "--json"]);
    assert_eq!(code, 0);
    let uri = events[0]["uri"].as_str().unwrap().to_owned();
    assert_eq!(events[0]["event"], "exported");
    assert!(uri.starts_with("grant"));

    let (code, events, _) = a.run(&["peers", "add", &uri, "--json"]);
    assert_eq!(code, 0, "{events:?}");
    assert_eq!(events[0]["name"], "bob");
    assert!(!events[0].to_string().contains(&uri[5..30]), "the secret is not echoed");
    let (_, listed, _) = a.run(&["peers", "list", "--json"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["expired"], false);
    let (code, extended, _) = a.run(&["peers", "extend", "bob", "--ttl", "30d", "--json"]);
    assert_eq!(code, 0);
    assert!(extended[0]["expires_at"].as_u64() > listed[0]["expires_at"].as_u64());
    let (code, _, _) = a.run(&["peers", "remove", "bob", "--json"]);
    assert_eq!(code, 0);
    let (code, events, _) = a.run(&["peers", "remove", "bob", "--json"]);
    assert_eq!(code, 8);
    assert_eq!(events[0]["code"], "peer_not_found");

    let (code, events, _) = a.run(&["peers", "add", &uri[..uri.len() - 4], "--json"]);
    assert_eq!(code, 3);
    assert_eq!(events[0]["code"], "peer_uri_invalid");
}

#[test]
fn grants_can_be_listed_and_revoked() {
    let b = Node::new();
    let (_, exported, _) = b.run(&["export", "--json"]);
    let id = exported[0]["grant_id"].as_str().unwrap().to_owned();
    let (code, revoked, _) = b.run(&["grants", "revoke", &id, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(revoked[0]["revoked"], true);
    let (_, listed, _) = b.run(&["grants", "list", "--json"]);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["revoked"], true);
    let (code, missing, _) = b.run(&["grants", "revoke", "ffff", "--json"]);
    assert_eq!(code, 8);
    assert_eq!(missing[0]["code"], "grant_not_found");
}

#[test]
fn concurrent_processes_on_one_home_lose_no_update() {
    let b = Node::new();
    let children: Vec<_> = (0..12).map(|_| b.command(&["export", "--json"]).spawn().unwrap()).collect();
    let mut inboxes = std::collections::HashSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let event: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let uri: agentferry::peers::GrantUri = event["uri"].as_str().unwrap().parse().unwrap();
        inboxes.insert(uri.inbox);
    }
    let (_, listed, _) = b.run(&["grants", "list", "--json"]);
    assert_eq!(listed.len(), 12, "every export survived the others");
    assert_eq!(inboxes.len(), 1, "one inbox address for the home, whoever chose it first");
}

#[test]
fn listen_auto_accepts_a_cli_push_from_a_trusted_peer() {
    let (a, b) = (Node::new(), Node::new());
    let (_, exported, _) = b.run(&["export", "--name", "bob", "--json"]);
    assert_eq!(a.run(&["peers", "add", exported[0]["uri"].as_str().unwrap(), "--json"]).0, 0);
    let downloads = b.dir.path().join("downloads");
    let mut listener = b.spawn(&["listen", "--download-dir", downloads.to_str().unwrap(), "--json"]);
    let ready = listener.next_event(WAIT).unwrap();
    assert_eq!(ready["event"], "inbox");

    let src = random_file(a.dir.path(), "pushed.bin", 2_000_000, 12);
    let mut sender = a.spawn(&["send", src.to_str().unwrap(), "--to", "bob", "--json"]);
    let offered = sender.next_event(WAIT).unwrap();
    assert_eq!(offered["event"], "offered", "a push prints no ticket: {offered}");
    assert_eq!(offered["state"], "accepted");
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")), "{last}");
    assert_same_file(&src, &downloads.join("pushed.bin"));

    // A stranger's offer (no grant) is refused and leaves nothing behind.
    let c = Node::new();
    let (code, events, _) = c.run(&["send", src.to_str().unwrap(), "--to", "bob", "--json"]);
    assert_eq!(code, 8);
    assert_eq!(events[0]["code"], "peer_not_found");
    listener.kill9();
}

/// POST a body to an inbox; returns (status code, JSON answer).
fn post_inbox(addr: std::net::SocketAddr, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/inbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let json = response.split("\r\n\r\n").nth(1).unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

#[test]
fn forged_replayed_and_stranger_offers_are_refused_by_the_inbox() {
    use agentferry::{offer::Offer, peers::GrantUri};
    let (a, b) = (Node::new(), Node::new());
    let (_, exported, _) = b.run(&["export", "--name", "bob", "--json"]);
    let uri: GrantUri = exported[0]["uri"].as_str().unwrap().parse().unwrap();
    let grant_id = data_encoding::HEXLOWER.encode(&uri.grant_id);
    let downloads = b.dir.path().join("downloads");
    let mut listener = b.spawn(&["listen", "--download-dir", downloads.to_str().unwrap(), "--json"]);
    listener.next_event(WAIT).unwrap();
    let inbox = uri.inbox[0];

    // A real ticket from a real sender, to wrap in offers.
    let src = random_file(a.dir.path(), "x.bin", 50_000, 13);
    let (_sender, ticket, _) = a.send(&src, &[]);
    let ticket: agentferry::Ticket = ticket.parse().unwrap();

    assert_eq!(post_inbox(inbox, "not json").1["code"], "offer_malformed");
    let stranger = Offer::seal("00000000000000000000000000000000", &[1; 32], "mallory", &ticket);
    let (status, answer) = post_inbox(inbox, &serde_json::to_string(&stranger).unwrap());
    assert_eq!((status, answer["code"].as_str()), (403, Some("grant_unknown")));
    let forged = Offer::seal(&grant_id, &[2; 32], "mallory", &ticket);
    let (status, answer) = post_inbox(inbox, &serde_json::to_string(&forged).unwrap());
    assert_eq!((status, answer["code"].as_str()), (403, Some("offer_unauthentic")));
    assert!(
        !downloads.join("x.bin").exists() && std::fs::read_dir(b.home().join("transfers")).unwrap().next().is_none()
    );

    let genuine = serde_json::to_string(&Offer::seal(&grant_id, &uri.secret, "alice", &ticket)).unwrap();
    let (status, answer) = post_inbox(inbox, &genuine);
    assert_eq!((status, answer["state"].as_str()), (202, Some("accepted")), "{answer}");
    let (status, answer) = post_inbox(inbox, &genuine);
    assert_eq!((status, answer["code"].as_str()), (409, Some("offer_replayed")));
    listener.kill9();
}

/// A peer that exported a grant but does not listen yet.
fn peer_not_listening() -> (Node, Node, std::path::PathBuf) {
    let (a, b) = (Node::new(), Node::new());
    let (_, exported, _) = b.run(&["export", "--name", "bob", "--json"]);
    assert_eq!(a.run(&["peers", "add", exported[0]["uri"].as_str().unwrap(), "--json"]).0, 0);
    let src = random_file(a.dir.path(), "waits.bin", 1_500_000, 21);
    (a, b, src)
}

#[test]
fn a_push_waits_for_a_peer_that_starts_listening_later() {
    let (a, b, src) = peer_not_listening();
    let mut sender = a.spawn(&["send", src.to_str().unwrap(), "--to", "bob", "--json"]);
    let offered = sender.next_event(WAIT).unwrap();
    assert_eq!((offered["event"].as_str(), offered["state"].as_str()), (Some("offered"), Some("queued")), "{offered}");
    let reason = offered["reason"].as_str().unwrap();
    assert!(reason.contains("bob is not listening yet") && reason.contains("inbox"), "names the peer: {reason}");
    let id = offered["transfer_id"].as_str().unwrap();
    let (_, status, _) = a.run(&["status", id, "--json"]);
    assert_eq!(status[0]["state"], "active", "{status:?}");
    assert!(status[0]["held_because"].as_str().is_some_and(|h| h.contains("not listening")), "{status:?}");

    // The peer comes up only now; the sender, still trying, hands the offer over.
    let downloads = b.dir.path().join("downloads");
    let mut listener = b.spawn(&["listen", "--download-dir", downloads.to_str().unwrap(), "--json"]);
    assert_eq!(listener.next_event(WAIT).unwrap()["event"], "inbox");
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")), "{last}");
    assert_same_file(&src, &downloads.join("waits.bin"));
    let (_, status, _) = a.run(&["status", id, "--json"]);
    assert_eq!(status[0]["state"], "completed");
    assert!(status[0].get("held_because").is_none(), "no longer waiting: {status:?}");
    listener.kill9();
}

#[test]
fn a_push_to_a_peer_that_never_listens_ends_peer_offline_when_the_offer_expires() {
    let (a, _b, src) = peer_not_listening();
    let mut sender = a.spawn(&["send", src.to_str().unwrap(), "--to", "bob", "--expires-in", "5s", "--json"]);
    assert_eq!(sender.next_event(WAIT).unwrap()["state"], "queued");
    let (code, last) = sender.finish();
    assert_eq!((code, last["code"].as_str()), (4, Some("peer_offline")), "{last}");
    let message = last["message"].as_str().unwrap();
    assert!(message.contains("bob") && !message.contains("sender"), "speaks of the peer: {message}");
    let hint = last["hint"].as_str().unwrap();
    assert!(hint.contains("agentferry listen") && hint.contains("grant"), "{hint}");
    let id = last["transfer_id"].as_str().unwrap();
    let (_, status, _) = a.run(&["status", id, "--json"]);
    assert_eq!(
        (status[0]["state"].as_str(), status[0]["error"]["code"].as_str()),
        (Some("failed"), Some("peer_offline"))
    );
}

#[test]
fn a_queued_push_stops_on_ctrl_c() {
    let (a, _b, src) = peer_not_listening();
    let mut sender = a.spawn(&["send", src.to_str().unwrap(), "--to", "bob", "--json"]);
    let offered = sender.next_event(WAIT).unwrap();
    assert_eq!(offered["state"], "queued");
    sender.interrupt();
    let (code, last) = sender.finish();
    assert_eq!((code, last["code"].as_str()), (130, Some("cancelled")), "{last}");
    let (_, status, _) = a.run(&["status", offered["transfer_id"].as_str().unwrap(), "--json"]);
    assert_eq!(status[0]["state"], "interrupted", "{status:?}");
}

#[test]
fn export_names_the_node_as_agentferry_name_does() {
    let b = Node::new();
    let output = b.command(&["export", "--json"]).env("AGENTFERRY_NAME", "build-box").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let exported: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(exported["name"], "build-box", "{exported}");
    let a = Node::new();
    let (code, added, _) = a.run(&["peers", "add", exported["uri"].as_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(added[0]["name"], "build-box", "the peer knows it by that name");
}
