// agentferry's MCP server driven by the clients most hosts are built on: the TypeScript MCP SDK
// client and the MCP Inspector CLI. Both validate structured results against each tool's
// outputSchema, so an error result that broke the schema would throw here before the agent
// saw it. Every tool is called with good and bad arguments; nothing may throw, every error
// must arrive as an isError result whose text is {code, message, hint}, and a real file must
// move between two servers.
//
// With the argument `http`, the same calls go over Streamable HTTP (`agentferry mcp --http`, the
// SDK's StreamableHTTPClientTransport with the bearer token), plus what only HTTP has: refusals
// without the token, with a wrong one and from a hostile Origin, and a transfer to a CLI node.
//
// Run through `cargo nextest run` (tests/js_mcp.rs sets AGENTFERRY_BIN), or directly:
//   AGENTFERRY_BIN=target/debug/agentferry node tests/mcp_js/clients.mjs [http]

import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

import { startHttpServer } from "./http_server.mjs";

const BIN = process.env.AGENTFERRY_BIN;
const HTTP = process.argv[2] === "http";
assert.ok(BIN, "set AGENTFERRY_BIN to the agentferry binary");
const HERE = path.dirname(fileURLToPath(import.meta.url));
const INSPECTOR = path.join(HERE, "node_modules", ".bin", "mcp-inspector");

// Ajv (inside the SDK) warns about schema keywords it does not know, such as format "uint64".
const warnings = [];
const warn = console.warn;
console.warn = (...args) => {
  warnings.push(args.join(" "));
  warn(...args);
};

class Node {
  constructor(base, name) {
    this.name = name;
    this.dir = path.join(base, name);
    this.files = path.join(this.dir, "files");
    this.downloads = path.join(this.dir, "downloads");
    fs.mkdirSync(this.files, { recursive: true });
    this.env = {
      AGENTFERRY_HOME: path.join(this.dir, "home"),
      AGENTFERRY_BIND: "127.0.0.1:0",
      AGENTFERRY_INBOX_BIND: "127.0.0.1:0",
      AGENTFERRY_NAME: name,
      AGENTFERRY_LOG: "warn",
    };
    this.args = ["mcp", "--root", this.files, "--download-dir", this.downloads];
  }

  /** A client of a new server on this node's home: over stdio, or over HTTP with `HTTP`. */
  async connect() {
    let transport;
    if (HTTP) {
      this.server = await startHttpServer(BIN, this.args.slice(1), this.env);
      transport = new StreamableHTTPClientTransport(new URL(this.server.url), {
        requestInit: { headers: this.server.headers },
      });
    } else {
      transport = new StdioClientTransport({
        command: BIN,
        args: this.args,
        env: { ...process.env, ...this.env },
        stderr: "inherit",
      });
    }
    this.client = new Client({ name: "agentferry-js-test", version: "0" });
    await this.client.connect(transport);
    return this.client;
  }

  /** Close the client and stop the server (over stdio, closing the client ends it). */
  async close() {
    await this.client.close();
    if (this.server) await this.server.stop();
    this.server = undefined;
  }

  cli(...args) {
    const out = execFileSync(BIN, args, { env: { ...process.env, ...this.env }, encoding: "utf8" });
    return out.trim().split("\n").map((line) => JSON.parse(line));
  }

  makeFile(name, size) {
    const file = path.join(this.files, name);
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31) % 251;
    fs.writeFileSync(file, data);
    return file;
  }
}

const sha256 = (file) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

/** A call that must succeed: returns its structured content. */
async function ok(client, name, args = {}, options = {}) {
  const result = await client.callTool({ name, arguments: args }, undefined, options);
  assert.notEqual(result.isError, true, `${name} failed: ${JSON.stringify(result)}`);
  assert.ok(result.structuredContent, `${name}: structured content`);
  return result.structuredContent;
}

