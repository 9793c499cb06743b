//! Runs the end-to-end tests that drive `agentferry mcp` with the official Python MCP SDK
//! (tests/mcp_e2e: over stdio in test_mcp.py, over Streamable HTTP in test_mcp_http.py), against
//! the binary this build produced.
//!
//! The SDK lives in a virtualenv: `.venv` at the repository root (what `.ci/run` creates), or
//! the Python named by `AGENTFERRY_PYTHON`.

use std::{path::PathBuf, process::Command};

#[test]
fn python_mcp_sdk_drives_two_servers() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python =
        std::env::var_os("AGENTFERRY_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with the MCP SDK at {}; run: python3 -m venv .venv && .venv/bin/pip install -r tests/mcp_e2e/requirements.txt",
        python.display()
    );
    let status = Command::new(&python)
        .args(["-m", "pytest", "tests/mcp_e2e", "-q", "-p", "no:cacheprovider"])
        .current_dir(&root)
        .env("AGENTFERRY_BIN", env!("CARGO_BIN_EXE_agentferry"))
        .status()
        .expect("run pytest");
    assert!(status.success(), "the Python MCP end-to-end tests failed (output above)");
}
