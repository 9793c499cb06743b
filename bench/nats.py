#!/usr/bin/env python3
"""NATS benchmark: one file through a nats-server beside `agentferry relay` and the direct path,
in the same run, with each server's peak RSS and CPU time.

    cargo build --release && python3 bench/nats.py --size 1024 --runs 1
    python3 bench/nats.py --cluster 50 --size 16      # 50 transfers at once through 3 nodes

The relay and NATS runs pin the channel (`AGENTFERRY_PREFER=relay`), so the direct path carries
nothing there. Uses bench/loopback.py's runner, so the figures compare with its table. Needs
nats-server (Debian: nats-server) and GNU time.

`--cluster N` instead starts a 3-node NATS cluster (routes on loopback) and runs N transfers of
`--size` MiB at once, each sender and receiver told of all three nodes (the client picks one at
random), and prints the aggregate rate and each node's CPU and peak RSS.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import threading
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
    """A nats-server on loopback (one node of a cluster when given `cluster` arguments)."""

    def __init__(self, work, port=None, cluster=(), env=None):
        port = port or free_port()
        self.port = port
        self.dir = tempfile.mkdtemp(dir=work)
        self.proc = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port), "--store_dir", self.dir,
                                      *cluster], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, **(env or {})))
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


def raw_nats(server, size, message=256 << 10):
    """The server's own ceiling: `size` bytes from a bare publisher to a bare subscriber (the
    NATS protocol over plain sockets, no agentferry), in messages of agentferry's chunk size.
    Returns the wall time."""
    def connect():
        c = socket.create_connection(("127.0.0.1", server.port))
        c.recv(4096)
        c.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        seen = b""
        while b"PONG" not in seen:
            seen += c.recv(4096)
        return c
    count = size // message
    sub = connect()
    sub.sendall(b"SUB agentferry.raw 1\r\nPING\r\n")
    seen = b""
    while b"PONG" not in seen:
        seen += sub.recv(4096)
    header = f"MSG agentferry.raw 1 {message}\r\n"
    expect = count * (len(header) + message + 2)
    got = [0]

    def read():
        while got[0] < expect:
            data = sub.recv(1 << 20)
            if not data:
                return
            got[0] += len(data)
    reader = threading.Thread(target=read)
    reader.start()
    pub = connect()
    payload, pub_header = os.urandom(message), f"PUB agentferry.raw {message}\r\n".encode()
    start = time.monotonic()
    for _ in range(count):
        pub.sendall(pub_header)
        pub.sendall(payload)
        pub.sendall(b"\r\n")
    reader.join(timeout=120)
    wall = time.monotonic() - start
    pub.close()
    sub.close()
    if got[0] < expect:
        raise SystemExit("the raw NATS reference lost messages")
    return wall


def start_cluster(work, nodes=3):
    routes = [free_port() for _ in range(nodes)]
    route_list = ",".join(f"nats-route://127.0.0.1:{p}" for p in routes)
    servers = [Nats(work, cluster=["--cluster_name", "ferry", "--cluster", f"nats://127.0.0.1:{p}",
                                   "--routes", route_list]) for p in routes]
    # Routes are up once every node lists the others among its connect URLs (bounded wait).
    deadline = time.monotonic() + 20
    for server in servers:
        while True:
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as c:
                info = c.recv(8192).decode(errors="replace")
            if info.count("127.0.0.1:") >= nodes:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the NATS cluster did not form")
            time.sleep(0.1)
    return servers


def concurrent(ours, work, count, size_mib):
    """`count` transfers at once through a 3-node cluster; returns the printed table's rows."""
    servers = start_cluster(work)
    url = "nats://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
    env = dict(os.environ, AGENTFERRY_BIND="127.0.0.1:0", AGENTFERRY_RELAY=url, AGENTFERRY_PREFER="relay")
    files = []
    for i in range(count):
        path = os.path.join(work, f"file{i}.bin")
        files.append((path, make_file(path, size_mib << 20)))
    before = [cpu_seconds(s.proc.pid) for s in servers]
    senders = []
    for path, _ in files:
        home = tempfile.mkdtemp(dir=work)
        proc = subprocess.Popen([ours, "send", path, "--json"], env=dict(env, AGENTFERRY_HOME=home),
                                stdout=subprocess.PIPE, text=True)
        senders.append(proc)
    tickets = [json.loads(p.stdout.readline())["ticket"] for p in senders]
    start = time.monotonic()
    receivers = []
    for ticket in tickets:
        home, out = tempfile.mkdtemp(dir=work), tempfile.mkdtemp(dir=work)
        receivers.append(subprocess.Popen([ours, "receive", ticket, "-o", out, "--json"],
                                          env=dict(env, AGENTFERRY_HOME=home), stdout=subprocess.PIPE, text=True))
    failed = 0
    for proc, (_, expected) in zip(receivers, files):
        try:
            last = json.loads(proc.communicate(timeout=600)[0].splitlines()[-1])
        except (subprocess.TimeoutExpired, IndexError, ValueError):
            proc.kill()
            last = {}
        failed += proc.returncode != 0 or last.get("sha256") != expected
    wall = time.monotonic() - start
    for proc in senders:
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    total = count * (size_mib << 20)
    print(f"{count} transfers of {size_mib} MiB at once through a 3-node NATS cluster: {wall:.2f} s, "
          f"{total / wall / 1e6:.0f} MB/s in all, {failed} failed")
    print(f"{'node':<6} {'CPU s':>7} {'peak RSS MiB':>13}")
    for i, (server, cpu0) in enumerate(zip(servers, before)):
        print(f"{i:<6} {cpu_seconds(server.proc.pid) - cpu0:>7.2f} {peak_rss_mib(server.proc.pid):>13.1f}")
    for server in servers:
        server.stop()
    if failed:
        raise SystemExit(f"{failed} transfers failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="MiB")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--binary", default=None)
    ap.add_argument("--cluster", type=int, default=0, metavar="N",
                    help="run N concurrent transfers through a 3-node cluster instead")
    args = ap.parse_args()
    ours = args.binary or binary()
    work = tempfile.mkdtemp(prefix="agentferry-nats-bench-")
    try:
        if args.cluster:
            return concurrent(ours, work, args.cluster, args.size)
        path = os.path.join(work, "file.bin")
        expected = make_file(path, args.size << 20)
        relay, nats, tuned, bare = Relay(ours), Nats(work), Nats(work, env={"GOGC": "400"}), Nats(work)
        servers = {"direct": None, "agentferry relay": relay, "nats-server": nats, "nats-server GOGC=400": tuned,
                   "raw pub->sub (ref)": bare}
        walls = {name: [] for name in servers}
        cpu = {name: 0.0 for name in servers}
        for _ in range(args.runs):
            for name, server in servers.items():
                out_dir = tempfile.mkdtemp(dir=work)
                before = cpu_seconds(server.proc.pid) if server else 0.0
                if server is bare:
                    walls[name].append(raw_nats(bare, args.size << 20))
                else:
                    walls[name].append(run_ferry(ours, path, work, out_dir, expected, server)[0])
                cpu[name] += (cpu_seconds(server.proc.pid) - before) if server else 0.0
                shutil.rmtree(out_dir)
        print(f"{'path':<22} {'wall s':>8} {'MB/s':>8} {'server CPU s':>13} {'server peak RSS MiB':>20}")
        for name, server in servers.items():
            wall = statistics.median(walls[name])
            rss = f"{peak_rss_mib(server.proc.pid):.1f}" if server else "-"
            cpu_text = f"{cpu[name] / args.runs:.2f}" if server else "-"
            print(f"{name:<22} {wall:>8.3f} {(args.size << 20) / wall / 1e6:>8.0f} {cpu_text:>13} {rss:>20}")
        print(f"({args.size} MiB, median of {args.runs} runs; CPU per run. The last row is no agentferry: a bare")
        print(" publisher and subscriber moving the same bytes in 256 KiB messages, the server's own ceiling here)")
        for server in (relay, nats, tuned, bare):
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
