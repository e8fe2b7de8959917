#!/usr/bin/python3
"""Floods and slow clients against the real server on the bundled model: many idle keep-alive
connections, slowloris (headers a byte at a time), slow bodies and a flood of large bodies. Other
clients' /health and /embed stay answered within a bound (the one measured is printed), slow
clients are cut off at the header timeout, file descriptors return to their count before the
flood, and the bytes of request bodies in flight never pass --max-inflight-bytes (429 beyond,
counted; peak RSS bounded). The RSS bounds are checked on the release build only: a sanitizer
build's RSS holds its shadow memory and quarantine.

    flood_test.py PATH_TO_TIDESERVE [--only CLASS] [--exclude CLASS] [unittest args]
"""
import json
import os
import socket
import statistics
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def timed(server, method, path, body=None):
    t0 = time.monotonic()
    status, _, data = server.request(method, path, body)
    return status, time.monotonic() - t0, data


def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


class SlowClientsTest(th.ServerCase, unittest.TestCase):
    server_args = ("--max-connections", "200", "--header-timeout", "3", "--idle-timeout", "60")

    def test_others_are_answered_while_slow_and_idle_clients_hold_connections(self):
        pid = self.server.proc.pid
        fds_before = fd_count(pid)
        rss_before = th.status_kb(pid, "VmRSS")
        idle, slow_headers, slow_bodies = [], [], []
        stop = threading.Event()
        try:
            # 100 idle keep-alive connections, each after one request.
            for _ in range(100):
                sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                self.assertEqual(th.read_response(sock)[0], 200)
                idle.append(sock)
            # 20 slowloris clients and 10 slow bodies, a byte every 0.2 s.
            head = b"POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            for _ in range(20):
                slow_headers.append(socket.create_connection(("127.0.0.1", self.server.port)))
            for _ in range(10):
                sock = socket.create_connection(("127.0.0.1", self.server.port))
                sock.sendall(head + b"Content-Length: 100000\r\n\r\n{\"inputs\": \"")
                slow_bodies.append(sock)

            def dribble():
                i = 0
                while not stop.is_set():
                    for sock in slow_headers:
                        try:
                            sock.send(head[i % len(head):i % len(head) + 1])
                        except OSError:
                            pass
                    for sock in slow_bodies:
                        try:
                            sock.send(b"a")
                        except OSError:
                            pass
                    i += 1
                    stop.wait(0.2)

            dribbler = threading.Thread(target=dribble)
            dribbler.start()
            health, embed = [], []
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                status, seconds, _ = timed(self.server, "GET", "/health")
                self.assertEqual(status, 200)
                health.append(seconds)
                status, seconds, _ = timed(self.server, "POST", "/embed",
                                           json.dumps({"inputs": ["今天天气很好", "hello"]}))
                self.assertEqual(status, 200)
                embed.append(seconds)
            print("\n  under 100 idle + 20 slowloris + 10 slow-body connections: /health p50 "
                  "%.1f ms p99 %.1f ms, /embed p50 %.1f ms p99 %.1f ms (%d each)"
                  % (statistics.median(health) * 1e3, p99(health) * 1e3,
                     statistics.median(embed) * 1e3, p99(embed) * 1e3, len(health)),
                  file=sys.stderr)
            # Bounds for a shared 2-core machine running the ASan build too (measured here: p99
            # 4.5 ms and 7.2 ms with the release build on an otherwise idle machine).
            self.assertLess(p99(health), 1.0, "p99 /health %.3f s" % p99(health))
            self.assertLess(p99(embed), 2.0, "p99 /embed %.3f s" % p99(embed))
            # The slow clients are cut off at the 3 s header timeout (they have been at it 5 s).
            for sock in slow_headers + slow_bodies:
                waited, _, how = th.wait_eof(sock, 10)
                self.assertIn(how, ("eof", "reset"), "a slow client was never cut off")
            stop.set()
            dribbler.join()
        finally:
            stop.set()
            for sock in idle + slow_headers + slow_bodies:
                sock.close()
        # Every descriptor the flood took is given back.
        deadline = time.monotonic() + 20
        while fd_count(pid) > fds_before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertLessEqual(fd_count(pid), fds_before, os.listdir("/proc/%d/fd" % pid))
        # And the memory the connections took (their buffers: ~64 kB each at most).
        rss_growth_mb = (th.status_kb(pid, "VmRSS") - rss_before) / 1024
        print("  RSS %+.1f MB after the flood" % rss_growth_mb, file=sys.stderr)
        if not th.sanitized(pid):
            self.assertLess(rss_growth_mb, 16)


