//! A person with only a browser: `send --link` gives a link, Debian's chromium (headless, driven
//! by playwright-core in `tests/browser_js/receive.mjs`) opens it, and the page served by the
//! sender decrypts, verifies and saves the file. Also: a preview's plain GET consumes nothing,
//! the page carries its security headers, a modified frame or a wrong key ends with the page's
//! error and nothing saved; the same through the relay, which serves the page when the sender
//! has one. `.ci/test` installs chromium and the npm package; without them these
//! tests fail and say so.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
};

use common::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser_js")
}

/// Run one scenario of `receive.mjs` and return what it reported.
fn browser(link: &str, scenario: &str, extra: Value, out: &Path) -> Value {
    if scenario != "node" {
        assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: apt-get install chromium (.ci/test does)");
    }
    assert!(
        js_dir().join("node_modules/playwright-core").exists(),
        "run `npm ci --prefix tests/browser_js` (.ci/test does)"
    );
    std::fs::create_dir_all(out).unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut args = json!({ "link": link, "scenario": scenario, "out": out });
    if scenario != "node" {
        let name = extra["shot"].as_str().unwrap_or(scenario).to_owned();
        args["screenshot"] = json!(shots.join(format!("{name}.png")));
    }
    for (k, v) in extra.as_object().into_iter().flatten() {
        args[k] = v.clone();
    }
    let run = Command::new("node").arg(js_dir().join("receive.mjs")).arg(args.to_string()).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the {scenario} scenario could not run: {stdout} {stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `send FILE --link --json`: the sender and its link.
fn send_with_link(node: &Node, file: &Path) -> (Running, String) {
    let (mut sender, ticket, _) = node.send(file, &["--link"]);
    let link = sender.next_event(WAIT).unwrap();
    assert_eq!(link["event"], "link", "the link follows the ticket: {link}");
    let link = link["link"].as_str().unwrap().to_owned();
    let parsed: agentferry::Ticket = ticket.parse().unwrap();
    assert_eq!(link, agentferry::web::link(&parsed, None).unwrap());
    (sender, link)
}

/// A plain HTTP/1.1 request, the way a chat's link preview fetches a page: the URL without its
/// fragment, which no client sends. Returns the status, the headers and the body.
fn plain_request(method: &str, link: &str) -> (u16, HashMap<String, String>, Vec<u8>) {
    let rest = link.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let path = path.split('#').next().unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Slackbot-LinkExpanding\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn assert_secure_headers(headers: &HashMap<String, String>, what: &str) {
    let csp = headers.get("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP in {headers:?}"));
    for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{what}: the CSP lacks {directive}: {csp}");
    }
    // WebAssembly may compile (the page's SHA-256); JavaScript may not be evaluated or inlined.
    let sources: Vec<&str> = csp.split([';', ' ']).collect();
    assert!(!sources.contains(&"'unsafe-inline'") && !sources.contains(&"'unsafe-eval'"), "{what}: {csp}");
    assert_eq!(headers.get("referrer-policy").map(String::as_str), Some("no-referrer"), "{what}");
    assert_eq!(headers.get("x-content-type-options").map(String::as_str), Some("nosniff"), "{what}");
}

#[test]
fn a_browser_receives_a_file_through_its_link_and_a_preview_consumes_nothing() {
    let a = Node::new();
    let src = random_file(a.dir.path(), "report.bin", 3 * 1024 * 1024 + 4321, 21);
    let (sender, link) = send_with_link(&a, &src);
    let (_, key) = link.split_once("#k=").unwrap();
    let key = key.split('&').next().unwrap();

    // An unfurl bot fetches the page (GET and HEAD) and its script; nothing is consumed.
    let (status, headers, body) = plain_request("GET", &link);
    assert_eq!(status, 200);
    assert_secure_headers(&headers, "the page");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<script type=\"module\" src=\"/web/app.js\">"), "{page}");
    assert!(!page.contains(key), "the page must not hold the key");
    assert_eq!(plain_request("HEAD", &link).0, 200);
    let origin = &link[..link.find("/r/").unwrap()];
    for file in ["app.js", "protocol.js", "vendor.js", "page.css"] {
        let (status, headers, _) = plain_request("GET", &format!("{origin}/web/{file}"));
        assert_eq!(status, 200, "{file}");
        assert_secure_headers(&headers, file);
    }
    assert_eq!(plain_request("POST", &link).0, 405);

    let out = a.dir.path().join("downloads");
    let got = browser(&link, "download", json!({}), &out);
    assert_eq!(got["state"], "done", "{got}");
    assert_eq!(got["sha256"], sha256_file(&src).as_str(), "{got}");
    assert_eq!(got["bytes"].as_u64(), Some(std::fs::metadata(&src).unwrap().len()));
    assert_eq!(got["suggested_name"], "report.bin");
    assert_eq!(got["status"], 200);
    assert_eq!(got["foreign"], json!([]), "the page asked a third party: {got}");
    assert_eq!(got["problems"], json!([]), "the page had errors (a CSP violation?): {got}");
    assert_secure_headers(&serde_json::from_value(got["headers"].clone()).unwrap(), "the page, as chromium saw it");

    // The sender counts the browser's receive like any other: verified, over HTTP.
    let (code, last) = sender.finish();
    assert_eq!(code, 0, "{last}");
    assert_eq!(last["event"], "completed", "{last}");
    assert_eq!((last["path"].as_str(), last["sha256"].as_str()), (Some("http"), Some(sha256_file(&src).as_str())));
    assert_eq!(last["bytes"].as_u64(), Some(std::fs::metadata(&src).unwrap().len()));
}

