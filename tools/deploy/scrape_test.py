#!/usr/bin/env python3
"""Checks the monitoring assets against a real, running tideserve.

  tools/deploy/scrape_test.py metrics    [--binary PATH]   (CTest: deploy_promtool_metrics)
  tools/deploy/scrape_test.py prometheus [--binary PATH]   (CTest: deploy_prometheus_scrape)

Both start `tideserve serve` with the bundled model on a free loopback port and send it traffic.

metrics: `promtool check metrics` on a real /metrics scrape, and the exported metric families
  must be exactly deploy/validate/server-metrics.txt (the list the static checks trust).
prometheus: Debian's `prometheus` on loopback scrapes the server every second, with the labels
  the Prometheus Operator's ServiceMonitor adds (namespace, service, pod) and with the recording
  rules and alerts of deploy/k8s/monitoring/prometheusrule.yaml loaded (group intervals shortened
  to 1 s). Under load the per-pod p99 series must appear with the namespace and pod labels, the
  query prometheus-adapter sends for the HPA metric (its metricsQuery, expanded as the adapter
  does) must return a finite value for the pod, and every rule must evaluate without error.

Until the binary has a `serve` subcommand both fail (they do not skip).
"""
import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(REPO, "models", "tideserve-tiny-zh")
RULES = os.path.join(REPO, "deploy", "k8s", "monitoring", "prometheusrule.yaml")
ADAPTER = os.path.join(REPO, "deploy", "k8s", "monitoring", "prometheus-adapter-config.yaml")
METRICS_LIST = os.path.join(REPO, "deploy", "validate", "server-metrics.txt")
LABELS = {"namespace": "tideserve", "service": "tideserve", "pod": "tideserve-scrape-test-0"}


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
        return None, str(e)


