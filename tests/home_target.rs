//! Issue 26, item 1: nothing received is ever written into the node home, on any front. A
//! sender's `grants.json` landing there used to be a grant the attacker held: the node picked
//! it up and auto-accepted the attacker's pushes.

mod attack;
mod common;

use attack::*;
use common::*;
use serde_json::{Value, json};

/// A sender serving a file called `grants.json`; returns it and its ticket.
fn send_grants(a: &Node) -> (Running, String) {
    let src = a.dir.path().join("grants.json");
    std::fs::write(&src, br#"[{"id":"planted"}]"#).unwrap();
    let (sender, ticket, _) = a.send(&src, &[]);
    (sender, ticket)
}

#[test]
fn the_cli_refuses_to_receive_into_the_home_however_it_is_named() {
    let (a, b) = (Node::new(), Node::new());
    let (_sender, ticket) = send_grants(&a);
    // The home exists once any command ran.
    assert_eq!(run(&b, &["status", "--json"]).0, 0);
    let home = b.home();
    let link = b.dir.path().join("looks-harmless");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    let before = listing(&home);
    for target in
        [home.clone(), home.join("transfers"), home.join("new-folder"), link.clone(), home.join("..").join("home")]
    {
        let (code, events, stderr) = run(&b, &["receive", &ticket, "-o", target.to_str().unwrap(), "--json"]);
        assert_eq!(code, 6, "{} was taken: {events:?} {stderr}", target.display());
        let last = events.last().unwrap();
        assert_eq!(last["code"], "path_not_allowed", "{last}");
        assert!(last["hint"].as_str().is_some_and(|h| !h.is_empty()), "{last}");
    }
    assert_eq!(listing(&home), before, "something was written into the home");
    assert!(!home.join("new-folder").exists());
}

#[test]
fn the_mcp_server_refuses_an_output_dir_in_its_home_even_inside_a_root() {
    let (a, b) = (Node::new(), Node::new());
    let (_sender, ticket) = send_grants(&a);
    // The root holds the node home, as when a server is started in a folder that holds it.
    let mut mcp = McpBinary::start(&b, b.dir.path());
    for dir in ["home", "home/transfers"] {
        let (is_error, error) = mcp.call("receive_file", json!({"ticket": ticket, "output_dir": dir}));
        assert!(is_error, "{dir} was taken: {error}");
        assert_eq!(error["code"], "path_not_allowed", "{error}");
    }
    assert!(!b.home().join("grants.json").exists() && !b.home().join("transfers/grants.json").exists());
    assert_eq!(mcp.finish(), 0);
}

/// `listen` with its download folder set to its own home: a trusted peer's push is refused
/// (and the pusher told so) instead of landing a `grants.json` there.
#[test]
fn pushes_are_not_auto_accepted_into_the_home() {
    let (a, b) = (Node::new(), Node::new());
    let inbox_env = |cmd: &mut std::process::Command| {
        cmd.env("AGENTFERRY_INBOX_BIND", "127.0.0.1:0").env("AGENTFERRY_DOWNLOAD_DIR", b.home());
    };
    let mut export = command(&b, &["export", "--name", "bob", "--json"]);
    inbox_env(&mut export);
    let out = export.output().unwrap();
    let exported: Value = serde_json::from_slice(out.stdout.split(|c| *c == b'\n').next().unwrap()).unwrap();
    assert_eq!(run(&a, &["peers", "add", exported["uri"].as_str().unwrap(), "--json"]).0, 0);
    let mut listen = command(&b, &["listen", "--json"]);
    inbox_env(&mut listen);
    let mut listener = Running::new_public(listen.spawn().unwrap());
    listener.wait_for("the inbox", |e| e["event"] == "inbox");

    let src = a.dir.path().join("grants.json");
    std::fs::write(&src, br#"[{"id":"planted"}]"#).unwrap();
    let (code, events, stderr) = run(&a, &["send", src.to_str().unwrap(), "--to", "bob", "--json"]);
    assert_ne!(code, 0, "the push was taken: {events:?} {stderr}");
    let shown = serde_json::to_string(&events).unwrap();
    assert!(shown.contains("path_not_allowed"), "the pusher was not told why: {shown}");
    let grants: Value = serde_json::from_slice(&std::fs::read(b.home().join("grants.json")).unwrap()).unwrap();
    assert!(!grants.to_string().contains("planted"), "the pushed grants.json replaced the home's: {grants}");
}

/// `source_private` used to go by path: a hard link to the home's `grants.json` inside the
/// sent folder (or named directly) was sent with its secrets.
#[test]
fn a_hard_link_to_the_homes_grants_inside_a_root_is_never_sent() {
    let a = Node::new();
    // A grant, so the home holds secrets worth stealing.
    let (code, events, stderr) = run(&a, &["export", "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    let grants = a.home().join("grants.json");
    assert!(grants.is_file(), "export wrote {}", grants.display());
    let shared = a.dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("notes.txt"), b"fine to send").unwrap();
    std::fs::hard_link(&grants, shared.join("innocent.json")).unwrap();

    let (code, events, _) = run(&a, &["send", shared.join("innocent.json").to_str().unwrap(), "--json"]);
    assert_eq!(code, 6, "{events:?}");
    assert_eq!(events.last().unwrap()["code"], "source_private", "{events:?}");

    let mut sender = Running::new_public(command(&a, &["send", shared.to_str().unwrap(), "--json"]).spawn().unwrap());
    let first = sender.wait_for("the ticket", |e| e["event"] == "ticket");
    let b = Node::new();
    let (code, events, stderr) =
        run(&b, &["receive", first["ticket"].as_str().unwrap(), "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert!(b.out().join("shared/notes.txt").is_file());
    assert!(!b.out().join("shared/innocent.json").exists(), "the home's grants were sent under another name");
}