#[test]
fn the_page_streams_into_the_file_the_person_picks() {
    let a = Node::new();
    let src = random_file(a.dir.path(), "picked.bin", 2 * 1024 * 1024 + 17, 22);
    let (sender, link) = send_with_link(&a, &src);
    let got = browser(&link, "picker", json!({}), &a.dir.path().join("downloads"));
    assert_eq!((got["state"].as_str(), got["downloads"].as_u64()), (Some("done"), Some(0)), "{got}");
    assert_eq!(got["sha256"], sha256_file(&src).as_str(), "{got}");
    assert_eq!(got["problems"], json!([]), "{got}");
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str()), (0, Some("completed")), "{last}");
}

#[test]
fn a_modified_frame_shows_the_error_saves_nothing_and_leaves_the_link_usable() {
    let a = Node::new();
    let src = random_file(a.dir.path(), "signed.bin", 1024 * 1024 + 5, 23);
    let (sender, link) = send_with_link(&a, &src);
    let out = a.dir.path().join("downloads");

    let got = browser(&link, "download", json!({ "tamper": true, "shot": "tampered" }), &out);
    assert_eq!((got["state"].as_str(), got["error_code"].as_str()), (Some("error"), Some("tampered")), "{got}");
    assert_eq!(got["downloads"], 0, "a tampered file must not be handed over: {got}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    // Streaming into a picked file: the writable is dropped, nothing lands in the file.
    let got = browser(&link, "picker", json!({ "tamper": true, "shot": "tampered-picker" }), &out);
    assert_eq!((got["state"].as_str(), got["error_code"].as_str()), (Some("error"), Some("tampered")), "{got}");
    assert_eq!(got["picked_bytes"].as_u64().unwrap_or(0), 0, "{got}");

    // The failed tries consumed nothing: the same link still delivers the file.
    let got = browser(&link, "download", json!({}), &out);
    assert_eq!((got["state"].as_str(), got["sha256"].as_str()), (Some("done"), Some(sha256_file(&src).as_str())));
    assert_eq!(sender.finish().0, 0);
}

/// The page saved `src` whole, asked no third party and logged no error (a CSP violation).
fn assert_saved(got: &Value, src: &Path) {
    assert_eq!(
        (got["state"].as_str(), got["sha256"].as_str()),
        (Some("done"), Some(sha256_file(src).as_str())),
        "{got}"
    );
    assert_eq!(got["bytes"].as_u64(), Some(std::fs::metadata(src).unwrap().len()), "{got}");
    assert_eq!(got["foreign"], json!([]), "the page asked a third party: {got}");
    assert_eq!(got["problems"], json!([]), "the page had errors (a CSP violation?): {got}");
}

#[test]
fn a_64_mib_file_streams_through_a_direct_link_into_the_picked_file() {
    let a = Node::new();
    let src = random_file(a.dir.path(), "big.bin", 64 * 1024 * 1024 + 4099, 26);
    let (sender, link) = send_with_link(&a, &src);
    let got = browser(&link, "picker", json!({ "shot": "direct-64mib" }), &a.dir.path().join("downloads"));
    assert_saved(&got, &src);
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str(), last["path"].as_str()), (0, Some("completed"), Some("http")), "{last}");
}

