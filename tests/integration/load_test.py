#!/usr/bin/env python3
"""Concurrency correctness of `tideserve serve` under load (not a benchmark):

- batching: many clients at once get exactly the vectors that single requests get, and the
  server really batched them (asserted on the tideserve_batch_size histogram, not on timing);
- backpressure: over --max-concurrent-requests the server answers 429 at once, with Retry-After
  and the family's JSON error, and counts it in tideserve_rejected_requests_total;
- SIGTERM under load (clients behind a readiness-driven load balancer): every request is
  answered, none is reset or left without an answer, the listener then closes, exit code 0;
- a slow client (half a request, then nothing) is cut off by --header-timeout while other
  clients are served.

Each class starts its own server on 127.0.0.1 port 0. Standard library only.

usage: load_test.py PATH_TO_TIDESERVE   (run from the repository root)
"""
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None
TOL = 1e-5
# HTTP IO threads of the servers under load: two, so that a response can be written on one
# thread while the request's cancel callback is registered from the other (a race that once
# leaked a Session/Job/Call cycle; LeakSanitizer reports such a leak at exit).
IO_THREADS = int(os.environ.get("TIDESERVE_TEST_IO_THREADS", "2"))
CJK = "你好世界天气很我们今去公园学习中国人大小上下山水火"
WORDS = "the quick brown fox jumps over lazy dog model server batch token".split()


def make_text(i):
    """Distinct texts of different lengths (3 to ~60 tokens), Chinese, English and mixed."""
    n = 1 + (i * 7) % 37
    cjk = "".join(CJK[(i + k * 3) % len(CJK)] for k in range(n))
    eng = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 9))
    return [cjk, eng, eng + " " + cjk, cjk + " " + eng][i % 4] + " #%d" % i


def run_threads(n, target):
    """Runs target(i) in n threads released together; returns their exceptions."""
    barrier = threading.Barrier(n)
    errors = []
    lock = threading.Lock()

    def body(i):
        try:
            barrier.wait(60)
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            with lock:
                errors.append("thread %d: %r" % (i, e))

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
        if t.is_alive():
            errors.append("a client thread did not finish within 300 s")
    return errors


class LoadCase(unittest.TestCase):
    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = th.Server(BINARY, *cls.server_args).start()

    @classmethod
    def tearDownClass(cls):
        if cls.server.proc.poll() is None:
            rc = cls.server.stop()
            if rc != 0:
                raise AssertionError("tideserve exited %d after SIGTERM\n%s"
                                     % (rc, cls.server.log_text()))

    def scrape(self):
        status, _, body = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        return th.parse_prometheus(body.decode("utf-8"))

    def reference(self, texts):
        """Each text's vector from a request of its own (normalized, CLS), one at a time."""
        ref = {}
        for text in texts:
            status, _, body = self.server.post_json("/embed", {"inputs": text})
            self.assertEqual(status, 200, body)
            ref[text] = body[0]
        return ref


