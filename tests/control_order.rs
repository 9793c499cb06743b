//! Issue 26, item 6: control frames in an order no honest receiver sends. A `credit` before
//! any `want` used to panic the sender's session thread (on the relay path, the transfer's only
//! session); it is now dropped with a code, and the transfer goes on.

mod attack;
mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use agentferry::{
    Ticket,
    core::Control,
    crypto::random_epoch,
    frame::{FrameKind, Sealer},
};
use attack::*;
use common::*;

/// `POST` one sealed control to the sender's HTTP path; returns the status line and body length.
fn post_control(ticket: &Ticket, control: &Control) -> (String, usize) {
    let mut sealer = Sealer::new(&ticket.session_key, ticket.transfer_id, random_epoch());
    let body = sealer.seal_bytes(FrameKind::Control, 1, &serde_json::to_vec(control).unwrap());
    let mut s = TcpStream::connect(ticket.addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /v2/transfers/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ticket.transfer_id,
        ticket.session_key.http_token(&ticket.transfer_id),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().unwrap_or_default().to_owned(), answer.len())
}

#[test]
fn a_credit_before_any_want_is_refused_with_a_code_and_the_transfer_goes_on() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "c.bin", 300_000, 61);
    let log = a.dir.path().join("sender.log");
    let mut send = command(&a, &["send", src.to_str().unwrap(), "--json"]);
    send.stderr(std::fs::File::create(&log).unwrap());
    let mut sender = Running::new_public(send.spawn().unwrap());
    let ticket_text = sender.wait_for("the ticket", |e| e["event"] == "ticket")["ticket"].as_str().unwrap().to_owned();
    let ticket: Ticket = ticket_text.parse().unwrap();

    for to in [1, u64::MAX] {
        let (status, _) = post_control(&ticket, &Control::Credit { to });
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    let (code, events, err) = run(&b, &["receive", &ticket_text, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {err}");
    assert_same_file(&src, &b.out().join("c.bin"));
    assert_eq!(sender.finish().0, 0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("panicked"), "the session thread panicked: {logged}");
    assert!(logged.contains("protocol_error"), "the refused credit was not reported with its code: {logged}");
}
