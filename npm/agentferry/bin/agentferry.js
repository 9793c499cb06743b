#!/usr/bin/env node
// Runs the agentferry binary that npm installed for this platform, as esbuild and biome do:
// each platform's binary is its own package (@agentferry/<os>-<cpu>), listed as an optional
// dependency whose `os` and `cpu` fields let npm install only the matching one. stdin, stdout
// and stderr are passed through untouched (stdout is the MCP protocol), and the exit code or
// signal comes back as the launcher's own.
//
// The binary ends with the launcher: a host stopping its MCP server kills the process it
// started, which is this one. Signals that can be caught are passed on; for SIGKILL the binary
// asks the kernel to end it when its parent dies (AGENTFERRY_EXIT_WITH_PARENT names the
// launcher's pid; on Linux).
"use strict";

const { spawn } = require("node:child_process");
const path = require("node:path");

const PACKAGES = {
  "darwin-arm64": "@agentferry/darwin-arm64",
  "darwin-x64": "@agentferry/darwin-x64",
  "linux-arm64": "@agentferry/linux-arm64",
  "linux-x64": "@agentferry/linux-x64",
  "win32-x64": "@agentferry/win32-x64",
};

function binaryPath() {
  // For testing a locally built binary through this launcher.
  if (process.env.AGENTFERRY_BINARY_PATH) return process.env.AGENTFERRY_BINARY_PATH;
  const platform = `${process.platform}-${process.arch}`;
  const pkg = PACKAGES[platform];
  if (!pkg) {
    fail(`no prebuilt agentferry for ${platform}; install from source with \`cargo install --locked agentferry\``);
  }
  const exe = process.platform === "win32" ? "agentferry.exe" : "agentferry";
  try {
    return path.join(path.dirname(require.resolve(`${pkg}/package.json`)), "bin", exe);
  } catch {
    fail(
      `the package ${pkg} is missing: it is an optional dependency of agentferry, so it was not ` +
        `installed if optional dependencies were turned off (--omit=optional, --no-optional). ` +
        `Reinstall with them, or install ${pkg} directly.`,
    );
  }
}

function fail(message) {
  process.stderr.write(`agentferry: ${message}\n`);
  process.exit(1);
}

const child = spawn(binaryPath(), process.argv.slice(2), {
  stdio: "inherit",
  windowsHide: true,
  env: { ...process.env, AGENTFERRY_EXIT_WITH_PARENT: String(process.pid) },
});
const FORWARDED = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"];
for (const signal of FORWARDED) process.on(signal, () => child.kill(signal));
child.on("error", (e) => fail(`cannot run ${e.path || "the binary"}: ${e.message}`));
child.on("exit", (status, signal) => {
  if (signal) {
    for (const s of FORWARDED) process.removeAllListeners(s);
    process.kill(process.pid, signal);
  } else {
    process.exit(status ?? 1);
  }
});
