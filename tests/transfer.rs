//! End-to-end transfers between two `agentferry` processes over loopback.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use agentferry::Ticket;
use common::*;

#[test]
fn send_then_receive_is_byte_identical() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "data.bin", 5 * 1024 * 1024 + 123, 1);
    let (sender, ticket, id) = a.send(&src, &[]);
    let (code, events, _) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?}");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "completed");
    assert_eq!(done["transfer_id"], id.as_str());
    assert_eq!(done["sha256"], sha256_file(&src).as_str());
    assert_eq!(done["bytes"], 5 * 1024 * 1024 + 123);
    let saved = b.out().join("data.bin");
    assert_eq!(done["saved_to"], saved.to_str().unwrap());
    assert_same_file(&src, &saved);
    assert!(events.iter().any(|e| e["event"] == "attempt" && e["ok"] == true && e["path"] == "http"));
    assert!(events.iter().all(|e| e.get("event").is_some()), "every line has an event field");

    // The sender learns of the verified hash and exits on its own.
    let (code, last) = sender.finish();
    assert_eq!(code, 0);
    assert_eq!(last["event"], "completed");
    assert_eq!(last["sha256"], done["sha256"]);

    // Both journals agree, and no secret shows in status.
    for node in [&a, &b] {
        let (code, status, _) = node.run(&["status", &id, "--json"]);
        assert_eq!(code, 0);
        assert_eq!(status[0]["event"], "status");
        assert_eq!(status[0]["state"], "completed");
        assert!(!serde_json::to_string(&status).unwrap().contains(&ticket));
    }
    // No temp file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(b.out()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("data.bin")]);
}

#[test]
fn an_empty_file_arrives_empty() {
    let (a, b) = (Node::new(), Node::new());
    let src = a.dir.path().join("empty.txt");
    std::fs::write(&src, b"").unwrap();
    let (sender, ticket, _) = a.send(&src, &[]);
    let (code, events, _) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?}");
    assert_eq!(std::fs::read(b.out().join("empty.txt")).unwrap(), b"");
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn an_existing_file_is_kept_unless_overwrite_is_asked() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "report.txt", 300_000, 2);
    std::fs::create_dir_all(b.out()).unwrap();
    std::fs::write(b.out().join("report.txt"), b"precious").unwrap();
    let (sender, ticket, _) = a.send(&src, &[]);
    let out = b.out();
    let (code, events, stderr) = b.run(&["receive", &ticket, "-o", out.to_str().unwrap(), "--json"]);
    assert_eq!(code, 6, "{events:?} {stderr}");
    assert_eq!(events.last().unwrap()["code"], "file_exists");
    assert!(events.last().unwrap()["hint"].as_str().unwrap().contains("--overwrite"));
    assert_eq!(std::fs::read(out.join("report.txt")).unwrap(), b"precious");

    let (code, events, _) = b.run(&["receive", &ticket, "-o", out.to_str().unwrap(), "--overwrite", "--json"]);
    assert_eq!(code, 0, "{events:?}");
    assert_same_file(&src, &out.join("report.txt"));
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn bad_tickets_each_get_their_own_error_and_exit_code() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "f.bin", 1000, 3);
    let (_sender, ticket, _) = a.send(&src, &[]);
    let mut expired: Ticket = ticket.parse().unwrap();
    expired.expires_at = 1_000_000;
    let mut tampered = ticket.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'a' { b'b' } else { b'a' };
    let cases = [
        (ticket[..ticket.len() / 2].to_owned(), "ticket_truncated"),
        (String::from_utf8(tampered).unwrap(), "ticket_tampered"),
        (format!("blob{}", &ticket[5..]), "ticket_wrong_kind"),
        (expired.to_string(), "ticket_expired"),
        ("ferry!!!".to_owned(), "ticket_malformed"),
    ];
    for (bad, code_name) in cases {
        let (code, events, stderr) = b.run(&["receive", &bad, "-o", b.out().to_str().unwrap(), "--json"]);
        assert_eq!(code, 3, "{code_name}: {events:?} {stderr}");
        let last = events.last().unwrap();
        assert_eq!(last["event"], "error");
        assert_eq!(last["code"], code_name);
        assert!(!last["hint"].as_str().unwrap().is_empty());
    }
    assert!(!b.out().exists() || std::fs::read_dir(b.out()).unwrap().next().is_none(), "nothing was written");
}

