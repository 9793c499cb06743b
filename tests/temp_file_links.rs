//! Issue 9, item 7: a temp file planted as a link by another local user is never followed.

mod attack;
mod common;

use std::os::unix::fs::symlink;

use attack::*;
use common::*;

/// A `.NAME.ID.part` symlink planted in the output folder used to make a completed receive
/// truncate and overwrite the link's target outside the folder, and leave the received file as
/// a symlink to it.
#[test]
fn a_planted_temp_symlink_is_replaced_not_followed() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "report.bin", 300_000, 71);
    let (sender, ticket, id) = a.send(&src, &[]);
    let victim = b.dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::create_dir_all(b.out()).unwrap();
    let planted = b.out().join(format!(".report.bin.{}.part", &id[..12]));
    symlink(&victim, &planted).unwrap();

    let (code, events, stderr) = run(&b, &["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "the link's target was written through");
    let received = b.out().join("report.bin");
    assert!(received.symlink_metadata().unwrap().file_type().is_file(), "the received file is a link");
    assert_same_file(&src, &received);
    assert!(planted.symlink_metadata().is_err(), "the temp name is gone");
    assert_eq!(sender.finish().0, 0);
}

/// A receive that fails before its first chunk (here: the sender is unreachable) used to leave
/// an empty `.NAME.ID.part` behind, one per failed auto-accepted push.
#[test]
fn a_receive_that_never_got_a_chunk_leaves_no_temp_file() {
    let b = Node::new();
    let hostile = HostileSender::start("never.bin", 1000, 1 << 20);
    let ticket = agentferry::Ticket { addrs: vec!["127.0.0.1:9".parse().unwrap()], ..hostile.ticket.clone() };
    let (code, events, _) = run(&b, &["receive", &ticket.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 4, "{events:?}");
    assert_eq!(events.last().unwrap()["code"], "not_serving");
    assert!(listing(&b.out()).is_empty(), "left behind: {:?}", listing(&b.out()));
}
