//! Runs the MCP conformance suite's server scenarios (`@modelcontextprotocol/conformance`)
//! against `agentferry mcp --http`, through tests/mcp_js/conformance.mjs. The scenarios this
//! server fails on purpose are listed, each with its reason, in
//! tests/mcp_js/conformance-baseline.yml; any other failure fails this test, and so does a listed
//! scenario that passes. The npm packages are installed by `.ci/test`.

use std::{path::PathBuf, process::Command};

#[test]
fn conformance_server_scenarios_pass_except_the_listed_ones() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_js");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/conformance").exists(),
        "the conformance suite is missing; run `bash .ci/test`, or once: npm ci --prefix tests/mcp_js"
    );
    let status = Command::new("node")
        .arg(dir.join("conformance.mjs"))
        .env("AGENTFERRY_BIN", env!("CARGO_BIN_EXE_agentferry"))
        .env_remove("SCENARIO")
        .status()
        .expect("run node (Node.js 20 or newer)");
    assert!(status.success(), "the conformance suite found failures not in the baseline (output above)");
}
