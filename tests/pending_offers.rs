//! Issue 9, item 10: authentic offers under a revoked grant are held as pending only up to a
//! cap, so a holder of a revoked grant cannot fill the receiver's disk with them.

mod attack;
mod common;

use agentferry::{Ticket, crypto::SessionKey, id::TransferId, offer::Offer};
use attack::*;
use common::*;

#[test]
fn offers_under_a_revoked_grant_are_held_only_up_to_a_cap() {
    let b = Node::new();
    let (uri, _listener, addr) = listening_under_a_revoked_grant(&b);
    let grant_id = data_encoding::HEXLOWER.encode(&uri.grant_id);

    let mut answers = Vec::new();
    for i in 0..20u8 {
        let ticket = Ticket {
            transfer_id: TransferId::random(),
            session_key: SessionKey::generate(),
            expires_at: unix_now() + 3600,
            size: 10,
            chunk_size: 1 << 20,
            name: format!("junk{i}.bin"),
            addrs: vec!["127.0.0.1:9".parse().unwrap()],
            channel: None,
            folder: false,
            mode: None,
        };
        let offer = Offer::seal(&grant_id, &uri.secret, "mallory", &ticket);
        answers.push(post_offer(addr, &serde_json::to_string(&offer).unwrap()));
    }
    let held = answers.iter().filter(|(_, a)| a["state"] == "pending").count();
    let refused = answers.iter().filter(|(s, a)| *s == 429 && a["code"] == "too_many_pending").count();
    assert_eq!(held, 8, "{answers:?}");
    assert_eq!(refused, 12, "{answers:?}");
    let (_, status, _) = run(&b, &["status", "--json"]);
    let pending = status.iter().filter(|s| s["status"]["state"] == "pending" || s["state"] == "pending").count();
    assert_eq!(pending, 8, "{status:?}");
}