/// `send --link` with a relay: the relay serves the page, and the page reaches the sender
/// through the transfer's mailboxes over WebSocket.
fn send_with_relay_link(node: &Node, relay: &str, file: &Path) -> (Running, String) {
    let mut sender = Running::new_public(
        with_relay(node, relay, &["send", file.to_str().unwrap(), "--json", "--link"]).spawn().unwrap(),
    );
    let ticket = sender.next_event(WAIT).unwrap();
    let link = sender.next_event(WAIT).unwrap();
    assert_eq!(link["event"], "link", "the link follows the ticket: {link}");
    let link = link["link"].as_str().unwrap().to_owned();
    let origin = relay.replace("ws://", "http://");
    assert!(link.starts_with(&format!("{origin}/r/")) && link.contains("&via=relay"), "{link} is not at {origin}");
    let parsed: agentferry::Ticket = ticket["ticket"].as_str().unwrap().parse().unwrap();
    assert_eq!(link, agentferry::web::link(&parsed, None).unwrap());
    (sender, link)
}

#[test]
fn a_browser_receives_64_mib_through_the_relay_that_serves_its_page() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let a = Node::new();
    let src = random_file(a.dir.path(), "relayed.bin", 64 * 1024 * 1024 + 777, 27);
    let (sender, link) = send_with_relay_link(&a, &url, &src);

    // The relay serves the page and its files with the same headers; a preview consumes nothing.
    let (status, headers, _) = plain_request("GET", &link);
    assert_eq!(status, 200);
    assert_secure_headers(&headers, "the relay's page");
    let origin = &link[..link.find("/r/").unwrap()];
    for file in ["app.js", "protocol.js", "vendor.js"] {
        let (status, headers, _) = plain_request("GET", &format!("{origin}/web/{file}"));
        assert_eq!(status, 200, "{file}");
        assert_secure_headers(&headers, file);
    }

    let got = browser(&link, "download", json!({ "shot": "relay-64mib" }), &a.dir.path().join("downloads"));
    assert_saved(&got, &src);
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str(), last["path"].as_str()), (0, Some("completed"), Some("relay")), "{last}");
    assert_eq!(last["sha256"], sha256_file(&src).as_str());
}

#[test]
fn through_the_relay_a_modified_frame_or_a_wrong_key_ends_with_the_pages_error() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let a = Node::new();
    let src = random_file(a.dir.path(), "guarded.bin", 3 * 1024 * 1024 + 11, 28);
    let (sender, link) = send_with_relay_link(&a, &url, &src);
    let out = a.dir.path().join("downloads");

    let got = browser(&link, "download", json!({ "tamper": true, "shot": "relay-tampered" }), &out);
    assert_eq!((got["state"].as_str(), got["error_code"].as_str()), (Some("error"), Some("tampered")), "{got}");
    assert_eq!(got["downloads"], 0, "{got}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    // Another key names other mailboxes, which nobody reads: the page says nobody answers.
    let key = link.split("#k=").nth(1).unwrap().split('&').next().unwrap();
    let other = format!("{}{}", if key.starts_with('A') { 'B' } else { 'A' }, &key[1..]);
    let got = browser(&link.replace(key, &other), "open", json!({ "shot": "relay-no-answer" }), &out);
    assert_eq!((got["state"].as_str(), got["error_code"].as_str()), (Some("error"), Some("no_answer")), "{got}");

    // Neither consumed the transfer: the right link still delivers it.
    let got = browser(&link, "download", json!({}), &out);
    assert_eq!(
        (got["state"].as_str(), got["sha256"].as_str()),
        (Some("done"), Some(sha256_file(&src).as_str())),
        "{got}"
    );
    let (code, last) = sender.finish();
    assert_eq!((code, last["path"].as_str()), (0, Some("relay")), "{last}");
}

