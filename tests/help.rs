//! `--help` of every command: each argument and flag described, and node options only on the
//! commands they apply to.

mod common;

use std::process::Command;

use common::BIN;

const COMMANDS: &[&[&str]] = &[
    &["send"],
    &["receive"],
    &["status"],
    &["resume"],
    &["messages"],
    &["mcp"],
    &["listen"],
    &["export"],
    &["peers", "list"],
    &["peers", "add"],
    &["peers", "remove"],
    &["peers", "extend"],
    &["grants", "list"],
    &["grants", "revoke"],
    &["schemas"],
    &["relay"],
    &["demo"],
];

fn help(command: &[&str]) -> String {
    let out = Command::new(BIN).args(command).arg("--help").env_clear().output().unwrap();
    assert!(out.status.success(), "{command:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The flags a help text lists, each with its description (empty when it has none).
fn described(text: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut section = false;
    for line in text.lines() {
        if line == "Arguments:" || line == "Options:" {
            section = true;
            continue;
        }
        if line.is_empty() {
            section = false;
        }
        let item = line.trim_start();
        if section && (item.starts_with('-') || item.starts_with('<') || item.starts_with('[')) {
            // The name ends where two spaces start the description.
            let (name, description) = item.split_once("  ").unwrap_or((item, ""));
            items.push((name.trim().to_owned(), description.trim().to_owned()));
        }
    }
    items
}

#[test]
fn every_argument_and_flag_is_described() {
    for command in COMMANDS {
        let text = help(command);
        let items = described(&text);
        assert!(!items.is_empty(), "{command:?}: {text}");
        for (name, description) in items {
            assert!(!description.is_empty(), "{command:?}: {name} has no description:\n{text}");
        }
    }
}

#[test]
fn node_options_appear_only_where_they_apply() {
    let has = |command: &[&str], flag: &str| help(command).contains(&format!("{flag} "));
    for command in [&["schemas"][..], &["relay"], &["demo"]] {
        assert!(!has(command, "--home"), "{command:?} runs no node");
    }
    for flag in ["--bind", "--relay", "--prefer", "--peer-timeout", "--inbox-bind", "--name"] {
        assert!(!has(&["status"], flag), "status shows {flag}");
        assert!(!has(&["peers", "list"], flag), "peers list shows {flag}");
    }
    assert!(!has(&["receive"], "--bind") && !has(&["receive"], "--inbox-bind"), "a receiver serves nothing");
    assert!(!has(&["send"], "--peer-timeout"), "a sender does not wait for a sender");
    for flag in ["--bind", "--inbox-bind", "--relay", "--prefer", "--peer-timeout", "--name", "--home"] {
        assert!(has(&["mcp"], flag) && has(&["listen"], flag), "mcp and listen take {flag}");
    }
    // `--home` works after a nested subcommand too.
    let out =
        Command::new(BIN).args(["peers", "list", "--home"]).arg(tempfile::tempdir().unwrap().path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
