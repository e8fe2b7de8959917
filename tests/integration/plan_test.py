#!/usr/bin/env python3
"""Drives `tideserve plan` from outside on the repository's own manifests: a replay of the base
HPA and the KEDA ScaledObject on a tidal day, the plot rendered to pixels by rsvg-convert, the
recommendation search, the controller alone on a CSV of metric values (a case worked by hand
from the Kubernetes v1.31 controller), and the errors. Standard library only.

usage: plan_test.py PATH_TO_TIDESERVE [--only CLASS] [--exclude CLASS] [unittest names]
       (run from the repository root)
"""
import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None
HPA = os.path.join("deploy", "k8s", "base", "autoscaling", "hpa.yaml")
DEPLOYMENT = os.path.join("deploy", "k8s", "base", "workload", "deployment.yaml")
SCALED_OBJECT = os.path.join("deploy", "k8s", "overlays", "keda", "scaledobject.yaml")

# A replica as a capacity profile describes it (the JSON `tideserve bench --profile` writes):
# steady up to 40 req/s, saturated at 48, 0.04 cores per req/s. Made here so that the replay's
# answers do not depend on this machine's speed.
PROFILE = {
    "url": "http://127.0.0.1:8000", "route": "/embed", "slo_p99_ms": 250, "capacity_rps": 40,
    "steps": [
        {"offered_rate": r, "throughput": t, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
         "p999_ms": p99 * 1.3, "requests": int(r * 10), "errors": 0, "cpu_cores": cpu,
         "memory_bytes": 400e6, "within_slo": p99 <= 250}
        for r, t, p50, p90, p99, cpu in [(5, 5, 12, 15, 20, 0.2), (20, 20, 14, 20, 30, 0.8),
                                         (40, 40, 25, 45, 80, 1.6),
                                         (60, 48, 800, 1500, 2000, 1.9)]],
}


def run(*args, timeout=300):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=timeout,
                          env=th.clean_env())