/// A tree of 200 files: nested folders, an empty folder, empty files, an executable, and one
/// file that spans several chunks.
fn make_tree(parent: &Path) -> PathBuf {
    let root = parent.join("project");
    std::fs::create_dir_all(root.join("src/deep/er")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    for i in 0..196 {
        let dir = root.join(format!("many/d{}", i % 4));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i:03}.txt")), format!("file {i}\n").repeat(i * 13 % 300)).unwrap();
    }
    std::fs::write(root.join("src/deep/er/empty-file"), "").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(root.join("README.md"), "hello\n").unwrap();
    random_file(&root.join("src"), "large.bin", 3 * 1024 * 1024 + 5, 29);
    root
}

/// Every folder (None) and file (its bytes) under `root`, by relative path.
fn contents(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let rel = entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    out
}

/// Unpack `zip` into `dest` with Python's zipfile, which checks every CRC-32; returns each
/// entry's name and the Unix mode the zip gives it.
fn unzip(zip: &Path, dest: &Path) -> BTreeMap<String, u32> {
    let script = "import json, sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  bad = z.testzip()\n\
                  assert bad is None, f'bad CRC in {bad}'\n\
                  z.extractall(sys.argv[2])\n\
                  print(json.dumps({i.filename: i.external_attr >> 16 for i in z.infolist()}))";
    let run = Command::new("python3").args(["-c", script]).arg(zip).arg(dest).output().unwrap();
    assert!(run.status.success(), "unzip: {}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice(&run.stdout).unwrap()
}

/// `send DIR --link` and the page's zip, unpacked: the same tree, with its modes.
fn assert_folder_arrives(sender: Running, link: &str, src: &Path, out: &Path, path: &str) {
    assert!(link.ends_with("&folder=1"), "{link}");
    let got = browser(link, "download", json!({ "shot": format!("folder-{path}") }), out);
    assert_eq!((got["state"].as_str(), got["suggested_name"].as_str()), (Some("done"), Some("project.zip")), "{got}");
    assert_eq!(got["problems"], json!([]), "{got}");
    let unpacked = out.join("unpacked");
    let modes = unzip(Path::new(got["saved"].as_str().unwrap()), &unpacked);
    assert_eq!(contents(&unpacked.join("project")), contents(src), "the unpacked tree differs");
    assert_eq!(modes.get("project/run.sh"), Some(&0o100755), "{modes:?}");
    assert_eq!(modes.get("project/empty/"), Some(&0o040755), "{modes:?}");
    let (code, last) = sender.finish();
    assert_eq!((code, last["event"].as_str(), last["path"].as_str()), (0, Some("completed"), Some(path)), "{last}");
}

#[test]
fn a_200_file_folder_arrives_as_one_zip_directly_and_through_the_relay() {
    let a = Node::new();
    let src = make_tree(a.dir.path());
    let (sender, link) = send_with_link(&a, &src);
    assert_folder_arrives(sender, &link, &src, &a.dir.path().join("direct"), "http");

    let (_relay, url) = start_relay("127.0.0.1:0");
    let (sender, link) = send_with_relay_link(&a, &url, &src);
    assert_folder_arrives(sender, &link, &src, &a.dir.path().join("relayed"), "relay");
}

#[test]
fn the_page_refuses_a_folder_listing_that_would_unpack_outside_itself() {
    let run = Command::new("node").arg(js_dir().join("tree_checks.mjs")).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout} {}", String::from_utf8_lossy(&run.stderr));
    let got: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(got["accepted"], json!(["a", "a/b.txt", "a/c"]), "{got}");
    for (case, verdict) in got["refused"].as_object().unwrap() {
        assert_eq!(verdict, "listing_refused", "{case}: {got}");
    }
    assert!(got["refused"].as_object().unwrap().len() >= 9, "{got}");
}