/** A call that must fail with `code`: returns the {code, message, hint} it carried. */
function readError(name, result, code) {
  assert.equal(result.isError, true, `${name}: expected an error, got ${JSON.stringify(result)}`);
  assert.equal(result.structuredContent, undefined, `${name}: an error carries no structured content`);
  const error = JSON.parse(result.content[0].text);
  assert.equal(error.code, code, `${name}: ${JSON.stringify(error)}`);
  assert.ok(error.message && error.hint, `${name}: message and hint: ${JSON.stringify(error)}`);
  return error;
}

async function fails(client, name, args, code) {
  return readError(name, await client.callTool({ name, arguments: args }), code);
}

async function sdkClient(base) {
  const alice = new Node(base, "alice");
  const bob = new Node(base, "bob");
  const [a, b] = [await alice.connect(), await bob.connect()];
  try {
    const tools = (await a.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(tools, ["add_peer", "check_session", "create_invite", "list_invites", "list_peers",
      "receive_file", "receive_messages", "resume_transfer", "revoke_invite", "send_file"]);

    // A real transfer, with progress notifications.
    const src = alice.makeFile("report.bin", 5_000_000);
    assert.equal((await ok(a, "list_peers")).peers.length, 0);
    const sent = await ok(a, "send_file", { path: "report.bin" });
    assert.match(sent.ticket, /^ferry/);
    const started = await ok(b, "receive_file", { ticket: sent.ticket });
    assert.equal(started.transfer_id, sent.transfer_id);
    const progress = [];
    const report = await ok(
      b,
      "check_session",
      { transfer_id: sent.transfer_id, wait: true, timeout_seconds: 60 },
      { onprogress: (p) => progress.push(p) },
    );
    const done = report.transfers[0];
    assert.equal(done.state, "completed", JSON.stringify(done));
    assert.equal(sha256(done.saved_to), sha256(src));
    assert.ok(progress.length > 0, "progress notifications arrived");
    assert.equal((await ok(a, "check_session", {})).transfers[0].transfer_id, sent.transfer_id);

    // What arrived, read as a resource: the same bytes.
    const file = (await b.readResource({ uri: `agentferry://files/${sent.transfer_id}` })).contents[0];
    assert.equal(createHash("sha256").update(Buffer.from(file.blob, "base64")).digest("hex"), sha256(src));

    // Pairing with an invite: no ticket, no CLI.
    const invite = await ok(b, "create_invite", { name: "bob" });
    await ok(a, "add_peer", { uri: invite.uri, name: "bob-invited" });
    alice.makeFile("pushed.bin", 100_000);
    const pushed = await ok(a, "send_file", { path: "pushed.bin", to: "bob-invited" });
    assert.equal(pushed.peer_answer, "accepted");
    const arrived = await ok(b, "check_session", { transfer_id: pushed.transfer_id, wait: true, timeout_seconds: 60 });
    assert.equal(arrived.transfers[0].state, "completed", JSON.stringify(arrived));
    assert.ok(!JSON.stringify(await ok(b, "list_invites")).includes(invite.uri), "list_invites shows no secret");

    // Carried as chat messages, this test playing the chat: the SDK checks every result
    // against the tools' output schemas; an edited message is refused with its code.
    const chat = alice.makeFile("chat.bin", 50_000);
    const opened = await ok(a, "send_file", { path: "chat.bin", via: "messages", max_message_chars: 1000 });
    let toBob = opened.messages;
    const edited = toBob[1].slice(0, -5) + (toBob[1].endsWith("AAAAA") ? "BBBBB" : "AAAAA");
    const refused = await ok(b, "receive_messages", { messages: [toBob[0], edited] });
    assert.equal(refused.rejected[0].code, "message_tampered", JSON.stringify(refused));
    let landed;
    for (let round = 0; round < 50 && !landed; round++) {
      const replies = await ok(b, "receive_messages", { messages: toBob });
      landed = replies.transfers.find((t) => t.state === "completed");
      toBob = (await ok(a, "receive_messages", { messages: replies.messages })).messages;
    }
    assert.ok(landed, "the chat transfer completed");
    assert.equal(sha256(landed.saved_to), sha256(chat));

    // The same file again: it exists, and the hint says how to replace it.
    const again = await ok(a, "send_file", { path: "report.bin" });
    const exists = await fails(b, "receive_file", { ticket: again.ticket }, "file_exists");
    assert.match(exists.hint, /receive_file .*overwrite: true/);

    // Errors the engine finds.
    await fails(a, "send_file", { path: "/etc/passwd" }, "path_not_allowed");
    await fails(a, "send_file", { path: "missing.bin" }, "source_unreadable");
    await fails(a, "send_file", { path: "report.bin", to: "nobody" }, "peer_not_found");
    await fails(b, "receive_file", { ticket: "grantabc" }, "ticket_wrong_kind");
    await fails(b, "receive_file", { ticket: "ferryaaaa" }, "ticket_truncated");
    await fails(b, "receive_file", { ticket: sent.ticket, output_dir: "/var/tmp" }, "path_not_allowed");
    await fails(b, "check_session", { transfer_id: "0".repeat(32) }, "transfer_not_found");
    const completed = await fails(b, "resume_transfer", { transfer_id: sent.transfer_id }, "already_completed");
    assert.ok(completed.hint.includes(sent.transfer_id), completed.hint);
    await fails(a, "add_peer", { uri: "grantnotreally" }, "peer_uri_invalid");

    // Trust: add a peer; a different peer under the same name is refused unless replace: true.
    const first = bob.cli("export", "--json", "--name", "bob", "--ttl", "1h")[0].uri;
    const second = bob.cli("export", "--json", "--name", "bob", "--ttl", "1h")[0].uri;
    assert.equal((await ok(a, "add_peer", { uri: first })).name, "bob");
    const exists2 = await fails(a, "add_peer", { uri: second }, "peer_exists");
    assert.match(exists2.hint, /replace: true/);
    assert.equal((await ok(a, "add_peer", { uri: second, replace: true })).name, "bob");

    // A transfer whose server went away is interrupted; a new server on the same home resumes
    // it on the port its ticket names, and the receiver then gets the file.
    alice.makeFile("later.bin", 300_000);
    const later = await ok(a, "send_file", { path: "later.bin" });
    await alice.close();
    const a2 = await alice.connect();
    try {
      const stopped = (await ok(a2, "check_session", { transfer_id: later.transfer_id })).transfers[0];
      assert.equal(stopped.state, "interrupted", JSON.stringify(stopped));
      const resumed = await ok(a2, "resume_transfer", { transfer_id: later.transfer_id });
      assert.equal(resumed.state, "active", JSON.stringify(resumed));
      await ok(b, "receive_file", { ticket: later.ticket });
      const got = (await ok(b, "check_session", { transfer_id: later.transfer_id, wait: true })).transfers[0];
      assert.equal(got.state, "completed", JSON.stringify(got));
      assert.equal(sha256(got.saved_to), sha256(path.join(alice.files, "later.bin")));
    } finally {
      await alice.close();
    }

    // Arguments that do not fit the input schema: invalid_argument, with a hint naming the tool.
    const bad = [
      ["send_file", {}],
      ["send_file", { path: 7 }],
      ["send_file", { path: "report.bin", expires_in_minutes: "soon" }],
      ["receive_file", {}],
      ["receive_file", { ticket: sent.ticket, transfer_id: sent.transfer_id }],
      ["receive_file", { overwrite: "yes" }],
      ["check_session", { wait: true }],
      ["check_session", { timeout_seconds: -5 }],
      ["add_peer", {}],
      ["add_peer", { uri: first, ttl_hours: "long" }],
      ["resume_transfer", {}],
      ["resume_transfer", { transfer_id: 12 }],
    ];
    for (const [name, args] of bad) {
      const error = await fails(b, name, args, "invalid_argument");
      assert.ok(error.hint.includes(name), `${name}: ${error.hint}`);
    }
  } finally {
    await alice.close();
    await bob.close();
  }
}

/** One Inspector CLI call against a fresh server (given `serverArgs`, run in `cwd`); returns the parsed result. */
function inspect(node, tool, args, serverArgs = node.args, cwd = undefined) {
  const argv = ["--cli"];
  for (const [k, v] of Object.entries(node.env)) argv.push("-e", `${k}=${v}`);
  argv.push("--method", "tools/call", "--tool-name", tool);
  for (const [k, v] of Object.entries(args)) argv.push("--tool-arg", `${k}=${v}`);
  argv.push("--", BIN, ...serverArgs);
  let stdout;
  try {
    stdout = execFileSync(INSPECTOR, argv, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], cwd });
  } catch (e) {
    // The Inspector exits non-zero for an isError result, having printed the result; any
    // other failure (a schema violation, a crash) prints no result and fails the parse below.
    stdout = e.stdout;
    assert.ok(stdout, `inspector ${tool}: ${e.stderr}`);
  }
  return JSON.parse(stdout);
}

