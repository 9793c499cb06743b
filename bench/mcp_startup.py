#!/usr/bin/env python3
"""MCP start-up: from process start to the answer to tools/list, over stdio.

Spawns `agentferry mcp` with a fresh home each run, sends initialize, notifications/initialized
and tools/list as raw JSON-RPC lines, and times until the tools/list answer arrives.

    cargo build --release && python3 bench/mcp_startup.py --runs 20
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from loopback import binary


def once(work):
    home = tempfile.mkdtemp(dir=work)
    env = dict(os.environ, AGENTFERRY_HOME=home, AGENTFERRY_INBOX_BIND="127.0.0.1:0", AGENTFERRY_BIND="127.0.0.1:0")
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    started = time.monotonic()
    proc = subprocess.Popen([binary(), "mcp", "--root", home, "--download-dir", os.path.join(home, "dl")],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    proc.stdin.flush()
    for line in proc.stdout:
        if json.loads(line).get("id") == 2:
            elapsed = time.monotonic() - started
            break
    proc.kill()
    proc.wait()
    return elapsed * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        times = sorted(once(work) for _ in range(args.runs))
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"start to tools/list: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, "
          f"max {times[-1]:.1f} ms over {args.runs} runs (target: 100 ms)")


if __name__ == "__main__":
    main()
