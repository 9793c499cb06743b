//! The ways users install the MCP server, tested end to end and offline: `npm/build.sh` packs
//! the `agentferry` npm package and its linux-x64 binary package from the release build,
//! maturin builds the Python wheel from the same build, both are installed into temporary
//! prefixes without touching a registry, and an MCP client moves a file from a server started
//! with `npx --no-install agentferry mcp` to one started by the wheel's `agentferry` script.
//!
//! The first run makes the release build (`cargo build --release`, minutes when cold); later
//! runs reuse it. maturin comes from `.venv` (installed by `.ci/test`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, object},
    service::RunningService,
};
use serde_json::{Value, json};

/// Run a setup step; panics with its output when it fails.
fn run(what: &str, command: &mut Command) -> String {
    let out = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

/// An MCP server started by `command`, and a client on its stdio.
struct Server {
    client: RunningService<RoleClient, ()>,
    _child: tokio::process::Child,
}

impl Server {
    async fn start(mut command: tokio::process::Command, home: &Path) -> Server {
        command
            .env("AGENTFERRY_HOME", home)
            .env("AGENTFERRY_BIND", "127.0.0.1:0")
            .env("AGENTFERRY_INBOX_BIND", "127.0.0.1:0")
            .env("npm_config_offline", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start the MCP server");
        let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
        let client = ().serve(io).await.expect("MCP initialisation");
        Server { client, _child: child }
    }

    async fn ok(&self, tool: &'static str, args: Value) -> Value {
        let params = CallToolRequestParams::new(tool).with_arguments(object(args));
        let result = self.client.call_tool(params).await.unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
        result.structured_content.unwrap()
    }
}

/// The section names of a little-endian ELF64 file, from its section header table.
fn elf_section_names(elf: &[u8]) -> Vec<String> {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    assert_eq!(&elf[..5], b"\x7fELF\x02", "an ELF64 file");
    let (table, entry, count, names) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let strings = u64_at(table + names * entry + 0x18);
    (0..count)
        .map(|i| {
            let name = &elf[strings + u32_at(table + i * entry)..];
            String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap()]).into_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn npx_and_the_python_wheel_run_servers_that_move_a_file() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // <target>/debug/agentferry: build the release artifacts into the same target folder.
    let target_dir = Path::new(env!("CARGO_BIN_EXE_agentferry")).parent().unwrap().parent().unwrap().to_owned();
    let maturin = root.join(".venv/bin/maturin");
    assert!(maturin.exists(), "no maturin in .venv; run `bash .ci/test` (or .venv/bin/pip install maturin)");
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();

    // npm: pack with the release script, install the tarballs offline, as a user's project would.
    let dist = tmp.join("dist");
    let packed = run(
        "npm/build.sh",
        Command::new("bash")
            .arg(root.join("npm/build.sh"))
            .arg("--out")
            .arg(&dist)
            .env("CARGO_TARGET_DIR", &target_dir),
    );
    let tarballs: Vec<&str> = packed.lines().collect();
    assert_eq!(tarballs.len(), 2, "the linux-x64 package and the launcher: {packed}");
    let project = tmp.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("package.json"), r#"{"private": true}"#).unwrap();
    run(
        "npm install",
        Command::new("npm")
            .args(["install", "--offline", "--no-audit", "--no-fund", "--omit=optional"])
            .args(&tarballs)
            .current_dir(&project),
    );
    let installed = project.join("node_modules/@agentferry/linux-x64/bin/agentferry");
    assert!(installed.exists());
    // What users install carries no debuginfo and no symbol table (the `profiling` profile
    // keeps them for perf): a CLI-sized download.
    let elf = std::fs::read(&installed).unwrap();
    let sections = elf_section_names(&elf);
    assert!(sections.iter().any(|s| s == ".text"), "read the section table: {sections:?}");
    assert!(!sections.iter().any(|s| s.starts_with(".debug") || s == ".symtab"), "{sections:?}");
    assert!(elf.len() < 32 << 20, "the installed binary is {} bytes", elf.len());
    let version = run(
        "npx agentferry --version",
        Command::new("npx").args(["--no-install", "agentferry", "--version"]).current_dir(&project),
    );
    assert_eq!(version.trim(), format!("agentferry {}", env!("CARGO_PKG_VERSION")));

    // Python: build the wheel (reusing the release build), install it offline into a venv.
    let wheels = tmp.join("wheels");
    run(
        "maturin build",
        Command::new(&maturin)
            .args(["build", "--release", "--locked", "--out"])
            .arg(&wheels)
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir),
    );
    let wheel = std::fs::read_dir(&wheels).unwrap().next().expect("a wheel").unwrap().path();
    let venv = tmp.join("venv");
    run("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(
        "pip install the wheel",
        Command::new(venv.join("bin/pip")).args(["install", "--no-index", "--no-deps", "--quiet"]).arg(&wheel),
    );

    // alice runs the server through npx, bob through the wheel's console script.
    let (alice, bob) = (tmp.join("alice"), tmp.join("bob"));
    std::fs::create_dir_all(alice.join("files")).unwrap();
    std::fs::create_dir_all(bob.join("files")).unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(alice.join("files/packed.bin"), &data).unwrap();
    let mut npx = tokio::process::Command::new("npx");
    npx.args(["--no-install", "agentferry", "mcp", "--root"]).arg(alice.join("files")).current_dir(&project);
    let a = Server::start(npx, &alice.join("home")).await;
    let mut script = tokio::process::Command::new(venv.join("bin/agentferry"));
    script.args(["mcp", "--root"]).arg(bob.join("files")).arg("--download-dir").arg(bob.join("downloads"));
    let b = Server::start(script, &bob.join("home")).await;

    let sent = a.ok("send_file", json!({ "path": "packed.bin" })).await;
    let started = b.ok("receive_file", json!({ "ticket": sent["ticket"] })).await;
    let id = started["transfer_id"].as_str().unwrap();
    let report = b.ok("check_session", json!({ "transfer_id": id, "wait": true, "timeout_seconds": 60 })).await;
    let done = &report["transfers"][0];
    assert_eq!(done["state"], "completed", "{report}");
    assert_eq!(std::fs::read(done["saved_to"].as_str().unwrap()).unwrap(), data);
}