function inspectorCli(base) {
  const node = new Node(base, "carol");
  // --strict exits 6 when a tool schema has an error-severity portability problem.
  const strict = ["--cli", "--strict"];
  for (const [k, v] of Object.entries(node.env)) strict.push("-e", `${k}=${v}`);
  strict.push("--method", "tools/list", "--", BIN, ...node.args);
  const listing = spawnSync(INSPECTOR, strict, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  assert.equal(listing.status, 0, `inspector --strict tools/list: ${listing.stderr}`);
  // Warnings are portability problems too (a nullable `type` array breaks single-type dialects).
  assert.doesNotMatch(listing.stderr, /Warning/, `inspector --strict warns:\n${listing.stderr}`);
  const tools = JSON.parse(listing.stdout);
  assert.equal(tools.tools.length, 10);
  node.makeFile("notes.txt", 1000);
  const listed = inspect(node, "list_peers", {});
  assert.deepEqual(listed.structuredContent, { peers: [] });
  const sent = inspect(node, "send_file", { path: "notes.txt" });
  assert.notEqual(sent.isError, true, JSON.stringify(sent));
  assert.match(sent.structuredContent.ticket, /^ferry/);
  assert.ok(Array.isArray(inspect(node, "check_session", {}).structuredContent.transfers));
  // That server has exited, so its send is interrupted; the next one resumes it.
  const resumed = inspect(node, "resume_transfer", { transfer_id: sent.structuredContent.transfer_id });
  assert.equal(resumed.structuredContent?.state, "active", JSON.stringify(resumed));
  const errors = [
    ["send_file", { path: "/etc/passwd" }, "path_not_allowed"],
    ["send_file", {}, "invalid_argument"],
    ["receive_file", { ticket: "grantabc" }, "ticket_wrong_kind"],
    ["receive_file", {}, "invalid_argument"],
    ["check_session", { wait: true }, "invalid_argument"],
    ["add_peer", { uri: "grantnotreally" }, "peer_uri_invalid"],
    ["resume_transfer", { transfer_id: "0".repeat(32) }, "transfer_not_found"],
    ["resume_transfer", {}, "invalid_argument"],
  ];
  for (const [tool, args, code] of errors) readError(`inspector ${tool}`, inspect(node, tool, args), code);
  // The Inspector declares roots and lists none. Without --root that allows nothing, not the
  // server's working folder (which holds the file here), and the refusal names --root.
  const rootless = ["mcp", "--download-dir", node.downloads];
  const refused = inspect(node, "send_file", { path: "notes.txt" }, rootless, node.files);
  assert.match(readError("inspector send_file with empty client roots", refused, "no_roots").hint, /--root/);
  assert.ok(!fs.existsSync(node.downloads), "starting servers created no download folder");
}

/** What only HTTP has: who is refused, and files both ways between an HTTP-MCP node and a CLI node. */
async function httpOnly(base) {
  const carol = new Node(base, "carol");
  const dave = new Node(base, "dave");
  const c = await carol.connect();
  try {
    const { url, token } = carol.server;
    const initialize = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "0" } } });
    const post = (headers) => fetch(url, { method: "POST", body: initialize,
      headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", ...headers } });
    for (const [why, headers, status, code] of [
      ["no token", {}, 401, "unauthorized"],
      ["a wrong token", { Authorization: `Bearer ${token}x` }, 401, "unauthorized"],
      ["another scheme", { Authorization: `Basic ${token}` }, 401, "unauthorized"],
      ["a hostile Origin", { Authorization: `Bearer ${token}`, Origin: "https://evil.example" }, 403, "origin_not_allowed"],
      ["a rebinding Origin", { Authorization: `Bearer ${token}`, Origin: "http://localhost.evil.example" }, 403, "origin_not_allowed"],
    ]) {
      const answer = await post(headers);
      assert.equal(answer.status, status, why);
      const body = await answer.json();
      assert.equal(body.error.code, code, why);
      assert.ok(body.error.hint, why);
      assert.ok(!JSON.stringify(body).includes(token), `${why}: the answer does not echo the token`);
    }
    const local = await post({ Authorization: `Bearer ${token}`, Origin: "http://localhost:6274" });
    assert.equal(local.status, 200, "a page on this machine with the token is served");
    assert.ok(local.headers.get("mcp-session-id"), "a session id");
    await local.body.cancel();

    // HTTP-MCP node to CLI node, and back.
    const src = carol.makeFile("to-cli.bin", 700_000);
    const sent = await ok(c, "send_file", { path: "to-cli.bin" });
    const out = path.join(dave.dir, "got");
    const events = dave.cli("receive", sent.ticket, "-o", out, "--json");
    const done = events.find((e) => e.event === "completed");
    assert.ok(done, JSON.stringify(events));
    assert.equal(sha256(path.join(out, "to-cli.bin")), sha256(src));
    const back = dave.makeFile("from-cli.bin", 300_000);
    const serving = spawn(BIN, ["send", back, "--json"], { env: { ...process.env, ...dave.env }, stdio: ["ignore", "pipe", "inherit"] });
    const ticket = await new Promise((resolve, reject) => {
      let text = "";
      serving.stdout.on("data", (chunk) => {
        text += chunk;
        for (const line of text.split("\n").slice(0, -1)) {
          const event = JSON.parse(line);
          if (event.event === "ticket") resolve(event.ticket);
        }
      });
      serving.on("exit", (code) => reject(new Error(`agentferry send exited with ${code}`)));
    });
    const got = await ok(c, "receive_file", { ticket });
    const end = (await ok(c, "check_session", { transfer_id: got.transfer_id, wait: true, timeout_seconds: 60 })).transfers[0];
    assert.equal(end.state, "completed", JSON.stringify(end));
    assert.equal(sha256(end.saved_to), sha256(back));
    await new Promise((resolve) => (serving.exitCode !== null ? resolve() : serving.on("exit", resolve)));
    assert.equal(serving.exitCode, 0, "the CLI sender saw the receiver verify the file");
  } finally {
    await carol.close();
  }
}

const base = fs.mkdtempSync(path.join(os.tmpdir(), "agentferry-js-"));
try {
  await sdkClient(base);
  if (HTTP) {
    await httpOnly(base);
  } else {
    inspectorCli(base);
  }
  const formats = warnings.filter((w) => /format/i.test(w));
  assert.deepEqual(formats, [], "no warnings about schema formats");
  console.log(HTTP ? "ok: TypeScript SDK client over Streamable HTTP" : "ok: TypeScript SDK client and Inspector CLI");
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
