//! The message channel on NATS, end to end: real nats-server processes (Debian `nats-server`),
//! real senders and receivers whose direct path is unreachable.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agentferry::Ticket;
use common::*;

/// A nats-server on 127.0.0.1, killed when dropped.
struct NatsServer {
    child: Child,
    /// Client port.
    port: u16,
    /// Route port, when started with `--cluster`.
    route: Option<u16>,
    /// Monitoring port, when started with `-m -1`.
    http: Option<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port at the end of a nats-server log line that starts listening: `... on 127.0.0.1:PORT`.
fn listening_port(line: &str, what: &str) -> Option<u16> {
    let rest = &line[line.find(what)? + what.len()..];
    rest.trim().rsplit(':').next()?.parse().ok()
}

impl NatsServer {
    /// Start `nats-server` with `extra` arguments, every port it opens chosen by the kernel
    /// (`-1`: no race with other tests for a port picked in advance); waits until it listens.
    fn start(extra: &[&str]) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "--store_dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server is installed (Debian package nats-server, see .ci/run)");
        let clustered = extra.contains(&"--cluster");
        let (mut port, mut route, mut http, mut ready) = (None, None, None, false);
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while log.read_line(&mut line).unwrap() > 0 {
            port = port.or(listening_port(&line, "Listening for client connections on"));
            route = route.or(listening_port(&line, "Listening for route connections on"));
            http = http.or(listening_port(&line, "Starting http monitor on"));
            ready |= line.contains("Server is ready");
            if let (true, Some(port)) = (ready && (route.is_some() || !clustered), port) {
                // Keep draining its log so that it never blocks on a full pipe.
                std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
                return NatsServer { child, port, route, http, _dir: dir };
            }
            line.clear();
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nats-server did not start");
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

fn with_channel(node: &Node, channel: &str, args: &[&str]) -> Command {
    let mut cmd = node.command(args);
    cmd.env("AGENTFERRY_RELAY", channel);
    cmd
}

/// Start a sender on `channel` and return it with its ticket, direct addresses made unreachable.
fn send_blocked(node: &Node, channel: &str, file: &std::path::Path, env: &[(&str, &str)]) -> (Running, Ticket) {
    let mut cmd = with_channel(node, channel, &["send", file.to_str().unwrap(), "--json"]);
    cmd.envs(env.iter().copied());
    let mut sender = Running::new_public(cmd.spawn().unwrap());
    let mut ticket: Ticket = sender.next_event(WAIT).unwrap()["ticket"].as_str().unwrap().parse().unwrap();
    ticket.addrs = vec!["127.0.0.1:1".parse().unwrap()]; // nothing listens there
    (sender, ticket)
}

fn receive(node: &Node, ticket: &Ticket, channel: &str, env: &[(&str, &str)]) -> (i32, Vec<serde_json::Value>) {
    let mut cmd =
        with_channel(node, channel, &["receive", &ticket.to_string(), "-o", node.out().to_str().unwrap(), "--json"]);
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let events = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.code().unwrap_or(-1), events)
}

#[test]
fn a_transfer_goes_through_nats_when_the_direct_path_is_unreachable() {
    let nats = NatsServer::start(&[]);
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "via-nats.bin", 5 * 1024 * 1024 + 7, 31);
    // Pinned to the chunk relay: WebRTC, signalled through NATS too, would otherwise open first.
    let (sender, ticket) = send_blocked(&a, &nats.url(), &src, &[("AGENTFERRY_PREFER", "relay")]);
    assert_eq!(ticket.channel.as_deref(), Some(nats.url().as_str()), "the ticket carries the NATS hint");
    let (code, events) = receive(&b, &ticket, &nats.url(), &[]);
    assert_eq!(code, 0, "{events:?}");
    let attempts: Vec<_> = events.iter().filter(|e| e["event"] == "attempt").collect();
    assert_eq!((attempts[0]["path"].as_str(), attempts[0]["ok"].as_bool()), (Some("http"), Some(false)));
    assert!(
        attempts.iter().any(|a| a["path"] == "relay" && a["addr"] == nats.url() && a["ok"] == true),
        "{attempts:?}"
    );
    let completed = events.last().unwrap();
    assert_eq!((completed["event"].as_str(), completed["path"].as_str()), (Some("completed"), Some("relay")));
    assert_same_file(&src, &b.out().join("via-nats.bin"));
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")));
}

