//! Issue 26, item 5: a local writer racing the receiver's folders. The folder channel used to
//! follow a mailbox folder swapped for a symbolic link, so its poller deleted (and its senders
//! wrote) files in another folder.

mod attack;
mod common;

use std::time::{Duration, Instant};

use agentferry::Ticket;
use attack::*;
use common::*;

#[test]
fn a_mailbox_folder_swapped_for_a_link_is_not_followed() {
    let (a, b) = (Node::new(), Node::new());
    let shared = a.dir.path().join("shared");
    let channel = format!("folder:{}", shared.display());
    let victim = a.dir.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let planted = victim.join(format!("{:024}-000000000000.msg", 1));
    std::fs::write(&planted, b"someone else's file").unwrap();

    let src = random_file(a.dir.path(), "f.bin", 100_000, 81);
    let mut send = command(&a, &["send", src.to_str().unwrap(), "--json"]);
    send.env("AGENTFERRY_RELAY", &channel).env("AGENTFERRY_PREFER", "relay");
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket_text = sender.wait_for("the ticket", |e| e["event"] == "ticket")["ticket"].as_str().unwrap().to_owned();
    let ticket: Ticket = ticket_text.parse().unwrap();
    let mailbox = shared.join(ticket.session_key.mailbox(&ticket.transfer_id, b"sender").id().to_string());
    let deadline = Instant::now() + WAIT;
    while !mailbox.is_dir() {
        assert!(Instant::now() < deadline, "the sender never made its mailbox");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Swap the sender's mailbox for a link to the victim folder.
    std::fs::remove_dir_all(&mailbox).unwrap();
    std::os::unix::fs::symlink(&victim, &mailbox).unwrap();

    // A receiver sends its requests to that mailbox, and gives up after its peer timeout.
    let mut receive = command(&b, &["receive", &ticket_text, "-o", b.out().to_str().unwrap(), "--json"]);
    receive.env("AGENTFERRY_RELAY", &channel).env("AGENTFERRY_PREFER", "relay").env("AGENTFERRY_PEER_TIMEOUT", "5");
    let out = receive.output().unwrap();
    assert_ne!(out.status.code(), Some(101), "the receiver panicked");
    assert_eq!(listing(&victim), [planted.file_name().unwrap().to_str().unwrap()], "the link was followed");
    assert_eq!(std::fs::read(&planted).unwrap(), b"someone else's file");
}
