//! The published JSON Schemas: every MCP tool's input and output, and the CLI's JSON Lines.
//!
//! They are generated from the types the code uses (schemars), written to `schemas/` by
//! `agentferry schemas schemas`, and checked by a test that fails when the files drift.
//! schemars marks unsigned integers with formats such as `uint64`, which JSON Schema does not
//! define and validators such as Ajv (in the TypeScript MCP SDK) warn about on every field;
//! [`portable`] drops them, keeping the `minimum: 0` that says the same thing.

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
    let mut events = serde_json::to_value(schemars::schema_for!(Event)).expect("schema serialises");
    if let Some(object) = events.as_object_mut() {
        portable(object);
    }
    files.push(("cli-events.json".into(), pretty(&events)));
    files.sort();
    files
}

/// Remove integer `format`s that JSON Schema validators do not know (`uint64`, `uint32`, …),
/// everywhere in `schema`. `int32`/`int64` (OpenAPI formats Ajv knows) and `double` stay.
pub fn portable(schema: &mut serde_json::Map<String, serde_json::Value>) {
    let unknown =
        |f: &serde_json::Value| f.as_str().is_some_and(|f| f.starts_with("uint") || f == "int8" || f == "int16");
    if schema.get("format").is_some_and(unknown) {
        schema.remove("format");
    }
    for value in schema.values_mut() {
        match value {
            serde_json::Value::Object(inner) => portable(inner),
            serde_json::Value::Array(items) => items.iter_mut().filter_map(|v| v.as_object_mut()).for_each(portable),
            _ => {}
        }
    }
}
