//! The ways users install the MCP server, tested end to end and offline: `npm/build.sh` packs
//! the `agentferry` npm package and its binary packages (linux-x64 for glibc, linux-x64-musl, a
//! static build, each marked with npm's `libc` field) from the release builds, maturin builds the
//! Python wheel from the static build (tagged manylinux 2.17 and musllinux 1.2, so it installs on
//! old glibc systems and on Alpine), all are installed into temporary prefixes without touching
//! a registry, and an MCP client moves a file from a server started with `npx --no-install
//! agentferry mcp` to one started by the wheel's `agentferry` script.
//!
//! The first run makes the release builds (`cargo build --release`, for the host and for
//! x86_64-unknown-linux-musl: minutes when cold); later runs reuse them. maturin comes from
//! `.venv`, the musl target and musl-gcc from `.ci/test`.

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
    let tarball = |suffix: &str| {
        let found = packed.lines().find(|t| t.ends_with(suffix)).unwrap_or_else(|| panic!("no *{suffix}: {packed}"));
        found.to_owned()
    };
    let version = env!("CARGO_PKG_VERSION");
    let (glibc, musl, launcher) = (
        tarball(&format!("linux-x64-{version}.tgz")),
        tarball(&format!("linux-x64-musl-{version}.tgz")),
        tarball(&format!("/agentferry-{version}.tgz")),
    );
    assert_eq!(packed.lines().count(), 3, "the glibc and musl packages and the launcher: {packed}");
    let install = |name: &str, tarballs: &[&str], extra: &[&str]| {
        let project = tmp.join(name);
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("package.json"), r#"{"private": true}"#).unwrap();
        run(
            "npm install",
            Command::new("npm")
                .args(["install", "--offline", "--no-audit", "--no-fund", "--omit=optional"])
                .args(extra)
                .args(tarballs)
                .current_dir(&project),
        );
        project
    };
    let project = install("project", &[&glibc, &launcher], &[]);
    let manifest = |project: &Path, package: &str| -> Value {
        let file = project.join(format!("node_modules/@agentferry/{package}/package.json"));
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    };
    assert_eq!(manifest(&project, "linux-x64")["libc"], json!(["glibc"]));
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

    // musl: what npm installs on Alpine, by the `libc` field (here, on glibc, npm refuses it
    // unless forced: the field works). The binary is static (no program interpreter), so the
    // launcher falls back to it on a glibc system that has only it.
    let alpine = install("alpine", &[&musl, &launcher], &["--force"]);
    assert_eq!(manifest(&alpine, "linux-x64-musl")["libc"], json!(["musl"]));
    let refused = Command::new("npm")
        .args(["install", "--offline", "--no-audit", "--no-fund", "--dry-run", &musl])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "npm on glibc refuses the musl package by its libc field");
    let static_binary = std::fs::read(alpine.join("node_modules/@agentferry/linux-x64-musl/bin/agentferry")).unwrap();
    assert!(!elf_section_names(&static_binary).iter().any(|s| s == ".interp"), "the musl build is static");
    let version = run(
        "npx agentferry --version (musl)",
        Command::new("npx").args(["--no-install", "agentferry", "--version"]).current_dir(&alpine),
    );
    assert_eq!(version.trim(), format!("agentferry {}", env!("CARGO_PKG_VERSION")));

    // Python: build the wheel from the static build (reusing it), install it offline into a venv.
    let wheels = tmp.join("wheels");
    run(
        "maturin build",
        Command::new(&maturin)
            .args(["build", "--release", "--locked", "--target", "x86_64-unknown-linux-musl"])
            .args(["--compatibility", "manylinux_2_17", "musllinux_1_2", "--out"])
            .arg(&wheels)
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir),
    );
    let wheel = std::fs::read_dir(&wheels).unwrap().next().expect("a wheel").unwrap().path();
    let wheel_name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    for tag in ["manylinux_2_17_x86_64", "musllinux_1_2_x86_64"] {
        assert!(wheel_name.contains(tag), "the wheel installs where {tag} does: {wheel_name}");
    }
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
    let script_binary = std::fs::read(venv.join("bin/agentferry")).unwrap();
    assert!(!elf_section_names(&script_binary).iter().any(|s| s == ".interp"), "the wheel's binary is static");
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
