//! Runs tests/mcp_js/clients.mjs: the TypeScript MCP SDK client and the MCP Inspector CLI drive
//! `agentferry mcp` (the binary this build produced), calling every tool with good and bad
//! arguments; then the SDK client does the same over Streamable HTTP (`mcp --http`), with the
//! refusals only HTTP has and transfers both ways with a CLI node. The npm packages live in tests/mcp_js/node_modules, installed by `.ci/test`
//! (`npm ci --prefix tests/mcp_js`).

use std::{path::PathBuf, process::Command};

#[test]
fn typescript_sdk_and_inspector_cli_read_every_result_and_error() {
    run_clients(&[]);
}

#[test]
fn typescript_sdk_over_streamable_http_reads_every_result_and_error() {
    run_clients(&["http"]);
}

fn run_clients(args: &[&str]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_js");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").exists()
            && dir.join("node_modules/.bin/mcp-inspector").exists(),
        "the npm test clients are missing; run `bash .ci/test`, or once: npm ci --prefix tests/mcp_js"
    );
    let status = Command::new("node")
        .arg(dir.join("clients.mjs"))
        .args(args)
        .env("AGENTFERRY_BIN", env!("CARGO_BIN_EXE_agentferry"))
        .status()
        .expect("run node (Node.js 20 or newer)");
    assert!(status.success(), "the TypeScript SDK / Inspector CLI tests failed (output above)");
}