class InflightBytesTest(th.ServerCase, unittest.TestCase):
    LIMIT = 4 * 1024 * 1024
    server_args = ("--max-inflight-bytes", str(LIMIT), "--max-client-batch-size", "64",
                   "--max-concurrent-requests", "100000")

    def test_a_flood_of_large_bodies_stays_within_the_bound(self):
        pid = self.server.proc.pid
        # ~1.5 MB a request: 32 texts of 48 kB, cut to the model's length.
        body = json.dumps({"inputs": ["今天天气很好，" * 2300] * 32, "truncate": True},
                          ensure_ascii=False).encode()
        self.assertGreater(len(body), 1_400_000)
        rss_before = th.status_kb(pid, "VmRSS")
        statuses, lock = [], threading.Lock()

        def client():
            for _ in range(6):
                status, headers, data = self.server.request("POST", "/embed", body, timeout=120)
                with lock:
                    statuses.append(status)
                if status == 429:
                    assert headers.get("retry-after") == "1", headers
                    assert b"bytes of requests in flight" in data, data
                elif status == 200:
                    assert len(json.loads(data)) == 32

        threads = [threading.Thread(target=client) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertEqual(set(statuses) - {200, 429}, set(), statuses)
        self.assertIn(429, statuses)
        self.assertIn(200, statuses)
        peak_growth_mb = (th.status_kb(pid, "VmHWM") - rss_before) / 1024
        print("\n  60 requests of %.1f MB from 10 clients, bound %d MiB: %d answered, %d x 429; "
              "peak RSS %.0f MB above the start" % (len(body) / 1e6, self.LIMIT >> 20,
                                                     statuses.count(200), statuses.count(429),
                                                     peak_growth_mb), file=sys.stderr)
        # What the process may hold: the bodies admitted (the bound), the bodies still being read
        # (one per client, bounded by --payload-limit, not by this bound), and 32 MB for the
        # admitted requests' tokens, vectors and answers. (Without the bound, 1 GiB instead of
        # 4 MiB, the same run grew 45 MB on this project's 2-core machine; with it, 29 MB.)
        bound_mb = (self.LIMIT + 10 * len(body)) / 2**20 + 32
        if not th.sanitized(pid):
            self.assertLess(peak_growth_mb, bound_mb)
        # Every body is given back once its call ends: the answer is sent just before the call's
        # last reference (on a pool thread) goes, so poll for it.
        deadline = time.monotonic() + 20
        while True:
            status, _, text = self.server.request("GET", "/metrics")
            samples = th.parse_prometheus(text.decode())
            held = th.metric(samples, "tideserve_inflight_bytes")
            if held == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(held, 0)
        self.assertGreaterEqual(th.metric(samples, "tideserve_rejected_requests_total"),
                                statuses.count(429))

class InflightBoundAloneTest(th.ServerCase, unittest.TestCase):
    server_args = ("--max-inflight-bytes", "1000")

    def test_a_body_larger_than_the_bound_is_413_naming_it(self):
        status, _, data = self.server.post_json("/embed", {"inputs": "a" * 2000})
        self.assertEqual(status, 413, data)
        self.assertIn("--max-inflight-bytes", data["error"])
        status, _, data = self.server.post_json("/embed", {"inputs": "a"})
        self.assertEqual(status, 200, data)
        self.assertEqual(self.server.event("listening")["max_inflight_bytes"], 1000)


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