/// A raw HTTP/1.1 request; returns the status line and the body.
fn http(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    (head.lines().next().unwrap().to_owned(), response[split..].to_vec())
}

#[test]
fn wrong_or_missing_tokens_get_403_and_probes_consume_nothing() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "secret.bin", 400_000, 4);
    let (sender, ticket, id) = a.send(&src, &[]);
    let parsed: Ticket = ticket.parse().unwrap();
    let addr = parsed.addrs[0];
    let token = parsed.session_key.http_token(&parsed.transfer_id);
    let route = format!("/v2/transfers/{id}");
    let post = |path: &str, auth: &str, body: &[u8]| {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        http(addr, &(head + &String::from_utf8_lossy(body)))
    };
    for auth in ["", "Authorization: Bearer wrong\r\n", "Authorization: Basic Zm9vOmJhcg==\r\n"] {
        let (status, body) = post(&route, auth, b"x");
        assert!(status.contains("403"), "{status}");
        assert!(body.is_empty(), "nothing is served without the token");
    }
    // Another transfer's id with this token: also refused, and indistinguishable.
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let (status, _) = post(&format!("/v2/transfers/{}", "0".repeat(32)), &bearer, b"x");
    assert!(status.contains("403"), "{status}");
    // The right token without a control frame sealed under the session key gets nothing, and
    // other methods are not allowed.
    for _ in 0..3 {
        let (status, body) = post(&route, &bearer, b"not a sealed control frame");
        assert!(status.contains("200"), "{status}");
        // An empty chunked body: only its terminator.
        assert!(body.is_empty() || body == b"0\r\n\r\n", "an unsealed request is answered with nothing");
    }
    let (status, _) = http(addr, &format!("GET {route} HTTP/1.1\r\nHost: x\r\n{bearer}Connection: close\r\n\r\n"));
    assert!(status.contains("405"), "{status}");
    // ... and the transfer still goes through afterwards.
    let (code, events, _) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?}");
    assert_same_file(&src, &b.out().join("secret.bin"));
    assert_eq!(sender.finish().0, 0);
}

/// A TCP proxy that flips one byte of the sender's first frame stream, once, and counts the
/// transfer requests it forwards.
fn flipping_proxy(upstream: SocketAddr, flip_at: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let frame_requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&frame_requests);
    std::thread::spawn(move || {
        let flipped = Arc::new(AtomicUsize::new(0));
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let server = TcpStream::connect(upstream).unwrap();
            let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    counter.fetch_add(
                        String::from_utf8_lossy(&buf[..n]).matches("POST /v2/transfers/").count(),
                        Ordering::SeqCst,
                    );
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            let flipped = Arc::clone(&flipped);
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut seen = 0usize;
                while let Ok(n) = s_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if (seen..seen + n).contains(&flip_at) && flipped.fetch_add(1, Ordering::SeqCst) == 0 {
                        buf[flip_at - seen] ^= 0x40;
                    }
                    seen += n;
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, frame_requests)
}

