#!/usr/bin/python3
"""Batch lines per second through the worker mode against the same inputs over /v1/embeddings,
in one run on one machine (make bench; figures in docs/benchmarks.md).

    bench/jobs/throughput.py --tideserve BIN --model DIR [--lines 2000] [--rounds 3]

Every round, on a fresh Redis (AOF appendfsync always, as the dev overlay runs it):
  http      the lines' bodies POSTed to /v1/embeddings by 8 concurrent clients (serve, all cores)
  worker x1 one batch of the lines through one `tideserve worker` with all cores
  worker x2 the same through two workers, each pinned to half the cores (--threads split)
Lines/s is lines over the time from the batch's creation to `completed` (or, for http, from the
first request to the last answer). Reports the median of the rounds and the ratios to http.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tideserve-bench-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Proc:
    """A tideserve process; its port from the `listening` line, ready at `serving`."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env)
        self.port = None
        for raw in self.proc.stdout:
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            if e.get("event") == "listening":
                self.port = e["port"]
            if e.get("event") == "serving":
                break
        else:
            raise SystemExit("tideserve exited before serving: %s" % " ".join(args))
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def request(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def texts(n, seed):
    rng = random.Random(seed)
    words = ["模型", "服务", "向量", "检索", "文本", "批量", "队列", "扩展", "延迟", "吞吐",
             "embedding", "server", "batch", "queue", "worker", "latency", "scale", "token"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 24))) for _ in range(n)]


def run_http(port, bodies, clients=8):
    it = iter(list(enumerate(bodies)))
    lock = threading.Lock()
    errors = []

    def client():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            with lock:
                item = next(it, None)
            if item is None:
                break
            c.request("POST", "/v1/embeddings", body=json.dumps(item[1]),
                      headers={"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
        c.close()

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("http: %d errors (%s)" % (len(errors), errors[:5]))
    return len(bodies) / (time.monotonic() - start)


def run_batch(port, bodies):
    boundary = uuid.uuid4().hex
    content = "".join(json.dumps({"custom_id": "l%d" % i, "method": "POST",
                                  "url": "/v1/embeddings", "body": b}) + "\n"
                      for i, b in enumerate(bodies)).encode()
    form = (("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
             "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n") % (boundary, boundary)).encode()
    form += content + ("\r\n--%s--\r\n" % boundary).encode()
    status, data = request(port, "POST", "/v1/files", form,
                           {"content-type": "multipart/form-data; boundary=" + boundary})
    assert status == 200, data
    file_id = json.loads(data)["id"]
    start = time.monotonic()
    status, data = request(port, "POST", "/v1/batches", json.dumps(
        {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}),
        {"content-type": "application/json"})
    assert status == 200, data
    batch = json.loads(data)
    while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.05)
        status, data = request(port, "GET", "/v1/batches/" + batch["id"])
        batch = json.loads(data)
    elapsed = time.monotonic() - start
    counts = batch["request_counts"]
    if batch["status"] != "completed" or counts["completed"] != len(bodies):
        raise SystemExit("batch ended %s with %s" % (batch["status"], counts))
    return len(bodies) / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tideserve", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    cores = os.cpu_count() or 2
    half = max(1, cores // 2)
    bodies = [{"input": t} for t in texts(args.lines, 7)]
    common = ["--model", args.model, "--host", "127.0.0.1", "--port", "0", "--drain-delay", "0"]
    results = {"http": [], "worker x1": [], "worker x2": []}
    for r in range(args.rounds):
        redis = Redis()
        try:
            api = Proc([args.tideserve, "serve", *common, "--threads", str(cores),
                        "--redis", redis.url()])
            results["http"].append(run_http(api.port, bodies))
            w = Proc([args.tideserve, "worker", *common, "--threads", str(cores),
                      "--redis", redis.url(), "--jobs-consumer", "w1"])
            results["worker x1"].append(run_batch(api.port, bodies))
            w.stop()
            ws = [Proc([args.tideserve, "worker", *common, "--threads", str(half),
                        "--redis", redis.url(), "--jobs-consumer", "w%d" % (i + 2)])
                  for i in range(2)]
            results["worker x2"].append(run_batch(api.port, bodies))
            for w in ws:
                w.stop()
            api.stop()
        finally:
            redis.stop()
        print("round %d: %s" % (r + 1, ", ".join("%s %.1f" % (k, v[-1])
                                                 for k, v in results.items())), flush=True)
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print("\n# batch lines/s, %s, %d CPUs (%s), model %s, %d lines of 4-24 words, median of %d"
          % (time.strftime("%Y-%m-%d"), cores, cpu, os.path.basename(args.model.rstrip("/")),
             args.lines, args.rounds))
    print("| path | lines/s (median) | vs /v1/embeddings |")
    print("| --- | --- | --- |")
    base = statistics.median(results["http"])
    summary = {}
    for k, v in results.items():
        m = statistics.median(v)
        summary[k] = {"median": m, "rounds": v, "ratio": m / base}
        print("| %s | %.1f | %.2fx |" % (k, m, m / base))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
