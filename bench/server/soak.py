#!/usr/bin/python3
"""Soak: `tideserve serve` on the bundled model at a constant request rate for --minutes, a mix of
valid and invalid requests on every family, from --clients keep-alive connections. Reports, and
fails (exit 1) on:

  * any valid request answered with anything but 200 and the vector it got at the start (every
    valid body is answered once before the run: the reference);
  * any invalid request answered with anything but its 4xx (a 5xx, a dropped connection);
  * the process dying;
  * RSS growth above --max-growth (default 5%) from after the warm-up (--warm-up seconds) to the
    end.

    /usr/bin/python3 bench/server/soak.py --binary build/release/tideserve [--minutes 10]
        [--rate 200] [--clients 8]
"""
import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

VALID = [
    ("/embed", {"inputs": ["今天天气很好", "hello world"]}),
    ("/embed", {"inputs": "长文档。" * 200, "chunking": {"max_tokens": 64, "overlap": 8}}),
    ("/v1/embeddings", {"input": ["你好", "世界"], "dimensions": 16}),
    ("/predict", {"text": "我们去公园散步吧", "max_length": 32}),
    ("/v2/models/tideserve-tiny-zh/infer", {"inputs": [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["测试"]}]}),
    ("/tokenize", {"inputs": "hello 世界"}),
]
INVALID = [
    ("/embed", "{not json", 400),
    ("/embed", {"inputs": []}, 422),
    ("/embed", {"inputs": "x", "dimensions": 999}, 422),
    ("/v1/embeddings", {"input": {"a": 1}}, 400),
    ("/predict", {"text": 5}, 422),
    ("/v2/models/nope/infer", {"inputs": []}, 404),
    ("/rerank", {"query": "q", "texts": ["a"]}, 422),
    ("/embed", {"inputs": "文" * 600}, 413),
]


# Answer fields that change from call to call; the vectors may differ in the last bits with the
# batch a request shares.
VOLATILE = {"latency_ms", "prediction", "id", "created"}


def same(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - VOLATILE
        return keys == set(b) - VOLATILE and all(same(a[k], b[k]) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-5
    return a == b


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def post(conn, path, body):
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    conn.request("POST", path, data.encode(), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--model", default=os.path.join(REPO, "models", "tideserve-tiny-zh"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--warm-up", type=float, default=30)
    ap.add_argument("--rate", type=float, default=200, help="requests/s, all clients together")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-growth", type=float, default=0.05)
    args = ap.parse_args()

    proc = subprocess.Popen([args.binary, "serve", "--model", args.model, "--host", "127.0.0.1",
                             "--port", "0", "--drain-delay", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "listening":
            port = int(event["port"])
        if event.get("event") == "model_loaded":
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    reference = []
    for path, body in VALID:
        status, data = post(conn, path, body)
        if status != 200:
            sys.exit(f"soak: {path} answered {status} before the run: {data[:200]}")
        reference.append(json.loads(data))
    conn.close()

    failures, counts, lock = [], {"valid": 0, "invalid": 0}, threading.Lock()
    start = time.monotonic()
    end = start + args.minutes * 60
    interval = args.clients / args.rate  # each client's share of the rate

    def client(c):
        rng = random.Random(c)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        next_at = time.monotonic()
        while time.monotonic() < end:
            next_at += interval
            try:
                if rng.random() < 0.7:
                    i = rng.randrange(len(VALID))
                    status, data = post(conn, *VALID[i])
                    if status != 200 or not same(json.loads(data), reference[i]):
                        with lock:
                            failures.append(f"{VALID[i][0]}: {status} or a different answer")
                    with lock:
                        counts["valid"] += 1
                else:
                    path, body, want = INVALID[rng.randrange(len(INVALID))]
                    status, _ = post(conn, path, body)
                    if status != want:
                        with lock:
                            failures.append(f"{path} {str(body)[:40]}: {status}, expected {want}")
                    with lock:
                        counts["invalid"] += 1
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    failures.append(f"connection: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    time.sleep(min(args.warm_up, args.minutes * 60 / 2))
    rss_start = rss_kb(proc.pid)
    for t in threads:
        t.join()
    rss_end = rss_kb(proc.pid)
    alive = proc.poll() is None
    proc.terminate()
    rc = proc.wait(60)
    growth = (rss_end - rss_start) / max(rss_start, 1)
    elapsed = time.monotonic() - start
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"# soak, {time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} CPUs ({cpu}): "
          f"{elapsed / 60:.1f} min at {args.rate:g} req/s from {args.clients} clients")
    print(f"requests: {counts['valid']} valid, {counts['invalid']} invalid "
          f"({(counts['valid'] + counts['invalid']) / elapsed:.0f}/s); failures: {len(failures)}")
    print(f"RSS after warm-up {rss_start / 1024:.1f} MB, at the end {rss_end / 1024:.1f} MB "
          f"({growth * 100:+.2f}%, limit {args.max_growth * 100:.0f}%); alive until the end: "
          f"{alive}; exit code after SIGTERM {rc}")
    for f in failures[:10]:
        print("  " + f)
    return 0 if not failures and alive and rc == 0 and growth <= args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
