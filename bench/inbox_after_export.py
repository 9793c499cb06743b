#!/usr/bin/env python3
"""How soon a running MCP server listens for pushes after `agentferry export` beside it.

A peer may push the moment an export is handed over. Each run starts `agentferry mcp` on a fresh
home with no grant (so it binds no inbox), waits until it answers tools/list, runs `agentferry
export`, and times from the export's exit until the inbox port (read from the home) accepts a
TCP connection. The target is 100 ms.

    cargo build --release && python3 bench/inbox_after_export.py --runs 10
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time

from loopback import binary


def rpc(server, message):
    server.stdin.write((json.dumps(message) + "\n").encode())
    server.stdin.flush()


def one_run(bin_path):
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, AGENTFERRY_HOME=home, AGENTFERRY_INBOX_BIND="127.0.0.1:0", AGENTFERRY_LOG="warn")
        server = subprocess.Popen([bin_path, "mcp", "--root", home], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env=env)
        try:
            rpc(server, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"}}})
            server.stdout.readline()  # the server is up, idle, with no grant
            subprocess.run([bin_path, "export", "--name", "bob", "--json"], env=env, capture_output=True, check=True)
            exited = time.monotonic()
            with open(os.path.join(home, "inbox_port")) as f:
                port = int(f.read())
            deadline = exited + 5
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                    return (time.monotonic() - exited) * 1000
                except OSError:
                    time.sleep(0.001)
            raise SystemExit("the inbox did not listen within 5 s of the export")
        finally:
            server.kill()
            server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    bin_path = binary()
    times = [one_run(bin_path) for _ in range(args.runs)]
    print(f"inbox listening after export: median {statistics.median(times):.1f} ms, "
          f"max {max(times):.1f} ms over {args.runs} runs (target 100 ms)")


if __name__ == "__main__":
    main()
