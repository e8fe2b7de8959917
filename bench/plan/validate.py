#!/usr/bin/python3
"""`tideserve plan` against real runs on this machine: what the replay predicts for a replica
count and a traffic, next to what real `tideserve serve` processes give for the same.

    /usr/bin/python3 bench/plan/validate.py --tideserve build/release/tideserve \\
        [--model models/tideserve-tiny-zh] [--out plan_validation.json] [--quick] [--keep]

Method:

0. The workload: `/embed` with one text of 400 Chinese characters per request (made here,
   deterministic), so that a replica with one engine thread serves some 100-300 requests/s on
   the bundled tiny model and the load generator and HAProxy stay cheap beside it. Every server
   runs `--threads 1 --max-concurrent-requests 64` (and plan gets `--admission-limit 64`); the
   generator may open 128 connections, so that beyond capacity the server's admission limit
   refuses (429), as the replay models it, rather than the generator's connection pool queueing.

1. One replica: one server on a free loopback port; `tideserve bench --profile` steps the
   open-loop Poisson rate up (x1.25 a step) until p99 passes the SLO (250 ms). "Capacity" below is
   what the replay takes a replica's capacity to be: the highest goodput of the profile's
   steps (ReplicaModel::service_rate). For offered loads below, near and above it, the
   prediction is `tideserve plan --replicas 1 --trace <constant rate>` and the measurement an
   open-loop Poisson `tideserve bench --rate R --warmup W --duration D`. The replay's state is
   that after W seconds at R (plan --warmup-seconds W), like the server's after the bench's
   warm-up; p50 and p99 are over the requests answered 200 in the measured D seconds (from
   bench --samples; the replay's percentiles are over accepted requests too), refused is every
   429, 503 or unanswered request.

2. Several replicas behind HAProxy: an autoscaling/v2 HPA (min 1, max 3, a Pods metric
   tideserve_requests_per_second with an AverageValue target of 65 % of a replica's capacity,
   short behavior windows) and a compressed tidal trace (a few minutes: low, a peak above one
   replica's capacity, low) are replayed by `tideserve plan` with the controller's periods scaled
   down; its `syncs` are the scale decisions. The real run then follows those decisions on the
   same clock: HAProxy (roundrobin, `option httpchk GET /health`, checks every 250 ms) in front of
   up to three server slots, the first replica up from the start, `tideserve bench --schedule`
   through HAProxy; at each decision a replica is started (`tideserve serve`, in service once its
   health check passes) or stopped (set to maint through HAProxy's runtime API first, so that no
   new request reaches it, then SIGTERM; tideserve answers what it holds before it exits). The
   real controller is not run: the comparison is of the replica model under the same replica
   counts. p50/p99/refused per reporting window (by scheduled time) against the replay's windows.

Every process (each in its own process group) and the temporary directory go at the end, on
failure too. The printed tables are markdown; --out takes the JSON of everything measured.
"""
import argparse
import bisect
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SLO_MS = 250.0
ADMISSION = 64
CONNECTIONS = 128
TEXT_CHARS = 400
SENTENCES = ["今天天气很好，我们去公园散步吧。", "模型服务需要在流量高峰时自动扩容。",
             "这家餐厅的菜很好吃，价格也不贵。", "深度学习模型的推理延迟和吞吐量。",
             "潮汐流量：一天两个高峰和一个安静的夜晚。", "搜索索引的向量在夜里批量计算。"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_texts(path, n=32, chars=TEXT_CHARS):
    rng = random.Random(7)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            s = ""
            while len(s) < chars:
                s += rng.choice(SENTENCES)
            f.write(s[:chars] + "\n")


def quantile(values, q):
    """Nearest rank, as tideserve bench computes it."""
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(max(math.ceil(q * len(v)) - 1, 0), len(v) - 1)]


def rel_err(pred, meas):
    if meas is None or pred is None or meas <= 0:
        return None
    return 100.0 * (pred - meas) / meas


