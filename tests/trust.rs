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
