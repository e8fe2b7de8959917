#!/usr/bin/env python3
"""A client that disconnects while its request waits for the engine: the request is dropped
before compute and counted in tideserve_cancelled_requests_total; everyone else is answered.

usage: cancel_test.py PATH_TO_TIDESERVE   (run from the repository root)
"""
import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as h  # noqa: E402

BINARY = None
LONG_TEXT = "今天天气很好我们去公园散步吧" * 40  # > 512 tokens: truncated to the model's 512


def scrape(server):
    status, _, body = server.request("GET", "/metrics")
    assert status == 200
    return h.parse_prometheus(body.decode("utf-8"))


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    return None


class CancelTest(unittest.TestCase):
    def setUp(self):
        self.server = h.Server(BINARY, "--max-client-batch-size", "64", "--max-batch-tokens",
                               "16384").start()

    def tearDown(self):
        self.assertEqual(self.server.stop(), 0, self.server.log_text())

    def test_disconnected_client_is_dropped_before_compute(self):
        busy_result = {}

        def busy():
            # 64 inputs x 512 tokens: two full engine batches that keep the engine busy.
            busy_result["answer"] = self.server.post_json(
                "/embed", {"inputs": [LONG_TEXT] * 64, "truncate": True})

        thread = threading.Thread(target=busy)
        thread.start()
        # The busy request is admitted (its inputs count in flight) before the next one comes.
        admitted = wait_for(lambda: (h.metric(scrape(self.server), "tideserve_inflight_requests")
                                     or 0) >= 64)
        self.assertTrue(admitted, "the busy request was never admitted")

        # A client sends a whole request, then goes away without reading the answer.
        body = json.dumps({"inputs": "你好"}).encode("utf-8")
        with socket.create_connection(("127.0.0.1", self.server.port)) as sock:
            sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        thread.join(120)
        self.assertFalse(thread.is_alive())
        status, _, rows = busy_result["answer"]
        self.assertEqual(status, 200)
        self.assertEqual(len(rows), 64)

        cancelled = wait_for(lambda: h.metric(scrape(self.server),
                                              "tideserve_cancelled_requests_total"))
        self.assertEqual(cancelled, 1.0, "the abandoned input was not dropped and counted")
        samples = scrape(self.server)
        # 64 busy inputs + the probe below were computed; the abandoned one was not.
        status, _, _ = self.server.post_json("/embed", {"inputs": "你好"})
        self.assertEqual(status, 200)
        self.assertEqual(h.metric(samples, "tideserve_inflight_requests"), 0.0)
        batch_sequences = h.metric(scrape(self.server), "tideserve_batch_size_sum")
        self.assertEqual(batch_sequences, 64 + 1, "the abandoned input reached the engine")


if __name__ == "__main__":
    sys.exit(h.run_tests(globals(), __doc__))
