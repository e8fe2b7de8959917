#!/usr/bin/env python3
"""The OpenAI Batch API on Redis Streams, end to end against a real redis-server: uploads and
batches through `tideserve serve --redis`, lines computed by `tideserve worker` processes (or
the in-process worker of `serve --jobs`). The formats (output lines equal /v1/embeddings), the
validation at create and its limits, a worker's routes, two workers sharing 10,000 lines, the
queue as KEDA reads it, a worker killed -9 or sent SIGTERM mid-batch, Redis killed -9 and
restarted (AOF), poison lines (a client error; the dead letters past --jobs-max-deliveries),
cancel, expiry, and the official openai npm client. Every class runs its own Redis on a free
port; every test skips (exit 77) where redis-server is not installed.

usage: batch_test.py PATH_TO_TIDESERVE [--only CLASS[,CLASS]]   (run from the repository root)
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as h  # noqa: E402

BINARY = None

QUEUE = "tideserve:queue:" + h.MODEL_ID
DEAD = "tideserve:dead:" + h.MODEL_ID
GROUP = "workers"
FINAL = ("completed", "failed", "expired", "cancelled")
POLL = 0.05  # seconds between polls of a batch (the API has no push)

# A line heavy enough (8 inputs of ~80 tokens) that a worker takes tens of milliseconds on it,
# so a test can act while a batch is part done.
HEAVY = "the quick brown fox jumps over the lazy dog 你好世界 " * 6


# -- lines and files ----------------------------------------------------------------------------
def line(custom_id, inp, **body):
    body = dict({"model": h.MODEL_ID, "input": inp}, **body)
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def jsonl(objs):
    return "".join((o if isinstance(o, str) else json.dumps(o, ensure_ascii=False)) + "\n"
                   for o in objs).encode("utf-8")


def light_lines(n, prefix):
    return [line("%s-%d" % (prefix, i), "%s line %d 你好" % (prefix, i)) for i in range(n)]


def heavy_lines(n, prefix):
    return [line("%s-%d" % (prefix, i), ["%s %d.%d %s" % (prefix, i, k, HEAVY) for k in range(8)])
            for i in range(n)]


def multipart(fields, files):
    """(body, content type) of a multipart/form-data request: fields {name: value}, files
    {name: (filename, bytes)}."""
    boundary = "tideserve-" + uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                    % (boundary, name, value)).encode())
    for name, (filename, data) in files.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: application/jsonl\r\n\r\n"
                    % (boundary, name, filename)).encode())
        out.append(data + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def upload_raw(server, data, filename="batch.jsonl", purpose="batch"):
    body, ctype = multipart({"purpose": purpose}, {"file": (filename, data)})
    status, headers, raw = server.request("POST", "/v1/files", body, {"Content-Type": ctype})
    return status, headers, h.parse_json(raw)


def upload(server, data, filename="batch.jsonl"):
    status, _, obj = upload_raw(server, data, filename)
    assert status == 200, (status, obj)
    return obj


def create(server, file_id, **extra):
    req = {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
    req.update(extra)
    return server.post_json("/v1/batches", req)


def submit(server, lines, **extra):
    """Uploads the lines and creates their batch: the batch object (asserted accepted)."""
    f = upload(server, jsonl(lines))
    status, _, batch = create(server, f["id"], **extra)
    assert status == 200, (status, batch)
    return batch


def get_batch(server, batch_id, unavailable=None):
    """GET /v1/batches/{id}: the batch; a 503 is appended to `unavailable` (and None returned)
    when that list is given, else fails like any other status."""
    status, _, batch = server.get_json("/v1/batches/" + batch_id)
    if status == 503 and unavailable is not None:
        unavailable.append(batch)
        return None
    assert status == 200, (status, batch)
    return batch


def wait_batch(server, batch_id, statuses=FINAL, timeout=120, until=None, unavailable=None):
    """Polls GET /v1/batches/{id} until its status is one of `statuses` (and `until(batch)`
    holds, if given); fails at the deadline with the last state."""
    deadline = time.monotonic() + timeout
    batch = None
    while True:
        batch = get_batch(server, batch_id, unavailable) or batch
        if batch is None:
            pass
        elif batch["status"] in statuses and (until is None or until(batch)):
            return batch
        if time.monotonic() > deadline:
            raise AssertionError("batch %s not %s within %.0f s: %s"
                                 % (batch_id, "/".join(statuses), timeout, json.dumps(batch)))
        time.sleep(POLL)


def wait_done_lines(server, batch_id, n, timeout=120):
    """Polls until at least n lines of the batch are counted (completed + failed)."""
    return wait_batch(server, batch_id, ("in_progress",) + FINAL, timeout,
                      until=lambda b: done(b) >= n or b["status"] in FINAL)


def done(batch):
    rc = batch["request_counts"]
    return rc["completed"] + rc["failed"]


def wait_until(pred, what, timeout=60, interval=POLL):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.0f s" % (what, timeout))
        time.sleep(interval)


def content(server, file_id):
    status, _, raw = server.request("GET", "/v1/files/%s/content" % file_id)
    assert status == 200, (status, raw[:300])
    return raw


def file_lines(server, file_id):
    if file_id is None:
        return []
    return [json.loads(x) for x in content(server, file_id).decode("utf-8").splitlines() if x]


def results(server, batch):
    """(output lines, error lines) of a final batch."""
    return file_lines(server, batch["output_file_id"]), file_lines(server, batch["error_file_id"])


def metrics(server):
    status, _, raw = server.request("GET", "/metrics")
    assert status == 200, status
    return h.parse_prometheus(raw.decode("utf-8"))


def jobs_lines(server, status):
    return h.metric(metrics(server), "tideserve_jobs_lines_total", status=status) or 0


def queue_depth_metric(server):
    return h.metric(metrics(server), "tideserve_jobs_queue_depth", queue=h.MODEL_ID)


def queue_state(redis):
    """What KEDA's redis-streams scaler reads: (lag, pending) of the group from XINFO GROUPS,
    the count from XPENDING, and XLEN."""
    groups = [h.redis_pairs(g) for g in redis.command("XINFO", "GROUPS", QUEUE)]
    group = [g for g in groups if g["name"] == GROUP]
    assert len(group) == 1, groups
    xpending = redis.command("XPENDING", QUEUE, GROUP)
    return group[0]["lag"], group[0]["pending"], xpending[0], redis.command("XLEN", QUEUE)


def pending_by_consumer(redis):
    xpending = redis.command("XPENDING", QUEUE, GROUP)
    return {name: int(count) for name, count in (xpending[3] or [])}


def embeddings_of(body):
    return [d["embedding"] for d in body["data"]]


def skip_without_redis(test):
    """Each test skips (so that the script exits 77 when all do) without redis-server."""
    if not h.redis_available():
        test.skipTest("redis-server is not installed (%s)" % h.REDIS_SERVER)


# -- the processes of one test class ----------------------------------------------------------
class RedisCase(unittest.TestCase):
    """One Redis per class and the tideserve processes a test starts against it, all stopped at
    the end of the test (those still running must exit 0)."""

    redis_aof = False

    @classmethod
    def setUpClass(cls):
        cls.redis = h.RedisServer(aof=cls.redis_aof).start() if h.redis_available() else None

    @classmethod
    def tearDownClass(cls):
        if cls.redis is not None:
            cls.redis.stop()

    def setUp(self):
        skip_without_redis(self)
        self.procs = []
        self.addCleanup(self.stop_all)

    def stop_all(self):
        failures = []
        for p in reversed(self.procs):
            if p.proc.poll() is not None:
                p.wait_exit()
                continue
            try:
                p.proc.send_signal(signal.SIGCONT)  # a test may have left it stopped
            except ProcessLookupError:
                pass
            rc = p.stop()
            if rc != 0:
                failures.append("%s exited %d\n%s" % (" ".join(p.cmd[1:3]), rc, p.log_text()))
        # Keys of one test do not leak into the next (same Redis for the class).
        if self.redis.proc.poll() is None:
            self.redis.command("FLUSHALL")
        if failures:
            raise AssertionError("\n".join(failures))

    def serve(self, *args, jobs=False, consumer=None, redis=True):
        args = list(args)
        if redis:
            args = ["--redis", self.redis.url] + args
        if jobs:
            args += ["--jobs", "--jobs-consumer", consumer or "serve-%d" % len(self.procs)]
        p = h.Server(BINARY, *args)
        self.procs.append(p)
        return p.start()

    def worker(self, name, *args):
        p = h.Server(BINARY, "--redis", self.redis.url, "--jobs-consumer", name, *args,
                     command="worker")
        self.procs.append(p)
        return p.start()

    def assert_exactly_once(self, lines, ids, what="output"):
        got = [x["custom_id"] for x in lines]
        dupes = sorted({c for c in got if got.count(c) > 1}) if len(got) != len(set(got)) else []
        self.assertEqual(dupes, [], "custom_ids more than once in the %s" % what)
        self.assertEqual(set(got), set(ids), "the %s's custom_ids" % what)

    def assert_unique_request_ids(self, *line_lists):
        ids = [x["id"] for lines in line_lists for x in lines]
        self.assertEqual(len(ids), len(set(ids)), "batch_req ids are unique")
        for i in ids:
            self.assertTrue(i.startswith("batch_req_"), i)


# ==============================================================================================
class FlowTest(RedisCase):
    """One `serve --jobs`: upload, create, poll, the output and error files, list, delete."""

    def test_flow_and_formats(self):
        server = self.serve(jobs=True)
        good = light_lines(12, "s")
        good += [line("list", ["one", "two 两", "three"]),
                 line("tokens", [101, 2000, 3000, 102]),
                 line("b64", ["base64 line", "second"], encoding_format="base64"),
                 line("mixed", "with dimensions absent \u00e9\u00e8 😀")]
        bad = line("bad", [999999])
        lines = good[:7] + [bad] + good[7:]
        data = jsonl(lines)

        f = upload(server, data)
        self.assertEqual(f["object"], "file")
        self.assertEqual(f["purpose"], "batch")
        self.assertEqual(f["bytes"], len(data))
        self.assertEqual(f["filename"], "batch.jsonl")
        self.assertTrue(f["id"].startswith("file-"), f)
        status, _, got = server.get_json("/v1/files/" + f["id"])
        self.assertEqual(status, 200)
        for k in ("id", "object", "bytes", "filename", "purpose", "created_at"):
            self.assertEqual(got[k], f[k], k)
        self.assertEqual(content(server, f["id"]), data, "content round trip")

        meta = {"run": "flow", "owner": "batch_test"}
        status, _, batch = create(server, f["id"], metadata=meta)
        self.assertEqual(status, 200, batch)
        self.assertEqual(batch["object"], "batch")
        self.assertTrue(batch["id"].startswith("batch_"), batch)
        self.assertIn(batch["status"], ("in_progress", "finalizing", "completed"), batch)
        self.assertEqual(batch["endpoint"], "/v1/embeddings")
        self.assertEqual(batch["input_file_id"], f["id"])
        self.assertEqual(batch["completion_window"], "24h")
        self.assertEqual(batch["metadata"], meta)
        self.assertIsNone(batch["errors"])
        self.assertEqual(batch["request_counts"]["total"], len(lines))

        final = wait_batch(server, batch["id"])
        self.assertEqual(final["status"], "completed", final)
        self.assertEqual(final["request_counts"],
                         {"total": len(lines), "completed": len(good), "failed": 1})
        self.assertEqual(final["metadata"], meta)
        for k in ("in_progress_at", "finalizing_at", "completed_at"):
            self.assertIsInstance(final[k], int, k)
        self.assertLessEqual(final["in_progress_at"], final["completed_at"])
        self.assertEqual(server.wait_event("batch_finalized").get("batch"), batch["id"])

        out, err = results(server, final)
        self.assert_exactly_once(out, [x["custom_id"] for x in good])
        self.assert_exactly_once(err, ["bad"], "error file")
        self.assert_unique_request_ids(out, err)
        for name in ("output_file_id", "error_file_id"):
            status, _, meta_f = server.get_json("/v1/files/" + final[name])
            self.assertEqual(status, 200, meta_f)
            self.assertEqual(meta_f["purpose"], "batch_output")
            self.assertEqual(meta_f["bytes"], len(content(server, final[name])))

        by_id = {x["custom_id"]: x for x in good}
        for o in out:
            self.assertIsNone(o["error"], o)
            self.assertEqual(o["response"]["status_code"], 200, o)
            self.assertIsInstance(o["response"]["request_id"], str)
            body = o["response"]["body"]
            status, _, direct = server.post_json("/v1/embeddings", by_id[o["custom_id"]]["body"])
            self.assertEqual(status, 200, direct)
            self.assertEqual(set(body), set(direct), o["custom_id"])
            self.assertEqual(body["object"], direct["object"])
            self.assertEqual(body["model"], direct["model"])
            self.assertEqual(body["usage"], direct["usage"], o["custom_id"])
            self.assertEqual([d["index"] for d in body["data"]],
                             [d["index"] for d in direct["data"]])
            if o["custom_id"] == "b64":
                self.assertTrue(all(isinstance(d["embedding"], str) for d in body["data"]))
                a = [h.decode_base64_f32(d["embedding"]) for d in body["data"]]
                b = [h.decode_base64_f32(d["embedding"]) for d in direct["data"]]
            else:
                a, b = embeddings_of(body), embeddings_of(direct)
            for x, y in zip(a, b):
                self.assertEqual(len(x), h.HIDDEN)
                self.assertLessEqual(h.max_abs_diff(x, y), 1e-5, o["custom_id"])
        self.assertEqual(len(out[0]["response"]["body"]["data"]), 1)

        e = err[0]
        self.assertEqual(e["response"]["status_code"], 400, e)
        self.assertEqual(e["response"]["body"]["error"]["type"], "invalid_request_error", e)
        status, _, direct = server.post_json("/v1/embeddings", bad["body"])
        self.assertEqual(status, 400)
        self.assertEqual(e["response"]["body"]["error"]["message"], direct["error"]["message"])

        # The in-process worker counted them.
        self.assertTrue(server.event("jobs_enabled")["consume"], server.event("jobs_enabled"))
        self.assertEqual(server.event("jobs_worker_started")["consumer"], "serve-0")
        m = metrics(server)
        self.assertEqual(h.metric(m, "tideserve_jobs_lines_total", status="completed"), len(good))
        self.assertEqual(h.metric(m, "tideserve_jobs_lines_total", status="failed"), 1)

        # DELETE the input file: gone, its content too; a second DELETE is 404.
        status, _, body = server.request("DELETE", "/v1/files/" + f["id"])
        self.assertEqual(status, 200, body)
        self.assertEqual(h.parse_json(body), {"id": f["id"], "object": "file", "deleted": True})
        for path in ("/v1/files/" + f["id"], "/v1/files/%s/content" % f["id"]):
            status, _, body = server.request("GET", path)
            self.assertEqual(status, 404, (path, body))
            self.assertEqual(h.parse_json(body)["error"]["type"], "not_found_error")
        self.assertEqual(server.request("DELETE", "/v1/files/" + f["id"])[0], 404)
        # The batch still answers, and its output is still there.
        self.assertEqual(get_batch(server, batch["id"])["status"], "completed")
        self.assertEqual(len(file_lines(server, final["output_file_id"])), len(good))

    def test_list_after_limit(self):
        server = self.serve(jobs=True)
        ids = [submit(server, light_lines(2, "l%d" % i))["id"] for i in range(5)]
        status, _, page = server.get_json("/v1/batches?limit=2")
        self.assertEqual(status, 200, page)
        self.assertEqual(page["object"], "list")
        self.assertEqual(len(page["data"]), 2)
        self.assertTrue(page["has_more"])
        self.assertEqual(page["first_id"], page["data"][0]["id"])
        self.assertEqual(page["last_id"], page["data"][-1]["id"])
        seen = list(page["data"])
        while page["has_more"]:
            status, _, page = server.get_json("/v1/batches?limit=2&after=" + page["last_id"])
            self.assertEqual(status, 200, page)
            self.assertLessEqual(len(page["data"]), 2)
            seen += page["data"]
            self.assertLess(len(seen), 20, "pagination does not end")
        # Newest first by created_at (whole seconds: batches of the same second come in the
        # order of their ids, which are random, so creation order within a second is not kept).
        created = [b["created_at"] for b in seen]
        self.assertEqual(created, sorted(created, reverse=True), "newest first")
        seen = [b["id"] for b in seen]
        self.assertEqual(sorted(seen), sorted(ids), "every batch once over the pages")
        self.assertEqual(len(seen), len(set(seen)))
        status, _, page = server.get_json("/v1/batches")
        self.assertEqual([b["id"] for b in page["data"]], seen, "the same order unpaged")
        self.assertFalse(page["has_more"])
        status, _, page = server.get_json("/v1/batches?limit=2&after=" + seen[-1])
        self.assertEqual((status, page["data"], page["has_more"]), (200, [], False))

    def test_unknown_ids(self):
        server = self.serve(jobs=True)
        for method, path in (("GET", "/v1/batches/batch_nope"),
                             ("POST", "/v1/batches/batch_nope/cancel"),
                             ("GET", "/v1/files/file-nope"),
                             ("GET", "/v1/files/file-nope/content"),
                             ("DELETE", "/v1/files/file-nope")):
            status, _, body = server.request(method, path, "{}" if method == "POST" else None)
            self.assertEqual(status, 404, (method, path, body))
            self.assertEqual(h.parse_json(body)["error"]["type"], "not_found_error")


# ==============================================================================================
class ValidationTest(RedisCase):
    """Validation at create (a failed batch with errors.data[].line), and the 4xx of the routes.
    No worker: nothing here is computed."""

    def setUp(self):
        super().setUp()
        self.server = self.serve("--jobs-max-lines", "5", "--jobs-max-file-bytes", "4096")

    def failed_with(self, data):
        f = upload(self.server, data)
        status, _, batch = create(self.server, f["id"])
        self.assertEqual(status, 200, batch)
        self.assertEqual(batch["status"], "failed", batch)
        self.assertIsInstance(batch["failed_at"], int)
        self.assertIsNone(batch["output_file_id"])
        self.assertEqual(batch["errors"]["object"], "list")
        # Nothing was queued.
        self.assertEqual(get_batch(self.server, batch["id"])["status"], "failed")
        return batch["errors"]["data"]

    def test_error_codes_and_lines(self):
        ok1, ok3 = line("ok1", "first"), line("ok3", "third")
        cases = {
            "invalid_json_line": '{"custom_id": "x", "method": "POST", ',
            "missing_custom_id": {"method": "POST", "url": "/v1/embeddings",
                                  "body": {"model": h.MODEL_ID, "input": "x"}},
            "duplicate_custom_id": line("ok1", "again"),
            "invalid_method": dict(line("m", "x"), method="GET"),
            "invalid_url": dict(line("u", "x"), url="/v1/chat/completions"),
            "invalid_body": dict(line("b", "x"), body="not an object"),
            "invalid_request": {"custom_id": "r", "method": "POST", "url": "/v1/embeddings",
                                "body": {"model": h.MODEL_ID}},
            "model_not_found": line("n", "x", model="no-such-model"),
        }
        for code, bad in cases.items():
            with self.subTest(code=code):
                errors = self.failed_with(jsonl([ok1, bad, ok3]))
                self.assertEqual([(e["code"], e["line"]) for e in errors], [(code, 2)], errors)
                self.assertIsInstance(errors[0]["message"], str)
                self.assertTrue(errors[0]["message"])
        # Several bad lines: each reported with its own line, in order.
        errors = self.failed_with(jsonl([cases["invalid_url"], ok1, cases["invalid_method"],
                                         cases["duplicate_custom_id"]]))
        self.assertEqual([(e["code"], e["line"]) for e in errors],
                         [("invalid_url", 1), ("invalid_method", 3), ("duplicate_custom_id", 4)])

    def test_upload_list_and_cancel_request_errors(self):
        def expect(status, raw, want, words):
            body = h.parse_json(raw) if isinstance(raw, bytes) else raw
            self.assertEqual(status, want, body)
            self.assertEqual(body["error"]["type"], "invalid_request_error", body)
            self.assertIn(words, body["error"]["message"])

        data = jsonl(light_lines(1, "e"))
        status, _, raw = self.server.request("POST", "/v1/files", data,
                                             {"Content-Type": "application/jsonl"})
        expect(status, raw, 415, "multipart/form-data")
        status, _, body = upload_raw(self.server, data, purpose="fine-tune")
        expect(status, body, 400, "'purpose' must be \"batch\"")
        body_only, ctype = multipart({"purpose": "batch"}, {})
        status, _, raw = self.server.request("POST", "/v1/files", body_only, {"Content-Type": ctype})
        expect(status, raw, 400, "missing form field 'file'")
        status, _, raw = self.server.request("POST", "/v1/files", b"--x\r\nno headers end",
                                             {"Content-Type": "multipart/form-data; boundary=x"})
        expect(status, raw, 400, "multipart")
        status, _, raw = self.server.request("POST", "/v1/files", data,
                                             {"Content-Type": "multipart/form-data"})
        expect(status, raw, 400, "boundary")
        f = upload(self.server, data)
        status, _, body = create(self.server, f["id"], metadata={"k": 7})
        expect(status, body, 400, "'metadata'")
        for query in ("limit=0", "limit=101", "limit=abc", "limit"):
            status, _, raw = self.server.request("GET", "/v1/batches?" + query)
            expect(status, raw, 400, "'limit' must be an integer from 1 to 100")
        status, _, raw = self.server.request("GET", "/v1/batches?after=batch_nope")
        self.assertEqual(status, 404, raw)
        self.assertEqual(h.parse_json(raw)["error"]["type"], "not_found_error")
        # A batch that failed validation is final: cancelling it is a conflict.
        failed = submit(self.server, ["not json"])
        self.assertEqual(failed["status"], "failed", failed)
        status, _, raw = self.server.request("POST", "/v1/batches/%s/cancel" % failed["id"], "{}")
        self.assertEqual(status, 409, raw)
        self.assertIn("cannot be cancelled", h.parse_json(raw)["error"]["message"])

    def test_too_many_lines_and_empty_file(self):
        errors = self.failed_with(jsonl(light_lines(6, "t")))
        self.assertEqual([e["code"] for e in errors], ["too_many_lines"], errors)
        # Exactly at the limit is accepted.
        batch = submit(self.server, light_lines(5, "t"))
        self.assertEqual(batch["status"], "in_progress", batch)
        errors = self.failed_with(b"")
        self.assertEqual([(e["code"], e["line"]) for e in errors], [("empty_file", None)])

    def test_create_request_errors(self):
        f = upload(self.server, jsonl(light_lines(2, "c")))
        for extra, param in (({"endpoint": "/v1/chat/completions"}, "endpoint"),
                             ({"completion_window": "1h"}, "completion_window")):
            with self.subTest(param=param):
                status, _, body = create(self.server, f["id"], **extra)
                self.assertEqual(status, 400, body)
                self.assertEqual(body["error"]["type"], "invalid_request_error")
                self.assertNotIn("id", body)
        status, _, body = self.server.post_json(
            "/v1/batches", {"endpoint": "/v1/embeddings", "completion_window": "24h"})
        self.assertEqual(status, 400, body)
        status, _, body = create(self.server, "file-does-not-exist")
        self.assertEqual(status, 404, body)
        self.assertEqual(body["error"]["type"], "not_found_error")
        status, _, body = self.server.request("POST", "/v1/batches", "{not json")
        self.assertEqual(status, 400, body)
        # None of these made a batch.
        status, _, page = self.server.get_json("/v1/batches")
        self.assertEqual((status, page["data"]), (200, []))

    def test_file_bytes_limit(self):
        base = jsonl([line("p", "x")])
        pad = 4096 - len(base)
        at_limit = jsonl([line("p", "x" * (pad + 1))])
        self.assertEqual(len(at_limit), 4096)
        status, _, body = upload_raw(self.server, at_limit)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["bytes"], 4096)
        status, _, body = upload_raw(self.server, at_limit + b"\n")
        self.assertEqual(status, 413, body)
        self.assertNotIn("id", body)


class UploadLimitTest(RedisCase):
    """/v1/files takes files larger than --payload-limit (its own limit, --jobs-max-file-bytes
    plus the multipart's 64 KiB), every other route keeps --payload-limit; curl's
    Expect: 100-continue on a large upload is answered at once."""

    def test_upload_beyond_the_payload_limit(self):
        server = self.serve("--payload-limit", "65536", "--jobs-max-file-bytes", "300000",
                            jobs=True)
        data = jsonl(light_lines(2000, "big"))  # ~280 KB: over four times the payload limit
        self.assertGreater(len(data), 4 * 65536)
        self.assertLess(len(data), 300000)
        f = upload(server, data)
        self.assertEqual(f["bytes"], len(data))
        status, _, batch = create(server, f["id"])
        self.assertEqual(status, 200, batch)
        final = wait_batch(server, batch["id"], timeout=120)
        self.assertEqual(final["request_counts"]["completed"], 2000, final)
        # The same size on /v1/embeddings is over --payload-limit.
        status, _, raw = server.request("POST", "/v1/embeddings",
                                        json.dumps({"input": "x" * 100000}),
                                        {"Content-Type": "application/json"})
        self.assertEqual(status, 413, raw)
        # Over the route's own limit: refused by the transport before the body is read.
        status, _, body = upload_raw(server, b"x" * (300000 + 70000))
        self.assertEqual(status, 413, body)
        self.assertIn(str(300000 + 65536), body["error"])
        # curl sends Expect: 100-continue for large bodies and waits up to 1 s for the 100.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "b.jsonl")
            with open(path, "wb") as out:
                out.write(jsonl(light_lines(2000, "c")))
            start = time.monotonic()
            r = subprocess.run(["curl", "-s", "-H", "Expect: 100-continue", "-F", "purpose=batch",
                                "-F", "file=@" + path, server.url("/v1/files")],
                               capture_output=True, timeout=30)
            elapsed = time.monotonic() - start
        self.assertIn(b'"object":"file"', r.stdout)
        self.assertLess(elapsed, 0.9, "the 100 Continue came at once, not after curl's 1 s wait")


class BacklogTest(RedisCase):
    """--jobs-max-backlog: a batch that would take the queue past it is 429 with Retry-After.
    No worker, so the backlog stays."""

    def test_backlog_429(self):
        server = self.serve("--jobs-max-backlog", "10")
        self.assertEqual(submit(server, light_lines(6, "a"))["status"], "in_progress")
        f = upload(server, jsonl(light_lines(5, "b")))
        status, headers, body = create(server, f["id"])
        self.assertEqual(status, 429, body)
        self.assertIn("retry-after", headers)
        self.assertGreater(int(headers["retry-after"]), 0)
        self.assertEqual(body["error"]["type"], "rate_limit_error", body)
        self.assertNotIn("id", body)
        # Up to the limit exactly is accepted; one more line is not.
        self.assertEqual(submit(server, light_lines(4, "c"))["status"], "in_progress")
        f = upload(server, jsonl(light_lines(1, "d")))
        self.assertEqual(create(server, f["id"])[0], 429)
        status, _, page = server.get_json("/v1/batches")
        self.assertEqual(len(page["data"]), 2)
        self.assertEqual(queue_state(self.redis)[:2], (10, 0))


class NoRedisTest(unittest.TestCase):
    """Without --redis the batch routes answer 503; the rest of the API is unaffected."""

    def setUp(self):
        skip_without_redis(self)  # it needs no Redis, but the feature's tests go together

    def test_503_without_redis(self):
        server = h.Server(BINARY).start()
        try:
            body, ctype = multipart({"purpose": "batch"}, {"file": ("b.jsonl", b"{}\n")})
            for method, path, payload, hdrs in (
                    ("POST", "/v1/files", body, {"Content-Type": ctype}),
                    ("GET", "/v1/files/file-x", None, None),
                    ("GET", "/v1/files/file-x/content", None, None),
                    ("DELETE", "/v1/files/file-x", None, None),
                    ("POST", "/v1/batches", json.dumps({"input_file_id": "file-x",
                                                        "endpoint": "/v1/embeddings",
                                                        "completion_window": "24h"}), None),
                    ("GET", "/v1/batches", None, None),
                    ("GET", "/v1/batches/batch_x", None, None),
                    ("POST", "/v1/batches/batch_x/cancel", "{}", None)):
                status, _, raw = server.request(method, path, payload, hdrs)
                self.assertEqual(status, 503, (method, path, raw))
                self.assertIn("error", h.parse_json(raw))
            status, _, _ = server.post_json("/v1/embeddings", {"input": "still serving"})
            self.assertEqual(status, 200)
        finally:
            self.assertEqual(server.stop(), 0, server.log_text())


# ==============================================================================================
class TwoWorkersTest(RedisCase):
    """Two `tideserve worker`s and a `serve` without --jobs: 10,000 lines over 4 batches."""

    def test_10000_lines_two_workers(self):
        server = self.serve()
        workers = [self.worker("two-a"), self.worker("two-b")]
        per = 2500
        batches = []
        all_lines = {}
        for b in range(4):
            lines = light_lines(per, "b%d" % b)
            all_lines.update((x["custom_id"], x) for x in lines)
            batches.append((submit(server, lines), [x["custom_id"] for x in lines]))
        outs = []
        for batch, ids in batches:
            final = wait_batch(server, batch["id"], timeout=240)
            self.assertEqual(final["status"], "completed", final)
            self.assertEqual(final["request_counts"], {"total": per, "completed": per, "failed": 0})
            out, err = results(server, final)
            self.assertEqual(err, [])
            self.assert_exactly_once(out, ids)
            outs += out
        self.assert_unique_request_ids(outs)
        for o in random.Random(7).sample(outs, 40):
            body = all_lines[o["custom_id"]]["body"]
            status, _, direct = server.post_json("/v1/embeddings", body)
            self.assertEqual(status, 200)
            self.assertLessEqual(h.max_abs_diff(embeddings_of(o["response"]["body"])[0],
                                                embeddings_of(direct)[0]), 1e-5)
        done_by = [jobs_lines(w, "completed") for w in workers]
        self.assertTrue(all(n > 0 for n in done_by), "both workers computed lines: %s" % done_by)
        self.assertEqual(sum(done_by), 4 * per, "no line computed twice: %s" % done_by)
        self.assertEqual(queue_state(self.redis)[:3], (0, 0, 0))


# ==============================================================================================
class WorkerRoutesTest(RedisCase):
    """A `tideserve worker`'s port answers its probes and /metrics only; `serve` without --jobs
    consumes nothing."""

    def test_worker_ready_when_serving(self):
        # Redis is up the whole time: once the worker logs "serving" (ready), its readiness
        # probe says so too.
        w = self.worker("ready-w")
        self.assertTrue(w.event("jobs_enabled")["reachable"], w.event("jobs_enabled"))
        status, _, body = w.request("GET", "/v2/health/ready")
        self.assertEqual(status, 200, "/v2/health/ready right after the serving line: %r" % body)
        self.assertEqual(w.request("GET", "/health")[0], 200)

    def test_worker_has_no_other_open_routes(self):
        # The unauthenticated metadata routes of `serve` are not a worker's either, nor does a
        # wrong method on an API route reveal it (405 with Allow).
        w = self.worker("open-w")
        for method, path in (("GET", "/info"), ("GET", "/v2"),
                             ("GET", "/v2/models/" + h.MODEL_ID),
                             ("GET", "/v2/models/%s/ready" % h.MODEL_ID),
                             ("GET", "/v1/embeddings")):
            with self.subTest(path=path, method=method):
                status, _, raw = w.request(method, path)
                self.assertEqual(status, 404, (method, path, raw[:200]))

    def test_worker_routes(self):
        server = self.serve()
        self.assertFalse(server.event("jobs_enabled")["consume"], server.event("jobs_enabled"))
        self.assertIsNone(server.event("jobs_worker_started"))
        w = self.worker("routes-w")
        self.assertEqual(w.event("jobs_worker_started")["consumer"], "routes-w")
        wait_until(lambda: w.request("GET", "/v2/health/ready")[0] == 200, "worker ready", 30)
        for path in ("/health", "/v2/health/live", "/v2/health/ready", "/metrics"):
            status, _, body = w.request("GET", path)
            self.assertEqual(status, 200, (path, body))
        # The gauge follows the janitor's round trips (its first at start, then every 1 s).
        wait_until(lambda: h.metric(metrics(w), "tideserve_jobs_redis_up") == 1,
                   "the worker's tideserve_jobs_redis_up 1", 15)
        for method, path, body in (("POST", "/v1/embeddings", '{"input": "x"}'),
                                   ("GET", "/v1/batches", None), ("GET", "/v1/models", None),
                                   ("POST", "/v1/files", "{}"),
                                   ("POST", "/v1/batches", "{}")):
            status, _, raw = w.request(method, path, body)
            self.assertEqual(status, 404, (method, path, raw))
            self.assertIn("a worker answers only", h.parse_json(raw)["error"])
        # Its batch goes through the worker, not the API server.
        batch = wait_batch(server, submit(server, light_lines(3, "r"))["id"])
        self.assertEqual(batch["status"], "completed", batch)
        self.assertEqual(jobs_lines(w, "completed"), 3)
        self.assertIsNone(h.metric(metrics(server), "tideserve_jobs_lines_total",
                                   status="completed") or None)


# ==============================================================================================
class KedaTest(RedisCase):
    """The queue as KEDA's redis-streams scaler reads it (XINFO GROUPS lag and pending,
    XPENDING), against the server's tideserve_jobs_queue_depth and the batch's counts."""

    def test_lag_pending_depth(self):
        n = 60
        server = self.serve()
        batch = submit(server, heavy_lines(n, "k"))
        wait_until(lambda: queue_depth_metric(server) == n, "queue_depth == %d" % n, timeout=15)
        lag, pending, xpending, xlen = queue_state(self.redis)
        self.assertEqual((lag, pending, xpending, xlen), (n, 0, 0, n))
        m = metrics(server)
        self.assertEqual(h.metric(m, "tideserve_jobs_queue_lag", queue=h.MODEL_ID), n)
        self.assertEqual(h.metric(m, "tideserve_jobs_queue_pending", queue=h.MODEL_ID), 0)
        self.assertEqual(h.metric(m, "tideserve_jobs_redis_up"), 1)

        # A worker stopped mid-batch: what is left in the queue is what the counts lack.
        w = self.worker("keda-w", "--jobs-read-count", "2")
        wait_done_lines(server, batch["id"], 5)
        w.signal(signal.SIGSTOP)

        def settled():  # a command the worker sent before the stop may still land
            a = (queue_state(self.redis), done(get_batch(server, batch["id"])))
            time.sleep(0.3)
            b = (queue_state(self.redis), done(get_batch(server, batch["id"])))
            return b if a == b else None
        (lag, pending, xpending, xlen), counted = wait_until(settled, "a stable queue", 15)
        self.assertLess(counted, n, "stopped before the end (make the lines heavier)")
        self.assertEqual(lag + pending, n - counted, (lag, pending, counted))
        self.assertEqual(xpending, pending)
        self.assertLessEqual(pending, 2, "at most --jobs-read-count held")
        wait_until(lambda: queue_depth_metric(server) == n - counted,
                   "queue_depth == %d" % (n - counted), timeout=15)

        w.signal(signal.SIGCONT)
        final = wait_batch(server, batch["id"])
        self.assertEqual(final["status"], "completed", final)
        self.assertEqual(queue_state(self.redis)[:3], (0, 0, 0))
        wait_until(lambda: queue_depth_metric(server) == 0, "queue_depth == 0", timeout=15)


# ==============================================================================================
class KillWorkerTest(RedisCase):
    """kill -9 one of two workers mid-batch: the other reclaims its lines after the visibility
    timeout and the batch completes with every line exactly once."""

    def test_kill9_worker(self):
        n = 200
        server = self.serve()
        args = ("--jobs-visibility-timeout", "2", "--jobs-read-count", "4")
        workers = {"kill-a": self.worker("kill-a", *args), "kill-b": self.worker("kill-b", *args)}
        batch = submit(server, heavy_lines(n, "kw"))
        wait_done_lines(server, batch["id"], 30)
        held = pending_by_consumer(self.redis)
        victim = max(workers, key=lambda c: held.get(c, 0))
        survivor = [c for c in workers if c != victim][0]
        workers[victim].proc.kill()
        workers[victim].wait_exit()
        held_at_kill = pending_by_consumer(self.redis).get(victim, 0)
        final = wait_batch(server, batch["id"], timeout=120)
        self.assertEqual(final["status"], "completed", final)
        self.assertEqual(final["request_counts"], {"total": n, "completed": n, "failed": 0})
        out, err = results(server, final)
        self.assertEqual(err, [])
        self.assert_exactly_once(out, ["kw-%d" % i for i in range(n)])
        self.assert_unique_request_ids(out)
        if held_at_kill:
            self.assertGreater(jobs_lines(workers[survivor], "reclaimed"), 0,
                               "%s held %d lines when killed" % (victim, held_at_kill))
        self.assertEqual(pending_by_consumer(self.redis).get(victim, 0), 0)
        self.assertEqual(queue_state(self.redis)[:3], (0, 0, 0))


# ==============================================================================================
class RedisRestartTest(RedisCase):
    """Redis killed -9 and restarted (AOF, fsync always) mid-batch: nothing accepted is lost;
    Redis down at submit: 503 and no batch."""

    redis_aof = True

    def test_redis_kill9_mid_batch(self):
        n = 200
        server = self.serve()
        w = self.worker("rr-w", "--jobs-read-count", "2")
        batch = submit(server, heavy_lines(n, "rr"))
        wait_done_lines(server, batch["id"], 20)
        self.redis.kill9()
        w.wait_event("jobs_redis_error", timeout=30)
        wait_until(lambda: w.request("GET", "/v2/health/ready")[0] == 503,
                   "the worker's readiness 503 while Redis is down", timeout=30)
        self.redis.restart()
        # The API's first requests after the restart: recorded, checked last (see below).
        unavailable = []
        final = wait_batch(server, batch["id"], timeout=180, unavailable=unavailable)
        self.assertEqual(final["status"], "completed", final)
        self.assertEqual(final["request_counts"], {"total": n, "completed": n, "failed": 0})
        out, err = results(server, final)
        self.assertEqual(err, [])
        self.assert_exactly_once(out, ["rr-%d" % i for i in range(n)])
        self.assert_unique_request_ids(out)
        wait_until(lambda: w.request("GET", "/v2/health/ready")[0] == 200,
                   "the worker's readiness 200 again", timeout=30)
        # Recovered: a new batch goes through.
        again = wait_batch(server, submit(server, light_lines(5, "after"))["id"])
        self.assertEqual(again["status"], "completed", again)
        # Redis came back before the API was asked anything: its connections, closed by the
        # dead Redis while idle, must be found stale and reopened, not answer 503 once each.
        self.assertEqual(unavailable, [], "GET /v1/batches/{id} answered 503 after Redis was "
                         "back (stale connections not reopened before use)")

    def test_redis_down_at_submit(self):
        server = self.serve(jobs=True)
        f = upload(server, jsonl(light_lines(3, "down")))
        self.redis.kill9()
        try:
            status, _, body = create(server, f["id"])
            self.assertEqual(status, 503, body)
            self.assertNotIn("id", body)
            self.assertIn("error", body)
            status, _, body = upload_raw(server, jsonl(light_lines(1, "x")))
            self.assertEqual(status, 503, body)
            self.assertNotIn("id", body)
        finally:
            self.redis.restart()
        status, _, batch = create(server, f["id"])
        self.assertEqual(status, 200, batch)
        final = wait_batch(server, batch["id"])
        self.assertEqual(final["status"], "completed", final)
        status, _, page = server.get_json("/v1/batches")
        self.assertEqual([b["id"] for b in page["data"]], [batch["id"]], "no batch from the 503")


# ==============================================================================================
class PoisonLineTest(RedisCase):
    """Lines that fail every time. One that can never be admitted (10 inputs, at most 4 in
    flight) is a client error at once (400 in the error file), not retried. One whose
    consumer never answers is reclaimed after the visibility timeout and, past
    --jobs-max-deliveries, goes to the dead letters and the error file
    (max_deliveries_exceeded)."""

    def test_never_admitted_line_is_a_client_error(self):
        server = self.serve("--max-client-batch-size", "64")
        w = self.worker("poison-w", "--max-concurrent-requests", "4",
                        "--max-client-batch-size", "64", "--jobs-visibility-timeout", "1",
                        "--jobs-max-deliveries", "2")
        lines = (light_lines(5, "p") + [line("poison", ["input %d" % i for i in range(10)])]
                 + light_lines(5, "q"))
        good = [x["custom_id"] for x in lines if x["custom_id"] != "poison"]
        batch = submit(server, lines)
        final = wait_batch(server, batch["id"], timeout=60)
        self.assertEqual(final["status"], "completed", final)
        self.assertEqual(final["request_counts"], {"total": 11, "completed": 10, "failed": 1})
        out, err = results(server, final)
        self.assert_exactly_once(out, good)
        self.assert_exactly_once(err, ["poison"], "error file")
        self.assertEqual(err[0]["response"]["status_code"], 400, err[0])
        self.assertIn("at most 4 can be in flight",
                      err[0]["response"]["body"]["error"]["message"])
        self.assertEqual(self.redis.command("XLEN", DEAD), 0)
        self.assertEqual(jobs_lines(w, "retried"), 0)
        self.assertEqual(jobs_lines(w, "dead_lettered"), 0)
        self.assertEqual(queue_state(self.redis)[:3], (0, 0, 0))

    def test_dead_letter_after_max_deliveries(self):
        server = self.serve()
        lines = [line("poison", "hangs its worker"), line("flaky", "hung once")]
        lines += light_lines(4, "ok")
        batch = submit(server, lines)
        # A consumer that takes the first two lines and never answers (a worker hung or dead
        # on them), as raw Redis commands: "poison" is delivered twice (XCLAIM counts one),
        # "flaky" once.
        got = self.redis.command("XREADGROUP", "GROUP", GROUP, "hung", "COUNT", "2",
                                 "STREAMS", QUEUE, ">")
        entries = [e[0] for e in got[0][1]]
        self.assertEqual(len(entries), 2, got)
        self.redis.command("XCLAIM", QUEUE, GROUP, "hung", "0", entries[0])  # (no JUSTID)
        counts = {e[0]: e[3] for e in self.redis.command("XPENDING", QUEUE, GROUP, "-", "+", 10)}
        self.assertEqual(counts, {entries[0]: 2, entries[1]: 1})
        rescuer = self.worker("poison-rescuer", "--jobs-visibility-timeout", "1",
                              "--jobs-max-deliveries", "2")
        final = wait_batch(server, batch["id"], timeout=60)
        self.assertEqual(final["status"], "completed", final)
        self.assertEqual(final["request_counts"], {"total": 6, "completed": 5, "failed": 1})
        out, err = results(server, final)
        # "flaky": its second delivery is within --jobs-max-deliveries 2, so it is computed.
        self.assert_exactly_once(out, ["flaky"] + ["ok-%d" % i for i in range(4)])
        self.assert_exactly_once(err, ["poison"], "error file")
        self.assertEqual(err[0]["error"]["code"], "max_deliveries_exceeded", err[0])
        self.assertIsInstance(err[0]["error"]["message"], str)
        self.assertEqual(self.redis.command("XLEN", DEAD), 1)
        entry = h.redis_pairs(self.redis.command("XRANGE", DEAD, "-", "+")[0][1])
        self.assertEqual(entry.get("batch"), batch["id"], entry)
        self.assertEqual(entry.get("entry"), entries[0], entry)
        self.assertEqual(jobs_lines(rescuer, "dead_lettered"), 1)
        self.assertEqual(jobs_lines(rescuer, "reclaimed"), 2)
        self.assertEqual(queue_state(self.redis)[:3], (0, 0, 0))
        # The hung consumer answering late changes nothing: its claim is gone.
        self.assertEqual(pending_by_consumer(self.redis), {})


# ==============================================================================================
class CancelTest(RedisCase):
    """Cancel mid-run: cancelling, then cancelled with a partial output."""

    def test_cancel_mid_run(self):
        n = 400
        server = self.serve()
        w = self.worker("cancel-w", "--jobs-read-count", "1")
        batch = submit(server, heavy_lines(n, "c"))
        wait_done_lines(server, batch["id"], 3)
        status, _, cancelling = server.post_json("/v1/batches/%s/cancel" % batch["id"], {})
        self.assertEqual(status, 200, cancelling)
        self.assertIn(cancelling["status"], ("cancelling", "cancelled"), cancelling)
        self.assertIsInstance(cancelling["cancelling_at"], int)
        final = wait_batch(server, batch["id"], timeout=60)
        self.assertEqual(final["status"], "cancelled", final)
        self.assertIsInstance(final["cancelled_at"], int)
        out, err = results(server, final)
        rc = final["request_counts"]
        self.assertEqual(rc["total"], n)
        self.assertEqual(rc["completed"], len(out), rc)
        self.assertEqual(rc["failed"], len(err), rc)
        self.assertLess(len(out) + len(err), n, "partial")
        self.assertGreaterEqual(len(out), 3)
        ids = [x["custom_id"] for x in out + err]
        self.assertEqual(len(ids), len(set(ids)), "each line at most once")
        self.assertTrue(set(ids) <= {"c-%d" % i for i in range(n)})
        # The rest of its lines leave the queue (skipped), so nothing keeps a scaler up.
        wait_until(lambda: queue_state(self.redis)[:2] == (0, 0), "the queue empties", 60)
        self.assertGreater(jobs_lines(w, "skipped"), 0)
        self.assertEqual(get_batch(server, batch["id"])["status"], "cancelled")
        self.assertEqual(get_batch(server, batch["id"])["request_counts"], rc)


# ==============================================================================================
class ExpiryTest(RedisCase):
    """Past the completion window (shortened to 2 s) a batch no worker ran is expired."""

    def test_expired(self):
        server = self.serve("--jobs-completion-window-seconds", "2")
        batch = submit(server, light_lines(5, "e"))
        self.assertEqual(batch["completion_window"], "24h")
        self.assertLessEqual(batch["expires_at"] - batch["created_at"], 3)
        final = wait_batch(server, batch["id"], timeout=30)
        self.assertEqual(final["status"], "expired", final)
        self.assertIsInstance(final["expired_at"], int)
        out, err = results(server, final)
        self.assertEqual(out, [])
        self.assert_exactly_once(err, ["e-%d" % i for i in range(5)], "error file")
        self.assert_unique_request_ids(err)
        for e in err:
            self.assertIsNone(e["response"], e)
            self.assertEqual(e["error"]["code"], "batch_expired", e)
            self.assertIsInstance(e["error"]["message"], str)
        self.assertEqual(final["request_counts"]["total"], 5)
        self.assertEqual(final["request_counts"]["completed"], 0)
        # A worker started later skips its lines: the batch stays expired, nothing computed.
        w = self.worker("expiry-w")
        wait_until(lambda: queue_state(self.redis)[:2] == (0, 0), "the queue empties", 30)
        self.assertEqual(jobs_lines(w, "completed"), 0)
        self.assertEqual(get_batch(server, batch["id"])["status"], "expired")


# ==============================================================================================
class SigtermWorkerTest(RedisCase):
    """SIGTERM a worker mid-batch: it exits 0 after shutdown_complete; another worker finishes
    the batch with every line once, redoing none the first one wrote."""

    def test_sigterm_worker(self):
        n = 200
        server = self.serve()
        a = self.worker("term-a", "--jobs-read-count", "2")
        batch = submit(server, heavy_lines(n, "st"))
        wait_done_lines(server, batch["id"], 20)
        rc = a.stop(timeout=30)
        self.assertEqual(rc, 0, a.log_text())
        self.assertIsNotNone(a.event("shutdown_complete"), a.log_text())
        by_a = done(get_batch(server, batch["id"]))
        self.assertLess(by_a, n, "stopped before the end")
        self.assertEqual(done(get_batch(server, batch["id"])), by_a, "nothing after the exit")
        # It held nothing when it exited (every line it read was written), so it left the group.
        self.assertEqual(self.redis.command("XPENDING", QUEUE, GROUP)[0], 0)
        consumers = [h.redis_pairs(c)["name"]
                     for c in self.redis.command("XINFO", "CONSUMERS", QUEUE, GROUP)]
        self.assertNotIn("term-a", consumers)
        self.assertEqual(a.event("jobs_worker_stopped")["left_groups"], 1)
        b = self.worker("term-b", "--jobs-visibility-timeout", "1")
        final = wait_batch(server, batch["id"], timeout=120)
        self.assertEqual(final["status"], "completed", final)
        self.assertEqual(final["request_counts"], {"total": n, "completed": n, "failed": 0})
        out, err = results(server, final)
        self.assertEqual(err, [])
        self.assert_exactly_once(out, ["st-%d" % i for i in range(n)])
        self.assertEqual(jobs_lines(b, "completed"), n - by_a, "the second worker redid none")


# ==============================================================================================
class NodeClientTest(RedisCase):
    """The official openai npm client: files, batches, content, list, cancel, errors."""

    def test_openai_npm_batch_client(self):
        server = self.serve("--jobs-read-count", "1", jobs=True)
        r = h.run_node_client(self, "openai", "batch_client.mjs",
                              [server.url("/v1"), h.MODEL_ID, h.HIDDEN])
        self.assertEqual(r.returncode, 0, "batch_client.mjs failed:\n" + r.stdout + r.stderr)
        self.assertIn("batch client: ok", r.stdout)


if __name__ == "__main__":
    sys.exit(h.run_tests(globals(), __doc__))
