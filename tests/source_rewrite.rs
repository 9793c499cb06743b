//! Issue 26, item 7: a sender's file rewritten in place with its size kept and its modification
//! time put back used to go on being sent (size and mtime were all a sender looked at), so the
//! receiver got a file that never existed, or a restarted sender served the new bytes under the
//! old hash. The inode and ctime now catch it, mid-transfer and across a restart.

mod attack;
mod common;

use attack::*;
use common::*;

/// Rewrite `path` with other bytes of the same size, then put its modification time back.
fn rewrite_in_place(path: &std::path::Path) {
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta.modified().unwrap();
    std::fs::write(path, vec![0x5a; meta.len() as usize]).unwrap();
    set_mtime(path, mtime);
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

#[test]
fn a_file_rewritten_mid_transfer_with_its_mtime_put_back_stops_the_sender() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "data.bin", 64 << 20, 91);
    let mut sender = Running::new_public(command(&a, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let first = sender.wait_for("the ticket", |e| e["event"] == "ticket");
    let ticket = first["ticket"].as_str().unwrap();
    let proxy = PausingProxy::start(ticket.parse::<agentferry::Ticket>().unwrap().addrs[0], 4 << 20);
    let out = b.out();
    let receiver = Running::new_public(
        command(&b, &["receive", &via(ticket, proxy.addr), "-o", out.to_str().unwrap(), "--json"]).spawn().unwrap(),
    );
    proxy.wait_held();
    rewrite_in_place(&src);
    proxy.release();

    let (code, last) = sender.finish();
    assert_eq!(code, 7, "{last}");
    assert_eq!(last["code"], "source_changed", "{last}");
    let (code, last) = receiver.finish();
    assert_ne!(code, 0, "{last}");
    assert!(!out.join("data.bin").exists(), "a file that never existed was placed");
}

#[test]
fn a_sender_restarted_on_a_file_rewritten_with_its_mtime_put_back_refuses_to_serve_it() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "data.bin", 64 << 20, 92);
    let mut sender = Running::new_public(command(&a, &["send", src.to_str().unwrap(), "--json"]).spawn().unwrap());
    let first = sender.wait_for("the ticket", |e| e["event"] == "ticket");
    let (ticket, id) =
        (first["ticket"].as_str().unwrap().to_owned(), first["transfer_id"].as_str().unwrap().to_owned());
    let proxy = PausingProxy::start(ticket.parse::<agentferry::Ticket>().unwrap().addrs[0], 4 << 20);
    let out = b.out();
    let _receiver = Running::new_public(
        command(&b, &["receive", &via(&ticket, proxy.addr), "-o", out.to_str().unwrap(), "--json"]).spawn().unwrap(),
    );
    proxy.wait_held();
    sender.kill9();
    rewrite_in_place(&src);

    let (code, events, stderr) = run(&a, &["resume", &id, "--json"]);
    assert_eq!(code, 7, "{events:?} {stderr}");
    assert_eq!(events.last().unwrap()["code"], "source_changed", "{events:?}");
}