#[test]
fn a_wrong_or_cut_link_shows_its_error() {
    let a = Node::new();
    let src = random_file(a.dir.path(), "k.bin", 70_000, 24);
    let (sender, link) = send_with_link(&a, &src);
    let out = a.dir.path().join("downloads");
    let (base, fragment) = link.split_once('#').unwrap();
    let key = &fragment[2..fragment.find('&').unwrap()];
    // Another key of the right length: the sender answers a bare 403.
    let other = format!("{}{}", if key.starts_with('A') { 'B' } else { 'A' }, &key[1..]);
    let wrong = link.replace(key, &other);
    let cases = [
        (wrong.clone(), "wrong_key"),
        (base.to_owned(), "link_malformed"),
        (format!("{base}#k={}", &key[..20]), "link_malformed"),
        // The same wrong key on a link past its expiry reads as expired.
        (wrong.replace(&fragment[fragment.find("&e=").unwrap()..], "&e=1"), "expired"),
    ];
    for (i, (bad, code)) in cases.iter().enumerate() {
        let got = browser(bad, "open", json!({ "shot": format!("error-{code}-{i}") }), &out);
        assert_eq!((got["state"].as_str(), got["error_code"].as_str()), (Some("error"), Some(*code)), "{bad}: {got}");
        assert!(got["error_title"].as_str().is_some_and(|t| !t.is_empty()), "{got}");
    }
    let got = browser(&link, "node", json!({}), &out);
    assert_eq!(got["state"], "done", "and the right link still works: {got}");
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn the_page_protocol_without_webcrypto_receives_from_a_real_sender() {
    // A page served over plain http on a LAN address is not a secure context: no WebCrypto.
    // protocol.js then opens frames with the vendored AES-GCM; Node runs that same code here.
    let a = Node::new();
    let src = random_file(a.dir.path(), "lan.bin", 1024 * 1024 * 2 + 99, 25);
    let (sender, link) = send_with_link(&a, &src);
    let got = browser(&link, "node", json!({}), &a.dir.path().join("downloads"));
    assert_eq!(got["state"], "done", "{got}");
    assert_eq!(
        (got["sha256"].as_str(), got["verified"].as_str()),
        (Some(sha256_file(&src).as_str()), got["sha256"].as_str())
    );
    let (code, last) = sender.finish();
    assert_eq!((code, last["path"].as_str()), (0, Some("http")), "{last}");
}

/// The agent's view: `send_file` returns the link beside the ticket, `check_session` shows the
/// browser's receive like any other, and a server that outlives the transfer tells a second
/// opening of the link that the file was already received.
#[tokio::test(flavor = "multi_thread")]
async fn send_file_returns_a_link_and_check_session_shows_the_browser_receive() {
    use rmcp::{ServiceExt, model::CallToolRequestParams, model::object};
    let base = tempfile::tempdir().unwrap();
    let (dir, node, io) = common::mcp_server::start(base.path(), "alice", None).await;
    let client = ().serve(io).await.unwrap();
    let call = |tool: &'static str, args: Value| {
        let client = &client;
        async move {
            let result = client.call_tool(CallToolRequestParams::new(tool).with_arguments(object(args))).await.unwrap();
            assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
            result.structured_content.unwrap()
        }
    };
    // A node that listens for pushes serves every send from one listener that outlives them.
    let inbox = agentferry::engine::advertised_addrs(node.inbox_bind().unwrap());
    node.trust().export("carol", 3600, inbox, None).unwrap();
    call("check_session", json!({})).await; // the first call after the export binds the inbox
    let src = common::mcp_server::file(&dir, "agent-report.bin", 1_500_000);
    let sent = call("send_file", json!({ "path": "agent-report.bin" })).await;
    let link = sent["link"].as_str().expect("send_file returns a link").to_owned();
    let ticket: agentferry::Ticket = sent["ticket"].as_str().unwrap().parse().unwrap();
    assert_eq!(agentferry::web::link(&ticket, None).as_deref(), Some(link.as_str()));
    // With a password the link is masked, and the password is in nothing the tool returns.
    let guarded = call("send_file", json!({ "path": "agent-report.bin", "password": "hunter22" })).await;
    let guarded_ticket: agentferry::Ticket = guarded["ticket"].as_str().unwrap().parse().unwrap();
    assert_eq!(guarded["link"].as_str(), agentferry::web::link(&guarded_ticket, Some("hunter22")).as_deref());
    assert!(guarded["link"].as_str().unwrap().ends_with("&p=scrypt15"), "{guarded}");
    assert!(!guarded.to_string().contains("hunter22"), "{guarded}");

    let out = base.path().join("browser-downloads");
    let (l, o) = (link.clone(), out.clone());
    let got = tokio::task::spawn_blocking(move || browser(&l, "download", json!({ "shot": "mcp" }), &o)).await.unwrap();
    assert_eq!((got["state"].as_str(), got["sha256"].as_str()), (Some("done"), Some(sha256_file(&src).as_str())));

    let id = sent["transfer_id"].as_str().unwrap();
    let report = call("check_session", json!({ "transfer_id": id, "wait": true, "timeout_seconds": 60 })).await;
    let status = &report["transfers"][0];
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!((status["path"].as_str(), status["sha256"].as_str()), (Some("http"), got["sha256"].as_str()));
    assert_eq!(status["bytes_done"].as_u64(), Some(1_500_000), "{status}");

    let (l, o) = (link.clone(), out.clone());
    let again =
        tokio::task::spawn_blocking(move || browser(&l, "open", json!({ "shot": "completed" }), &o)).await.unwrap();
    assert_eq!((again["state"].as_str(), again["error_code"].as_str()), (Some("error"), Some("completed")), "{again}");
    client.cancel().await.unwrap();
}

