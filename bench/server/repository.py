#!/usr/bin/python3
"""The model repository under load, on a BERT-base-shaped model (bench/run.sh generates it):

  swap      one closed-loop client on /embed while --swaps new versions are copied in one
            after another (hard links of version 1's files, so each load and warm-up is a real
            model's), each replacing the one before (--model-control poll): its latency before,
            during (each `loading_model` to the old version's `model_released`) and between the
            swaps, each load's duration, and failed requests (must be 0);
  fairness  model `quiet` (one closed-loop client, a short text) alone, then while model `busy`
            is flooded by --flood clients sending long texts: the quiet model's p50 / p99 against
            the bound the compute gate promises (its own p99 plus one batch of the busy model,
            measured with the busy model alone and one client: engine time / batches).

    /usr/bin/python3 bench/server/repository.py --tideserve build/release/tideserve \\
        --model build/release/bench/bert-base [--seconds 10] [--flood 4] [--json OUT]
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SHORT = {"inputs": ["今天天气很好，我们去公园散步吧"]}
LONG = {"inputs": ["长文档的一句话，用来填满批次。" * 30] * 4, "truncate": True}


def link_version(src, dst):
    """A version directory whose files are hard links of `src`'s (same bytes, no copy)."""
    tmp = os.path.join(os.path.dirname(dst), "." + os.path.basename(dst) + ".tmp")
    os.makedirs(tmp)
    for name in os.listdir(src):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            os.link(path, os.path.join(tmp, name))
    os.rename(tmp, dst)


