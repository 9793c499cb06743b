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

/// Make `schema` readable by every client, everywhere in it:
/// - integer `format`s that JSON Schema validators do not know (`uint64`, `uint32`, …) go;
///   `int32`/`int64` (OpenAPI formats Ajv knows) and `double` stay;
/// - a nullable type (`"type": ["integer", "null"]`, as schemars writes an `Option`) becomes
///   `anyOf` branches of one type each, the constraints in the non-null one: dialects with a
///   single `type` (the OpenAPI subset of Gemini's function declarations) reject type arrays.
pub fn portable(schema: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::{Value, json};
    let unknown = |f: &Value| f.as_str().is_some_and(|f| f.starts_with("uint") || f == "int8" || f == "int16");
    if schema.get("format").is_some_and(unknown) {
        schema.remove("format");
    }
    for value in schema.values_mut() {
        match value {
            Value::Object(inner) => portable(inner),
            Value::Array(items) => items.iter_mut().filter_map(|v| v.as_object_mut()).for_each(portable),
            _ => {}
        }
    }
    if let Some(Value::Array(types)) = schema.get("type")
        && types.len() == 2
        && types.contains(&json!("null"))
    {
        let kind = types.iter().find(|t| *t != "null").cloned().expect("two types, one null");
        let mut branch = serde_json::Map::from_iter([("type".to_owned(), kind)]);
        for key in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format", "items", "enum", "pattern"]
        {
            if let Some(constraint) = schema.remove(key) {
                branch.insert(key.to_owned(), constraint);
            }
        }
        schema.remove("type");
        schema.insert("anyOf".into(), json!([branch, {"type": "null"}]));
    }
}

/// The inclusive bounds `property` puts on a number, on itself or in its `anyOf` branches.
pub fn number_bounds(property: &serde_json::Map<String, serde_json::Value>) -> (Option<f64>, Option<f64>) {
    let own = |key: &str| property.get(key).and_then(serde_json::Value::as_f64);
    let branches = property.get("anyOf").and_then(|b| b.as_array()).into_iter().flatten();
    let in_branch = |key: &str| branches.clone().filter_map(|b| b.get(key)?.as_f64()).next();
    (own("minimum").or_else(|| in_branch("minimum")), own("maximum").or_else(|| in_branch("maximum")))
}
