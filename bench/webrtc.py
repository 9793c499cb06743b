#!/usr/bin/env python3
"""WebRTC bench: one file over our WebRTC path on three routes, beside our other paths and
node-datachannel <-> node-datachannel on the same routes, in the same run.

Routes (the lab is tests/lab/natlab.sh: network namespaces on documentation addresses):
  local      two namespaces on one veth link, no NAT (host candidates; loopback-like);
  holepunch  two hosts behind endpoint-independent NATs, hole-punched with the relay's STUN;
  turn       two hosts behind symmetric NATs: only TURN (coturn on the public segment) connects.

Per route it runs: `agentferry webrtc` (receiver pinned to webrtc), `agentferry relay` (the chunk
relay over TCP, pinned), `agentferry http` (direct, where the receiver can dial the sender: only
on the local route), and `ndc <-> ndc` (tests/webrtc_js/ndc_peer.mjs, 64 KiB messages). Each agentferry
figure is the receiver's wall time from start to exit, connection setup included (printed
apart: the `attempt` event's elapsed); ndc's is open-to-done plus its setup. Peak RSS of both
agentferry ends comes from GNU time.

    cargo build --release && npm ci --prefix tests/webrtc_js
    sudo python3 bench/webrtc.py --size-mib 1024 [--routes local,holepunch,turn]

Needs root (namespaces), ip, nft, coturn (turnserver), node, GNU time.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "tests", "lab", "natlab.sh")
PEER = os.path.join(ROOT, "tests", "webrtc_js", "ndc_peer.mjs")
TURN_URL = "turn:bench:bench-pass@203.0.113.1:3478"
PREFIX = f"afb{os.getpid() % 100000}"


def binary():
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return os.path.join(json.loads(meta.stdout)["target_directory"], "release", "agentferry")


def sh(*cmd):
    subprocess.run(cmd, check=True)


class Route:
    """Where each end runs: namespace names (None: this namespace) and the relay's address."""

    def __init__(self, name):
        self.name = name
        self.procs = []
        if name == "local":
            # Two namespaces on one veth link, no NAT: host candidates pair directly.
            # (libdatachannel gathers no loopback candidate, so 127.0.0.1 alone would not do.)
            self.ns = {"pub": f"{PREFIX}-la", "a": f"{PREFIX}-la", "b": f"{PREFIX}-lb"}
            for ns in (self.ns["a"], self.ns["b"]):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", self.ns["a"], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
               "netns", self.ns["b"])
            for ns, ip in ((self.ns["a"], "192.0.2.1/24"), (self.ns["b"], "192.0.2.2/24")):
                sh("ip", "-n", ns, "addr", "add", ip, "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
            self.relay_ip, self.bind = "192.0.2.1", "192.0.2.1:0"
        else:
            sh("bash", LAB, PREFIX, "up")
            mode = "eim" if name == "holepunch" else "symmetric"
            sh("bash", LAB, PREFIX, "nat", "A", mode)
            sh("bash", LAB, PREFIX, "nat", "B", mode)
            self.ns = {"pub": f"{PREFIX}-pub", "a": f"{PREFIX}-hostA", "b": f"{PREFIX}-hostB"}
            self.relay_ip, self.bind = "203.0.113.1", "0.0.0.0:0"
        self.turn = None
        if name == "turn":
            self.turn = self.spawn("pub", ["turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
                                           "-L", "203.0.113.1", "-E", "203.0.113.1", "--listening-port", "3478",
                                           "--min-port", "49160", "--max-port", "49300", "--lt-cred-mech",
                                           "--fingerprint", "--realm", "bench", "--user", "bench:bench-pass",
                                           "--no-stdout-log", "--log-file", "/dev/null"],
                                   stdout=subprocess.DEVNULL)
            self.wait_udp(3478)

    def wait_udp(self, port):
        """Until something listens on UDP `port` on the public segment."""
        deadline = time.monotonic() + 10
        while not self.run_in("pub", ["ss", "-Hlun", f"sport = :{port}"]).strip():
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on UDP {port}")
            time.sleep(0.05)

    def spawn(self, side, cmd, **kw):
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[side]] + cmd, **kw)
        self.procs.append(proc)
        return proc

    def run_in(self, side, cmd):
        return subprocess.run(["ip", "netns", "exec", self.ns[side]] + cmd, capture_output=True, text=True).stdout

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        if self.name == "local":
            for ns in (self.ns["a"], self.ns["b"]):
                subprocess.run(["ip", "netns", "del", ns])
        else:
            subprocess.run(["bash", LAB, PREFIX, "down"])


def timed(cmd, work):
    fd, path = tempfile.mkstemp(suffix=".rss", dir=work)
    os.close(fd)
    return ["/usr/bin/time", "-q", "-f", "%M", "-o", path] + cmd, path


def rss_mib(path):
    with open(path) as f:
        return int(f.read().split()[-1]) / 1024