/// A TCP proxy in front of `port` that records every byte both ways.
fn recording_proxy(port: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(("127.0.0.1", port)).unwrap();
            for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (proxy_port, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn nats_sees_no_key_ticket_name_or_plaintext_and_wrong_credentials_are_named() {
    let nats = NatsServer::start(&["--user", "ferry", "--pass", "right-password"]);
    let (proxy, seen) = recording_proxy(nats.port);
    let channel = format!("nats://127.0.0.1:{proxy}");
    let creds = [("AGENTFERRY_NATS_USER", "ferry"), ("AGENTFERRY_NATS_PASSWORD", "right-password")];
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "secret-plans-name.bin", 2 * 1024 * 1024, 32);
    // Pinned to the chunk relay, so that the file itself crosses NATS (and WebRTC's sealed
    // signalling too: the sender declines it there).
    let pinned = [creds[0], creds[1], ("AGENTFERRY_PREFER", "relay")];
    let (sender, ticket) = send_blocked(&a, &channel, &src, &pinned);

    // Wrong credentials: a clear code on the relay attempt and as the outcome, nothing received,
    // and no retrying until the peer timeout: the channel will not start accepting them.
    let wrong =
        [("AGENTFERRY_NATS_USER", "ferry"), ("AGENTFERRY_NATS_PASSWORD", "wrong"), ("AGENTFERRY_PEER_TIMEOUT", "120")];
    let started = Instant::now();
    let (code, events) = receive(&b, &ticket, &channel, &wrong);
    assert_eq!(code, 4, "{events:?}");
    let relay = events.iter().find(|e| e["event"] == "attempt" && e["path"] == "relay").expect("relay tried");
    assert_eq!(relay["error_code"], "channel_auth_failed", "{events:?}");
    let attempts = events.iter().filter(|e| e["event"] == "attempt" && e["path"] == "relay").count();
    assert_eq!(attempts, 1, "a refused channel is not tried again: {events:?}");
    assert_eq!(events.last().unwrap()["code"], "channel_auth_failed", "{events:?}");
    assert!(started.elapsed() < Duration::from_secs(60), "gave up long before the 120 s peer timeout");
    assert!(!events.iter().any(|e| e.to_string().contains("wrong")), "the password is not shown: {events:?}");

    let (code, events) = receive(&b, &ticket, &channel, &creds);
    assert_eq!(code, 0, "{events:?}");
    assert!(matches!(events.last().unwrap()["path"].as_str(), Some("relay" | "webrtc")), "{events:?}");
    assert_same_file(&src, &b.out().join("secret-plans-name.bin"));
    assert_eq!(sender.finish().0, 0);

    // A ticket naming other NATS servers gets no credentials from this node.
    let foreign = NatsServer::start(&[]);
    let (foreign_proxy, foreign_seen) = recording_proxy(foreign.port);
    let mut hostile = ticket.clone();
    hostile.channel = Some(format!("nats://127.0.0.1:{foreign_proxy}"));
    let env = [creds[0], creds[1], ("AGENTFERRY_PEER_TIMEOUT", "1")];
    let (code, events) = receive(&Node::new(), &hostile, &channel, &env);
    assert_ne!(code, 0, "{events:?}");
    let foreign_seen = foreign_seen.lock().unwrap();
    assert!(contains(&foreign_seen, b"CONNECT"), "the receiver tried the ticket's servers");
    assert!(
        !contains(&foreign_seen, b"right-password") && !contains(&foreign_seen, b"\"ferry\""),
        "credentials leaked"
    );

    let seen = seen.lock().unwrap();
    assert!(seen.len() > 2 * 1024 * 1024, "the file went through the proxy ({} bytes seen)", seen.len());
    assert!(contains(&seen, b"PUB agentferry."), "subjects are under agentferry.");
    let plain = std::fs::read(&src).unwrap();
    for (what, needle) in [
        ("session key", ticket.session_key.as_bytes().to_vec()),
        ("hex session key", data_encoding::HEXLOWER.encode(ticket.session_key.as_bytes()).into_bytes()),
        ("ticket", ticket.to_string().into_bytes()),
        ("file name", b"secret-plans-name".to_vec()),
        ("transfer id", ticket.transfer_id.to_string().into_bytes()),
        ("plaintext", plain[1_000_000..1_000_064].to_vec()),
        ("plaintext start", plain[..64].to_vec()),
    ] {
        assert!(!contains(&seen, &needle), "NATS saw the {what}");
    }
}

/// Run openssl in `dir`; panics with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed (.ci/run)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and certificates it signed for the server (127.0.0.1) and a client, in `dir`:
/// `ca.pem`, `server.pem` + `server.key`, `client.pem` + `client.key`.
fn tls_files(dir: &std::path::Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(dir, &[&["req", "-x509", "-days", "1", "-subj", "/CN=agentferry test CA", "-keyout", "ca.key", "-out", "ca.pem"][..], &ec].concat());
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let (key, csr, pem, ext) =
            (format!("{who}.key"), format!("{who}.csr"), format!("{who}.pem"), format!("{who}.ext"));
        openssl(dir, &[&["req", "-subj", &format!("/CN={who}"), "-keyout", &key, "-out", &csr][..], &ec].concat());
        openssl(
            dir,
            &[
                "x509", "-req", "-days", "1", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-out", &pem,
                "-extfile", &ext,
            ],
        );
    }
}