def fmt_err(e):
    return "" if e is None else "%+.0f %%" % e


def read_samples(path):
    out = []
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 4 or not parts[0][:1].isdigit():
                continue
            out.append((float(parts[0]), float(parts[1]), float(parts[2]), int(parts[3])))
    return out


def summarize_samples(samples, start=None, end=None):
    sel = [s for s in samples if (start is None or s[0] >= start) and (end is None or s[0] < end)]
    ok = [s[2] for s in sel if 200 <= s[3] < 300]
    refused = sum(1 for s in sel if s[3] in (0, 429, 503))
    other = len(sel) - len(ok) - refused
    lag = [(s[1] - s[0]) * 1000 for s in sel]
    return {"requests": len(sel), "ok": len(ok), "refused": refused, "other_errors": other,
            "p50_ms": quantile(ok, 0.5) if ok else None,
            "p99_ms": quantile(ok, 0.99) if ok else None,
            "lag_p99_ms": quantile(lag, 0.99) if lag else None}


class Procs:
    """Child processes, each in its own session (process group); all go in stop_all()."""

    def __init__(self):
        self.procs = []

    def spawn(self, argv, log_path):
        log = open(log_path, "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(p)
        return p

    @staticmethod
    def signal(p, sig):
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, p, timeout=20):
        if p.poll() is None:
            self.signal(p, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(p, signal.SIGKILL)
                p.wait(5)

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                self.signal(p, signal.SIGTERM)
        deadline = time.time() + 15
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                self.signal(p, signal.SIGKILL)
                p.wait(5)


class CpuSampler:
    """The machine's busy CPU (/proc/stat) and this script's processes' CPU (/proc/PID/stat),
    every half second: what other work on the shared machine took meanwhile is the difference."""

    def __init__(self, procs):
        self.procs = procs
        self.tick = os.sysconf("SC_CLK_TCK")
        self.mine = {}  # pid -> last seen utime + stime, seconds (kept after the process exits)
        self.samples = []  # (time, machine busy s, ours s)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def sample(self):
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / self.tick
        for pid in [os.getpid()] + [p.pid for p in self.procs.procs]:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                self.mine[pid] = (int(fields[11]) + int(fields[12])) / self.tick
            except (OSError, IndexError, ValueError):
                pass
        self.samples.append((time.time(), busy, sum(self.mine.values())))

    def loop(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(0.5)

    def cores(self, start, end):
        """(machine busy, ours, others) in cores over [start, end] (wall clock)."""
        def at(t):
            i = bisect.bisect_left([s[0] for s in self.samples], t)
            i = min(max(i, 0), len(self.samples) - 1)
            return self.samples[i]
        a, b = at(start), at(end)
        span = b[0] - a[0]
        if span <= 0:
            return None
        busy, ours = (b[1] - a[1]) / span, (b[2] - a[2]) / span
        return {"busy": busy, "ours": ours, "others": max(busy - ours, 0.0)}


def wait_serving(proc, log_path, timeout=60):
    """Blocks until the server's log has its `serving` event; returns that event."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited (%s): see %s" % (proc.returncode, log_path))
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if '"event":"serving"' in line:
                    return json.loads(line)
        time.sleep(0.02)
    raise RuntimeError("server not serving after %d s: %s" % (timeout, log_path))


class Run:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.procs = Procs()
        self.texts = os.path.join(work, "texts.txt")
        write_texts(self.texts)
        help_text = subprocess.run([args.tideserve, "plan", "--help"], capture_output=True,
                                   text=True).stdout
        self.plan_has_warmup = "--warmup-seconds" in help_text

    def path(self, name):
        return os.path.join(self.work, name)

    def serve(self, port, name, drain_delay=1.0):
        log = self.path(name + ".log")
        argv = [self.args.tideserve, "serve", "--model", self.args.model, "--host", "127.0.0.1",
                "--port", str(port), "--threads", "1", "--max-concurrent-requests",
                str(ADMISSION), "--drain-delay", str(drain_delay), "--shutdown-timeout", "20"]
        return self.procs.spawn(argv, log), log

    def bench(self, url, extra, name):
        js, samples = self.path(name + ".json"), self.path(name + ".csv")
        argv = [self.args.tideserve, "bench", "--url", url, "--route", "/embed", "--texts",
                self.texts, "-c", str(CONNECTIONS), "--json", js, "--samples", samples,
                "--quiet"] + extra
        p = self.procs.spawn(argv, self.path(name + ".log"))
        if p.wait(3600) != 0:
            raise RuntimeError("bench failed: %s" % self.path(name + ".log"))
        return json.load(open(js)), read_samples(samples)

    def plan(self, extra, name):
        js = self.path(name + ".json")
        argv = [self.args.tideserve, "plan", "--profile", self.profile_path, "--slo-p99-ms",
                str(SLO_MS), "--admission-limit", str(ADMISSION), "--json", js] + extra
        out = subprocess.run(argv, check=True, capture_output=True, text=True)
        return json.load(open(js)), out.stdout


def write_trace(path, points):
    with open(path, "w") as f:
        f.write("time_s,rate\n")
        for t, r in points:
            f.write("%g,%.2f\n" % (t, r))


def profile_capacity(profile):
    """A replica's capacity as the replay takes it (ReplicaModel::create): the highest goodput
    (2xx answers completed within the step) of any step, at least the highest offered rate held
    steadily."""
    best, stable = 0.0, 0.0
    for s in profile["steps"]:
        served = s.get("goodput", s["throughput"])
        best = max(best, served)
        errors = s.get("errors", 0) / max(s.get("requests", 1), 1)
        if served >= 0.9 * s["offered_rate"] and errors <= 0.01 and s["p50_ms"] > 0:
            stable = max(stable, s["offered_rate"])
    return max(best, stable), stable


def part_one(run, cfg, results):
    a = run.args
    port = free_port()
    server, log = run.serve(port, "single")
    serving = wait_serving(server, log)
    url = "http://127.0.0.1:%d" % port
    print("## One replica\n")
    print("server on %s, ready in %.0f ms (the `serving` event's ready_ms)\n" % (
        url, serving.get("ready_ms", 0)))
    run.profile_path = run.path("profile.json")
    t = time.time()
    prof = run.procs.spawn([a.tideserve, "bench", "--url", url, "--route", "/embed", "--texts",
                            run.texts, "-c", str(CONNECTIONS), "--profile", run.profile_path,
                            "--slo-p99-ms", str(SLO_MS), "--profile-start-rate",
                            str(cfg["profile_start"]), "--profile-step", str(cfg["profile_step"]),
                            "--profile-step-seconds", str(cfg["profile_step_s"]), "--quiet"],
                           run.path("profile.log"))
    if prof.wait(3600) != 0:
        raise RuntimeError("bench --profile failed: %s" % run.path("profile.log"))
    profile = json.load(open(run.profile_path))
    results["profile_cpu"] = run.cpu.cores(t, time.time())
    service, stable = profile_capacity(profile)
    capacity = profile.get("capacity_rps") or stable
    results["profile"] = profile
    results["capacity_rps"] = capacity
    results["replay_service_rate_rps"] = service
    print("Profile (`bench --profile`, x%g steps of %g s, SLO p99 %g ms), %.0f s, other work on "
          "the machine meanwhile %.2f cores:\n" % (cfg["profile_step"], cfg["profile_step_s"],
                                                  SLO_MS, time.time() - t,
                                                  results["profile_cpu"]["others"]))
    print("| offered req/s | throughput | goodput | p50 ms | p90 ms | p99 ms | refused | CPU cores "
          "| mean batch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in profile["steps"]:
        print("| %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %.2f | %.2f |" % (
            s["offered_rate"], s["throughput"], s.get("goodput", -1), s["p50_ms"], s["p90_ms"],
            s["p99_ms"],
            s.get("errors", 0), s.get("cpu_cores", -1), s.get("mean_batch_size", 0) or 0))
    print("\ncapacity (bench's, the goodput of the last step within the SLO): %.1f req/s; the "
          "replay takes a replica to serve %.1f req/s at most (the highest goodput of any step), "
          "steadily up to %.1f\n" % (capacity, service, stable))

    W, D = cfg["warmup"], cfg["duration"]
    rows = []
    for i, frac in enumerate(cfg["loads"]):
        if frac == "step":
            # A control: the rate of the profile's step nearest 70 % of capacity, where the
            # replay gives that step's own figures: the error is the run-to-run drift alone.
            rate = min((s["offered_rate"] for s in profile["steps"]),
                       key=lambda r: abs(r - 0.7 * capacity))
            rate = round(rate, 1)
            frac = rate / capacity
            control = True
        else:
            rate = round(frac * capacity, 1)
            control = False
        trace = run.path("const%d.csv" % i)
        write_trace(trace, [(0, rate)])
        if run.plan_has_warmup:
            plan_json, _ = run.plan(["--replicas", "1", "--trace", trace, "--duration", str(D),
                                     "--warmup-seconds", str(W), "--window-seconds", str(D)],
                                    "plan_const%d" % i)
            pw = plan_json["windows"]
            pred = {"p50_ms": plan_json["p50_ms"], "p99_ms": plan_json["p99_ms"],
                    "refused": sum(w["rejected"] for w in pw),
                    "requests": sum(w["requests"] for w in pw)}
        else:
            # No warm-up in this plan: replay W + D in windows of W and take the windows after
            # the first (at a constant rate they are the same after the queue settled).
            plan_json, _ = run.plan(["--replicas", "1", "--trace", trace, "--duration",
                                     str(W + D), "--window-seconds", str(W)], "plan_const%d" % i)
            pw = plan_json["windows"][1:]
            acc = [max(w["requests"] - w["rejected"], 1e-9) for w in pw]
            pred = {"p50_ms": sum(w["p50_ms"] * x for w, x in zip(pw, acc)) / sum(acc),
                    "p99_ms": sum(w["p99_ms"] * x for w, x in zip(pw, acc)) / sum(acc),
                    "refused": sum(w["rejected"] for w in pw),
                    "requests": sum(w["requests"] for w in pw)}
        time.sleep(1)
        t_start = time.time()
        summary, samples = run.bench(url, ["--mode", "open", "--rate", str(rate), "--duration",
                                           str(D), "--warmup", str(W), "--seed", str(i + 1)],
                                     "const%d" % i)
        meas = summarize_samples(samples)
        row = {"load": frac, "rate": rate, "control": control, "predicted": pred,
               "measured": meas,
               "p50_error_pct": rel_err(pred["p50_ms"], meas["p50_ms"]),
               "p99_error_pct": rel_err(pred["p99_ms"], meas["p99_ms"]),
               "generator_lag_p99_ms": summary.get("lag_p99_ms"),
               "cpu": run.cpu.cores(t_start + W, time.time())}
        rows.append(row)
        print("  load %.0f %% (%.1f req/s): predicted p50 %.1f p99 %.1f refused %.0f; measured "
              "p50 %s p99 %s refused %d" % (100 * frac, rate, pred["p50_ms"], pred["p99_ms"],
                                            pred["refused"], meas["p50_ms"], meas["p99_ms"],
                                            meas["refused"]), file=sys.stderr)
    results["one_replica"] = rows
    run.procs.stop(server)
    results["startup_log"] = log
    print("Offered loads (open-loop Poisson, %g s warm-up + %g s measured; the replay: `plan "
          "--replicas 1 --trace <constant rate>`):\n" % (W, D))
    print("| load | req/s | p50 predicted / measured ms | error | p99 predicted / measured ms "
          "| error | refused predicted / measured | generator lag p99 ms | cores: ours / other work |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        p, m = r["predicted"], r["measured"]
        print("| %.0f %%%s | %.1f | %.1f / %s | %s | %.1f / %s | %s | %.0f / %d (of %d) | %.1f "
              "| %.2f / %.2f |" % (
            100 * r["load"], " (a profile step's rate)" if r["control"] else "", r["rate"],
            p["p50_ms"],
            "%.1f" % m["p50_ms"] if m["p50_ms"] is not None else "-", fmt_err(r["p50_error_pct"]),
            p["p99_ms"], "%.1f" % m["p99_ms"] if m["p99_ms"] is not None else "-",
            fmt_err(r["p99_error_pct"]), p["refused"], m["refused"], m["requests"],
            r["generator_lag_p99_ms"] or 0, r["cpu"]["ours"], r["cpu"]["others"]))
    print()


HAPROXY_CFG = """global
    maxconn 4096
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 1s
    retries 2
    option redispatch
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /health
    default-server inter 250ms fastinter 250ms downinter 250ms fall 1 rise 1
{servers}
"""

HPA = """apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: tideserve
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: tideserve
  minReplicas: 1
  maxReplicas: {max_replicas}
  metrics:
    - type: Pods
      pods:
        metric:
          name: tideserve_requests_per_second
        target:
          type: AverageValue
          averageValue: "{target}"
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      selectPolicy: Max
      policies:
        - type: Pods
          value: 1
          periodSeconds: 5
    scaleDown:
      stabilizationWindowSeconds: 30
      selectPolicy: Min
      policies:
        - type: Pods
          value: 1
          periodSeconds: 10
"""


def haproxy_cmd(sock_path, command):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall((command + "\n").encode())
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out.decode()


def server_states(sock_path):
    """{server name: operational state} (show servers state: 0 stopped, 2 running)."""
    out = haproxy_cmd(sock_path, "show servers state be")
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 6 and parts[0].isdigit():
            states[parts[3]] = (int(parts[5]), int(parts[6]))  # srv_op_state, srv_admin_state
    return states


def part_two(run, cfg, results):
    a = run.args
    capacity = results["capacity_rps"]
    T, step = cfg["trace_s"], cfg["trace_step"]
    low, peak = cfg["trace_low"] * capacity, cfg["trace_peak"] * capacity
    # low -> peak -> low: a raised cosine over the middle of the run, low at both ends.
    points = []
    for t in range(0, int(T), int(step)):
        x = (t + step / 2) / T
        bump = 0.5 - 0.5 * math.cos(2 * math.pi * x)
        points.append((t, low + (peak - low) * bump ** 1.5))
    trace = run.path("tidal.csv")
    write_trace(trace, points)
    target = round(cfg["target"] * capacity)
    hpa = run.path("hpa.yaml")
    with open(hpa, "w") as f:
        f.write(HPA.format(max_replicas=cfg["max_replicas"], target=target))
    window = cfg["window"]
    plan_flags = ["--manifests", hpa, "--hpa", "tideserve", "--trace", trace, "--duration", str(T),
                  "--signal", "tideserve_requests_per_second=rps", "--sync-period", "5",
                  "--scrape-interval", "5", "--resource-interval", "5", "--rate-window", "15",
                  "--adapter-lag", "5", "--scheduling-seconds", "0", "--startup-log",
                  results["startup_log"], "--window-seconds", str(window)]
    if run.plan_has_warmup:
        plan_flags += ["--warmup-seconds", "0"]  # the real run starts from t = 0 too
    plan_json, plan_out = run.plan(plan_flags, "plan_tidal")
    decisions = [(s["t_s"], s["to"]) for s in plan_json["syncs"] if s["to"] != s["from"]]
    results["tidal"] = {"trace": points, "hpa_target_rps": target, "plan_flags": plan_flags,
                        "decisions": decisions}
    print("## Replicas behind HAProxy, following the replay's scale decisions\n")
    print("Trace: %d s, %.0f -> %.0f -> %.0f req/s (steps of %g s); HPA min 1 max %d on "
          "tideserve_requests_per_second, AverageValue %d (%.0f %% of a replica's %.0f req/s)\n" % (
              T, low, peak, low, step, cfg["max_replicas"], target, 100 * cfg["target"], capacity))
    print("Replay's decisions: %s\n" % (", ".join("t=%g s -> %d" % d for d in decisions) or "none"))

    n_slots = cfg["max_replicas"]
    ports = [free_port() for _ in range(n_slots)]
    hport = free_port()
    sock = run.path("haproxy.sock")
    servers = "\n".join("    server s%d 127.0.0.1:%d check%s" % (i + 1, p, "" if i == 0 else
                                                                 " disabled")
                        for i, p in enumerate(ports))
    cfg_path = run.path("haproxy.cfg")
    with open(cfg_path, "w") as f:
        f.write(HAPROXY_CFG.format(sock=sock, port=hport, servers=servers))
    replicas = [None] * n_slots  # (proc, log, started_at) per slot
    events = []  # (t, what)
    t0_box = {}

    def start_slot(i):
        p, log = run.serve(ports[i], "replica%d_%d" % (i + 1, len(events)))
        replicas[i] = (p, log, time.time())
        threading.Thread(target=bring_up, args=(i, p, log, time.time()), daemon=True).start()

    def bring_up(i, p, log, spawned):
        # Like a readiness gate: into the backend once the server says it serves; HAProxy's
        # own check (every 250 ms) then keeps it there while /health answers 200.
        try:
            wait_serving(p, log, timeout=30)
        except RuntimeError:
            return
        if replicas[i] is None or replicas[i][0] is not p:
            return
        haproxy_cmd(sock, "set server be/s%d state ready" % (i + 1))
        ready_times.append(time.time() - spawned)
        events.append((time.time() - t0_box["t0"], "s%d in service" % (i + 1)))

    def stop_slot(i):
        p, log, _ = replicas[i]
        haproxy_cmd(sock, "set server be/s%d state maint" % (i + 1))
        run.procs.signal(p, signal.SIGTERM)  # drains what it holds, then exits
        replicas[i] = None

    # The first replica, HAProxy, and both ready before the clock starts.
    p, log = run.serve(ports[0], "replica1_0")
    replicas[0] = (p, log, time.time())
    wait_serving(p, log)
    haproxy = run.procs.spawn([a.haproxy, "-f", cfg_path, "-db"], run.path("haproxy.log"))
    deadline = time.time() + 20
    while True:
        try:
            if server_states(sock).get("s1", (0, 0))[0] == 2:
                break
        except OSError:
            pass
        if time.time() > deadline or haproxy.poll() is not None:
            raise RuntimeError("haproxy did not come up: %s" % run.path("haproxy.log"))
        time.sleep(0.1)

    ready_times = []  # spawn -> HAProxy UP, seconds
    stop_event = threading.Event()

    def follower():
        current = 1
        for t_s, n in decisions:
            while not stop_event.is_set():
                left = t0_box["t0"] + t_s - time.time()
                if left <= 0:
                    break
                stop_event.wait(min(left, 0.2))
            if stop_event.is_set():
                return
            while current < n:
                start_slot(current)
                events.append((time.time() - t0_box["t0"], "start s%d" % (current + 1)))
                current += 1
            while current > n:
                current -= 1
                stop_slot(current)
                events.append((time.time() - t0_box["t0"], "stop s%d" % (current + 1)))

    url = "http://127.0.0.1:%d" % hport
    # The first replica warmed through HAProxy at the trace's first rate (a replica that has been
    # serving, as the replay's is at t = 0; a fresh process and fresh connections are slower for
    # their first seconds).
    run.bench(url, ["--mode", "open", "--rate", "%.1f" % points[0][1], "--duration", "8"],
              "tidal_warmup")
    js, samples_path = run.path("tidal_bench.json"), run.path("tidal_bench.csv")
    argv = [a.tideserve, "bench", "--url", url, "--route", "/embed", "--texts", run.texts, "-c",
            str(CONNECTIONS), "--mode", "open", "--schedule", trace, "--duration", str(T),
            "--json", js, "--samples", samples_path, "--quiet"]
    load_before = os.getloadavg()[0]
    bench = run.procs.spawn(argv, run.path("tidal_bench.log"))
    t0_box["t0"] = time.time()
    thread = threading.Thread(target=follower, daemon=True)
    thread.start()
    try:
        bench.wait(T + 300)
    finally:
        stop_event.set()
        thread.join(10)
    if bench.returncode != 0:
        raise RuntimeError("bench through HAProxy failed: %s" % run.path("tidal_bench.log"))
    load_after = os.getloadavg()[0]
    samples = read_samples(samples_path)
    for r in replicas:
        if r:
            run.procs.stop(r[0])
    run.procs.stop(haproxy)

    # Per window: the replay's against the measured.
    rows = []
    for w in plan_json["windows"]:
        start, end = w["t_s"], w["t_s"] + window
        m = summarize_samples(samples, start, end)
        cpu = run.cpu.cores(t0_box["t0"] + start, t0_box["t0"] + end)
        pred_p99 = w["p99_ms"] if w["requests"] > w["rejected"] else None
        rows.append({"t_s": start, "offered_rps": w["offered_rps"],
                     "measured_offered_rps": m["requests"] / window, "replicas": w["ready"],
                     "pods": w["pods"], "predicted_p50_ms": w["p50_ms"],
                     "predicted_p99_ms": pred_p99, "measured_p50_ms": m["p50_ms"],
                     "measured_p99_ms": m["p99_ms"], "predicted_refused": w["rejected"],
                     "measured_refused": m["refused"], "measured_other_errors": m["other_errors"],
                     "p50_error_pct": rel_err(w["p50_ms"], m["p50_ms"]),
                     "p99_error_pct": rel_err(pred_p99, m["p99_ms"]), "cpu": cpu})
    unsat = [abs(r["p99_error_pct"]) for r in rows if r["p99_error_pct"] is not None and
             r["predicted_p99_ms"] < SLO_MS and r["measured_p99_ms"] < SLO_MS]
    unsat50 = [abs(r["p50_error_pct"]) for r in rows if r["p50_error_pct"] is not None and
               r["predicted_p99_ms"] is not None and r["predicted_p99_ms"] < SLO_MS and
               r["measured_p99_ms"] < SLO_MS]
    total = summarize_samples(samples)
    results["tidal"].update({
        "windows": rows, "events": events, "replica_ready_s": ready_times,
        "median_abs_p99_error_pct": statistics.median(unsat) if unsat else None,
        "median_abs_p50_error_pct": statistics.median(unsat50) if unsat50 else None,
        "refused_predicted": plan_json["rejected"], "refused_measured": total["refused"],
        "requests_measured": total["requests"], "requests_predicted": plan_json["requests"],
        "other_errors_measured": total["other_errors"], "load_average": [load_before, load_after],
        "p99_predicted_ms": plan_json["p99_ms"], "p99_measured_ms": total["p99_ms"],
        "p50_predicted_ms": plan_json["p50_ms"], "p50_measured_ms": total["p50_ms"]})
    print("Real run: replica starts and stops at %s; spawn to serving (then in HAProxy): %s s\n" % (
        ", ".join("%.1f s %s" % e for e in sorted(events)) or "-",
        ", ".join("%.2f" % x for x in ready_times) or "-"))
    print("| window s | offered req/s (trace / sent) | replicas | p50 predicted / measured ms | "
          "p99 predicted / measured ms | p99 error | refused predicted / measured | cores: ours / "
          "other work |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| %g-%g | %.0f / %.0f | %d | %.1f / %s | %s / %s | %s | %.0f / %d | %s |" % (
            r["t_s"], r["t_s"] + window, r["offered_rps"], r["measured_offered_rps"], r["replicas"],
            r["predicted_p50_ms"], "-" if r["measured_p50_ms"] is None else
            "%.1f" % r["measured_p50_ms"],
            "-" if r["predicted_p99_ms"] is None else "%.1f" % r["predicted_p99_ms"],
            "-" if r["measured_p99_ms"] is None else "%.1f" % r["measured_p99_ms"],
            fmt_err(r["p99_error_pct"]), r["predicted_refused"], r["measured_refused"],
            "%.2f / %.2f" % (r["cpu"]["ours"], r["cpu"]["others"]) if r["cpu"] else "-"))
    t = results["tidal"]
    print("\nWhole run: p50 %.1f / %.1f ms, p99 %.1f / %.1f ms (predicted / measured); refused "
          "%.0f / %d of %d; other errors %d." % (
              t["p50_predicted_ms"], t["p50_measured_ms"] or 0, t["p99_predicted_ms"],
              t["p99_measured_ms"] or 0, t["refused_predicted"], t["refused_measured"],
              t["requests_measured"], t["other_errors_measured"]))
    print("Median |error| over the %d windows within the SLO on both sides: p99 %s, p50 %s. "
          "Load average %.2f before, %.2f after.\n" % (
              len(unsat), "%.0f %%" % t["median_abs_p99_error_pct"] if unsat else "-",
              "%.0f %%" % t["median_abs_p50_error_pct"] if unsat50 else "-",
              load_before, load_after))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tideserve", required=True)
    parser.add_argument("--model", default=os.path.join("models", "tideserve-tiny-zh"))
    parser.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    parser.add_argument("--out", default="plan_validation.json", help="JSON of the results")
    parser.add_argument("--quick", action="store_true",
                        help="fewer loads, shorter steps and a 2-minute trace (~3-4 minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--skip-haproxy", action="store_true", help="part 1 only")
    parser.add_argument("--peak", type=float, default=1.35,
                        help="the tidal trace's peak, times a replica's capacity (1.35)")
    args = parser.parse_args()
    args.tideserve = os.path.abspath(args.tideserve)
    if args.quick:
        cfg = dict(profile_start=50, profile_step=1.3, profile_step_s=5, warmup=4, duration=12,
                   loads=[0.5, 0.875, 1.2], trace_s=120, trace_step=5, window=20)
    else:
        cfg = dict(profile_start=40, profile_step=1.25, profile_step_s=20, warmup=8, duration=40,
                   loads=[0.5, "step", 0.875, 1.2], trace_s=360, trace_step=10, window=20)
    cfg.update(trace_low=0.3, trace_peak=args.peak, target=0.65, max_replicas=3)
    started = time.time()
    work = tempfile.mkdtemp(prefix="tideserve-plan-validate-")
    run = Run(args, work)
    run.cpu = CpuSampler(run.procs)
    results = {"config": cfg, "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                         time.gmtime()),
               "load_average_start": os.getloadavg(), "plan_warmup_flag": run.plan_has_warmup}
    print("# tideserve plan against real runs, %s, %d CPUs, load average %.2f\n" % (
        results["date"], os.cpu_count(), os.getloadavg()[0]))
    ok = False
    try:
        part_one(run, cfg, results)
        if not args.skip_haproxy:
            part_two(run, cfg, results)
        ok = True
    finally:
        run.cpu.stop.set()
        run.procs.stop_all()
        results["wall_s"] = time.time() - started
        results["load_average_end"] = os.getloadavg()
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        if args.keep:
            print("kept %s" % work, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("wall time %.0f s; results: %s" % (results["wall_s"], args.out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
