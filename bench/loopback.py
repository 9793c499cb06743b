#!/usr/bin/env python3
"""Loopback benchmark: agentferry send/receive (direct, WebRTC, and through a relay) beside curl <- a
static HTTP server.

For each size, the same generated file is fetched over 127.0.0.1 by curl from nginx (if
installed, else `python3 -m http.server`) and sent by `agentferry send` to `agentferry receive`,
alternating runs so both see the same machine state. Prints wall time, MB/s and each side's
peak RSS (GNU time's %M for the processes we start, VmHWM for nginx's worker), the median over
--runs, and the ratio of our wall time to curl's.

    cargo build --release && python3 bench/loopback.py --sizes 1,1024 --runs 3

`--baseline PATH` also runs another agentferry binary (say, a build of the previous commit),
alternating with this one in the same run, so a change can be judged on the same machine state.

`--trees 1000x4,10000x1` measures folders instead: COUNT files of KiB each in one folder, sent as
one transfer by `agentferry send DIR`, beside `tar -c` + `curl | tar -x` from nginx and `cp -r`
on the same disk; it prints files per second.

    python3 bench/loopback.py --trees 1000x4,10000x1 --runs 3

Needs curl and GNU time (Debian: curl, time; nginx-light optional).
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary():
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return os.path.join(json.loads(meta.stdout)["target_directory"], "release", "agentferry")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd):
    """Wrap cmd in GNU time so its peak RSS is its own. (wait4's ru_maxrss would include the
    memory of the Python process that forked it.)"""
    fd, path = tempfile.mkstemp(suffix=".rss")
    os.close(fd)
    return ["/usr/bin/time", "-q", "-f", "%M", "-o", path] + cmd, path


def wait_rss(proc, rss_file):
    """Wait for proc; return (exit code, peak RSS in MiB)."""
    proc.wait()
    with open(rss_file) as f:
        kib = int(f.read().split()[-1])
    os.remove(rss_file)
    return proc.returncode, kib / 1024


def make_file(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def wait_listening(port, deadline=10):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"server on port {port} did not start")


class Nginx:
    name = "curl <- nginx"

    def __init__(self, root, work):
        self.port = free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 64; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
  uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{ listen 127.0.0.1:{self.port}; root {root}; }} }}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", work], stderr=subprocess.DEVNULL)
        wait_listening(self.port)

    def server_rss(self):
        peaks = []
        for pid in subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split():
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM"):
                        peaks.append(int(line.split()[1]) / 1024)
        return max(peaks, default=0.0)

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait()


class PyHttp(Nginx):
    name = "curl <- python http.server"

    def __init__(self, root, work):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "--directory", root],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port)

    def server_rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_curl(server, name, out):
    start = time.monotonic()
    cmd, rss_file = timed(["curl", "-sS", "-o", out, f"http://127.0.0.1:{server.port}/{name}"])
    code, rss = wait_rss(subprocess.Popen(cmd), rss_file)
    wall = time.monotonic() - start
    if code:
        raise SystemExit(f"curl failed with {code}")
    return wall, server.server_rss(), rss


class Relay:
    """An `agentferry relay` on loopback for the relay runs."""

    def __init__(self, bin_path):
        self.proc = subprocess.Popen([bin_path, "relay", "--listen", "127.0.0.1:0", "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = json.loads(self.proc.stdout.readline())["url"]

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_ferry(bin_path, path, work, out_dir, expected, relay=None, prefer="relay"):
    env = dict(os.environ, AGENTFERRY_BIND="127.0.0.1:0")
    if relay:
        env.update(AGENTFERRY_RELAY=relay.url, AGENTFERRY_PREFER=prefer)
    send_home, recv_home = tempfile.mkdtemp(dir=work), tempfile.mkdtemp(dir=work)
    send_cmd, send_file = timed([bin_path, "send", path, "--json"])
    sender = subprocess.Popen(send_cmd, env=dict(env, AGENTFERRY_HOME=send_home), stdout=subprocess.PIPE, text=True)
    first = json.loads(sender.stdout.readline())
    assert first["event"] == "ticket", first
    start = time.monotonic()
    recv_cmd, recv_file = timed([bin_path, "receive", first["ticket"], "-o", out_dir, "--json"])
    receiver = subprocess.Popen(recv_cmd, env=dict(env, AGENTFERRY_HOME=recv_home), stdout=subprocess.PIPE, text=True)
    lines = receiver.stdout.read().splitlines()
    code, recv_rss = wait_rss(receiver, recv_file)
    wall = time.monotonic() - start
    sender.stdout.read()
    send_code, send_rss = wait_rss(sender, send_file)
    last = json.loads(lines[-1])
    if code or send_code or (expected is not None and last.get("sha256") != expected):
        raise SystemExit(f"agentferry failed: receive={code} send={send_code} last={last}")
    return wall, send_rss, recv_rss


def make_tree(root, count, kib):
    os.makedirs(root)
    per_dir = 1000
    for i in range(count):
        d = os.path.join(root, f"d{i // per_dir:03}")
        if i % per_dir == 0:
            os.mkdir(d)
        with open(os.path.join(d, f"f{i:06}.bin"), "wb") as f:
            f.write(os.urandom(kib << 10))


def same_tree(a, b):
    return subprocess.run(["diff", "-r", "-q", a, b], capture_output=True).returncode == 0


def run_tar_curl(server, src_dir, tree, out_dir):
    """tar the tree into nginx's root, then fetch it with curl piped into tar -x."""
    start = time.monotonic()
    tarball = os.path.join(src_dir, tree + ".tar")
    subprocess.run(["tar", "-C", src_dir, "-cf", tarball, tree], check=True)
    subprocess.run(f"curl -sS http://127.0.0.1:{server.port}/{tree}.tar | tar -C {out_dir} -xf -",
                   shell=True, check=True)
    wall = time.monotonic() - start
    os.remove(tarball)
    return wall