#[test]
fn tls_servers_are_trusted_through_the_teams_ca_and_get_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    tls_files(dir.path());
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let nats = NatsServer::start(&[
        "--tls",
        "--tlscert",
        &file("server.pem"),
        "--tlskey",
        &file("server.key"),
        "--tlsverify",
        "--tlscacert",
        &file("ca.pem"),
    ]);
    let channel = format!("tls://127.0.0.1:{}", nats.port);
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let trusted = [
        ("AGENTFERRY_NATS_CA", ca.as_str()),
        ("AGENTFERRY_NATS_CERT", cert.as_str()),
        ("AGENTFERRY_NATS_KEY", key.as_str()),
    ];
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "over-tls.bin", 3 * 1024 * 1024 + 5, 33);
    let (sender, ticket) = send_blocked(&a, &channel, &src, &trusted);
    assert_eq!(ticket.channel.as_deref(), Some(channel.as_str()));

    let refused = |env: &[(&str, &str)], code: &str| {
        let env = [env, &[("AGENTFERRY_PEER_TIMEOUT", "2")]].concat();
        let (exit, events) = receive(&b, &ticket, &channel, &env);
        assert_eq!(exit, 4, "{events:?}");
        let relay = events.iter().find(|e| e["event"] == "attempt" && e["path"] == "relay").expect("relay tried");
        assert_eq!(relay["error_code"], code, "{events:?}");
        assert!(!b.out().join("over-tls.bin").exists());
    };
    // The server's certificate is signed by a CA this node was not told to trust.
    refused(&trusted[1..], "channel_tls_failed");
    // The server asks for a client certificate and gets none.
    refused(&trusted[..1], "channel_tls_failed");
    // Half a client certificate is a mistake to name, not a certificate to leave out.
    let (exit, events) = receive(&b, &ticket, &channel, &[trusted[0], trusted[1], ("AGENTFERRY_PEER_TIMEOUT", "2")]);
    assert_ne!(exit, 0, "{events:?}");
    assert!(
        events.iter().any(|e| e["error_code"] == "invalid_argument" || e["code"] == "invalid_argument"),
        "{events:?}"
    );

    // Trusted both ways: the channel carries the transfer (the chunk relay, or WebRTC signalled
    // through it).
    let (code, events) = receive(&b, &ticket, &channel, &trusted);
    assert_eq!(code, 0, "{events:?}");
    let through_nats =
        |e: &&serde_json::Value| e["event"] == "attempt" && e["addr"] == channel.as_str() && e["ok"] == true;
    assert!(events.iter().any(|e| through_nats(&e)), "{events:?}");
    assert_same_file(&src, &b.out().join("over-tls.bin"));
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn a_three_node_cluster_carries_a_transfer_while_one_node_is_killed() {
    // Node 0 first; the others solicit a route to it, and learn of each other from it.
    let cluster = ["--cluster_name", "ferry", "--cluster", "nats://127.0.0.1:-1"];
    let seed = NatsServer::start(&cluster);
    let route = format!("nats-route://127.0.0.1:{}", seed.route.expect("a route port"));
    let mut nodes = vec![seed];
    nodes.extend((1..3).map(|_| NatsServer::start(&[&cluster[..], &["--routes", &route]].concat())));
    // Sender on node 0, receiver on node 1; each is told of its own node and the survivor.
    let sender_url = format!("nats://127.0.0.1:{},127.0.0.1:{}", nodes[0].port, nodes[2].port);
    let receiver_url = format!("nats://127.0.0.1:{},127.0.0.1:{}", nodes[1].port, nodes[2].port);
    wait_for_cluster(&nodes);
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "cluster.bin", 48 * 1024 * 1024, 33);
    let (mut sender, ticket) = send_blocked(&a, &sender_url, &src, &[]);
    let mut cmd =
        // Pinned: the node's death must hit the path carrying the data (with auto, WebRTC,
        // signalled through the cluster, would take over and bypass it).
        with_channel(&b, &receiver_url, &["receive", &ticket.to_string(), "-o", b.out().to_str().unwrap(), "--prefer", "relay", "--json"]);
    let mut receiver = Running::new_public(cmd.spawn().unwrap());
    let early =
        receiver.wait_for("progress", |e| e["event"] == "progress" && e["bytes_done"].as_u64().unwrap_or(0) > 0);
    drop(nodes.remove(0)); // the sender's node dies mid-transfer (SIGKILL)
    assert!(early["bytes_done"].as_u64() < early["bytes_total"].as_u64().map(|t| t / 2), "not mid-transfer: {early}");
    let (code, last) = receiver.finish();
    assert_eq!((code, last["path"].as_str()), (0, Some("relay")), "{last}");
    assert_same_file(&src, &b.out().join("cluster.bin"));
    assert_eq!(sender.wait_for("completed", |e| e["event"] == "completed")["event"], "completed");
}