class Server:
    def __init__(self, binary, *args):
        self.proc = subprocess.Popen([binary, "serve", "--host", "127.0.0.1", "--port", "0",
                                      "--drain-delay", "0", *args], stdout=subprocess.PIPE,
                                     text=True)
        self.events, self.cond = [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self.wait("listening")["port"])
        self.wait("serving")

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                event["t"] = time.monotonic()
                self.events.append(event)
                self.cond.notify_all()

    def wait(self, name, timeout=600, **fields):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if e.get("event") == name and all(e.get(k) == v for k, v in fields.items()):
                        return e
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("no %s event from tideserve" % name)
                self.cond.wait(1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)

    def metrics(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text


def loop(port, body, model, stop, out, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    data = json.dumps(body)
    headers = {"Content-Type": "application/json", "x-model": model}
    while not stop.is_set():
        start = time.monotonic()
        conn.request("POST", "/embed", data, headers)
        response = conn.getresponse()
        response.read()
        end = time.monotonic()
        if response.status == 200:
            out.append((start, end - start))
        else:
            errors.append(response.status)
    conn.close()


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


def summary(samples):
    lat = [d for _, d in samples]
    return {"requests": len(lat), "p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99)}


def metric_total(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def swap(args, root):
    link_version(args.model, os.path.join(root, "m", "1"))
    server = Server(args.tideserve, "--model-repository", root, "--repository-poll-seconds", "0.5")
    samples, errors, stop = [], [], threading.Event()
    client = threading.Thread(target=loop, args=(server.port, SHORT, "m", stop, samples, errors))
    client.start()
    time.sleep(args.seconds)
    windows, loads, released_bytes = [], [], []
    for version in range(2, args.swaps + 2):
        link_version(args.model, os.path.join(root, "m", str(version)))
        loading = server.wait("loading_model", version=str(version))
        loaded = server.wait("model_loaded", version=str(version))
        released = server.wait("model_released", version=str(version - 1))
        windows.append((loading["t"], released["t"]))
        loads.append(loaded["duration_ms"])
        released_bytes.append(released.get("released_bytes"))
        time.sleep(args.seconds / 2)
    time.sleep(args.seconds / 2)
    stop.set()
    client.join()
    server.stop()
    first, last = windows[0][0], windows[-1][1]
    during = [x for x in samples if any(a <= x[0] <= b for a, b in windows)]
    before = [x for x in samples if x[0] < first]
    between = [x for x in samples if x[0] >= first and x not in during]
    return {"swaps": args.swaps, "before": summary(before), "during": summary(during),
            "between": summary(between), "load_ms": loads, "failed_requests": len(errors),
            "released_bytes": released_bytes, "last_release_t": last}


def fairness(args, root):
    link_version(args.model, os.path.join(root, "quiet", "1"))
    link_version(args.model, os.path.join(root, "busy", "1"))
    server = Server(args.tideserve, "--model-repository", root, "--model-control", "explicit",
                    "--max-batch-tokens", "1024")
    results = {}
    for phase in ("alone", "busy_alone", "flooded"):
        quiet, busy, errors, stop = [], [], [], threading.Event()
        threads = []
        if phase != "busy_alone":
            threads.append(threading.Thread(target=loop, args=(server.port, SHORT, "quiet", stop,
                                                               quiet, errors)))
        if phase != "alone":
            # Alone, one client: its requests' engine time is its batches' time, nothing else's.
            clients = 1 if phase == "busy_alone" else args.flood
            threads += [threading.Thread(target=loop, args=(server.port, LONG, "busy", stop, busy,
                                                             errors)) for _ in range(clients)]
        before = server.metrics()
        for t in threads:
            t.start()
        time.sleep(args.seconds * 2)
        stop.set()
        for t in threads:
            t.join()
        after = server.metrics()
        batches = (metric_total(after, "tideserve_batch_size_count")
                   - metric_total(before, "tideserve_batch_size_count"))
        results[phase] = summary(quiet if phase != "busy_alone" else busy)
        results[phase]["errors"] = len(errors)
        if phase == "busy_alone":
            # The busy model alone, one request at a time: the engine time of one of its
            # batches, from the batch count and the requests' engine time.
            engine = (metric_total(after, "tideserve_inference_duration_seconds_sum")
                      - metric_total(before, "tideserve_inference_duration_seconds_sum"))
            results["busy_batch_ms"] = engine / batches * 1000 if batches else float("nan")
    server.stop()
    results["bound_p99_ms"] = results["alone"]["p99_ms"] + results["busy_batch_ms"]
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tideserve", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--flood", type=int, default=4)
    parser.add_argument("--swaps", type=int, default=4)
    parser.add_argument("--only", choices=("swap", "fairness"))
    parser.add_argument("--json")
    args = parser.parse_args()
    out = {}
    for name, run in (("swap", swap), ("fairness", fairness)):
        if args.only and name != args.only:
            continue
        root = tempfile.mkdtemp(prefix="tideserve-bench-repo-", dir=os.path.dirname(
            os.path.abspath(args.model)))
        try:
            out[name] = run(args, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    s = out.get("swap")
    if s is not None:
        print_swap(s)
    f = out.get("fairness")
    if f is not None:
        print_fairness(f, args.flood)
    if args.json:
        with open(args.json, "w") as fp:
            json.dump(out, fp, indent=2)
    failed = (s or {}).get("failed_requests", 0) + sum(
        (f or {}).get(p, {}).get("errors", 0) for p in ("alone", "busy_alone", "flooded"))
    return 1 if failed else 0


def print_swap(s):
    print("## model repository: version swap under a closed-loop /embed client")
    print("| window | requests | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for w in ("before", "during", "between"):
        print("| %s | %d | %.1f | %.1f |" % (w, s[w]["requests"], s[w]["p50_ms"], s[w]["p99_ms"]))
    print("%d swaps (during: first loading_model to model_released of the old version); load + "
          "warm-up ms: %s; failed requests: %d; released bytes: %s" % (
              s["swaps"], ", ".join("%.0f" % x for x in s["load_ms"]), s["failed_requests"],
              ", ".join(str(x) for x in s["released_bytes"])))


def print_fairness(f, flood):
    print("## model repository: the quiet model while the busy one is flooded (%d clients)"
          % flood)
    print("| quiet model | requests | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for w in ("alone", "flooded"):
        print("| %s | %d | %.1f | %.1f |" % (w, f[w]["requests"], f[w]["p50_ms"], f[w]["p99_ms"]))
    print("busy model alone: %d requests, p50 %.0f ms; one of its batches: %.0f ms of engine "
          "time (mean); the gate's bound for the quiet model's p99: its p99 alone + one busy "
          "batch = %.0f ms" % (f["busy_alone"]["requests"], f["busy_alone"]["p50_ms"],
                               f["busy_batch_ms"], f["bound_p99_ms"]))


if __name__ == "__main__":
    sys.exit(main())