def run_cp(src, out_dir):
    start = time.monotonic()
    subprocess.run(["cp", "-r", src, out_dir], check=True)
    return time.monotonic() - start


def trees(args, binaries, work):
    src_dir = os.path.join(work, "src")
    os.mkdir(src_dir)
    server = (Nginx if shutil.which("nginx") else PyHttp)(src_dir, work)
    rows = []
    try:
        for spec in args.trees.split(","):
            count, kib = (int(x) for x in spec.split("x"))
            tree = f"tree-{count}x{kib}k"
            path = os.path.join(src_dir, tree)
            make_tree(path, count, kib)
            tools = [("tar | curl <- " + server.name.split("<- ")[1], None), ("cp -r", None)]
            tools += [(f"agentferry send DIR{suffix}", b) for suffix, b in binaries]
            walls = {label: [] for label, _ in tools}
            for _ in range(args.runs):
                for label, b in tools:
                    out_dir = tempfile.mkdtemp(dir=work)
                    if label.startswith("tar"):
                        walls[label].append(run_tar_curl(server, src_dir, tree, out_dir))
                    elif label == "cp -r":
                        walls[label].append(run_cp(path, out_dir))
                    else:
                        walls[label].append(run_ferry(b, path, work, out_dir, None)[0])
                    if not same_tree(path, os.path.join(out_dir, tree)):
                        raise SystemExit(f"{label}: the tree did not arrive identical")
                    shutil.rmtree(out_dir)
            shutil.rmtree(path)
            for label, _ in tools:
                wall = statistics.median(walls[label])
                rows.append((spec, label, wall, count / wall))
    finally:
        server.stop()
    print(f"{'tree':>10}  {'tool':<34} {'wall s':>8} {'files/s':>9}")
    for spec, label, wall, rate in rows:
        print(f"{spec:>10}  {label:<34} {wall:>8.3f} {rate:>9.0f}")
    print(f"(median of {args.runs} runs; COUNTxKiB; the tar row includes creating the tarball)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,1024", help="comma-separated sizes in MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=None, help="the agentferry to measure (default: the release build)")
    ap.add_argument("--baseline", default=None, help="another agentferry binary to measure in the same run")
    ap.add_argument("--trees", default=None, help="folders instead of files: comma-separated COUNTxKiB")
    args = ap.parse_args()
    ours = args.binary or binary()
    for b in filter(None, (ours, args.baseline)):
        if not os.path.exists(b):
            raise SystemExit(f"{b} is missing: run `cargo build --release` first")
    binaries = [("", ours)] + ([(" (baseline)", args.baseline)] if args.baseline else [])

    work = tempfile.mkdtemp(prefix="agentferry-bench-")
    if args.trees:
        try:
            trees(args, [(s, b) for s, b in binaries if "baseline" not in s], work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        src_dir = os.path.join(work, "src")
        os.mkdir(src_dir)
        server = (Nginx if shutil.which("nginx") else PyHttp)(src_dir, work)
        relays = {b: Relay(b) for _, b in binaries}
        rows = []
        for mib in (int(s) for s in args.sizes.split(",")):
            size = mib << 20
            name = f"file-{mib}MiB.bin"
            path = os.path.join(src_dir, name)
            expected = make_file(path, size)
            tools = [("curl", server.name, None, None)]
            for suffix, b in binaries:
                tools.append((f"direct{suffix}", f"agentferry direct{suffix}", b, None))
                tools.append((f"webrtc{suffix}", f"agentferry webrtc{suffix}", b, relays[b]))
                tools.append((f"relay{suffix}", f"agentferry via relay{suffix}", b, relays[b]))
            results = {key: [] for key, *_ in tools}
            for _ in range(args.runs):
                for key, _, b, relay in tools:
                    out_dir = tempfile.mkdtemp(dir=work)
                    if b is None:
                        results[key].append(run_curl(server, name, os.path.join(out_dir, name)))
                    else:
                        prefer = "webrtc" if key.startswith("webrtc") else "relay"
                        results[key].append(run_ferry(b, path, work, out_dir, expected, relay, prefer))
                    shutil.rmtree(out_dir)
            os.remove(path)
            walls = {}
            for key, label, _, _ in tools:
                walls[key] = statistics.median(r[0] for r in results[key])
                rows.append((mib, label, walls[key], size / walls[key] / 1e6,
                             max(r[1] for r in results[key]), max(r[2] for r in results[key])))
            for suffix, b in binaries:
                ratio = walls[f"direct{suffix}"] / walls["curl"]
                rows.append((mib, f"ratio agentferry direct{suffix} / curl: {ratio:.2f}x; "
                             f"relay peak RSS {relays[b].rss():.1f} MiB", None, None, None, None))
        server.stop()
        for relay in relays.values():
            relay.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'size':>9}  {'tool':<32} {'wall s':>8} {'MB/s':>8} {'RSS srv/send MiB':>17} {'RSS cli/recv MiB':>17}")
    for mib, label, wall, rate, rss_a, rss_b in rows:
        if wall is None:
            print(f"{mib:>6}MiB  {label}")
        else:
            print(f"{mib:>6}MiB  {label:<32} {wall:>8.3f} {rate:>8.0f} {rss_a:>17.1f} {rss_b:>17.1f}")
    print(f"(median of {args.runs} runs; peak RSS is the maximum over runs)")


if __name__ == "__main__":
    main()
