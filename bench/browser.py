#!/usr/bin/env python3
"""Browser benchmark: a file received by the page in headless chromium, beside the CLI receiver,
in the same run.

For each size, the same generated file is sent by `agentferry send` and received three ways,
alternating in rounds so all see the same machine state:

- `cli`: `agentferry receive TICKET` (the reference: the same sender, our own receiver);
- `page, direct`: `send --link`, the link opened in Debian's chromium (headless, driven by
  tests/browser_js/receive.mjs), saved through the File System Access API into the origin's
  private file system, so the page's streaming writer does the saving;
- `page, relay`: the same through an `agentferry relay` on loopback, which serves the page and
  carries the frames over WebSocket (with --relay);
- `fetch <- http`: the reference, the same chromium reading the plain file from
  `python3 -m http.server` with `fetch` and dropping it: what the browser's own network path costs
  before any decrypting, hashing or saving.

The page's time runs from the click on "Save" to its final state (hello and page load excluded:
the person is reading the offer meanwhile); the CLI's from the receiver's start to its exit.
Prints per way the median seconds, MB/s, and CPU seconds of the receiving side (the receive
process, or every chromium process) and of the sender.

    cargo build --release && python3 bench/browser.py --sizes 64,256 --runs 3 --relay

Needs Debian's chromium, GNU time, and `npm ci --prefix tests/browser_js` (the test command
installs both).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback import ROOT, PyHttp, Relay, binary, in_private_netns, make_file, run_ferry, timed, wait_timed  # noqa: E402

DRIVER = os.path.join(ROOT, "tests", "browser_js", "receive.mjs")


def run_page(bin_path, path, work, expected, relay=None):
    """One browser receive. Returns (seconds, receiving CPU seconds, sender Side)."""
    env = dict(os.environ, AGENTFERRY_BIND="127.0.0.1:0", AGENTFERRY_HOME=tempfile.mkdtemp(dir=work))
    if relay:
        env.update(AGENTFERRY_RELAY=relay.url)
    send_cmd, send_time = timed([bin_path, "send", path, "--json", "--link"])
    sender = subprocess.Popen(send_cmd, env=env, stdout=subprocess.PIPE, text=True)
    ticket, link = json.loads(sender.stdout.readline()), json.loads(sender.stdout.readline())
    assert (ticket["event"], link["event"]) == ("ticket", "link"), (ticket, link)
    if relay and "via=relay" not in link["link"]:
        raise SystemExit(f"expected a relay link, got {link['link']}")
    out = tempfile.mkdtemp(dir=work)
    args = {"link": link["link"], "scenario": "picker", "out": out}
    run = subprocess.run(["node", DRIVER, json.dumps(args)], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"the browser could not run: {run.stdout} {run.stderr}")
    got = json.loads(run.stdout.splitlines()[-1])
    sender.stdout.read()
    send_code, send = wait_timed(sender, send_time)
    if got["state"] != "done" or got.get("sha256") != expected or send_code:
        raise SystemExit(f"the page failed: {got} (sender exit {send_code})")
    shutil.rmtree(out)
    return got["timing"]["seconds"], got["timing"]["cpu_seconds"], send


def run_fetch(server, name, work, size):
    """The reference: chromium reads the plain file and drops it. Returns (seconds, CPU, None)."""
    args = {"link": f"http://127.0.0.1:{server.port}/{name}", "scenario": "fetch", "out": work}
    run = subprocess.run(["node", DRIVER, json.dumps(args)], capture_output=True, text=True)
    got = json.loads(run.stdout.splitlines()[-1]) if run.returncode == 0 else {}
    if got.get("bytes") != size:
        raise SystemExit(f"the reference fetch failed: {run.stdout} {run.stderr}")
    return got["timing"]["seconds"], got["timing"]["cpu_seconds"], None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,256", help="file sizes in MiB, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--relay", action="store_true", help="also receive through a relay on loopback")
    ap.add_argument("--binary", default=None, help="the agentferry binary (default: the release build)")
    ap.add_argument("--no-netns", action="store_true", help="measure on the host's loopback")
    opts = ap.parse_args()
    if not opts.no_netns:
        in_private_netns()
    bin_path = opts.binary or binary()
    for need in (bin_path, "/usr/bin/chromium", os.path.join(ROOT, "tests", "browser_js", "node_modules")):
        if not os.path.exists(need):
            raise SystemExit(f"{need} is missing (cargo build --release; the test command installs the rest)")

    work = tempfile.mkdtemp(prefix="agentferry-bench-browser-")
    relay = Relay(bin_path) if opts.relay else None
    server = PyHttp(work, work)
    ways = ["fetch <- http", "cli", "page, direct"] + (["page, relay"] if relay else [])
    print(f"{'MiB':>5} {'way':<14} {'seconds':>8} {'MB/s':>8} {'recv CPU s':>11} {'send CPU s':>11}")
    try:
        for mib in (int(s) for s in opts.sizes.split(",")):
            size = mib << 20
            path = os.path.join(work, f"file-{mib}.bin")
            expected = make_file(path, size)
            runs = {way: [] for way in ways}
            for _ in range(opts.runs):
                runs["fetch <- http"].append(run_fetch(server, os.path.basename(path), work, size))
                out = tempfile.mkdtemp(dir=work)
                wall, send, recv = run_ferry(bin_path, path, work, out, expected)
                runs["cli"].append((wall, recv.user + recv.sys, send))
                shutil.rmtree(out)
                runs["page, direct"].append(run_page(bin_path, path, work, expected))
                if relay:
                    runs["page, relay"].append(run_page(bin_path, path, work, expected, relay))
            for way in ways:
                med = statistics.median
                seconds = med(r[0] for r in runs[way])
                print(f"{mib:>5} {way:<14} {seconds:>8.3f} {size / seconds / 1e6:>8.1f} "
                      f"{med(r[1] for r in runs[way]):>11.2f} "
                      f"{med(r[2].user + r[2].sys for r in runs[way]) if runs[way][0][2] else 0:>11.2f}")
            os.remove(path)
    finally:
        server.stop()
        if relay:
            relay.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