/// Wait until every node has routes to the others (bounded).
fn wait_for_cluster(nodes: &[NatsServer]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    // A subscription on one node is seen from another once the routes are up: probe with the
    // monitoring-free way, a plain client on each node.
    for node in nodes {
        loop {
            let mut stream = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut info = [0u8; 4096];
            let n = stream.read(&mut info).unwrap();
            let text = String::from_utf8_lossy(&info[..n]);
            if text.matches("127.0.0.1:").count() >= nodes.len() || Instant::now() > deadline {
                assert!(Instant::now() <= deadline, "the cluster did not form: {text}");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// GET `path` from the monitoring port `http` of a nats-server, as JSON.
fn monitor(http: u16, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(("127.0.0.1", http)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap()
}

/// Messages and bytes the JetStream stream of waiting offers holds.
fn kept_offers(http: u16) -> (u64, u64) {
    let jsz = monitor(http, "/jsz?streams=true");
    let streams =
        jsz["account_details"].as_array().into_iter().flatten().flat_map(|a| a["stream_detail"].as_array()).flatten();
    let offers = streams.into_iter().find(|s| s["name"] == "AGENTFERRY_OFFERS");
    offers.map_or((0, 0), |s| (s["state"]["messages"].as_u64().unwrap(), s["state"]["bytes"].as_u64().unwrap()))
}

/// Bob exports a grant naming `nats`'s URL (with a password, which the grant must not carry)
/// and Alice trusts it; returns both nodes.
fn trusted_pair(nats: &NatsServer, password: &str) -> (Node, Node) {
    let bob_url = format!("nats://team:{password}@127.0.0.1:{}", nats.port);
    let (a, b) = (Node::new(), Node::new());
    let out = with_channel(&b, &bob_url, &["export", "--name", "bob", "--json"]).output().unwrap();
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let uri_text = exported["uri"].as_str().unwrap();
    assert!(!uri_text.contains(password), "the grant carries the password: {uri_text}");
    let uri: agentferry::peers::GrantUri = uri_text.parse().unwrap();
    assert_eq!(uri.channel.as_ref().map(|(c, _)| c.as_str()), Some(nats.url().as_str()));
    assert_eq!(a.run(&["peers", "add", uri_text, "--json"]).0, 0);
    (a, b)
}

/// Alice pushes `file` to Bob through NATS only; the sender and its first (`offered`) event.
fn push_to_bob(
    a: &Node,
    nats: &NatsServer,
    creds: &[(&str, &str)],
    file: &std::path::Path,
    extra: &[&str],
) -> (Running, serde_json::Value) {
    let mut args = vec!["send", file.to_str().unwrap(), "--to", "bob", "--prefer", "relay", "--json"];
    args.extend(extra);
    let mut cmd = with_channel(a, &nats.url(), &args);
    cmd.envs(creds.iter().copied());
    let mut sender = Running::new_public(cmd.spawn().unwrap());
    let offered = sender.next_event(WAIT).unwrap();
    (sender, offered)
}

/// Bob's inbox, listening on `nats`.
fn bob_listens(b: &Node, nats: &NatsServer, password: &str) -> (Running, std::path::PathBuf) {
    let bob_url = format!("nats://team:{password}@127.0.0.1:{}", nats.port);
    let downloads = b.dir.path().join("downloads");
    let listen = ["listen", "--download-dir", downloads.to_str().unwrap(), "--json"];
    (Running::new_public(with_channel(b, &bob_url, &listen).spawn().unwrap()), downloads)
}

#[test]
fn without_jetstream_an_offer_is_posted_again_until_the_peer_listens_or_it_expires() {
    let nats = NatsServer::start(&["--user", "team", "--pass", "team-password"]);
    let creds = [("AGENTFERRY_NATS_USER", "team"), ("AGENTFERRY_NATS_PASSWORD", "team-password")];
    let (a, b) = trusted_pair(&nats, "team-password");
    let src = random_file(a.dir.path(), "pushed.bin", 3 * 1024 * 1024, 34);

    // Bob never listens: core NATS keeps nothing, so the offer is posted again until it
    // expires with the ticket, and the push fails saying why.
    let (sender, offered) = push_to_bob(&a, &nats, &creds, &src, &["--expires-in", "4s"]);
    assert_eq!(offered["state"], "queued", "{offered}");
    let (code, last) = sender.finish();
    assert_eq!((code, last["code"].as_str()), (4, Some("peer_offline")), "{last}");

    // Bob starts listening after the offer was made: a re-post reaches him and he fetches.
    let (sender, offered) = push_to_bob(&a, &nats, &creds, &src, &[]);
    assert_eq!(
        (offered["state"].as_str(), offered["reason"].as_str().map(|r| r.contains("offline"))),
        (Some("queued"), Some(true)),
        "{offered}"
    );
    let (listener, downloads) = bob_listens(&b, &nats, "team-password");
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")), "{last}");
    assert_same_file(&src, &downloads.join("pushed.bin"));
    listener.kill9();
}

#[test]
fn with_jetstream_an_offer_waits_for_a_peer_that_listens_later() {
    let nats = NatsServer::start(&["-js", "-m", "-1", "--user", "team", "--pass", "team-password"]);
    let http = nats.http.expect("a monitoring port");
    let creds = [("AGENTFERRY_NATS_USER", "team"), ("AGENTFERRY_NATS_PASSWORD", "team-password")];
    let (a, b) = trusted_pair(&nats, "team-password");
    let src = random_file(a.dir.path(), "kept.bin", 3 * 1024 * 1024, 35);

    let (sender, offered) = push_to_bob(&a, &nats, &creds, &src, &[]);
    assert_eq!(
        (offered["state"].as_str(), offered["reason"].as_str()),
        (Some("queued"), Some("waiting in the channel for the peer")),
        "{offered}"
    );
    // JetStream keeps the sealed offer, and nothing of the file.
    let (messages, bytes) = kept_offers(http);
    assert_eq!(messages, 1, "one offer waits");
    assert!(bytes < 16 * 1024, "only the offer is stored ({bytes} bytes)");

    let (listener, downloads) = bob_listens(&b, &nats, "team-password");
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")), "{last}");
    assert_same_file(&src, &downloads.join("kept.bin"));
    assert_eq!(kept_offers(http).0, 0, "a delivered offer is deleted");
    listener.kill9();
}

#[test]
fn the_offer_store_keeps_offers_only_within_its_per_peer_bound_and_hands_them_over_once() {
    use agentferry::channel::{Channel, MailboxKey, Posted, nats::offers::PER_PEER};
    let nats = NatsServer::start(&["-js", "-m", "-1"]);
    let http = nats.http.expect("a monitoring port");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let hint = nats.url().parse().unwrap();
        let (sender, inbox) = (Channel::open(&hint).await.unwrap(), Channel::open(&hint).await.unwrap());
        let (key, other) = (MailboxKey::from_bytes([7u8; 32]), MailboxKey::from_bytes([8u8; 32]));
        for i in 0..PER_PEER {
            let posted = sender.post_offer(key.id(), format!("offer {i}").into_bytes().into()).await.unwrap();
            assert_eq!(posted, Posted::Kept);
        }
        // A full mailbox refuses the next offer (the waiting ones are not pushed out), and the
        // bound is per mailbox: another peer's offers still fit.
        let full = sender.post_offer(key.id(), "one too many".into()).await.unwrap_err();
        assert_eq!(full.code(), "offer_refused", "{full}");
        assert_eq!(sender.post_offer(other.id(), "other peer".into()).await.unwrap(), Posted::Kept);
        let too_big = sender.post_offer(other.id(), vec![0u8; 64 * 1024].into()).await.unwrap_err();
        assert_eq!(too_big.code(), "size_limit_exceeded", "{too_big}");

        // The inbox subscribes later and gets every kept offer, in order, then they are gone.
        let mut arriving = inbox.subscribe_inbox(key).await;
        for i in 0..PER_PEER {
            let message = tokio::time::timeout(WAIT, arriving.recv()).await.unwrap().unwrap();
            assert_eq!(&message[..], format!("offer {i}").as_bytes());
        }
        let deadline = Instant::now() + WAIT;
        while kept_offers(http).0 != 1 {
            assert!(Instant::now() < deadline, "delivered offers stay in the store: {:?}", kept_offers(http));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A plain subscription (the chunk relay's) never reads the store.
        let mut plain = inbox.subscribe(other).await;
        assert!(tokio::time::timeout(Duration::from_millis(500), plain.recv()).await.is_err());
    });
}
