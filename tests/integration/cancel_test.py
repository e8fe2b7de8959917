#!/usr/bin/env python3
"""A client that disconnects while its request waits for the engine: the request is dropped
before compute and counted in tideserve_cancelled_requests_total; everyone else is answered.

How the request is held in the queue without depending on how long anything computes: the
engine batches up to --max-batch-requests 2 inputs and, with --batch-wait-us, waits for a second
input before it runs a batch of one. The abandoned request (one input) therefore waits in the
queue, visibly (tideserve_queue_depth 1), until the test itself sends the next request, which
fills the batch: the engine then drops the abandoned input and computes only the new one.

That the disconnect is noticed before the next request is submitted is an ordering, not a race,
with one IO thread: the client closes before the test makes any other request, so its FIN is at
the server before the /metrics request that shows the input queued, and the disconnect watch was
armed (when the request was read) before that /metrics answer was made. The first pass of the IO
thread's event loop after both reports the closed connection; that pass comes no later than the
one that accepts the /health connection the test opens after the /metrics answer, and the
cancellation it queues runs before the several handlers that read, route and answer /health.
Only after the /health answer does the test send the request that fills the batch. The batch
wait (at most 1 s) ends the hold by itself only if the test is slower than that; the input is
dropped then too, unless the IO thread left the reported close unhandled for that whole second.

usage: cancel_test.py PATH_TO_TIDESERVE   (run from the repository root)
"""
import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as h  # noqa: E402

BINARY = None


def scrape(server):
    status, _, body = server.request("GET", "/metrics")
    assert status == 200
    return h.parse_prometheus(body.decode("utf-8"))


def wait_for(predicate, timeout=60.0):
    """Polls predicate() until it returns something true (returned) or `timeout` passes
    (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)  # a poll interval, not a synchronization
    return None


def counter(samples, name):
    return h.metric(samples, name) or 0.0


class CancelTest(unittest.TestCase):
    def setUp(self):
        self.server = h.Server(BINARY, "--io-threads", 1, "--max-batch-requests", 2,
                               "--batch-wait-us", 1000000).start()

    def tearDown(self):
        self.assertEqual(self.server.stop(), 0, self.server.log_text())  # (a no-op if stopped)

    def test_disconnected_client_is_dropped_before_compute(self):
        before = scrape(self.server)
        self.assertEqual(h.metric(before, "tideserve_queue_depth"), 0)

        # A client sends a whole request (one input), then goes away without reading the answer.
        body = json.dumps({"inputs": "你好"}).encode("utf-8")
        with socket.create_connection(("127.0.0.1", self.server.port)) as sock:
            sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

        # Its input waits in the queue for a second one (or, if the test was slower than the
        # batch wait, it has already been dropped).
        def queued_or_dropped():
            s = scrape(self.server)
            if h.metric(s, "tideserve_queue_depth") == 1:
                return "queued"
            if counter(s, "tideserve_cancelled_requests_total") > 0:
                return "dropped"
            return None

        state = wait_for(queued_or_dropped)
        self.assertIsNotNone(state, "the abandoned request never reached the queue")
        # One more round trip through the IO thread: the disconnect has been handled after it.
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

        # Another client's request fills the batch: it is answered, computed alone.
        status, _, rows = self.server.post_json("/embed", {"inputs": ["你好", "世界"]})
        self.assertEqual(status, 200, rows)
        self.assertEqual([len(r) for r in rows], [h.HIDDEN, h.HIDDEN])

        cancelled = wait_for(lambda: counter(scrape(self.server),
                                             "tideserve_cancelled_requests_total"))
        self.assertEqual(cancelled, 1.0, "the abandoned input was not dropped and counted "
                                         "(before the next request it was %s)" % state)
        after = scrape(self.server)
        m = h.metric
        # The two inputs of the second request were computed, in one batch; the abandoned one
        # never reached the engine.
        self.assertEqual(m(after, "tideserve_batch_size_sum")
                         - (m(before, "tideserve_batch_size_sum") or 0), 2,
                         "the abandoned input reached the engine")
        self.assertEqual(m(after, "tideserve_batch_size_count")
                         - (m(before, "tideserve_batch_size_count") or 0), 1)
        self.assertEqual(m(after, "tideserve_queue_depth"), 0)
        self.assertEqual(m(after, "tideserve_inflight_requests"), 0)
        self.assertEqual(m(after, "tideserve_requests_total", route="/embed", code="200"), 1)

        self.assertEqual(self.server.stop(), 0, self.server.log_text())
        done = self.server.event("shutdown_complete")
        self.assertEqual(done["cancelled_sequences"], 1, self.server.log_text())


if __name__ == "__main__":
    sys.exit(h.run_tests(globals(), __doc__))
