#!/usr/bin/env python3
"""NATS benchmark: one file through a nats-server beside `agentferry relay` and the direct path,
in the same run, with each server's peak RSS and CPU time.

    cargo build --release && python3 bench/nats.py --size 1024 --runs 1

The relay and NATS runs pin the channel (`AGENTFERRY_PREFER=relay`), so the direct path carries
nothing there. Uses bench/loopback.py's runner, so the figures compare with its table. Needs
nats-server (Debian: nats-server) and GNU time.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

from loopback import Relay, binary, free_port, make_file, run_ferry


def cpu_seconds(pid):
    """User + system CPU time of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))


class Nats:
    """A single nats-server on loopback."""

    def __init__(self, work):
        port = free_port()
        self.dir = tempfile.mkdtemp(dir=work)
        self.proc = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port), "--store_dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"nats://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("nats-server did not start")
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="MiB")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--binary", default=None)
    args = ap.parse_args()
    ours = args.binary or binary()
    work = tempfile.mkdtemp(prefix="agentferry-nats-bench-")
    try:
        path = os.path.join(work, "file.bin")
        expected = make_file(path, args.size << 20)
        relay, nats = Relay(ours), Nats(work)
        servers = {"direct": None, "agentferry relay": relay, "nats-server": nats}
        walls = {name: [] for name in servers}
        cpu = {name: 0.0 for name in servers}
        for _ in range(args.runs):
            for name, server in servers.items():
                out_dir = tempfile.mkdtemp(dir=work)
                before = cpu_seconds(server.proc.pid) if server else 0.0
                walls[name].append(run_ferry(ours, path, work, out_dir, expected, server)[0])
                cpu[name] += (cpu_seconds(server.proc.pid) - before) if server else 0.0
                shutil.rmtree(out_dir)
        print(f"{'path':<18} {'wall s':>8} {'MB/s':>8} {'server CPU s':>13} {'server peak RSS MiB':>20}")
        for name, server in servers.items():
            wall = statistics.median(walls[name])
            rss = f"{peak_rss_mib(server.proc.pid):.1f}" if server else "-"
            cpu_text = f"{cpu[name] / args.runs:.2f}" if server else "-"
            print(f"{name:<18} {wall:>8.3f} {(args.size << 20) / wall / 1e6:>8.0f} {cpu_text:>13} {rss:>20}")
        print(f"({args.size} MiB, median of {args.runs} runs; CPU per run)")
        relay.stop()
        nats.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
