// Starts `agentferry mcp --http 127.0.0.1:0` as a child process and waits for the endpoint it
// prints on stderr. Shared by the TypeScript SDK test over HTTP (clients.mjs) and the
// conformance run (conformance.mjs).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

/** A running server: `url` (http://127.0.0.1:PORT/mcp), `token`, `stop()`. */
export async function startHttpServer(bin, args, env, { timeoutMs = 20_000 } = {}) {
  const token = randomBytes(24).toString("base64url");
  const child = spawn(bin, ["mcp", "--http", "127.0.0.1:0", ...args], {
    env: { ...process.env, ...env, AGENTFERRY_MCP_TOKEN: token },
    stdio: ["ignore", "inherit", "pipe"],
  });
  let stderr = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no endpoint printed within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    child.stderr.on("data", (chunk) => {
      process.stderr.write(chunk);
      stderr += chunk;
      const found = stderr.match(/MCP over Streamable HTTP at (http:\/\/\S+)\n/);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`agentferry mcp --http exited with ${code}: ${stderr}`));
    });
  });
  child.removeAllListeners("exit");
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    url,
    token,
    headers: { Authorization: `Bearer ${token}` },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