def wait_for(what, fn, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = fn()
        if ok:
            return last
        time.sleep(0.5)
    raise Failure(f"{what}: not after {timeout} s (last: {str(last)[:500]})")


def find_binary(arg):
    candidates = [arg] if arg else [os.path.join(REPO, "build", "release", "tideserve"),
                                    os.path.join(REPO, "build", "release", "src", "tideserve", "cli", "tideserve")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise Failure(f"no tideserve binary ({', '.join(candidates)}): run make build")


def require_serve(binary):
    r = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=False)
    if r.returncode != 0 or "--port" not in r.stdout + r.stderr:
        raise Failure(f"{binary} has no `serve` subcommand yet (`tideserve serve --help` exit {r.returncode}): "
                      "this check needs the HTTP server")


class Server:
    def __init__(self, binary, workdir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, MODEL_NAME=MODEL, PORT=str(self.port), HOST="127.0.0.1",
                   DRAIN_DELAY="0", LOG_LEVEL="warning")
        self.log = open(os.path.join(workdir, "tideserve.log"), "w")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for("tideserve ready", self._ready, 60)

    def _ready(self):
        if self.proc.poll() is not None:
            raise Failure(f"tideserve serve exited with {self.proc.returncode}: {self.tail()}")
        status, body = http(self.url + "/v2/health/ready", timeout=2)
        return status == 200, body

    def tail(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def load(server, seconds, threads=4):
    """Requests of varied length on the inference routes from a few threads."""
    stop = time.monotonic() + seconds
    errors = []

    def worker(n):
        i = 0
        while time.monotonic() < stop:
            text = "今天天气很好" * (1 + (i + n) % 20)
            route, body = [("/predict", {"text": text}), ("/embed", {"inputs": [text, "你好"]}),
                           ("/v1/embeddings", {"input": text})][i % 3]
            status, resp = http(server.url + route, body)
            if status != 200:
                errors.append(f"{route}: {status} {resp[:200]}")
            i += 1

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise Failure(f"{len(errors)} requests failed under load, e.g. {errors[0]}")


def check_metrics(binary, workdir):
    server = Server(binary, workdir)
    try:
        load(server, 2)
        status, text = http(server.url + "/metrics")
        if status != 200:
            raise Failure(f"/metrics answered {status}")
        path = os.path.join(workdir, "metrics.txt")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise Failure(f"promtool check metrics:\n{r.stdout}{r.stderr}")
        print("ok   promtool check metrics on a real scrape")
        exported = {line.split()[2] for line in text.splitlines()
                    if line.startswith("# TYPE ") and line.split()[2].startswith("tideserve_")}
        with open(METRICS_LIST) as f:
            listed = {l.split("#")[0].strip() for l in f} - {""}
        if exported != listed:
            raise Failure(f"deploy/validate/server-metrics.txt disagrees with the scrape: "
                          f"exported but not listed {sorted(exported - listed)}, "
                          f"listed but not exported {sorted(listed - exported)}")
        print(f"ok   the {len(exported)} exported families are deploy/validate/server-metrics.txt")
        for needle in ['tideserve_request_duration_seconds_bucket{', 'le="0.0005"', 'le="30"', 'route="/predict"']:
            if needle not in text:
                raise Failure(f"the scrape has no {needle}")
        print("ok   request duration histogram by route, buckets 0.0005 s .. 30 s")
    finally:
        server.stop()


def prometheus_rules(workdir):
    with open(RULES) as f:
        rule = yaml.safe_load(f)
    groups = rule["spec"]["groups"]
    for g in groups:
        g["interval"] = "1s"
    path = os.path.join(workdir, "tideserve.rules.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"groups": groups}, f)
    return path, sum(len(g["rules"]) for g in groups)


def adapter_query():
    with open(ADAPTER) as f:
        cm = yaml.safe_load(f)
    rules = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    rule = next(r for r in rules if r["name"]["as"] == "tideserve_request_latency_p99")
    series = rule["seriesQuery"].split("{")[0].strip("'\" ")
    # As prometheus-adapter expands it for a Pods metric of one namespace's pods.
    matchers = f'namespace="{LABELS["namespace"]}",pod=~"{LABELS["pod"]}"'
    return (rule["metricsQuery"].replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", "pod"))


def check_prometheus(binary, workdir):
    if not shutil.which("prometheus"):
        raise Failure("prometheus not found (Debian package prometheus; tools/install-deps.sh)")
    server = Server(binary, workdir)
    prom = None
    try:
        rules_path, n_rules = prometheus_rules(workdir)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules_path],
            "scrape_configs": [{
                "job_name": "tideserve",
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"], "labels": LABELS}],
            }],
        }
        config_path = os.path.join(workdir, "prometheus.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        prom_port = free_port()
        prom_url = f"http://127.0.0.1:{prom_port}"
        prom_log = open(os.path.join(workdir, "prometheus.log"), "w")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={config_path}", f"--storage.tsdb.path={workdir}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=prom_log, stderr=subprocess.STDOUT)

        def prom_ready():
            if prom.poll() is not None:
                with open(prom_log.name) as f:
                    raise Failure(f"prometheus exited: {f.read()[-2000:]}")
            status, body = http(prom_url + "/-/ready", timeout=2)
            return status == 200, body
        wait_for("prometheus ready", prom_ready, 30)

        def query(q):
            status, body = http(prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
            if status != 200:
                raise Failure(f"query {q}: HTTP {status} {body[:300]}")
            return json.loads(body)["data"]["result"]

        def scraped():
            r = query('up{job="tideserve"}')
            return bool(r) and r[0]["value"][1] == "1", r
        wait_for("prometheus scraping tideserve (up == 1)", scraped, 30)
        print("ok   prometheus scrapes tideserve")

        loader = threading.Thread(target=load, args=(server, 25))
        loader.start()

        def p99_appears():
            r = query("tideserve:request_duration_seconds:p99_pod")
            good = [s for s in r if s["metric"].get("pod") == LABELS["pod"]
                    and s["metric"].get("namespace") == LABELS["namespace"]
                    and math.isfinite(float(s["value"][1]))]
            return bool(good), r
        series = wait_for("tideserve:request_duration_seconds:p99_pod with namespace and pod labels", p99_appears, 45)
        print(f"ok   p99 per pod under load: {series[0]['metric']} = {float(series[0]['value'][1]):.4f} s")
        q = adapter_query()
        r = query(q)
        if not r or r[0]["metric"].get("pod") != LABELS["pod"] or not math.isfinite(float(r[0]["value"][1])):
            raise Failure(f"prometheus-adapter's query {q} returns {r}")
        print(f"ok   prometheus-adapter's query for tideserve_request_latency_p99 returns pod "
              f"{r[0]['metric']['pod']}: {q}")
        for name in ["tideserve:request_duration_seconds:p99_service", "tideserve:requests:rate1m",
                     "tideserve:queue_depth:sum"]:
            if not query(name):
                raise Failure(f"recorded series {name} is missing")
        loader.join()

        status, body = http(prom_url + "/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        evaluated = [r for g in groups for r in g["rules"]]
        bad = [f"{r['name']}: {r.get('lastError')}" for r in evaluated if r.get("health") != "ok"]
        if len(evaluated) != n_rules or bad:
            raise Failure(f"{len(evaluated)}/{n_rules} rules loaded; unhealthy: {bad}")
        print(f"ok   all {n_rules} rules and alerts evaluate without error")
    finally:
        if prom is not None and prom.poll() is None:
            prom.terminate()
            try:
                prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prom.kill()
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["metrics", "prometheus"])
    parser.add_argument("--binary")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix=f"tideserve-scrape-{args.mode}-")
    started = time.monotonic()
    try:
        binary = find_binary(args.binary)
        require_serve(binary)
        (check_metrics if args.mode == "metrics" else check_prometheus)(binary, workdir)
    except Failure as e:
        print(f"FAIL {args.mode}: {e}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"PASS {args.mode} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