def png_pixels(path):
    """(width, height, rows of RGBA tuples) of an 8-bit RGBA or RGB PNG, decoded with zlib."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * channels:x * channels + 3]) for x in range(width)])
        prev = line
    return width, height, rows


class PlanTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="plan-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.profile = self.path("profile.json")
        with open(self.profile, "w") as f:
            json.dump(PROFILE, f)

    def path(self, name):
        return os.path.join(self.dir, name)

    def plan(self, *args):
        out = self.path("out.json")
        r = run("plan", "--profile", self.profile, "--json", out, *args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(out) as f:
            return json.load(f), r.stdout

    def test_the_base_hpa_follows_a_tidal_day_within_its_bounds(self):
        trace = self.path("trace.csv")
        result, stdout = self.plan("--manifests", HPA, DEPLOYMENT, "--write-trace", trace,
                                   "--svg", self.path("day.svg"), "--csv", self.path("w.csv"))
        # Every request of the trace is replayed: the sum of rate x step.
        with open(trace) as f:
            rows = [(float(t), float(r)) for t, r in list(csv.reader(f))[1:]]
        ends = [t for t, _ in rows[1:]] + [86400.0]
        offered = sum(rate * (end - t) for (t, rate), end in zip(rows, ends))
        self.assertAlmostEqual(result["requests"], offered, delta=1e-4 * offered)
        windows = result["windows"]
        self.assertEqual(len(windows), 1440)  # a day of minutes
        # Within minReplicas 2 and maxReplicas 10, more pods at the morning peak (10:30) than at
        # the night trough (03:00).
        self.assertTrue(all(2 <= w["pods"] <= 10 for w in windows))
        self.assertGreater(windows[630]["pods"], windows[180]["pods"])
        # The peak (about 200 req/s) needs 5 replicas of 40: the replica-hours lie between a
        # day at the minimum and a day at the maximum.
        self.assertGreaterEqual(max(w["pods"] for w in windows), 5)
        self.assertTrue(2 * 24 < result["replica_hours"] < 10 * 24, result["replica_hours"])
        # A scale change is reported with the controller's reason.
        self.assertTrue(result["syncs"])
        self.assertTrue(all(s["reason"] for s in result["syncs"]))
        # Each change carries what the three metrics were seen as (cpu and memory as percent of
        # the requests, the p99 in milli-seconds).
        self.assertTrue(all(len(s["metrics"]) == 3 for s in result["syncs"]))
        ups = [s for s in result["syncs"] if s["to"] > s["from"] and None not in s["metrics"]]
        self.assertTrue(ups)
        self.assertTrue(all(0 <= s["metrics"][0] <= 200 for s in ups))
        self.assertIn("| manifests |", stdout)
        with open(self.path("w.csv")) as f:
            self.assertEqual(len(f.read().strip().split("\n")), 1441)

    def test_the_plot_renders_to_pixels(self):
        rsvg = shutil.which("rsvg-convert")
        if rsvg is None:
            self.skipTest("rsvg-convert not installed (Debian librsvg2-bin)")
        svg = self.path("day.svg")
        self.plan("--manifests", HPA, DEPLOYMENT, "--svg", svg)
        png = self.path("day.png")
        r = subprocess.run([rsvg, "-o", png, svg], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        width, height, rows = png_pixels(png)
        # Three panels of 220 px under a 40 px title, 46 px of time axis: 1200 x 746.
        self.assertEqual((width, height), (1200, 746))
        ink = sum(1 for row in rows for px in row if px != (255, 255, 255))
        self.assertGreater(ink, 0.02 * width * height)
        self.assertLess(ink, 0.6 * width * height)
        # The traffic's colour in the top panel, the replicas' in the middle one.
        def count(color, top, bottom):
            return sum(1 for row in rows[top:bottom] for px in row
                       if all(abs(a - b) < 24 for a, b in zip(px, color)))
        self.assertGreater(count((0x1f, 0x77, 0xb4), 40, 260), 500)
        self.assertGreater(count((0x98, 0xdf, 0x8a), 260, 480), 300)

    def test_the_keda_cron_trigger_holds_six_replicas_through_the_working_day(self):
        # The ScaledObject's cron trigger: at least 6 from 08:30 to 21:30 Asia/Shanghai. The
        # day starts at 00:00 there; KEDA's HPA reads the cron metric (6) at its next 15 s sync
        # and new pods pay 40 s of start-up, so every window from 08:32 on has 6 pods.
        result, _ = self.plan("--manifests", SCALED_OBJECT, DEPLOYMENT, "--start",
                              "2026-11-30T00:00", "--tidal-trough-rps", "5")
        windows = result["windows"]
        for m in range(8 * 60 + 32, 21 * 60 + 30):
            self.assertGreaterEqual(windows[m]["pods"], 6, m)
        # Before it, the night's 5 req/s needs the minimum (2).
        self.assertEqual(windows[4 * 60]["pods"], 2)
        # After 21:30 the floor is lifted: the scale-down (a 5 minute window, then 20 % a
        # minute) is below 6 before midnight.
        self.assertLess(windows[23 * 60 + 50]["pods"], 6)

    def test_a_recommendation_meets_the_slo_at_no_more_replica_hours(self):
        result, stdout = self.plan("--manifests", HPA, DEPLOYMENT, "--duration", "21600",
                                   "--cpu-request", "2", "--recommend")
        rec = result["recommended"]
        self.assertTrue(result["feasible"], stdout)
        self.assertEqual(rec["violation_minutes"], 0)
        self.assertLessEqual(rec["replica_hours"], result["replica_hours"] + 1e-9)
        self.assertIn("configurations replayed", stdout)
        if result["changes"]:
            self.assertLess(rec["replica_hours"], result["replica_hours"])

    def test_the_controller_alone_on_metric_values(self):
        # The base HPA (cpu 70 %, memory 80 %, p99 250m; up: max(100 %, 4 pods) per 15 s, no
        # window; down: a 300 s window, 20 % per 60 s) over the Deployment's requests (cpu 2,
        # memory 2Gi), from 2 replicas. Per row (Kubernetes v1.31, replica_calculator.go and
        # horizontal.go):
        #  t=0   cpu 2 x 1400m / 2 x 2000m = 70 % -> ratio 1.0, within tolerance: 2; memory
        #        50 % -> ceil(2 x 0.625) = 2; p99 100m/250m -> ceil(0.8) = 1; max 2.
        #  t=15  cpu 105 % -> ratio 1.5 -> ceil(3.0) = 3; p99 300m -> ceil(2 x 1.2) = 3; up limit
        #        max(2 + 100 %, 2 + 4) = 6: 3.
        #  t=30  cpu 210 % -> ratio 3 -> ceil(3 x 3) = 9; the t=15 event sits on the 15 s period's
        #        edge and does not count: limit max(3 x 2, 3 + 4) = 7.
        #  t=45  cpu 35 % -> ceil(7 x 0.5) = 4; memory ceil(7 x 0.625) = 5; p99 100m -> 3: 5;
        #        but the down window's max recommendation (9 at t=30) keeps 7.
        #  t=400 the recommendations of t <= 100 left the window: 5; the down policy allows
        #        int32(7 x 0.8) = 5: 5.
        metrics = self.path("metrics.csv")
        with open(metrics, "w") as f:
            f.write("time_s,cpu,memory,tideserve_request_latency_p99\n"
                    "0,1400m,1Gi,0.1\n15,2100m,1Gi,0.3\n30,4200m,1Gi,0.3\n45,700m,1Gi,0.1\n"
                    "400,700m,1Gi,0.1\n")
        r = run("plan", "controller", "--manifests", HPA, DEPLOYMENT, "--metrics", metrics,
                "--initial-replicas", "2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        self.assertEqual([int(x["replicas"]) for x in rows], [2, 3, 7, 7, 5], r.stdout)
        self.assertEqual([int(x["metric_replicas"]) for x in rows], [2, 3, 9, 5, 5], r.stdout)
        self.assertIn("ScaleUpLimit", rows[2]["reason"])

    def test_errors_are_one_line_and_name_the_problem(self):
        r = run("plan", "--manifests", HPA, DEPLOYMENT)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--profile", r.stderr)
        r = run("plan", "--profile", self.profile, "--manifests", HPA, DEPLOYMENT, "--signal",
                "x=bogus")
        self.assertEqual(r.returncode, 1)
        self.assertIn("signal 'bogus'", r.stderr)
        r = run("plan", "--profile", self.profile, "--manifests", HPA, SCALED_OBJECT, DEPLOYMENT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--hpa or --scaled-object", r.stderr)
        broken = self.path("broken.yaml")
        with open(broken, "w") as f:
            f.write("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: "
                    "x}\nspec:\n  scaleTargetRef: {kind: Deployment, name: x}\n  maxReplicas: 3\n  metrics:\n    - type: Pods\n      pods:\n"
                    "        metric: {name: m}\n        target: {type: AverageValue, "
                    "averageValue: lots}\n")
        r = run("plan", "--profile", self.profile, "--manifests", broken)
        self.assertEqual(r.returncode, 1)
        self.assertIn("averageValue", r.stderr)
        self.assertEqual(len(r.stderr.strip().split("\n")), 1, r.stderr)


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
