//! The published JSON Schemas: every MCP tool's input and output, and the CLI's JSON Lines.
//!
//! They are generated from the types the code uses (schemars), written to `schemas/` by
//! `agentferry schemas schemas`, and checked by a test that fails when the files drift.

use crate::{engine::Event, mcp::FerryServer};

/// `(file name, pretty JSON)` for every published schema.
pub fn generate() -> Vec<(String, String)> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("json") + "\n";
    let mut files = Vec::new();
    for tool in FerryServer::tools() {
        let input = serde_json::Value::Object((*tool.input_schema).clone());
        files.push((format!("{}.input.json", tool.name), pretty(&input)));
        if let Some(output) = &tool.output_schema {
            files.push((format!("{}.output.json", tool.name), pretty(&serde_json::Value::Object((**output).clone()))));
        }
    }
    let events = serde_json::to_value(schemars::schema_for!(Event)).expect("schema serialises");
    files.push(("cli-events.json".into(), pretty(&events)));
    files.sort();
    files
}
