//! Helpers for tests that run the real `agentferry` binary: one temp home per node, JSON Lines
//! read from a child's stdout on a thread, and waits that end on a condition or a deadline.

#![allow(dead_code)]

pub mod mcp_server;
pub mod netns;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

use rand::{RngCore, SeedableRng, rngs::StdRng};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_agentferry");
pub const WAIT: Duration = Duration::from_secs(60);

/// One node: a home folder and an output folder, both temporary.
pub struct Node {
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Self {
        Node { dir: tempfile::tempdir().unwrap() }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.configure(Command::new(BIN), args)
    }

    /// The same command, run inside a network namespace.
    pub fn command_in(&self, ns: &netns::Netns, args: &[&str]) -> Command {
        self.configure(ns.command(BIN), args)
    }

    fn configure(&self, mut cmd: Command, args: &[&str]) -> Command {
        cmd.args(args)
            .env("AGENTFERRY_HOME", self.home())
            .env("AGENTFERRY_BIND", "127.0.0.1:0")
            .env("AGENTFERRY_PEER_TIMEOUT", "30")
            .env_remove("AGENTFERRY_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Start a command whose `--json` events are read as they come.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::new(self.command(args).spawn().unwrap())
    }

    /// Run a command to the end; returns (exit code, events, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, Vec<Value>, String) {
        let out = self.command(args).output().unwrap();
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect();
        (out.status.code().unwrap_or(-1), events, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Start `send FILE --json` and return it with its ticket and transfer id.
    pub fn send(&self, file: &Path, extra: &[&str]) -> (Running, String, String) {
        let mut args = vec!["send", file.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let mut sender = self.spawn(&args);
        let first = sender.next_event(WAIT).expect("send printed nothing");
        assert_eq!(first["event"], "ticket", "the first line of send is the ticket: {first}");
        (sender, first["ticket"].as_str().unwrap().to_owned(), first["transfer_id"].as_str().unwrap().to_owned())
    }
}

/// A child process and its stdout events.
pub struct Running {
    pub child: Child,
    events: Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Running {
    /// Follow a child started by the caller.
    pub fn new_public(child: Child) -> Self {
        Running::new(child)
    }

    fn new(mut child: Child) -> Self {
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        // Drain stderr so a chatty child never blocks on a full pipe (unless the caller sent
        // it somewhere to read it).
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut sink = std::io::sink();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = writeln!(sink, "{line}");
                }
            });
        }
        Running { child, events, seen: Vec::new() }
    }

    pub fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        match self.events.recv_timeout(timeout) {
            Ok(v) => {
                self.seen.push(v.clone());
                Some(v)
            }
            Err(RecvTimeoutError::Timeout) => panic!("no event within {timeout:?}; seen {:?}", self.seen),
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Read events until one satisfies `pred`; panics at the deadline or end of output.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!("output ended before {what}; seen {:?}", self.seen),
            }
        }
    }

    /// Wait for the process to exit; returns its code and the last event.
    pub fn finish(mut self) -> (i32, Value) {
        while self.next_event(WAIT).is_some() {}
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), self.seen.last().cloned().unwrap_or(Value::Null))
    }

    /// Ctrl-C: SIGINT to the process.
    pub fn interrupt(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0, "SIGINT to {pid}");
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `agentferry relay` process listening on `listen` (`127.0.0.1:0` for any free port); returns
/// it and its URL.
pub fn start_relay(listen: &str) -> (Running, String) {
    let node = Node::new();
    let mut relay = Running::new(node.command(&["relay", "--listen", listen, "--json"]).spawn().unwrap());
    let ready = relay.next_event(WAIT).unwrap();
    assert_eq!(ready["event"], "relay", "{ready}");
    (relay, ready["url"].as_str().unwrap().to_owned())
}

/// `node`'s command `args`, with `relay` as its channel.
pub fn with_relay(node: &Node, relay: &str, args: &[&str]) -> Command {
    let mut cmd = node.command(args);
    cmd.env("AGENTFERRY_RELAY", relay);
    cmd
}

/// A file of `size` pseudo-random bytes from `seed`.
pub fn random_file(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    let mut data = vec![0u8; size];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    path
}

pub fn sha256_file(path: &Path) -> String {
    let data = std::fs::read(path).unwrap();
    data_encoding::HEXLOWER.encode(&Sha256::digest(&data))
}

pub fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(x.len(), y.len(), "{} and {} differ in size", a.display(), b.display());
    assert!(x == y, "{} and {} differ in content", a.display(), b.display());
}
