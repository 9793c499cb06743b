//! Issue 26, item 7: a revoked grant's holder can still seal authentic offers; each one's id
//! used to be remembered in `offers_seen.json` without a cap. The inbox now remembers at most
//! 256 per grant (and 4096 in all) at once and answers `inbox_busy` past that.

mod attack;
mod common;

use agentferry::{Ticket, crypto::SessionKey, id::TransferId, offer::Offer};
use attack::*;
use common::*;

#[test]
fn a_revoked_holders_offer_flood_is_remembered_within_a_cap() {
    let b = Node::new();
    let (uri, _listener, addr) = listening_under_a_revoked_grant(&b);
    let grant_id = data_encoding::HEXLOWER.encode(&uri.grant_id);
    let hostile = HostileSender::start("pending.bin", 10, 1 << 20);

    let mut busy = 0;
    for _ in 0..300 {
        let ticket =
            Ticket { transfer_id: TransferId::random(), session_key: SessionKey::generate(), ..hostile.ticket.clone() };
        let offer = Offer::seal(&grant_id, &uri.secret, "mallory", &ticket);
        let (status, answer) = post_offer(addr, &serde_json::to_string(&offer).unwrap());
        if answer["code"] == "inbox_busy" {
            assert_eq!(status, 429, "{answer}");
            busy += 1;
        }
    }
    let seen: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(b.home().join("offers_seen.json")).unwrap()).unwrap();
    assert!(seen.len() <= 256, "the inbox remembers {} offers of one grant", seen.len());
    assert_eq!(busy, 300 - 256, "offers past the cap were not refused as inbox_busy");
}
