//! The npm launcher (`npm/agentferry/bin/agentferry.js`, what `npx agentferry` runs) takes the
//! binary down with it: a host that stops its MCP server by killing the launcher, with SIGTERM
//! or SIGKILL, leaves no server behind holding ports and the node home. Run with Node against
//! the binary this build produced.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::Node;

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// Whether `pid` is gone (or a zombie nobody reaped yet, which holds nothing).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "{what} within {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The launcher serving MCP over its stdin (held open, as a host holds it), and the binary it runs.
fn launch(node: &Node) -> (Child, u32) {
    let launcher = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("npm/agentferry/bin/agentferry.js");
    let root = node.dir.path().join("files");
    std::fs::create_dir_all(&root).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(launcher).args(["mcp", "--root", root.to_str().unwrap()]);
    for (key, value) in node.command(&[]).get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    let child = cmd
        .env("AGENTFERRY_BINARY_PATH", env!("CARGO_BIN_EXE_agentferry"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs the launcher");
    let mut binary = None;
    until("the launcher starts the binary", Duration::from_secs(20), || {
        binary = children(child.id()).into_iter().next();
        binary.is_some()
    });
    (child, binary.unwrap())
}

#[test]
fn killing_the_launcher_ends_the_binary() {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let node = Node::new();
        let (mut launcher, binary) = launch(&node);
        assert!(!gone(binary));
        // Held open, as a host holds it: `wait` would close it, and EOF alone ends the server.
        let _stdin = launcher.stdin.take();
        // SAFETY: kill sends a signal to a process this test started.
        assert_eq!(unsafe { libc::kill(launcher.id() as i32, signal) }, 0);
        launcher.wait().unwrap();
        until(&format!("the binary ends after signal {signal} to the launcher"), Duration::from_secs(10), || {
            gone(binary)
        });
    }
}
