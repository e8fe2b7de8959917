#!/usr/bin/env python3
"""Does heavy request work stay off the IO thread? Another client's /health latency under load.

Starts `tideserve serve` on the tiny model (port 0, defaults otherwise) and, for --duration
seconds, runs two load clients in their own processes:
  - tokenize: POST /tokenize with one ~1.9 MB text ("a " repeated: ~950k tokens), in a loop;
  - embed:    POST /embed with 32 inputs of ~20 kB each and "truncate": true, in a loop;
while this process sends GET /health every 10 ms on its own keep-alive connection and records
each latency. Prints p50/p99/max of /health idle (before the load) and under load, and how many
load requests were answered with which status, as a table and as one JSON line.

    /usr/bin/python3 bench/server/io_isolation.py --binary build/release/tideserve \
        [--label NAME] [--duration 20] [-- extra serve flags]

Compare builds in one run by calling it once per binary (docs/benchmarks.md has the figures).
"""
import argparse
import http.client
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "tideserve-tiny-zh")


def start_server(binary, extra):
    proc = subprocess.Popen([binary, "serve", "--model", MODEL, "--port", "0", "--host",
                             "127.0.0.1", "--drain-delay", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r'"event":"listening".*"port":(\d+)', line)
        if m:
            port = int(m.group(1))
        if '"event":"model_loaded"' in line:
            # Keep reading the log so that the server never blocks on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, port
    proc.kill()
    raise SystemExit("io_isolation: the server did not become ready")


def load_client(port, kind, stop_at, counts):
    if kind == "tokenize":
        body = json.dumps({"inputs": "a " * 950_000})
        path = "/tokenize"
    else:
        text = ("今天天气很好，我们去公园散步吧。" * 500)[:6800]  # ~20 kB of UTF-8
        body = json.dumps({"inputs": [text] * 32, "truncate": True})
        path = "/embed"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.time() < stop_at:
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            key = "%s_%d" % (kind, resp.status)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            key = kind + "_error"
        counts[key] = counts.get(key, 0) + 1


def probe_health(port, seconds):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        latencies.append((time.perf_counter() - t0) * 1000.0)
        if resp.status != 200:
            raise SystemExit("io_isolation: /health answered %d" % resp.status)
        time.sleep(0.01)
    conn.close()
    return latencies


def summary(latencies):
    q = statistics.quantiles(latencies, n=100)
    return {"n": len(latencies), "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(q[98], 2), "max_ms": round(max(latencies), 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--label", default=None)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("extra", nargs="*", help="extra `serve` flags (after --)")
    args = ap.parse_args()
    proc, port = start_server(args.binary, args.extra)
    try:
        idle = summary(probe_health(port, 5.0))
        manager = multiprocessing.Manager()
        counts = manager.dict()
        stop_at = time.time() + args.duration
        clients = [multiprocessing.Process(target=load_client, args=(port, kind, stop_at, counts))
                   for kind in ("tokenize", "embed")]
        for c in clients:
            c.start()
        time.sleep(1.0)  # the load is under way
        loaded = summary(probe_health(port, args.duration - 2.0))
        for c in clients:
            c.join(180)
        result = {"label": args.label or args.binary, "extra_flags": args.extra,
                  "health_idle": idle, "health_under_load": loaded,
                  "load_answers": dict(sorted(counts.items()))}
    finally:
        proc.terminate()
        proc.wait(60)
    print("%-28s %8s %8s %8s" % ("/health latency (ms)", "p50", "p99", "max"))
    for name in ("health_idle", "health_under_load"):
        s = result[name]
        print("%-28s %8.2f %8.2f %8.2f" % (name, s["p50_ms"], s["p99_ms"], s["max_ms"]))
    print("load answers:", result["load_answers"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
