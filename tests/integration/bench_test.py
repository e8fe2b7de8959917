#!/usr/bin/python3
"""`tideserve bench` against the real server: closed and open loops on every body template, the
statuses it counts against the server's own /metrics, the open loop's achieved rate and
schedule, the capacity profile's JSON, and no progress line when stderr is not a TTY.

    bench_test.py PATH_TO_TIDESERVE [--only CLASS] [--exclude CLASS] [unittest args]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None


class BenchTest(th.ServerCase, unittest.TestCase):
    server_args = ("--max-concurrent-requests", "64")

    def bench(self, *args):
        out = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
        out.close()
        self.addCleanup(os.unlink, out.name)
        cmd = [BINARY, "bench", "--url", "http://127.0.0.1:%d" % self.server.port,
               "--json", out.name, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=th.clean_env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("\r", r.stderr, "a progress line without a TTY")
        with open(out.name) as f:
            return json.load(f), r

    def requests_seen(self, route, code="200"):
        status, _, body = self.server.request("GET", "/metrics")
        return th.metric(th.parse_prometheus(body.decode()), "tideserve_requests_total",
                         route=route, code=code) or 0

    def test_closed_loop_on_every_template(self):
        for route in ("/embed", "/predict", "/v1/embeddings", "/v2/models/%s/infer" % th.MODEL_ID):
            before = self.requests_seen(route.replace(th.MODEL_ID, "{name}"))
            summary, r = self.bench("--route", route, "--mode", "closed", "-c", "4",
                                    "--duration", "1.5", "--model", th.MODEL_ID, "--batch", "2")
            self.assertEqual(summary["errors"], 0, r.stdout)
            self.assertGreater(summary["requests"], 20)
            self.assertEqual(summary["by_status"], {"200": summary["requests"]})
            self.assertLessEqual(summary["p50_ms"], summary["p99_ms"])
            self.assertLessEqual(summary["p99_ms"], summary["max_ms"])
            # The server answered at least what the generator counted (plus nothing measured
            # outside the window: the last answers after it).
            seen = self.requests_seen(route.replace(th.MODEL_ID, "{name}")) - before
            self.assertGreaterEqual(seen, summary["requests"])
            self.assertLessEqual(seen, summary["requests"] + 8)
            self.assertIn("| %s | closed, 4 clients |" % route, r.stdout)

    def test_errors_are_counted_by_status(self):
        summary, r = self.bench("--route", "/v1/embeddings", "--model", "no-such-model",
                                "-c", "2", "--duration", "1")
        self.assertGreater(summary["requests"], 0)
        self.assertEqual(summary["errors"], summary["requests"])
        self.assertEqual(list(summary["by_status"]), ["404"])
        self.assertIn("404: %d" % summary["requests"], r.stdout)

    def test_open_loop_keeps_its_rate(self):
        summary, r = self.bench("--route", "/embed", "--mode", "open", "--rate", "60",
                                "--arrival", "constant", "--duration", "3", "--warmup", "0.5")
        self.assertEqual(summary["mode"], "open")
        self.assertAlmostEqual(summary["offered_rate"], 60, delta=1)
        self.assertAlmostEqual(summary["throughput"], 60, delta=6)
        self.assertEqual(summary["errors"], 0)
        self.assertEqual(summary["not_sent"], 0)
        self.assertLess(summary["lag_p99_ms"], summary["p99_ms"] + 50)
        self.assertIn("generator lag behind its schedule", r.stdout)

    def test_open_loop_follows_a_rate_schedule(self):
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write("time_s,rate\n0,20\n1,80\n2,0\n")
        self.addCleanup(os.unlink, f.name)
        summary, _ = self.bench("--route", "/predict", "--schedule", f.name, "--arrival",
                                "constant", "--duration", "3")
        # 20 + 80 + 0 arrivals over the three seconds.
        self.assertEqual(summary["requests"], 100)
        self.assertAlmostEqual(summary["offered_rate"], 100 / 3, delta=0.5)

    def test_profile_steps_until_the_slo_breaks(self):
        out = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
        out.close()
        self.addCleanup(os.unlink, out.name)
        r = subprocess.run([BINARY, "bench", "--url", "http://127.0.0.1:%d" % self.server.port,
                            "--route", "/embed", "--profile", out.name, "--slo-p99-ms", "1",
                            "--profile-start-rate", "20", "--profile-step", "2",
                            "--profile-step-seconds", "1", "--profile-max-steps", "3"],
                           capture_output=True, text=True, timeout=120, env=th.clean_env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(out.name) as f:
            profile = json.load(f)
        self.assertEqual(profile["slo_p99_ms"], 1)
        steps = profile["steps"]
        self.assertTrue(1 <= len(steps) <= 3)
        # Poisson arrivals at 20/s over a one-second step: within four standard deviations.
        self.assertAlmostEqual(steps[0]["offered_rate"], 20, delta=4 * 20 ** 0.5)
        # The last step is the one that broke the SLO (or the third).
        self.assertTrue(not steps[-1]["within_slo"] or len(steps) == 3)
        for s in steps:
            self.assertGreater(s["mean_batch_size"], 0)
            # Goodput counts only the 2xx answers completed within the step.
            self.assertGreater(s["goodput"], 0)
            self.assertLessEqual(s["goodput"], s["throughput"] + 1e-9)
            # The server's CPU over the step from process_cpu_seconds_total: it worked, and one
            # 2-core machine cannot give it more than its cores.
            self.assertGreater(s["cpu_cores"], 0.01)
            self.assertLess(s["cpu_cores"], os.cpu_count() + 0.5)
            self.assertGreater(s["memory_bytes"], 10 << 20)
        self.assertIn("capacity within p99 <= 1 ms", r.stdout)

    def test_bodies_and_texts_from_files(self):
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write('{"inputs": "hello 世界"}\n\n{"inputs": ["a", "b"]}\n')
        self.addCleanup(os.unlink, f.name)
        before = self.requests_seen("/tokenize")
        summary, _ = self.bench("--route", "/tokenize", "--bodies", f.name, "-c", "2",
                                "--duration", "1")
        self.assertEqual(summary["errors"], 0)
        self.assertGreaterEqual(self.requests_seen("/tokenize") - before, summary["requests"])
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as t:
            t.write("第一句\nsecond line\n")
        self.addCleanup(os.unlink, t.name)
        summary, _ = self.bench("--route", "/embed", "--texts", t.name, "--batch", "3", "-c", "2",
                                "--duration", "1")
        self.assertEqual(summary["errors"], 0)
        r = subprocess.run([BINARY, "bench", "--texts", os.devnull, "--duration", "1"],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no text", r.stderr)

    def test_bad_arguments_say_why(self):
        r = subprocess.run([BINARY, "bench", "--url", "ftp://x", "--duration", "1"],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("only http://", r.stderr)
        r = subprocess.run([BINARY, "bench", "--route", "/rerank", "--duration", "1"],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--bodies", r.stderr)


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