/// `send --link` with its password from AGENTFERRY_LINK_PASSWORD (so not in `ps`): the sender and
/// its link. The password appears in nothing the sender prints.
fn send_with_password(node: &Node, file: &Path, password: &str) -> (Running, String) {
    let mut cmd = node.command(&["send", file.to_str().unwrap(), "--json", "--link"]);
    cmd.env("AGENTFERRY_LINK_PASSWORD", password);
    let mut sender = Running::new_public(cmd.spawn().unwrap());
    let ticket = sender.next_event(WAIT).unwrap();
    let link = sender.next_event(WAIT).unwrap();
    assert_eq!(link["event"], "link", "{link}");
    for event in [&ticket, &link] {
        assert!(!event.to_string().contains(password), "the password was printed: {event}");
    }
    let link = link["link"].as_str().unwrap().to_owned();
    let parsed: agentferry::Ticket = ticket["ticket"].as_str().unwrap().parse().unwrap();
    assert_eq!(link, agentferry::web::link(&parsed, Some(password)).unwrap());
    assert_ne!(Some(link.clone()), agentferry::web::link(&parsed, None), "the key is masked");
    (sender, link)
}

/// The status of a transfer request made with `token`, as a guesser with the link makes it.
fn post_with_token(link: &str, token: &str) -> u16 {
    let rest = link.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let id = path.split('#').next().unwrap().strip_prefix("/r/").unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /v2/transfers/{id} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    String::from_utf8_lossy(&raw).split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_password_link_opens_only_with_its_password() {
    let a = Node::new();
    let src = random_file(a.dir.path(), "payroll.csv", 2 * 1024 * 1024 + 17, 31);
    let (sender, link) = send_with_password(&a, &src, "plum tart 42");

    let out = a.dir.path().join("downloads");
    let got =
        browser(&link, "download", json!({ "passwords": ["plum tart 41", "plum tart 42"], "shot": "password" }), &out);
    assert_eq!(got["attempts"], json!(["wrong_password", "offer"]), "{got}");
    assert_eq!(got["state"], "done", "{got}");
    assert_eq!(got["sha256"], sha256_file(&src).as_str(), "{got}");
    // Chromium logs the sender's 403 to the wrong password; nothing else may go wrong.
    let problems = got["problems"].as_array().unwrap();
    assert!(problems.iter().all(|p| p.as_str().unwrap().contains("status of 403")), "{got}");
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn wrong_passwords_are_rate_limited_by_the_sender() {
    let a = Node::new();
    let src = random_file(a.dir.path(), "secret.txt", 10_000, 32);
    let (mut sender, link) = send_with_password(&a, &src, "right one");
    // Each guess is a token; after five wrong ones this address is refused, the right token too.
    for guess in 0..5 {
        assert_eq!(post_with_token(&link, &format!("guess{guess}")), 403, "guess {guess}");
    }
    assert_eq!(post_with_token(&link, "guess5"), 429);
    let out = a.dir.path().join("downloads");
    let got = browser(&link, "open", json!({ "passwords": ["right one"], "shot": "too-many-passwords" }), &out);
    assert_eq!(got["attempts"], json!(["too_many_attempts"]), "{got}");
    assert!(listing_of(&out).is_empty(), "something was saved: {:?}", listing_of(&out));
    // The sender still serves: the transfer is neither failed nor consumed.
    assert!(sender.child.try_wait().unwrap().is_none(), "the sender stopped");
    sender.interrupt();
}

fn listing_of(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// AGENTFERRY_LINK_PASSWORD exported in a shell is read only by `send --link`: a plain send
/// with it set still works.
#[test]
fn the_link_password_variable_does_not_break_a_plain_send() {
    let (a, b) = (Node::new(), Node::new());
    let src = random_file(a.dir.path(), "plain.bin", 5_000, 33);
    let mut cmd = a.command(&["send", src.to_str().unwrap(), "--json"]);
    cmd.env("AGENTFERRY_LINK_PASSWORD", "set in the shell");
    let mut sender = Running::new_public(cmd.spawn().unwrap());
    let ticket = sender.next_event(WAIT).unwrap();
    assert_eq!(ticket["event"], "ticket", "{ticket}");
    let (code, events, stderr) =
        b.run(&["receive", ticket["ticket"].as_str().unwrap(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_same_file(&src, &b.out().join("plain.bin"));
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn a_webrtc_only_send_refuses_a_link_it_could_not_serve() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let a = Node::new();
    let src = random_file(a.dir.path(), "rtc.bin", 1000, 30);
    let out = with_relay(&a, &url, &["send", src.to_str().unwrap(), "--link", "--prefer", "webrtc", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let error: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!((error["event"].as_str(), error["code"].as_str()), (Some("error"), Some("invalid_argument")), "{error}");
    assert!(error["message"].as_str().unwrap().contains("--prefer webrtc"), "{error}");
}

#[test]
fn a_person_sends_a_file_from_the_page_to_an_agent_through_an_upload_link() {
    let (_relay, url) = start_relay("127.0.0.1:0");
    let b = Node::new();
    let mut receiver = Running::new_public(
        with_relay(&b, &url, &["receive", "--link", "-o", b.out().to_str().unwrap(), "--json"]).spawn().unwrap(),
    );
    let link = receiver.next_event(WAIT).unwrap();
    assert_eq!(link["event"], "link", "{link}");
    let link = link["link"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&url.replace("ws://", "http://")) && link.ends_with("&via=relay&up=1"), "{link}");

    let person = tempfile::tempdir().unwrap();
    let src = random_file(person.path(), "from the person.bin", 5 * 1024 * 1024 + 321, 31);
    let got = browser(&link, "upload", json!({ "file": src, "shot": "upload" }), &person.path().join("out"));
    assert_eq!(
        (got["state"].as_str(), got["sent_sha256"].as_str()),
        (Some("done"), Some(sha256_file(&src).as_str())),
        "{got}"
    );
    assert_eq!(got["problems"], json!([]), "{got}");

    let (code, last) = receiver.finish();
    assert_eq!((code, last["event"].as_str(), last["path"].as_str()), (0, Some("completed"), Some("relay")), "{last}");
    assert_same_file(&src, &b.out().join("from the person.bin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn receive_file_via_link_gives_an_upload_link_and_check_session_follows_the_persons_file() {
    use rmcp::{ServiceExt, model::CallToolRequestParams, model::object};
    let (_relay, url) = start_relay("127.0.0.1:0");
    let base = tempfile::tempdir().unwrap();
    let (dir, _node, io) = common::mcp_server::start_with(base.path(), "bob", None, Some(&url)).await;
    let client = ().serve(io).await.unwrap();
    let call = |tool: &'static str, args: Value| {
        let client = &client;
        async move {
            let result = client.call_tool(CallToolRequestParams::new(tool).with_arguments(object(args))).await.unwrap();
            if result.is_error == Some(true) {
                let text = &result.content[0].as_text().expect("an error is one text block").text;
                return (true, serde_json::from_str::<Value>(text).unwrap());
            }
            (false, result.structured_content.unwrap())
        }
    };
    let (refused, e) = call("receive_file", json!({ "via": "link", "code": "7-guitar-nebula-acorn" })).await;
    assert!(refused && e["code"] == "invalid_argument", "{e}");
    let (refused, e) = call("receive_file", json!({ "via": "link", "prefer": "http" })).await;
    assert!(refused && e["code"] == "invalid_argument", "{e}");

    let (_, got) = call("receive_file", json!({ "via": "link" })).await;
    let link = got["link"].as_str().expect("receive_file(via: link) returns a link").to_owned();
    assert!(link.starts_with(&url.replace("ws://", "http://")) && link.ends_with("&via=relay&up=1"), "{got}");
    let id = got["transfer_id"].as_str().unwrap().to_owned();
    assert!(link.contains(&format!("/r/{id}#")), "the link names the transfer: {got}");
    assert_eq!((got["state"].as_str(), got["role"].as_str()), (Some("active"), Some("receive")), "{got}");
    assert!(got["held_because"].as_str().unwrap().contains("pick a file"), "{got}");
    assert!(got["link_expires_at"].as_u64().unwrap() > got["created_at"].as_u64().unwrap(), "{got}");
    // Before the person picks a file, the transfer is listed and can be looked up.
    let (_, listing) = call("check_session", json!({})).await;
    assert!(listing["transfers"].as_array().unwrap().iter().any(|t| t["transfer_id"] == id), "{listing}");
    let (_, one) = call("check_session", json!({ "transfer_id": id })).await;
    assert_eq!(one["transfers"][0]["state"], "active", "{one}");

    let person = tempfile::tempdir().unwrap();
    let src = random_file(person.path(), "for the agent.bin", 3 * 1024 * 1024 + 17, 47);
    let (l, s, o) = (link.clone(), src.clone(), person.path().join("out"));
    let sent =
        tokio::task::spawn_blocking(move || browser(&l, "upload", json!({ "file": s, "shot": "mcp-upload" }), &o))
            .await
            .unwrap();
    assert_eq!((sent["state"].as_str(), sent["problems"].clone()), (Some("done"), json!([])), "{sent}");

    let (_, report) = call("check_session", json!({ "transfer_id": id, "wait": true, "timeout_seconds": 60 })).await;
    let status = &report["transfers"][0];
    assert_eq!((status["state"].as_str(), status["path"].as_str()), (Some("completed"), Some("relay")), "{status}");
    assert_eq!(status["sha256"].as_str(), Some(sha256_file(&src).as_str()), "{status}");
    assert_eq!(status["file_name"], "for the agent.bin", "{status}");
    assert!(status.get("held_because").is_none(), "{status}");
    let saved = dir.join("downloads").join("for the agent.bin");
    assert_eq!(status["saved_to"].as_str(), saved.to_str(), "{status}");
    assert_same_file(&src, &saved);

    // The link was used up: a second upload finds nobody listening.
    let (l, s, o) = (link.clone(), src.clone(), person.path().join("out2"));
    let again = tokio::task::spawn_blocking(move || {
        browser(&l, "upload", json!({ "file": s, "shot": "mcp-upload-again" }), &o)
    })
    .await
    .unwrap();
    assert_eq!((again["state"].as_str(), again["error_code"].as_str()), (Some("error"), Some("not_taken")), "{again}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_link_without_a_relay_says_what_to_configure() {
    use rmcp::{ServiceExt, model::CallToolRequestParams, model::object};
    let base = tempfile::tempdir().unwrap();
    let (_dir, _node, io) = common::mcp_server::start(base.path(), "bob", None).await;
    let client = ().serve(io).await.unwrap();
    let args = object(json!({ "via": "link" }));
    let result = client.call_tool(CallToolRequestParams::new("receive_file").with_arguments(args)).await.unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let e: Value = serde_json::from_str(&result.content[0].as_text().unwrap().text).unwrap();
    assert_eq!(e["code"], "link_needs_relay", "{e}");
    assert!(e["hint"].as_str().unwrap().contains("AGENTFERRY_RELAY"), "{e}");
    client.cancel().await.unwrap();

    let b = Node::new();
    let (code, events, _) = b.run(&["receive", "--link", "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!((code, events.last().unwrap()["code"].as_str()), (3, Some("link_needs_relay")), "{events:?}");
}
