// The MCP conformance suite's server scenarios (@modelcontextprotocol/conformance) against
// `agentferry mcp --http`. The suite's client sends no Authorization header, so it talks to the
// server through a small proxy on loopback that adds the bearer token and passes everything else
// (Host, Origin, Mcp-Session-Id, Last-Event-ID, SSE streams) through unchanged.
//
// conformance-baseline.yml lists the scenarios this server fails on purpose, each with why; the
// suite exits non-zero on any other failure, and on a listed scenario that passes.
//
// Run through `cargo nextest run` (tests/mcp_conformance.rs sets AGENTFERRY_BIN), or directly:
//   AGENTFERRY_BIN=target/debug/agentferry node tests/mcp_js/conformance.mjs

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startHttpServer } from "./http_server.mjs";

const BIN = process.env.AGENTFERRY_BIN;
assert.ok(BIN, "set AGENTFERRY_BIN to the agentferry binary");
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SUITE = path.join(HERE, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js");

/** A proxy on 127.0.0.1:0 to `target` that adds `headers` to every request. */
async function authProxy(target, headers) {
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url,
        headers: { ...req.headers, ...headers } },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on("error", (e) => {
      if (!res.headersSent) res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(forward);
    res.on("close", () => forward.destroy());
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}${upstream.pathname}`, close: () => server.close() };
}

/** One line per scenario: how many checks passed, and why the first failing one failed. */
function summarise(results) {
  for (const dir of fs.readdirSync(results).sort()) {
    const file = path.join(results, dir, "checks.json");
    if (!fs.existsSync(file)) continue;
    const checks = JSON.parse(fs.readFileSync(file, "utf8"));
    const failed = checks.filter((c) => c.status === "FAILURE");
    const passed = checks.filter((c) => c.status === "SUCCESS").length;
    const scenario = dir.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT.*$/, "");
    const why = failed.length ? `: ${failed[0].id}: ${failed[0].errorMessage ?? JSON.stringify(failed[0].details ?? {})}` : "";
    console.log(`conformance ${failed.length ? "FAIL" : "pass"} ${scenario} (${passed} checks passed)${why}`.slice(0, 400));
  }
}

const base = fs.mkdtempSync(path.join(os.tmpdir(), "agentferry-conformance-"));
const files = path.join(base, "files");
fs.mkdirSync(files);
const server = await startHttpServer(BIN, ["--root", files, "--download-dir", path.join(base, "downloads")], {
  AGENTFERRY_HOME: path.join(base, "home"),
  AGENTFERRY_BIND: "127.0.0.1:0",
  AGENTFERRY_INBOX_BIND: "127.0.0.1:0",
  AGENTFERRY_LOG: process.env.AGENTFERRY_LOG ?? "warn",
});
const proxy = await authProxy(server.url, server.headers);
let status = 1;
try {
  // Not spawnSync: the proxy runs in this process.
  const suite = spawn(process.execPath, [SUITE, "server", "--url", proxy.url,
    ...(process.env.SCENARIO ? ["--scenario", process.env.SCENARIO] : ["--suite", "active"]),
    "--expected-failures", path.join(HERE, "conformance-baseline.yml"), "--output-dir", path.join(base, "results")],
  { stdio: "inherit" });
  status = await new Promise((resolve, reject) => {
    suite.on("error", reject);
    suite.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
  summarise(path.join(base, "results"));
} finally {
  proxy.close();
  await server.stop();
  fs.rmSync(base, { recursive: true, force: true });
}
process.exit(status);
