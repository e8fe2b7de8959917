#!/usr/bin/python3
"""Rerank throughput beside embedding throughput, same machine, same run, same documents.

Two BERT-base-shaped models with random weights (tools/make_fixture_model.py): the embedding
model (--bert-base) and a 1-label cross-encoder of the same shape (--bert-base-reranker). Each
round serves one, then the other (one server at a time, OMP_WAIT_POLICY=PASSIVE), and drives it
with --clients closed-loop HTTP clients for --duration seconds:

  embed   POST /embed  {"inputs": <--docs documents>}                   one input per document
  rerank  POST /rerank {"query": <a query>, "texts": <--docs documents>} one (query, doc) pair each

Documents are Chinese texts of the tokenizer corpus (12-300 characters); queries are shorter
ones. A pair holds the query's tokens too, so tokens/s (from x-prompt-tokens) is reported beside
items/s. Rounds alternate the two so that drift on a shared machine hits both; the table gives
each figure's median over the rounds and the rerank/embed ratio of the medians.

    /usr/bin/python3 bench/e2e/rerank.py --tideserve build/release/tideserve [--work DIR]
        [--rounds 3] [--duration 10] [--clients 4] [--docs 8] [--json OUT]
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def corpus(lo, hi):
    out = []
    with open(os.path.join(REPO, "tests", "fixtures", "tokenizer", "corpus.jsonl"),
              encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)
            if isinstance(t, str) and lo <= len(t) <= hi and \
                    sum(0x4E00 <= ord(c) <= 0x9FFF for c in t) >= 6:
                out.append(t)
    return out


def ensure_model(flag, path):
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_fixture_model.py"),
                        flag, path], check=True)


class Server:
    def __init__(self, binary, model, threads):
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        self.proc = subprocess.Popen(
            [binary, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
             "--threads", str(threads), "--drain-delay", "0", "--log-level", "info",
             "--max-input-length", "512"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        self.port = None
        for line in self.proc.stdout:
            event = json.loads(line)
            if event.get("event") == "listening":
                self.port = int(event["port"])
            if event.get("event") == "model_loaded":
                self.kind = event["kind"]
                break
            if event.get("event") in ("model_load_failed", "startup_failed"):
                sys.exit(f"rerank bench: {model}: {event}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def drive(port, bodies, clients, duration):
    """Closed loop: every client posts its next body as soon as the last one is answered."""
    path = bodies[0][0]
    stop_at = time.monotonic() + duration
    counts = [[0, 0, 0, 0] for _ in range(clients)]  # requests, items, tokens, errors

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = c
        while time.monotonic() < stop_at:
            _, body, items = bodies[i % len(bodies)]
            i += clients
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                counts[c][3] += 1
                continue
            counts[c][0] += 1
            counts[c][1] += items
            counts[c][2] += int(resp.getheader("x-prompt-tokens", "0"))
        conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    total = [sum(col) for col in zip(*counts)]
    return {"seconds": elapsed, "requests": total[0], "items_per_s": total[1] / elapsed,
            "tokens_per_s": total[2] / elapsed, "errors": total[3]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tideserve", required=True)
    ap.add_argument("--work", default=os.path.join(REPO, "build", "release", "bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json")
    args = ap.parse_args()
    embed_model = os.path.join(args.work, "bert-base")
    rerank_model = os.path.join(args.work, "bert-base-reranker")
    ensure_model("--bert-base", embed_model)
    ensure_model("--bert-base-reranker", rerank_model)

    docs = corpus(40, 300)
    queries = corpus(12, 30)
    step = max(1, len(docs) // 400)
    docs = docs[::step][:400]
    bodies = {"embed": [], "rerank": []}
    for r in range(len(docs) // args.docs):
        chunk = docs[r * args.docs:(r + 1) * args.docs]
        query = queries[r % len(queries)]
        bodies["embed"].append(("/embed", json.dumps({"inputs": chunk, "truncate": True},
                                                     ensure_ascii=False).encode(), len(chunk)))
        bodies["rerank"].append(("/rerank", json.dumps(
            {"query": query, "texts": chunk, "truncate": True}, ensure_ascii=False).encode(),
            len(chunk)))

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"# rerank vs embed, {time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} CPUs "
          f"({cpu}), {args.threads} engine threads, {args.clients} clients x {args.docs} "
          f"documents per request, {args.duration:g} s x {args.rounds} rounds, load average "
          f"{open('/proc/loadavg').read().split()[0]}")
    results = {"embed": [], "rerank": []}
    for rnd in range(args.rounds):
        order = ("embed", "rerank") if rnd % 2 == 0 else ("rerank", "embed")
        for job in order:
            server = Server(args.tideserve, embed_model if job == "embed" else rerank_model,
                            args.threads)
            try:
                drive(server.port, bodies[job][:2], args.clients, 2)  # warm the connections
                r = drive(server.port, bodies[job], args.clients, args.duration)
            finally:
                server.stop()
            results[job].append(r)
            print(f"round {rnd + 1} {job:6}: {r['items_per_s']:7.1f} items/s "
                  f"{r['tokens_per_s']:8.0f} tokens/s  {r['requests']} requests, "
                  f"{r['errors']} errors", flush=True)
    med = {job: {k: statistics.median(x[k] for x in rs) for k in ("items_per_s", "tokens_per_s")}
           for job, rs in results.items()}
    print("| job | items/s (median) | tokens/s (median) |")
    print("| --- | --- | --- |")
    print(f"| embed (/embed, documents) | {med['embed']['items_per_s']:.1f} | "
          f"{med['embed']['tokens_per_s']:.0f} |")
    print(f"| rerank (/rerank, query + document pairs) | {med['rerank']['items_per_s']:.1f} | "
          f"{med['rerank']['tokens_per_s']:.0f} |")
    print(f"| rerank / embed | {med['rerank']['items_per_s'] / med['embed']['items_per_s']:.2f}x "
          f"| {med['rerank']['tokens_per_s'] / med['embed']['tokens_per_s']:.2f}x |")
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": results, "median": med}, f, indent=2)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