def ferry(route, bin_path, path, expected, work, prefer):
    """One agentferry transfer; (seconds, setup ms, send RSS, receive RSS, route) or None."""
    relay = route.spawn("pub", [bin_path, "relay", "--listen", f"{route.relay_ip}:0", "--json"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                        env=dict(os.environ, AGENTFERRY_HOME=tempfile.mkdtemp(dir=work)))
    url = json.loads(relay.stdout.readline())["url"]
    env = dict(os.environ, AGENTFERRY_BIND=route.bind, AGENTFERRY_RELAY=url)
    if route.name == "turn":
        env["AGENTFERRY_ICE"] = TURN_URL
    out = tempfile.mkdtemp(dir=work)
    send_cmd, send_rss = timed([bin_path, "send", path, "--json"], work)
    sender = route.spawn("a", send_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(env, AGENTFERRY_HOME=tempfile.mkdtemp(dir=work)))
    ticket = json.loads(sender.stdout.readline())["ticket"]
    start = time.monotonic()
    recv_cmd, recv_rss = timed([bin_path, "receive", ticket, "-o", out, "--prefer", prefer, "--json"], work)
    receiver = route.spawn("b", recv_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           env=dict(env, AGENTFERRY_HOME=tempfile.mkdtemp(dir=work), AGENTFERRY_PEER_TIMEOUT="20"))
    lines = [json.loads(l) for l in receiver.stdout.read().splitlines()]
    code = receiver.wait()
    wall = time.monotonic() - start
    sender.stdout.read()
    sender.wait()
    relay.terminate()
    shutil.rmtree(out)
    last = lines[-1] if lines else {}
    if code or last.get("sha256") != expected:
        print(f"    {prefer}: failed ({code}): {last.get('code') or last.get('event')}", file=sys.stderr)
        return None
    setup = next((e["elapsed_ms"] for e in lines if e.get("event") == "attempt" and e.get("ok")), 0)
    return wall, setup, rss_mib(send_rss), rss_mib(recv_rss), last.get("route", "")


def ndc(route, size, work):
    """node-datachannel <-> node-datachannel; (seconds, setup ms, pair) or None."""
    servers = [f"stun:{route.relay_ip}:3478"] if route.name == "holepunch" else []
    env = dict(os.environ)
    if route.name == "holepunch":
        # STUN from coturn for the reference (our relay's STUN responder serves agentferry).
        stun = route.spawn("pub", ["turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--stun-only",
                                   "-L", "203.0.113.1", "--listening-port", "3478", "--no-stdout-log",
                                   "--log-file", "/dev/null"], stdout=subprocess.DEVNULL)
        route.wait_udp(3478)
    if route.name == "turn":
        servers = ["turn:bench:bench-pass@203.0.113.1:3478"]
        env["POLICY"] = "relay"
    env["ICE_SERVERS"] = json.dumps(servers)
    offer = route.spawn("a", ["node", PEER, "offer", str(size)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, env=env)
    answer = route.spawn("b", ["node", PEER, "answer", str(size)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=env)
    answer.stdin.write(offer.stdout.readline())
    answer.stdin.flush()
    offer.stdin.write(answer.stdout.readline())
    offer.stdin.flush()
    err = offer.stderr.read()
    offer.wait()
    answer.wait()
    if route.name == "holepunch":
        stun.terminate()
        stun.wait()
    try:
        result = json.loads(err.strip().splitlines()[-1])
        return result["seconds"] + result["setup_ms"] / 1000, result["setup_ms"], result["pair"]
    except (ValueError, KeyError, IndexError):
        print(f"    ndc failed: {err.strip()[-300:]}", file=sys.stderr)
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--routes", default="local,holepunch,turn")
    ap.add_argument("--bin", default=None)
    ap.add_argument("--tools", default="webrtc,relay,http,ndc",
                    help="which to run (http only runs on the local route)")
    args = ap.parse_args()
    bin_path = args.bin or binary()
    work = tempfile.mkdtemp(prefix="afbench-", dir="/tmp")
    os.chmod(work, 0o755)
    size = args.size_mib << 20
    path = os.path.join(work, "bench.bin")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(args.size_mib):
            block = os.urandom(1 << 20)
            h.update(block)
            f.write(block)
    expected = h.hexdigest()
    print(f"{args.size_mib} MiB; MB/s = 10^6 bytes/s over the receiver's wall time, setup included")
    print(f"{'route':<10} {'tool':<18} {'MB/s':>7} {'s':>7} {'setup ms':>9} {'send RSS':>9} {'recv RSS':>9}  route/pair")
    try:
        for name in args.routes.split(","):
            route = Route(name)
            try:
                tools = [t for t in args.tools.split(",") if t != "ndc" and (t != "http" or name == "local")]
                for prefer in tools:
                    r = ferry(route, bin_path, path, expected, work, prefer)
                    if r:
                        wall, setup, s_rss, r_rss, via = r
                        print(f"{name:<10} {'agentferry ' + prefer:<18} {size / wall / 1e6:7.1f} {wall:7.1f} "
                              f"{setup:9} {s_rss:8.1f}M {r_rss:8.1f}M  {via}", flush=True)
                r = ndc(route, size, work) if "ndc" in args.tools.split(",") else None
                if r:
                    wall, setup, pair = r
                    print(f"{name:<10} {'ndc <-> ndc':<18} {size / wall / 1e6:7.1f} {wall:7.1f} {setup:9} "
                          f"{'':>9} {'':>9}  {pair}", flush=True)
            finally:
                route.close()
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
