//! `schemas/` must be exactly what the code generates; regenerate with
//! `cargo run -- schemas schemas` after changing a tool or an event.

#[test]
fn published_schemas_match_the_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let generated = agentferry::schemas::generate();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("schemas/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let names: Vec<String> = generated.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(on_disk, names, "schemas/ has other files than the code generates; run `cargo run -- schemas schemas`");
    for (name, content) in generated {
        let file = std::fs::read_to_string(dir.join(&name)).unwrap();
        assert!(file == content, "schemas/{name} is stale; run `cargo run -- schemas schemas`");
    }
    assert!(names.contains(&"send_file.output.json".to_owned()) && names.contains(&"cli-events.json".to_owned()));
}