#[test]
fn a_byte_flipped_in_flight_is_rejected_and_fetched_again() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "flip.bin", 3 * 1024 * 1024, 5);
    let (sender, ticket, _) = a.send(&src, &[]);
    let mut via_proxy: Ticket = ticket.parse().unwrap();
    // Far enough in to land inside a frame's ciphertext on the frame stream (the manifest probe
    // on its own connection is a few hundred bytes).
    let (proxy, frame_requests) = flipping_proxy(via_proxy.addrs[0], 1_000_000);
    via_proxy.addrs = vec![proxy];
    let (code, events, stderr) = b.run(&["receive", &via_proxy.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_same_file(&src, &b.out().join("flip.bin"));
    // hello, want, complete, and one more want for the damaged chunk.
    assert!(frame_requests.load(Ordering::SeqCst) >= 4, "the damaged chunk was asked for again");
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn hostile_names_are_reduced_to_a_base_name_inside_the_output_folder() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "innocent.txt", 10_000, 6);
    let (sender, ticket, _) = a.send(&src, &[]);
    let mut hostile: Ticket = ticket.parse().unwrap();
    hostile.name = "../../escaped.txt".into();
    let (code, events, _) = b.run(&["receive", &hostile.to_string(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?}");
    assert_same_file(&src, &b.out().join("escaped.txt"));
    assert!(!b.dir.path().join("escaped.txt").exists());
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn an_unreadable_source_is_refused_before_any_ticket() {
    let a = Node::new();
    let (code, events, _) = a.run(&["send", "/definitely/not/here.bin", "--json"]);
    assert_eq!(code, 6);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "error");
    assert_eq!(events[0]["code"], "source_unreadable");
    // A folder is sent whole (tests/folders.rs); a device is neither a file nor a folder.
    let (code, events, _) = a.run(&["send", "/dev/null", "--json"]);
    assert_eq!(code, 6);
    assert_eq!(events[0]["code"], "source_unreadable");
}

#[test]
fn status_of_an_unknown_transfer_says_how_to_list() {
    let a = Node::new();
    let (code, events, _) = a.run(&["status", "00112233445566778899aabbccddeeff", "--json"]);
    assert_eq!(code, 8);
    assert_eq!(events[0]["code"], "transfer_not_found");
    assert!(events[0]["hint"].as_str().unwrap().contains("agentferry status"));
}

#[test]
fn the_node_home_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "p.bin", 1000, 7);
    let (sender, ticket, _) = a.send(&src, &[]);
    assert_eq!(b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]).0, 0);
    assert_eq!(sender.finish().0, 0);
    for node in [&a, &b] {
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&node.home()), 0o700);
        assert_eq!(mode(&node.home().join("transfers")), 0o700);
        for entry in std::fs::read_dir(node.home().join("transfers")).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

#[test]
fn the_demo_moves_a_file_over_all_three_paths_with_agreeing_hashes() {
    let a = Node::new();
    let out = a.command(&["demo", "--size-mib", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // One block per path, in the order run, each naming the path the bytes actually took.
    let blocks: Vec<&str> = text.split("\n\n").filter(|b| !b.trim().is_empty()).collect();
    assert_eq!(blocks.len(), 3, "{text}");
    let field = |block: &str, name: &str| -> String {
        let line = block.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}: {block}"));
        line[name.len()..].trim().to_owned()
    };
    assert!(field(blocks[0], "path").starts_with("http (127.0.0.1:"), "{text}");
    assert!(field(blocks[1], "path").starts_with("webrtc (ws://127.0.0.1:"), "{text}");
    assert!(field(blocks[1], "path").ends_with(", direct)"), "host candidates on loopback: {text}");
    assert!(field(blocks[2], "path").starts_with("relay (ws://127.0.0.1:"), "{text}");
    let hash = field(blocks[0], "sha256");
    assert_eq!(hash.len(), 64, "{text}");
    for block in &blocks {
        assert_eq!(field(block, "size"), format!("{} bytes", 3 << 20), "{text}");
        assert_eq!(field(block, "sha256"), hash, "one file, one hash on every path: {text}");
        assert_eq!(field(block, "verified"), "sender and receiver agree", "{text}");
        assert!(field(block, "time").ends_with(" s") && field(block, "speed").ends_with(" MB/s"), "{text}");
    }
}