# ==============================================================================================
class BatchingTest(LoadCase):
    server_args = ("--batch-wait-us", 2000, "--io-threads", IO_THREADS,
                   "--max-client-batch-size", 8)
    THREADS = 16
    REQUESTS = 30

    def test_concurrent_answers_equal_single_requests(self):
        texts = [make_text(i) for i in range(48)]
        ref = self.reference(texts)
        # The OpenAI route pools the same way (CLS, normalized).
        status, _, body = self.server.post_json("/v1/embeddings", {"input": texts[:3]})
        self.assertEqual(status, 200, body)
        for i in range(3):
            self.assertLessEqual(th.max_abs_diff(body["data"][i]["embedding"], ref[texts[i]]),
                                 TOL)

        before = self.scrape()
        lock = threading.Lock()
        sent = {"requests": 0, "sequences": 0}
        mismatches = []

        def client(t):
            conn = self.server.connection()
            try:
                for r in range(self.REQUESTS):
                    k = t * self.REQUESTS + r
                    batch = [texts[(k * 5 + j * 11) % len(texts)] for j in range(1 + k % 3)]
                    if k % 2 == 0:
                        obj = {"inputs": batch if len(batch) > 1 else batch[0]}
                        status, _, data = th.send(conn, "POST", "/embed", json.dumps(obj))
                        self.assertEqual(status, 200, data[:300])
                        got = json.loads(data)
                    else:
                        status, _, data = th.send(conn, "POST", "/v1/embeddings",
                                                  json.dumps({"input": batch}))
                        self.assertEqual(status, 200, data[:300])
                        body = json.loads(data)
                        self.assertEqual([d["index"] for d in body["data"]],
                                         list(range(len(batch))))
                        got = [d["embedding"] for d in body["data"]]
                    self.assertEqual(len(got), len(batch))
                    for text, vec in zip(batch, got):
                        diff = th.max_abs_diff(vec, ref[text])
                        if diff > TOL:
                            with lock:
                                mismatches.append((text, diff))
                    with lock:
                        sent["requests"] += 1
                        sent["sequences"] += len(batch)
            finally:
                conn.close()

        errors = run_threads(self.THREADS, client)
        self.assertEqual(errors, [])
        self.assertEqual(mismatches, [], "answers under load differ from single requests")
        self.assertEqual(sent["requests"], self.THREADS * self.REQUESTS)

        after = self.scrape()
        m = th.metric
        batches = m(after, "tideserve_batch_size_count") - m(before, "tideserve_batch_size_count")
        sequences = m(after, "tideserve_batch_size_sum") - m(before, "tideserve_batch_size_sum")
        # Every sequence went through exactly one engine batch ...
        self.assertEqual(sequences, sent["sequences"])
        # ... and batches held more than one sequence on average: the server batched.
        self.assertGreater(sequences / batches, 1.0,
                           "%d sequences in %d batches" % (sequences, batches))
        self.assertLess(batches, sent["requests"])
        self.assertEqual(m(after, "tideserve_rejected_requests_total"), 0)
        self.assertEqual(m(after, "tideserve_inflight_requests"), 0)
        self.assertEqual(m(after, "tideserve_queue_depth"), 0)
        self.assertEqual(m(after, "tideserve_requests_total", route="/embed", code="200")
                         - m(before, "tideserve_requests_total", route="/embed", code="200"),
                         sent["requests"] // 2)


# ==============================================================================================
class BackpressureTest(LoadCase):
    # Two inputs in flight at most; each batch waits 20 ms for company, so the first admitted
    # requests hold their slots while the others arrive.
    server_args = ("--max-concurrent-requests", 2, "--batch-wait-us", 20000,
                   "--io-threads", IO_THREADS)
    CLIENTS = 64

    def test_over_capacity_is_429_at_once(self):
        texts = [("".join(CJK[(i + k) % len(CJK)] for k in range(300)) + " %d" % i)
                 for i in range(8)]
        ref = self.reference(texts)
        results = [None] * self.CLIENTS
        conns = [self.server.connection() for _ in range(self.CLIENTS)]
        for c in conns:
            c.connect()  # connected before the release: the requests arrive together

        def client(i):
            text = texts[i % len(texts)]
            if i % 2 == 0:
                results[i] = ("tei", text) + th.send(conns[i], "POST", "/embed",
                                                     json.dumps({"inputs": text}))
            else:
                results[i] = ("openai", text) + th.send(conns[i], "POST", "/v1/embeddings",
                                                        json.dumps({"input": text}))

        try:
            errors = run_threads(self.CLIENTS, client)
        finally:
            for c in conns:
                c.close()
        self.assertEqual(errors, [])

        ok = rejected = 0
        for family, text, status, hdrs, data in results:
            body = json.loads(data)
            if status == 200:
                ok += 1
                vec = body[0] if family == "tei" else body["data"][0]["embedding"]
                self.assertLessEqual(th.max_abs_diff(vec, ref[text]), TOL)
            elif status == 429:
                rejected += 1
                self.assertGreaterEqual(int(hdrs["retry-after"]), 1)
                self.assertTrue(hdrs["content-type"].startswith("application/json"))
                if family == "tei":
                    self.assertEqual(set(body), {"error", "error_type"})
                    self.assertEqual(body["error_type"], "Overloaded")
                else:
                    self.assertEqual(body["error"]["type"], "rate_limit_error")
                    self.assertTrue(body["error"]["message"])
            else:
                self.fail("status %d: %r" % (status, data[:300]))
        self.assertGreaterEqual(ok, 1)
        self.assertGreaterEqual(rejected, 1, "no 429 with 64 concurrent requests and a limit "
                                             "of 2 in flight")

        s = self.scrape()
        self.assertEqual(th.metric(s, "tideserve_rejected_requests_total"), rejected)
        self.assertEqual(th.metric_sum(s, "tideserve_requests_total", code="429"), rejected)
        self.assertEqual(th.metric(s, "tideserve_inflight_requests"), 0)
        # Capacity comes back once the burst is over.
        status, _, body = self.server.post_json("/embed", {"inputs": texts[0]})
        self.assertEqual(status, 200, body)


# ==============================================================================================
class SigtermUnderLoadTest(unittest.TestCase):
    """SIGTERM while 8 clients send continuously, as behind a Kubernetes Service: a prober
    watches readiness; once it reads 503 the endpoint is "removed", and each client sends a few
    more requests (the endpoint-removal lag the drain delay exists for) and stops. Every request
    sent must be answered: 200 while draining (503 is tolerated for requests still arriving as
    the drain ends), never a reset or an empty reply; afterwards new connections are refused
    and the process exits 0 with everything drained. Half the clients use keep-alive, half a
    connection per request."""

    CLIENTS = 8
    TAIL = 6  # requests per client after the endpoint was removed

    def test_every_request_is_answered(self):
        drain = 3
        server = th.Server(BINARY, "--drain-delay", drain, "--shutdown-timeout", 30,
                           "--io-threads", IO_THREADS, "--batch-wait-us", 1000).start()
        try:
            self._run(server, drain)
        finally:
            server.kill()

    def _run(self, server, drain):
        texts = [make_text(i) for i in range(self.CLIENTS)]
        ref = {}
        for text in texts:
            status, _, body = server.post_json("/embed", {"inputs": text})
            self.assertEqual(status, 200, body)
            ref[text] = body[0]

        lock = threading.Lock()
        warmed = threading.Event()  # enough answers before the signal
        signalled = threading.Event()
        removed = threading.Event()  # readiness said 503: the endpoint left the Service
        log = []  # (client, outcome, detail, after_signal)
        count = {"ok": 0}
        deadline = time.monotonic() + 120

        def client(i):
            keep_alive = i % 2 == 0
            text = texts[i]
            payload = json.dumps({"inputs": text})
            headers = {"Content-Type": "application/json"}
            if not keep_alive:
                headers["Connection"] = "close"
            conn, tail = None, 0
            while time.monotonic() < deadline:
                if removed.is_set():
                    if tail >= self.TAIL:
                        break
                    tail += 1
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                after = signalled.is_set()
                try:
                    conn.request("POST", "/embed", body=payload, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except ConnectionRefusedError:
                    with lock:
                        log.append((i, "refused", "", after))
                    break
                except (http.client.HTTPException, OSError) as e:
                    with lock:
                        log.append((i, "lost", repr(e), after))
                    conn.close()
                    conn = None
                    continue
                if resp.status == 200:
                    diff = th.max_abs_diff(json.loads(data)[0], ref[text])
                    outcome, detail = ("ok", "") if diff <= TOL else ("wrong", "diff %g" % diff)
                else:
                    outcome = "status_%d" % resp.status
                    detail = data[:200].decode("utf-8", "replace")
                with lock:
                    log.append((i, outcome, detail, after))
                    if outcome == "ok":
                        count["ok"] += 1
                        if count["ok"] >= 40:
                            warmed.set()
                if resp.will_close:
                    conn.close()
                    conn = None
            if conn is not None:
                conn.close()

        def prober():
            while time.monotonic() < deadline:
                try:
                    status = server.request("GET", "/v2/health/ready", timeout=10)[0]
                except OSError:
                    status = None
                if status != 200 and signalled.is_set():
                    removed.set()
                    return

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(self.CLIENTS)]
        for t in threads:
            t.start()
        self.assertTrue(warmed.wait(60), "the clients got no answers")
        probe = threading.Thread(target=prober, daemon=True)
        t0 = time.monotonic()
        signalled.set()
        server.signal(signal.SIGTERM)
        probe.start()
        for t in threads:
            t.join(90)
        self.assertFalse(any(t.is_alive() for t in threads), "a client never finished")
        self.assertTrue(removed.is_set(), "readiness never turned 503 after SIGTERM")
        tail_done = time.monotonic() - t0

        # After the drain delay the listener closes: a new connection is refused. (Polled: the
        # listener closes at a moment the test cannot observe otherwise.)
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
            except ConnectionRefusedError:
                refused = True
            except OSError:
                pass  # reset while waiting in the backlog of the listener being closed
        self.assertTrue(refused, "the listener stayed open")
        rc = server.wait_exit(60)
        elapsed = time.monotonic() - t0

        outcomes = {}
        for _, outcome, _, _ in log:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        summary = "outcomes %r; the clients finished %.2f s after SIGTERM" % (outcomes, tail_done)
        bad = [e for e in log if e[1] not in ("ok", "status_503", "refused")]
        self.assertEqual(bad, [], summary)
        self.assertEqual(rc, 0, server.log_text())
        self.assertGreaterEqual(elapsed, drain * 0.9, "exited before the drain delay ended")
        self.assertLess(elapsed, 30, "did not exit within --shutdown-timeout")
        answered_in_drain = sum(1 for e in log if e[1] == "ok" and e[3])
        self.assertGreaterEqual(answered_in_drain, self.CLIENTS * self.TAIL, summary)
        done = server.event("shutdown_complete")
        self.assertIsNotNone(done)
        self.assertIs(done["drained"], True)
        self.assertEqual(done["unanswered_requests"], 0)


# ==============================================================================================
class SlowClientTest(LoadCase):
    HEADER_TIMEOUT = 1
    server_args = ("--header-timeout", HEADER_TIMEOUT, "--io-threads", 1)

    def watch(self, sock, sent):
        """Starts a thread that reads `sock` until the server closes it; its record gets the
        close's time measured from `sent` (this socket's own send, or connect when it sends
        nothing), what came before it, and how it ended."""
        record = {}

        def body():
            _, data, how = th.wait_eof(sock, 60)
            record.update(closed_after=time.monotonic() - sent, data=data, how=how)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        record["thread"] = thread
        return record

    def test_stalled_clients_are_cut_off_others_served(self):
        port = self.server.port
        sockets, watched = [], {}
        try:
            # Each stalled client's clock starts before its own connect or send, so that the
            # server's header timer (started on accept, restarted when a request's first bytes
            # come) cannot have started earlier; each is watched from then on by its own thread,
            # so the close is timed when it happens, not when the test gets round to it.
            sent = time.monotonic()
            silent = socket.create_connection(("127.0.0.1", port))  # connects, sends nothing
            sockets.append(silent)
            watched["silent"] = self.watch(silent, sent)
            half_headers = socket.create_connection(("127.0.0.1", port))
            sockets.append(half_headers)
            sent = time.monotonic()
            half_headers.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Ty")
            watched["half_headers"] = self.watch(half_headers, sent)
            half_body = socket.create_connection(("127.0.0.1", port))
            sockets.append(half_body)
            sent = time.monotonic()
            half_body.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                              b"\r\nContent-Length: 100\r\n\r\n{\"inputs\": ")
            watched["half_body"] = self.watch(half_body, sent)
            # Other clients are served normally while those three stall.
            for i in range(10):
                status, _, body = self.server.post_json("/embed", {"inputs": make_text(i)})
                self.assertEqual(status, 200, body)
            for name, record in watched.items():
                record["thread"].join(90)
                self.assertFalse(record["thread"].is_alive(), name)
                # Closed (an orderly close or a reset) without an answer or with a 408 ...
                self.assertIn(record["how"], ("eof", "reset"),
                              "%s: the server kept a stalled connection open for 60 s" % name)
                data = record["data"]
                self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 408"),
                                (name, data[:200]))
                # ... by the timer: not before the header timeout from its own send.
                self.assertGreaterEqual(record["closed_after"], 0.9 * self.HEADER_TIMEOUT,
                                        "%s was closed %.3f s after its send"
                                        % (name, record["closed_after"]))
        finally:
            for sock in sockets:
                sock.close()
        status, _, body = self.server.post_json("/embed", {"inputs": "after the stall"})
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
