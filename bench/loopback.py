#!/usr/bin/env python3
"""Loopback benchmark: agentferry send/receive (direct, WebRTC, and through a relay) beside curl <- a
static HTTP server.

For each size, the same generated file is fetched over 127.0.0.1 by curl from nginx (if
installed, else `python3 -m http.server`, and the table says so) and sent by `agentferry send`
to `agentferry receive`, as whole processes (start, transfer, exit, output removed), alternating
in pairs so both see the same machine state: absolute times on a shared VM swing by 2x between
blocks of runs, the ratio within a pair does not. Prints per tool the median wall time, MB/s,
user and sys CPU seconds and peak RSS of each side (GNU time for the processes we start, the
worker's /proc counters for nginx), how many cores both sides kept busy ((user+sys)/wall), and
the median ratio of our wall time to curl's in the same pair with its min-max.

As root it re-runs itself in a private network namespace (`unshare --net`, loopback only), so
nothing else on the host shares the loopback; `--no-netns` measures on the host's.

    cargo build --release && python3 bench/loopback.py --sizes 1,64,1024 --runs 10 --no-relay

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


def in_private_netns():
    """Re-run this script in a new network namespace with only loopback, when root allows."""
    if os.environ.get("AGENTFERRY_BENCH_NETNS") or os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    script = "ip link set lo up && exec \"$@\""
    cmd = ["unshare", "--net", "--", "sh", "-c", script, "sh", sys.executable] + sys.argv
    env = dict(os.environ, AGENTFERRY_BENCH_NETNS="1")
    sys.exit(subprocess.run(cmd, env=env).returncode)


class Side:
    """What one process cost: peak RSS (MiB), user and sys CPU seconds."""

    def __init__(self, rss=0.0, user=0.0, sys=0.0):
        self.rss, self.user, self.sys = rss, user, sys


def timed(cmd):
    """Wrap cmd in GNU time so its peak RSS and CPU time are its own. (wait4's ru_maxrss would
    include the memory of the Python process that forked it.)"""
    fd, path = tempfile.mkstemp(suffix=".time")
    os.close(fd)
    return ["/usr/bin/time", "-q", "-f", "%M %U %S", "-o", path] + cmd, path


def wait_timed(proc, time_file):
    """Wait for proc; return (exit code, Side)."""
    proc.wait()
    with open(time_file) as f:
        kib, user, sys_s = f.read().split()[-3:]
    os.remove(time_file)
    return proc.returncode, Side(int(kib) / 1024, float(user), float(sys_s))


def proc_cpu(pid):
    """(user, sys) CPU seconds a running process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))


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

    def worker(self):
        """The process that serves requests (nginx's single worker)."""
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return int(children[0])

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

    def worker(self):
        return self.proc.pid

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_curl(server, name, out):
    """Returns (wall, server side, client side)."""
    worker = server.worker()
    user0, sys0 = proc_cpu(worker)
    start = time.monotonic()
    cmd, time_file = timed(["curl", "-sS", "-o", out, f"http://127.0.0.1:{server.port}/{name}"])
    code, client = wait_timed(subprocess.Popen(cmd), time_file)
    wall = time.monotonic() - start
    if code:
        raise SystemExit(f"curl failed with {code}")
    user1, sys1 = proc_cpu(worker)
    return wall, Side(proc_rss(worker), user1 - user0, sys1 - sys0), client


