#!/usr/bin/python3
"""End to end: `tideserve serve` against the FastAPI + uvicorn + PyTorch service it replaces
(bench/peers/seed_service.py), same model directory, same /predict bodies.

  * tideserve runs in fp32 and in each of --dtypes (default int8) at every concurrency;
  * cold start: process start to the first 200 from /health (polled every 10 ms), and peak RSS
    (VmHWM) once ready and after the load runs;
  * wrk (1 thread, Lua script posting realistic texts from the tokenizer corpus, max_length 128)
    at each concurrency for the same duration on both sides; req/s, p50, p99, p99.9, errors;
  * soak: tideserve at concurrency 32 for --soak seconds; RSS after 10 s of warm-up vs at the end;
  * the bundled tiny model: /health and /predict req/s at concurrency 32 (tideserve only).

The load generator runs on the same cores as the servers (there are only 2): the same for both.

    /usr/bin/python3 bench/e2e/run.py --model DIR --tideserve BIN [--duration 10]
        [--concurrency 1,8,32,128] [--soak 120] [--tiny models/tideserve-tiny-zh]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PEERS = os.path.join(REPO, "bench", "peers")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid, field="VmHWM"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, name, cmd, env, port):
        self.name, self.port = name, port
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=PEERS)
        deadline = self.t0 + 300
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"e2e: {name} exited ({self.proc.returncode}) before it was ready")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"e2e: {name} not ready after 300 s")
            time.sleep(0.01)
        self.ready_s = time.monotonic() - self.t0
        self.ready_rss = rss_mb(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(url, concurrency, duration, script, *script_args):
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "30s", "-s", script,
           url]
    if script_args:
        cmd += ["--", *script_args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    line = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not line:
        sys.exit(f"e2e: wrk failed: {p.stdout}\n{p.stderr}")
    r = json.loads(line[-1])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def make_bodies(path, count=200):
    texts = []
    with open(os.path.join(REPO, "tests", "fixtures", "tokenizer", "corpus.jsonl"),
              encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)
            if isinstance(t, str) and 12 <= len(t) <= 300 and \
                    sum(0x4E00 <= ord(c) <= 0x9FFF for c in t) >= 6:
                texts.append(t)
    step = max(1, len(texts) // count)
    with open(path, "w", encoding="utf-8") as f:
        for t in texts[::step][:count]:
            f.write(json.dumps({"text": t, "max_length": 128}, ensure_ascii=False) + "\n")


def ms(us):
    return f"{us / 1e3:.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tideserve", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--concurrency", default="1,8,32,128")
    ap.add_argument("--soak", type=int, default=120)
    ap.add_argument("--tiny", default=os.path.join(REPO, "models", "tideserve-tiny-zh"))
    ap.add_argument("--work", default="/tmp")
    ap.add_argument("--dtypes", default="int8", help="tideserve precisions to load besides fp32")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.model, args.tideserve = os.path.abspath(args.model), os.path.abspath(args.tideserve)
    args.tiny = os.path.abspath(args.tiny) if args.tiny else ""
    bodies = os.path.join(args.work, "e2e_bodies.jsonl")
    make_bodies(bodies)
    script = os.path.join(HERE, "load.lua")
    levels = [int(c) for c in args.concurrency.split(",")]
    weights_mb = os.path.getsize(os.path.join(args.model, "model.safetensors")) / 2**20

    def start_ours(model, dtype="fp32"):
        port = free_port()
        env = dict(os.environ)
        return Server("tideserve", [args.tideserve, "serve", "--model", model, "--port", str(port),
                                    "--host", "127.0.0.1", "--threads", str(args.threads),
                                    "--dtype", dtype, "--log-level", "warning"], env, port)

    def start_seed():
        port = free_port()
        env = dict(os.environ, MODEL_NAME=args.model, PORT=str(port),
                   TORCH_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
                   OPENBLAS_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="PASSIVE")
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
        return Server("seed", ["/usr/bin/python3", os.path.join(PEERS, "seed_service.py")], env,
                      port)

    dtypes = [d for d in args.dtypes.split(",") if d]
    servers = [("tideserve", lambda: start_ours(args.model))]
    servers += [(f"tideserve {d}", lambda d=d: start_ours(args.model, d)) for d in dtypes]
    servers.append(("seed", start_seed))
    results = {"load": {}, "cold": {}}
    for name, start in servers:
        srv = start()
        results["cold"][name] = {"ready_s": srv.ready_s, "ready_rss_mb": srv.ready_rss}
        url = f"http://127.0.0.1:{srv.port}/predict"
        wrk(url, 2, 2, script, bodies)  # warm-up
        for c in levels:
            results["load"][(name, c)] = wrk(url, c, args.duration, script, bodies)
            print(f"  {name} c={c}: {results['load'][(name, c)]['rps']:.1f} req/s",
                  file=sys.stderr, flush=True)
        results["cold"][name]["peak_rss_mb"] = rss_mb(srv.proc.pid)
        srv.stop()

    soak = None
    if args.soak > 0:
        srv = start_ours(args.model)
        url = f"http://127.0.0.1:{srv.port}/predict"
        wrk(url, 32, 10, script, bodies)
        rss0 = rss_mb(srv.proc.pid, "VmRSS")
        r = wrk(url, 32, args.soak, script, bodies)
        rss1 = rss_mb(srv.proc.pid, "VmRSS")
        soak = dict(r, rss_start_mb=rss0, rss_end_mb=rss1)
        srv.stop()

    tiny = {}
    if args.tiny:
        srv = start_ours(args.tiny)
        base = f"http://127.0.0.1:{srv.port}"
        wrk(base + "/predict", 8, 2, script, bodies)
        tiny["health"] = wrk(base + "/health", 32, args.duration, script)
        tiny["predict"] = wrk(base + "/predict", 32, args.duration, script, bodies)
        srv.stop()

    print(f"\n### End to end: tideserve vs the FastAPI seed service ({args.duration} s per level, "
          f"wrk -t1, {args.threads} engine threads each)\n")
    print("| server | concurrency | req/s | vs seed | p50 / p99 / p99.9 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c in levels:
        s = results["load"][("seed", c)]
        for name, _ in servers:
            o = results["load"][(name, c)]
            ratio = "" if name == "seed" else f"{o['rps'] / max(s['rps'], 1e-9):.1f}x"
            print(f"| {name} | {c} | {o['rps']:.1f} | {ratio} "
                  f"| {ms(o['p50_us'])} / {ms(o['p99_us'])} / {ms(o['p999_us'])} "
                  f"| {o['errors'] + o['non2xx']} |")
    print(f"\n### Cold start and memory (weights file {weights_mb:.0f} MiB; RSS target "
          f"{1.3 * weights_mb + 150:.0f} MiB)\n")
    print("| server | ready s | peak RSS when ready MiB | peak RSS after load MiB |")
    print("| --- | --- | --- | --- |")
    for name, _ in servers:
        cs = results["cold"][name]
        print(f"| {name} | {cs['ready_s']:.2f} | {cs['ready_rss_mb']:.0f} | {cs['peak_rss_mb']:.0f} |")
    if soak:
        print(f"\nSoak ({args.soak} s, concurrency 32): {soak['rps']:.1f} req/s, "
              f"{soak['errors'] + soak['non2xx']} errors, RSS {soak['rss_start_mb']:.0f} -> "
              f"{soak['rss_end_mb']:.0f} MiB "
              f"({(soak['rss_end_mb'] / soak['rss_start_mb'] - 1) * 100:+.1f}%)")
    if tiny:
        print(f"\nTiny model (concurrency 32, {args.duration} s): /health "
              f"{tiny['health']['rps']:.0f} req/s, /predict {tiny['predict']['rps']:.0f} req/s "
              f"(p99 {ms(tiny['predict']['p99_us'])} ms), errors "
              f"{tiny['health']['errors'] + tiny['predict']['errors'] + tiny['predict']['non2xx']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"cold": results["cold"], "soak": soak, "tiny": tiny,
                       "load": {f"{k[0]}@{k[1]}": v for k, v in results["load"].items()}}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