class Relay:
    """An `agentferry relay` on loopback for the relay runs."""

    def __init__(self, bin_path):
        self.proc = subprocess.Popen([bin_path, "relay", "--listen", "127.0.0.1:0", "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = json.loads(self.proc.stdout.readline())["url"]

    def rss(self):
        return proc_rss(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_ferry(bin_path, path, work, out_dir, expected, relay=None, prefer="relay"):
    env = dict(os.environ, AGENTFERRY_BIND="127.0.0.1:0")
    if relay:
        env.update(AGENTFERRY_RELAY=relay.url, AGENTFERRY_PREFER=prefer)
    send_home, recv_home = tempfile.mkdtemp(dir=work), tempfile.mkdtemp(dir=work)
    send_cmd, send_time = timed([bin_path, "send", path, "--json"])
    sender = subprocess.Popen(send_cmd, env=dict(env, AGENTFERRY_HOME=send_home), stdout=subprocess.PIPE, text=True)
    first = json.loads(sender.stdout.readline())
    assert first["event"] == "ticket", first
    start = time.monotonic()
    recv_cmd, recv_time = timed([bin_path, "receive", first["ticket"], "-o", out_dir, "--json"])
    receiver = subprocess.Popen(recv_cmd, env=dict(env, AGENTFERRY_HOME=recv_home), stdout=subprocess.PIPE, text=True)
    lines = receiver.stdout.read().splitlines()
    code, recv = wait_timed(receiver, recv_time)
    sender.stdout.read()
    send_code, send = wait_timed(sender, send_time)
    # Both processes have exited: the transfer as a user sees it.
    wall = time.monotonic() - start
    last = json.loads(lines[-1])
    if code or send_code or (expected is not None and last.get("sha256") != expected):
        raise SystemExit(f"agentferry failed: receive={code} send={send_code} last={last}")
    return wall, send, recv


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
    ap.add_argument("--sizes", default="1,64,1024", help="comma-separated sizes in MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=None, help="the agentferry to measure (default: the release build)")
    ap.add_argument("--baseline", default=None, help="another agentferry binary to measure in the same run")
    ap.add_argument("--trees", default=None, help="folders instead of files: comma-separated COUNTxKiB")
    ap.add_argument("--no-relay", dest="relay", action="store_false", help="measure the direct path only")
    ap.add_argument("--no-netns", dest="netns", action="store_false", help="stay in the host's network namespace")
    args = ap.parse_args()
    if args.netns:
        in_private_netns()
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
        files(args, binaries, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def files(args, binaries, work):
    src_dir = os.path.join(work, "src")
    os.mkdir(src_dir)
    server = (Nginx if shutil.which("nginx") else PyHttp)(src_dir, work)
    relays = {b: Relay(b) for _, b in binaries} if args.relay else {}
    rows = []
    try:
        for mib in (int(s) for s in args.sizes.split(",")):
            size = mib << 20
            name = f"file-{mib}MiB.bin"
            path = os.path.join(src_dir, name)
            expected = make_file(path, size)
            tools = [("curl", server.name, None, None)]
            for suffix, b in binaries:
                tools.append((f"direct{suffix}", f"agentferry direct{suffix}", b, None))
                if args.relay:
                    tools.append((f"webrtc{suffix}", f"agentferry webrtc{suffix}", b, relays[b]))
                    tools.append((f"relay{suffix}", f"agentferry via relay{suffix}", b, relays[b]))
            results = {key: [] for key, *_ in tools}
            for run in range(args.runs):
                # Each round is one pair (or group); who goes first alternates between rounds.
                for key, _, b, relay in tools[run % 2:] + tools[:run % 2]:
                    out_dir = tempfile.mkdtemp(dir=work)
                    if b is None:
                        results[key].append(run_curl(server, name, os.path.join(out_dir, name)))
                    else:
                        prefer = "webrtc" if key.startswith("webrtc") else "relay"
                        results[key].append(run_ferry(b, path, work, out_dir, expected, relay, prefer))
                    shutil.rmtree(out_dir)
            os.remove(path)
            for key, label, _, _ in tools:
                rows.append(summary(mib, label, size, results[key], results["curl"]))
        relay_rss = {b: relay.rss() for b, relay in relays.items()}
    finally:
        server.stop()
        for relay in relays.values():
            relay.stop()

    head = ["size", "tool", "wall s", "MB/s", "x curl (min-max)", "cores", "a usr+sys s", "b usr+sys s",
            "a RSS", "b RSS"]
    print(f"{head[0]:>8}  {head[1]:<34}{head[2]:>7}{head[3]:>7}  {head[4]:<18}{head[5]:>5}"
          f"{head[6]:>13}{head[7]:>13}{head[8]:>7}{head[9]:>7}")
    for r in rows:
        print(f"{r['mib']:>5}MiB  {r['label']:<34}{r['wall']:>7.3f}{r['mbs']:>7.0f}  {r['ratio']:<18}"
              f"{r['cores']:>5.2f}{r['a_cpu']:>13}{r['b_cpu']:>13}{r['a_rss']:>7.1f}{r['b_rss']:>7.1f}")
    print(f"(median of {args.runs} alternating rounds; 'x curl' is the median of our wall / curl's wall "
          f"in the same round; a = server / sender, b = client / receiver; CPU and 'cores' "
          f"((user+sys of a and b) / wall) are medians; RSS in MiB is the maximum over rounds)")
    for b, rss in relay_rss.items():
        print(f"relay peak RSS {rss:.1f} MiB ({b})")
    print(f"network: {'private namespace (loopback only)' if os.environ.get('AGENTFERRY_BENCH_NETNS') else 'host loopback'}"
          f"; reference: {server.name}; load before: {LOAD_BEFORE}; after: {os.getloadavg()}")


def summary(mib, label, size, runs, curl_runs):
    med = statistics.median
    wall = med(r[0] for r in runs)
    ratios = [r[0] / c[0] for r, c in zip(runs, curl_runs)]
    ratio = "" if runs is curl_runs else f"{med(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    cpu = lambda i: f"{med(r[i].user for r in runs):.2f}+{med(r[i].sys for r in runs):.2f}"
    return dict(mib=mib, label=label, wall=wall, mbs=size / wall / 1e6, ratio=ratio, a_cpu=cpu(1), b_cpu=cpu(2),
                cores=med((r[1].user + r[1].sys + r[2].user + r[2].sys) / r[0] for r in runs),
                a_rss=max(r[1].rss for r in runs), b_rss=max(r[2].rss for r in runs))


LOAD_BEFORE = os.getloadavg()


if __name__ == "__main__":
    main()
