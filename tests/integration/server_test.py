#!/usr/bin/env python3
"""Drives `tideserve serve` over real HTTP with curl: the seed contract (/health, /predict), the
TEI, OpenAI and KServe v2 families, bad input of every kind, the API key, the lifecycle (liveness,
readiness, SIGTERM drain, healthcheck) and /metrics (checked by promtool). Each class starts its
own server on 127.0.0.1 port 0 and stops it in its teardown, requiring a clean exit (0): under
ASan that also catches leaks and memory errors in the server.

Numbers are checked against `tideserve embed` (the engine without the server): with the ids the
server's own /tokenize reports, and with the same text (`embed` tokenizes it itself).

usage: server_test.py PATH_TO_TIDESERVE [--only CLASS] [--exclude CLASS] [unittest names]
       (run from the repository root; exit 77 when every test that ran was skipped)
"""
import ast
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None
KEY = "s3cret-key"
VERSION = "7"
MAX_INPUT = 128  # --max-input-length of the contract server (the seed's max_length default fits)
MAX_BATCH = 4  # --max-client-batch-size
PAYLOAD_LIMIT = 8192
TOKENIZE_LIMIT = 1000  # --max-tokenize-tokens of the bad-input server
TOL = 1e-5

# Every CJK character below is its own token in the bundled vocabulary: a text of n of them has
# n + 2 tokens, which the tests check through /tokenize before relying on it.
CJK = "你好世界天气很我们今去公园学习中国人大小上下山水火"


def cjk_text(n, offset=0):
    return "".join(CJK[(offset + i) % len(CJK)] for i in range(n))


def embed_cli(ids=None, text=None, pooling="cls", normalize=False, texts=None):
    """The engine's answer without the server: `tideserve embed` (token ids, one text or
    several texts)."""
    args = [BINARY, "embed", "--model", th.MODEL, "--threads", "1", "--pooling", pooling]
    if normalize:
        args.append("--normalize")
    if ids is not None:
        args += ["--ids", ",".join(str(i) for i in ids)]
    else:
        args += ["--", *(texts if texts is not None else [text])]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=th.clean_env())
    return r


def embed_cli_text_vectors(texts, **kw):
    """`tideserve embed TEXT...`: exit 0 and one JSON array of the hidden size per text."""
    r = embed_cli(texts=texts, **kw)
    if r.returncode != 0:
        raise AssertionError("tideserve embed TEXT failed (%d): %s" % (r.returncode, r.stderr))
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]
    if len(rows) != len(texts) or any(len(row) != th.HIDDEN for row in rows):
        raise AssertionError("tideserve embed TEXT: %d inputs gave rows of lengths %r"
                             % (len(texts), [len(row) for row in rows]))
    return rows


def embed_cli_vector(ids, **kw):
    r = embed_cli(ids=ids, **kw)
    if r.returncode != 0:
        raise AssertionError("tideserve embed failed: " + r.stderr)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


class ServerCase(unittest.TestCase):
    """Starts one server per class; curl helpers; checks the server still answers and exits 0."""

    server_args = ()
    server_env = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tideserve_server_test_")
        cls.server = th.Server(BINARY, *cls.server_args, env=cls.server_env).start()

    @classmethod
    def tearDownClass(cls):
        try:
            rc = cls.server.stop()
            if rc != 0:
                raise AssertionError("tideserve exited %d after SIGTERM\n%s"
                                     % (rc, cls.server.log_text()))
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- curl ---------------------------------------------------------------------------------
    def curl(self, method, path, body=None, headers=None, content_type="application/json"):
        """(status, headers {lowercase: value}, body bytes) of one request made by curl."""
        header_file = os.path.join(self.tmp, "headers")
        cmd = ["curl", "-sS", "--max-time", "60", "-X", method, "-D", header_file, "-o", "-",
               "-H", "Expect:"]
        for k, v in (headers or {}).items():
            cmd += ["-H", "%s: %s" % (k, v)]
        data = None
        if body is not None:
            data = body.encode("utf-8") if isinstance(body, str) else body
            if content_type is not None:
                cmd += ["-H", "Content-Type: " + content_type]
            cmd += ["--data-binary", "@-"]
        if method == "HEAD":
            cmd = [c for c in cmd if c != "-X" and c != "HEAD"] + ["-I"]
        cmd.append(self.server.url(path))
        r = subprocess.run(cmd, input=data, capture_output=True, timeout=90)
        if r.returncode != 0:
            raise AssertionError("curl %s %s failed (%d): %s" % (method, path, r.returncode,
                                                                  r.stderr.decode()))
        with open(header_file, "rb") as f:
            head = f.read().decode("latin-1")
        blocks = [b for b in head.split("\r\n\r\n") if b.strip()]
        lines = blocks[-1].split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return status, hdrs, r.stdout

    def curl_json(self, method, path, obj=None, headers=None, raw=None):
        body = raw if raw is not None else (json.dumps(obj) if obj is not None else None)
        status, hdrs, data = self.curl(method, path, body, headers)
        return status, hdrs, th.parse_json(data) if data else None

    def post(self, path, obj, headers=None):
        return self.curl_json("POST", path, obj, headers)

    # -- assertions ---------------------------------------------------------------------------
    def assert_close(self, got, want, tol=TOL, what=""):
        self.assertEqual(len(got), len(want), what)
        diff = th.max_abs_diff(got, want)
        self.assertLessEqual(diff, tol, "%s: max |diff| %g > %g" % (what, diff, tol))

    def assert_unit(self, v, what=""):
        self.assertAlmostEqual(th.norm(v), 1.0, delta=1e-5, msg=what)

    def assert_error(self, result, status, family, needle=None):
        """The status and the JSON error body of one API family."""
        got_status, hdrs, body = result
        self.assertEqual(got_status, status, body)
        self.assertTrue(hdrs.get("content-type", "").startswith("application/json"), hdrs)
        self.assertIsInstance(body, dict, body)
        if family == "seed":
            self.assertEqual(set(body), {"detail"}, body)
            message = body["detail"]
        elif family == "tei":
            self.assertEqual(set(body), {"error", "error_type"}, body)
            self.assertIsInstance(body["error_type"], str)
            self.assertTrue(body["error_type"], body)
            message = body["error"]
        elif family == "openai":
            self.assertEqual(set(body), {"error"}, body)
            err = body["error"]
            self.assertIsInstance(err, dict, body)
            self.assertIn("message", err)
            self.assertIn("type", err)
            expected_type = {400: "invalid_request_error", 401: "authentication_error",
                             404: "not_found_error", 413: "invalid_request_error",
                             415: "invalid_request_error", 429: "rate_limit_error"}.get(status)
            if expected_type:
                self.assertEqual(err["type"], expected_type, body)
            message = err["message"]
        else:  # kserve / plain
            self.assertIn("error", body)
            message = body["error"]
        self.assertIsInstance(message, str)
        self.assertTrue(message, body)
        if needle is not None:
            self.assertIn(needle, message)
        return body

    def assert_still_serving(self):
        status, _, body = self.post("/embed", {"inputs": "still here"},
                                    headers=self.auth_headers())
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body), 1)
        self.assertEqual(len(body[0]), th.HIDDEN)
        self.assertIsNone(self.server.proc.poll(), "the server exited")

    def auth_headers(self):
        return {}

    # -- references ---------------------------------------------------------------------------
    def token_ids(self, text, headers=None):
        status, _, body = self.post("/tokenize", {"inputs": text}, headers or self.auth_headers())
        self.assertEqual(status, 200, body)
        return [t["id"] for t in body[0]]


# ==============================================================================================
class ContractTest(ServerCase):
    """The seed contract and the success paths of every family."""

    server_args = ("--model-version", VERSION, "--max-input-length", MAX_INPUT,
                   "--max-client-batch-size", MAX_BATCH, "--payload-limit", PAYLOAD_LIMIT)

    def test_health(self):
        status, hdrs, body = self.curl_json("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "healthy", "model_version": VERSION})
        self.assertTrue(hdrs["content-type"].startswith("application/json"))
        float(hdrs["x-total-time"])

    def test_predict_matches_embed_cli(self):
        text = "tideserve 你好，世界 hello world"
        status, hdrs, body = self.post("/predict", {"text": text, "max_length": 128})
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body), {"prediction", "embedding", "latency_ms", "model_version"})
        self.assertEqual(body["model_version"], VERSION)
        self.assertIsInstance(body["latency_ms"], float)
        self.assertGreaterEqual(body["latency_ms"], 0.0)
        self.assertLess(body["latency_ms"], 60000.0)
        emb = body["embedding"]
        self.assertEqual(len(emb), th.HIDDEN)
        self.assertTrue(all(isinstance(x, float) for x in emb))
        self.assertIsInstance(body["prediction"], str)
        pred = ast.literal_eval(body["prediction"])
        self.assertIsInstance(pred, list)
        self.assertEqual(len(pred), 1)
        self.assert_close(pred[0], emb, 1e-6, "prediction vs embedding")
        # The seed returned an unnormalized CLS vector.
        self.assertGreater(abs(th.norm(emb) - 1.0), 1e-3)

        ids = self.token_ids(text)
        self.assert_close(emb, embed_cli_vector(ids), TOL, "/predict vs embed --ids")
        # `embed` tokenizes text itself: the same CLS vector, unnormalized.
        (row,) = embed_cli_text_vectors([text])
        self.assert_close(emb, row, TOL, "/predict vs embed TEXT")

        for h in ("x-queue-time", "x-inference-time", "x-tokenization-time", "x-total-time"):
            self.assertGreaterEqual(float(hdrs[h]), 0.0, h)

    def test_predict_default_and_short_max_length_truncates(self):
        text = cjk_text(20)
        ids = self.token_ids(text)
        self.assertEqual(len(ids), 22)
        status, _, full = self.post("/predict", {"text": text})
        self.assertEqual(status, 200, full)
        self.assert_close(full["embedding"], embed_cli_vector(ids), TOL, "max_length default")
        status, _, short = self.post("/predict", {"text": text, "max_length": 8})
        self.assertEqual(status, 200, short)
        # Truncated like the seed's tokenizer: [CLS] + 6 tokens + [SEP].
        self.assert_close(short["embedding"], embed_cli_vector(ids[:7] + ids[-1:]), TOL,
                          "max_length 8")
        self.assertGreater(th.max_abs_diff(short["embedding"], full["embedding"]), 1e-3)

    def test_tokenize(self):
        status, _, body = self.post("/tokenize", {"inputs": "hello 你好"})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body), 1)
        toks = body[0]
        self.assertEqual([t["text"] for t in toks], ["[CLS]", "hello", "你", "好", "[SEP]"])
        for t in toks:
            self.assertEqual(set(t), {"id", "text", "special", "start", "stop"})
            self.assertIsInstance(t["id"], int)
        self.assertTrue(toks[0]["special"] and toks[-1]["special"])
        self.assertIsNone(toks[0]["start"])
        text = "hello 你好"
        for t in toks[1:-1]:
            self.assertFalse(t["special"])
            self.assertEqual(text[t["start"]:t["stop"]], t["text"])
        status, _, body = self.post("/tokenize", {"inputs": ["hello 你好", "世界"],
                                                  "add_special_tokens": False})
        self.assertEqual(status, 200, body)
        self.assertEqual([[t["text"] for t in seq] for seq in body],
                         [["hello", "你", "好"], ["世", "界"]])
        self.assertEqual([t["id"] for t in body[0]], [t["id"] for t in toks[1:-1]])

    def test_embed_string_and_list(self):
        texts = ["hello world", cjk_text(5), "tideserve 你好"]
        status, hdrs, one = self.post("/embed", {"inputs": texts[0]})
        self.assertEqual(status, 200, one)
        self.assertEqual(len(one), 1)
        self.assertEqual(len(one[0]), th.HIDDEN)
        self.assert_unit(one[0], "normalize defaults to true")
        for h in ("x-queue-time", "x-inference-time", "x-tokenization-time", "x-total-time"):
            self.assertGreaterEqual(float(hdrs[h]), 0.0, h)
        status, _, many = self.post("/embed", {"inputs": texts})
        self.assertEqual(status, 200, many)
        self.assertEqual(len(many), 3)
        self.assert_close(many[0], one[0], TOL, "list[0] vs single")
        for i, text in enumerate(texts):
            self.assert_unit(many[i])
            ref = embed_cli_vector(self.token_ids(text), normalize=True)
            self.assert_close(many[i], ref, TOL, "input %d vs embed --normalize" % i)
        # Different texts, different vectors (the order is kept).
        self.assertGreater(th.max_abs_diff(many[0], many[1]), 1e-3)

    def test_embed_normalize_false(self):
        text = "hello 世界"
        status, _, raw = self.post("/embed", {"inputs": text, "normalize": False})
        self.assertEqual(status, 200, raw)
        ids = self.token_ids(text)
        self.assert_close(raw[0], embed_cli_vector(ids), TOL, "normalize false vs embed")
        status, _, unit = self.post("/embed", {"inputs": text, "normalize": True})
        n = th.norm(raw[0])
        self.assert_close(unit[0], [x / n for x in raw[0]], TOL, "normalized = raw / |raw|")

    def test_embed_cli_texts_equal_the_server(self):
        # Several texts in one `tideserve embed` run: one row per text, in order, each what the
        # server answers for that text (CLS pooling, with and without normalization).
        texts = ["hello 世界", cjk_text(9, 3), "tideserve 你好 world"]
        status, _, raw = self.post("/embed", {"inputs": texts, "normalize": False})
        self.assertEqual(status, 200, raw)
        status, _, unit = self.post("/embed", {"inputs": texts})
        self.assertEqual(status, 200, unit)
        for rows, want, what in ((embed_cli_text_vectors(texts), raw, "raw"),
                                 (embed_cli_text_vectors(texts, normalize=True), unit, "unit")):
            for i in range(len(texts)):
                self.assert_close(rows[i], want[i], TOL, "embed TEXT vs /embed %s, input %d"
                                  % (what, i))
        self.assertGreater(th.max_abs_diff(raw[0], raw[1]), 1e-3)

    def test_embed_truncate_and_direction(self):
        long_text = cjk_text(MAX_INPUT + 40)
        self.assertEqual(len(self.token_ids(long_text)), MAX_INPUT + 42)
        keep = MAX_INPUT - 2
        status, _, right = self.post("/embed", {"inputs": long_text, "truncate": True})
        self.assertEqual(status, 200, right)
        status, _, right2 = self.post("/embed", {"inputs": long_text, "truncate": True,
                                                 "truncation_direction": "Right"})
        self.assertEqual(status, 200, right2)
        status, _, left = self.post("/embed", {"inputs": long_text, "truncate": True,
                                               "truncation_direction": "Left"})
        self.assertEqual(status, 200, left)
        status, _, head = self.post("/embed", {"inputs": long_text[:keep]})
        self.assertEqual(status, 200, head)
        status, _, tail = self.post("/embed", {"inputs": long_text[-keep:]})
        self.assertEqual(status, 200, tail)
        self.assert_close(right[0], head[0], TOL, "Right keeps the head")
        self.assert_close(right2[0], head[0], TOL, "Right keeps the head")
        self.assert_close(left[0], tail[0], TOL, "Left keeps the tail")
        self.assertGreater(th.max_abs_diff(left[0], right[0]), 1e-3)
        # Exactly at the limit: no truncation needed.
        status, _, body = self.post("/embed", {"inputs": cjk_text(keep)})
        self.assertEqual(status, 200, body)

    def test_prompt_tokens_header_counts_the_tokens(self):
        texts = ["hello world", cjk_text(5), "tideserve 你好"]
        counts = [len(self.token_ids(t)) for t in texts]
        infer = "/v2/models/%s/infer" % th.MODEL_ID
        requests = (
            ("/embed", {"inputs": texts[0]}, counts[0]),
            ("/embed", {"inputs": texts}, sum(counts)),
            ("/v1/embeddings", {"input": texts[1:]}, sum(counts[1:])),
            (infer, {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                                 "data": texts[:2]}]}, sum(counts[:2])),
            ("/predict", {"text": texts[2]}, counts[2]),
        )
        for path, obj, want in requests:
            status, hdrs, body = self.post(path, obj)
            self.assertEqual(status, 200, (path, body))
            self.assertEqual(int(hdrs["x-prompt-tokens"]), want, (path, obj))
            if path == "/v1/embeddings":
                self.assertEqual(body["usage"]["prompt_tokens"], want)
        # The tokens that reached the engine: after truncation.
        long_text = cjk_text(30)
        self.assertEqual(len(self.token_ids(long_text)), 32)
        status, hdrs, _ = self.post("/predict", {"text": long_text, "max_length": 8})
        self.assertEqual((status, int(hdrs["x-prompt-tokens"])), (200, 8))
        long_text = cjk_text(MAX_INPUT + 10)
        status, hdrs, _ = self.post("/embed", {"inputs": [long_text, texts[0]], "truncate": True})
        self.assertEqual((status, int(hdrs["x-prompt-tokens"])), (200, MAX_INPUT + counts[0]))

    def test_info(self):
        status, _, info = self.curl_json("GET", "/info")
        self.assertEqual(status, 200, info)
        self.assertEqual(info["model_id"], th.MODEL_ID)
        self.assertEqual(info["model_version"], VERSION)
        self.assertEqual(info["model_dtype"], "float32")
        embedding = info["model_type"]["embedding"]
        self.assertEqual(embedding["pooling"], "cls")
        # The bundled model declares no pooling: /info says so, and why CLS.
        self.assertIn("no pooling declared", embedding["pooling_source"])
        self.assertEqual((embedding["prompts"], embedding["normalized"]), ({}, False))
        self.assertEqual(info["hidden_size"], th.HIDDEN)
        self.assertEqual(info["max_input_length"], MAX_INPUT)
        self.assertEqual(info["max_client_batch_size"], MAX_BATCH)
        self.assertEqual(info["max_concurrent_requests"], 512)
        self.assertEqual(info["max_batch_tokens"], 2048)
        self.assertEqual(info["max_batch_requests"], 256)
        self.assertIs(info["ready"], True)
        self.assertIsInstance(info["version"], str)

    def test_openai_embeddings_float_and_base64(self):
        texts = ["hello world", "你好，世界"]
        status, _, err = self.post("/v1/embeddings", {"input": texts, "model": "anything"})
        self.assertEqual(status, 404, err)
        self.assertIn("unknown model 'anything'", err["error"]["message"])
        self.assertIn(th.MODEL_ID, err["error"]["message"])
        status, hdrs, fl = self.post("/v1/embeddings", {"input": texts, "model": th.MODEL_ID})
        self.assertEqual(status, 200, fl)
        self.assertEqual(fl["object"], "list")
        self.assertEqual(fl["model"], th.MODEL_ID)
        self.assertEqual([d["index"] for d in fl["data"]], [0, 1])
        self.assertEqual([d["object"] for d in fl["data"]], ["embedding", "embedding"])
        ntok = sum(len(self.token_ids(t)) for t in texts)
        self.assertEqual(fl["usage"], {"prompt_tokens": ntok, "total_tokens": ntok})
        status, _, tei = self.post("/embed", {"inputs": texts})
        for i in range(2):
            self.assertEqual(len(fl["data"][i]["embedding"]), th.HIDDEN)
            self.assert_unit(fl["data"][i]["embedding"])
            self.assert_close(fl["data"][i]["embedding"], tei[i], TOL, "OpenAI vs TEI")
        for h in ("x-queue-time", "x-inference-time", "x-tokenization-time", "x-total-time"):
            self.assertGreaterEqual(float(hdrs[h]), 0.0, h)

        status, _, b64 = self.post("/v1/embeddings", {"input": texts,
                                                      "encoding_format": "base64"})
        self.assertEqual(status, 200, b64)
        self.assertEqual(b64["model"], th.MODEL_ID)
        self.assertEqual(b64["usage"], fl["usage"])
        for i in range(2):
            self.assertIsInstance(b64["data"][i]["embedding"], str)
            decoded = th.decode_base64_f32(b64["data"][i]["embedding"])
            self.assertEqual(len(decoded), th.HIDDEN)
            # The float JSON is the shortest repr of the same float32: equal after rounding.
            self.assertEqual(decoded, [th.f32(x) for x in fl["data"][i]["embedding"]])

    def test_openai_single_string_token_ids_and_dimensions(self):
        text = "hello 世界"
        ids = self.token_ids(text)
        status, _, s = self.post("/v1/embeddings", {"input": text, "model": th.MODEL_ID})
        self.assertEqual(status, 200, s)
        self.assertEqual(len(s["data"]), 1)
        self.assertEqual(s["usage"]["prompt_tokens"], len(ids))
        status, _, t = self.post("/v1/embeddings", {"input": ids, "dimensions": th.HIDDEN})
        self.assertEqual(status, 200, t)
        self.assert_close(t["data"][0]["embedding"], s["data"][0]["embedding"], TOL, "ids")
        status, _, tt = self.post("/v1/embeddings", {"input": [ids, ids[:3]]})
        self.assertEqual(status, 200, tt)
        self.assertEqual(len(tt["data"]), 2)
        self.assertEqual(tt["usage"]["prompt_tokens"], len(ids) + 3)
        # Matryoshka: the first 32 components of the full answer, renormalized.
        status, _, cut = self.post("/v1/embeddings", {"input": text, "dimensions": 32})
        self.assertEqual(status, 200, cut)
        head = s["data"][0]["embedding"][:32]
        n = th.norm(head)
        self.assert_close(cut["data"][0]["embedding"], [x / n for x in head], TOL, "dimensions")
        self.assert_error(self.post("/v1/embeddings",
                                    {"input": text, "dimensions": th.HIDDEN + 1}),
                          400, "openai", "dimensions")

    def test_openai_models(self):
        status, _, body = self.curl_json("GET", "/v1/models")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["object"], "list")
        self.assertEqual([m["id"] for m in body["data"]], [th.MODEL_ID])

    def test_kserve_metadata_and_health(self):
        status, _, body = self.curl_json("GET", "/v2")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["name"], "tideserve")
        self.assertIsInstance(body["version"], str)
        self.assertEqual(self.curl_json("GET", "/v2/health/live")[:1], (200,))
        self.assertEqual(self.curl_json("GET", "/v2/health/ready")[2], {"ready": True})
        status, _, meta = self.curl_json("GET", "/v2/models/" + th.MODEL_ID)
        self.assertEqual(status, 200, meta)
        self.assertEqual(meta["name"], th.MODEL_ID)
        self.assertEqual(meta["versions"], [VERSION])
        self.assertEqual(meta["inputs"], [{"name": "text", "datatype": "BYTES", "shape": [-1]}])
        self.assertEqual(meta["outputs"], [{"name": "embedding", "datatype": "FP32",
                                            "shape": [-1, th.HIDDEN]}])
        status, _, ready = self.curl_json("GET", "/v2/models/%s/ready" % th.MODEL_ID)
        self.assertEqual((status, ready), (200, {"name": th.MODEL_ID, "ready": True}))
        status, _, ready = self.curl_json("GET", "/v2/models/%s/versions/%s/ready"
                                          % (th.MODEL_ID, VERSION))
        self.assertEqual(status, 200, ready)
        self.assert_error(self.curl_json("GET", "/v2/models/%s/versions/99" % th.MODEL_ID), 404,
                          "kserve", "99")
        self.assert_error(self.curl_json("GET", "/v2/models/nosuchmodel"), 404, "kserve",
                          "nosuchmodel")
        self.assert_error(self.curl_json("GET", "/v2/models/nosuchmodel/ready"), 404, "kserve")

    def test_kserve_infer(self):
        texts = ["hello world", "你好"]
        req = {"id": "req-1", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                                          "data": texts}]}
        status, hdrs, body = self.post("/v2/models/%s/infer" % th.MODEL_ID, req)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["model_name"], th.MODEL_ID)
        self.assertEqual(body["model_version"], VERSION)
        self.assertEqual(body["id"], "req-1")
        self.assertEqual(len(body["outputs"]), 1)
        out = body["outputs"][0]
        self.assertEqual(out["name"], "embedding")
        self.assertEqual(out["datatype"], "FP32")
        self.assertEqual(out["shape"], [2, th.HIDDEN])
        self.assertEqual(len(out["data"]), 2 * th.HIDDEN)
        status, _, raw = self.post("/embed", {"inputs": texts, "normalize": False})
        self.assert_close(out["data"], raw[0] + raw[1], TOL, "KServe (unnormalized) vs /embed")
        for h in ("x-queue-time", "x-inference-time", "x-tokenization-time", "x-total-time"):
            self.assertGreaterEqual(float(hdrs[h]), 0.0, h)
        # With the version in the path, and with normalize.
        req["parameters"] = {"normalize": True}
        status, _, body = self.post("/v2/models/%s/versions/%s/infer" % (th.MODEL_ID, VERSION),
                                    req)
        self.assertEqual(status, 200, body)
        data = body["outputs"][0]["data"]
        self.assert_unit(data[:th.HIDDEN])
        self.assert_unit(data[th.HIDDEN:])

    def test_head_on_get_route(self):
        # HEAD answers without a body: the next response on the same connection parses.
        conn = self.server.connection()
        try:
            status, _, body = th.send(conn, "HEAD", "/health")
            self.assertEqual((status, body), (200, b""))
            status, _, body = th.send(conn, "GET", "/health")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["status"], "healthy")
        finally:
            conn.close()


# ==============================================================================================
class BadInputTest(ServerCase):
    """Every client error: the right status and the family's JSON body; the server lives on."""

    server_args = ("--max-input-length", MAX_INPUT, "--max-client-batch-size", MAX_BATCH,
                   "--payload-limit", PAYLOAD_LIMIT, "--max-tokenize-tokens", TOKENIZE_LIMIT)
    infer = "/v2/models/%s/infer" % th.MODEL_ID

    def tearDown(self):
        self.assert_still_serving()

    def raw(self, path, data, content_type="application/json"):
        status, hdrs, body = self.curl("POST", path, data, content_type=content_type)
        return status, hdrs, th.parse_json(body)

    def test_malformed_json(self):
        for data in ('{"inputs": "a"', "{inputs: 1}", "not json", '{"a":1}}'):
            self.assert_error(self.raw("/predict", data), 400, "seed", "JSON")
            self.assert_error(self.raw("/embed", data), 400, "tei", "JSON")
            self.assert_error(self.raw("/tokenize", data), 400, "tei", "JSON")
            self.assert_error(self.raw("/v1/embeddings", data), 400, "openai", "JSON")
            self.assert_error(self.raw(self.infer, data), 400, "kserve", "JSON")

    def test_empty_body(self):
        for path, family in (("/predict", "seed"), ("/embed", "tei"), ("/v1/embeddings", "openai"),
                             (self.infer, "kserve")):
            self.assert_error(self.raw(path, b""), 400, family, "empty")

    def test_body_not_an_object(self):
        self.assert_error(self.raw("/predict", '["text"]'), 422, "seed", "object")
        self.assert_error(self.raw("/embed", '"text"'), 422, "tei", "object")
        self.assert_error(self.raw("/v1/embeddings", "[1]"), 400, "openai", "object")

    def test_invalid_utf8(self):
        for path, family, body in (
                ("/predict", "seed", b'{"text": "ab\xff\xfe"}'),
                ("/embed", "tei", b'{"inputs": "\xc3\x28"}'),
                ("/tokenize", "tei", b'{"inputs": "\xed\xa0\x80"}'),  # a UTF-8 surrogate
                ("/v1/embeddings", "openai", b'{"input": ["ok", "\xf8\x88\x80\x80\x80"]}'),
                (self.infer, "kserve", b'{"inputs": [{"name": "t", "datatype": "BYTES", '
                                       b'"shape": [1], "data": ["\x80"]}]}')):
            self.assert_error(self.raw(path, body), 400, family, "UTF-8")

    def test_wrong_types(self):
        self.assert_error(self.post("/predict", {"text": 5}), 422, "seed", "'text'")
        self.assert_error(self.post("/predict", {"text": ["a"]}), 422, "seed", "'text'")
        self.assert_error(self.post("/predict", {"text": "a", "max_length": "9"}), 422, "seed",
                          "max_length")
        self.assert_error(self.post("/predict", {"text": "a", "max_length": 9.5}), 422, "seed",
                          "max_length")
        self.assert_error(self.post("/embed", {"inputs": 5}), 422, "tei", "inputs")
        self.assert_error(self.post("/embed", {"inputs": ["a", 1]}), 422, "tei", "inputs")
        self.assert_error(self.post("/embed", {"inputs": {"a": 1}}), 422, "tei", "inputs")
        self.assert_error(self.post("/embed", {"inputs": "a", "normalize": "yes"}), 422, "tei",
                          "normalize")
        self.assert_error(self.post("/embed", {"inputs": "a", "truncate": 1}), 422, "tei",
                          "truncate")
        self.assert_error(self.post("/embed", {"inputs": "a", "truncation_direction": "Up"}), 422,
                          "tei", "truncation_direction")
        self.assert_error(self.post("/tokenize", {"inputs": [None]}), 422, "tei", "inputs")
        self.assert_error(self.post("/v1/embeddings", {"input": 5}), 400, "openai", "input")
        self.assert_error(self.post("/v1/embeddings", {"input": [True]}), 400, "openai", "input")
        self.assert_error(self.post("/v1/embeddings", {"input": [1, "a"]}), 400, "openai")
        self.assert_error(self.post("/v1/embeddings", {"input": "a", "encoding_format": "hex"}),
                          400, "openai", "encoding_format")
        self.assert_error(self.post(self.infer, {"inputs": {}}), 400, "kserve", "inputs")
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "FP32", "shape": [1],
                                                             "data": [1.0]}]}), 400, "kserve",
                          "BYTES")
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "BYTES", "shape": [2],
                                                             "data": ["a"]}]}), 400, "kserve",
                          "shape")
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "BYTES", "shape": [1],
                                                             "data": [1]}]}), 400, "kserve")

    def test_missing_fields(self):
        self.assert_error(self.post("/predict", {}), 422, "seed", "text")
        self.assert_error(self.post("/predict", {"max_length": 8}), 422, "seed", "text")
        self.assert_error(self.post("/embed", {"input": "a"}), 422, "tei", "inputs")
        self.assert_error(self.post("/tokenize", {}), 422, "tei", "inputs")
        self.assert_error(self.post("/v1/embeddings", {"inputs": "a"}), 400, "openai", "input")
        self.assert_error(self.post(self.infer, {}), 400, "kserve", "inputs")
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "BYTES", "shape": [1]}]}),
                          400, "kserve", "data")

    def test_empty_inputs(self):
        self.assert_error(self.post("/embed", {"inputs": []}), 422, "tei", "empty")
        self.assert_error(self.post("/tokenize", {"inputs": []}), 422, "tei", "empty")
        self.assert_error(self.post("/v1/embeddings", {"input": []}), 400, "openai", "empty")
        self.assert_error(self.post("/v1/embeddings", {"input": [[]]}), 400, "openai", "empty")
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "BYTES", "shape": [0],
                                                             "data": []}]}), 400, "kserve",
                          "empty")
        self.assert_error(self.post(self.infer, {"inputs": []}), 400, "kserve")

    def test_empty_string(self):
        self.assert_error(self.post("/predict", {"text": ""}), 422, "seed", "empty")
        self.assert_error(self.post("/embed", {"inputs": ""}), 422, "tei", "empty")
        self.assert_error(self.post("/embed", {"inputs": ["a", ""]}), 422, "tei", "input 1")
        self.assert_error(self.post("/v1/embeddings", {"input": ""}), 400, "openai", "empty")
        # KServe answers every invalid request 400, the empty string too.
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "BYTES", "shape": [1],
                                                             "data": [""]}]}), 400, "kserve",
                          "empty")

    def test_max_length_out_of_range(self):
        for value in (1e30, -1e30, float(2 ** 70)):
            self.assert_error(self.post("/predict", {"text": "a", "max_length": value}), 422,
                              "seed", "max_length")
        # Integers beyond int64 are a bad value; beyond 64 bits (and 1e400) the JSON parser
        # refuses the number itself.
        for literal in (str(2 ** 63), str(2 ** 64 - 1)):
            self.assert_error(self.raw("/predict", '{"text": "a", "max_length": %s}' % literal),
                              422, "seed", "max_length")
        for literal in (str(2 ** 70), str(-2 ** 70), "1e400"):
            self.assert_error(self.raw("/predict", '{"text": "a", "max_length": %s}' % literal),
                              400, "seed", "number")
            self.assert_error(self.raw("/embed", '{"inputs": "a", "x": %s}' % literal), 400,
                              "tei", "number")
        for value in (-5, 0, 1, MAX_INPUT + 1):
            self.assert_error(self.post("/predict", {"text": "a", "max_length": value}), 422,
                              "seed", "max_length")
        self.assert_error(self.post("/v1/embeddings", {"input": [2 ** 40]}), 400, "openai",
                          "range")
        self.assert_error(self.post("/v1/embeddings", {"input": [-1]}), 400, "openai")
        self.assert_error(self.post("/v1/embeddings", {"input": [10 ** 7]}), 400, "openai",
                          "vocabulary")
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "BYTES",
                                                             "shape": [2 ** 62],
                                                             "data": ["a"]}]}), 400, "kserve")
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "BYTES", "shape": [-1],
                                                             "data": ["a"]}]}), 400, "kserve")

    def test_too_many_inputs(self):
        n = MAX_BATCH + 1
        self.assert_error(self.post("/embed", {"inputs": ["a"] * n}), 422, "tei", str(MAX_BATCH))
        self.assert_error(self.post("/tokenize", {"inputs": ["a"] * n}), 422, "tei")
        self.assert_error(self.post("/v1/embeddings", {"input": ["a"] * n}), 400, "openai",
                          str(MAX_BATCH))
        self.assert_error(self.post(self.infer, {"inputs": [{"datatype": "BYTES", "shape": [n],
                                                             "data": ["a"] * n}]}), 400, "kserve",
                          str(MAX_BATCH))
        status, _, body = self.post("/embed", {"inputs": ["a"] * MAX_BATCH})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body), MAX_BATCH)

    def test_input_too_long(self):
        long_text = cjk_text(MAX_INPUT)  # MAX_INPUT + 2 tokens
        self.assert_error(self.post("/embed", {"inputs": long_text}), 413, "tei", str(MAX_INPUT))
        self.assert_error(self.post("/embed", {"inputs": ["a", long_text]}), 413, "tei",
                          "input 1")
        self.assert_error(self.post("/v1/embeddings", {"input": long_text}), 400, "openai",
                          str(MAX_INPUT))
        self.assert_error(self.post("/v1/embeddings", {"input": list(range(1000, 1000 +
                                                                           MAX_INPUT + 1))}),
                          400, "openai", str(MAX_INPUT))
        tensor = {"datatype": "BYTES", "shape": [1], "data": [long_text]}
        self.assert_error(self.post(self.infer, {"inputs": [tensor]}), 413, "kserve")
        status, _, body = self.post("/embed", {"inputs": long_text, "truncate": True})
        self.assertEqual(status, 200, body)
        status, _, body = self.post(self.infer, {"inputs": [tensor],
                                                 "parameters": {"truncate": True}})
        self.assertEqual(status, 200, body)
        # /predict always truncates to max_length (the seed's behaviour).
        status, _, body = self.post("/predict", {"text": long_text, "max_length": MAX_INPUT})
        self.assertEqual(status, 200, body)

    def test_tokenize_answer_is_bounded(self):
        # "a " * n is n words: n + 2 tokens. The answer (~50 bytes a token) is bounded, not the
        # request alone: a 2.4 kB body would otherwise answer ~60 kB.
        status, hdrs, body = self.post("/tokenize", {"inputs": "a " * (TOKENIZE_LIMIT - 2)})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body[0]), TOKENIZE_LIMIT)
        self.assertIn("x-tokenization-time", hdrs)
        self.assert_error(self.post("/tokenize", {"inputs": "a " * (TOKENIZE_LIMIT - 1)}), 413,
                          "tei", "more than %d tokens" % TOKENIZE_LIMIT)
        half = "a " * (TOKENIZE_LIMIT // 2)
        self.assert_error(self.post("/tokenize", {"inputs": [half, half]}), 413, "tei",
                          "input 1")

    def test_unknown_route(self):
        for method, path in (("GET", "/nope"), ("POST", "/v1/chat/completions"),
                             ("GET", "/v2/models/%s/bogus" % th.MODEL_ID), ("GET", "/"),
                             ("GET", "/healthz")):
            status, hdrs, body = self.curl(method, path, "{}" if method == "POST" else None)
            self.assert_error((status, hdrs, th.parse_json(body)), 404, "plain")

    def test_head_is_get_without_a_body(self):
        conn = self.server.connection()
        try:
            for path in ("/health", "/info", "/metrics"):
                conn.request("HEAD", path)
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200, path)
                self.assertEqual(resp.read(), b"", path)
                self.assertGreater(int(resp.getheader("Content-Length")), 0, path)
            # The connection is still in step: a GET after the HEADs gets its own answer.
            conn.request("GET", "/health")
            resp = conn.getresponse()
            self.assertEqual(json.loads(resp.read())["status"], "healthy")
        finally:
            conn.close()

    def test_wrong_method(self):
        cases = (("GET", "/predict", "seed", "POST"), ("PUT", "/predict", "seed", "POST"),
                 ("POST", "/health", "seed", "GET"), ("DELETE", "/embed", "tei", "POST"),
                 ("GET", "/embed", "tei", "POST"), ("POST", "/info", "tei", "GET"),
                 ("GET", "/v1/embeddings", "openai", "POST"), ("POST", "/metrics", "plain", "GET"),
                 ("POST", "/v2/health/ready", "kserve", "GET"), ("GET", self.infer, "kserve",
                                                                  "POST"))
        for method, path, family, allow in cases:
            body = "{}" if method in ("POST", "PUT") else None
            status, hdrs, data = self.curl(method, path, body)
            result = (status, hdrs, th.parse_json(data))
            self.assert_error(result, 405, family)
            self.assertEqual(hdrs.get("allow"), allow, (method, path, hdrs))

    def test_unsupported_media_type(self):
        for path, family in (("/embed", "tei"), ("/predict", "seed"), ("/v1/embeddings", "openai"),
                             (self.infer, "kserve")):
            for ct in ("text/plain", "application/x-www-form-urlencoded"):
                self.assert_error(self.raw(path, '{"inputs": "a"}', content_type=ct), 415, family,
                                  "application/json")
        # With a charset parameter it is still JSON.
        status, _, body = self.raw("/embed", '{"inputs": "a"}',
                                   content_type="application/json; charset=utf-8")
        self.assertEqual(status, 200, body)

    def test_payload_over_limit(self):
        for size in (PAYLOAD_LIMIT + 1, 4 * PAYLOAD_LIMIT, 64 * PAYLOAD_LIMIT):
            body = json.dumps({"inputs": "a" * size})
            self.assertGreater(len(body), PAYLOAD_LIMIT)
            self.assert_error(self.raw("/embed", body), 413, "plain", str(PAYLOAD_LIMIT))
        # Just under the limit is parsed (and refused only for its length in tokens).
        body = json.dumps({"inputs": "a " * ((PAYLOAD_LIMIT - 20) // 2)})
        self.assertLessEqual(len(body), PAYLOAD_LIMIT)
        self.assert_error(self.raw("/embed", body), 413, "tei", "tokens")

    def test_malformed_http(self):
        import socket
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as s:
            s.sendall(b"GARBAGE\x01 / HTTP/9.9\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:200])
        self.assertIn(b'{"error":', data)


# ==============================================================================================
class ConnectionTest(ServerCase):
    """The keep-alive limits: --max-requests-per-connection and --idle-timeout. The header
    timeout is far beyond the bounds below, so that only the idle timeout can end an idle
    connection here."""

    MAX_REQUESTS = 3
    IDLE_TIMEOUT = 1
    server_args = ("--max-requests-per-connection", MAX_REQUESTS,
                   "--idle-timeout", IDLE_TIMEOUT, "--header-timeout", 120)
    HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.server.port), timeout=60)

    def test_the_last_allowed_answer_closes_the_connection(self):
        # Pipelined in one write, so no idle time passes between the requests.
        with self.connect() as sock:
            sock.sendall(self.HEALTH * self.MAX_REQUESTS)
            for i in range(self.MAX_REQUESTS):
                status, headers, body = th.read_response(sock)
                self.assertEqual(status, 200, body)
                self.assertEqual(json.loads(body)["status"], "healthy")
                if i < self.MAX_REQUESTS - 1:
                    self.assertNotEqual(headers.get("connection"), "close", "answer %d" % (i + 1))
                else:
                    self.assertEqual(headers.get("connection"), "close", "answer %d" % (i + 1))
            # ... and the server closes it (an orderly EOF, nothing more).
            _, data, how = th.wait_eof(sock, 30)
            self.assertEqual((how, data), ("eof", b""))
        # The count is per connection: a new one starts again.
        with self.connect() as sock:
            sock.sendall(self.HEALTH)
            status, headers, _ = th.read_response(sock)
            self.assertEqual(status, 200)
            self.assertNotEqual(headers.get("connection"), "close")

    def test_idle_keep_alive_is_closed_after_the_idle_timeout(self):
        with self.connect() as sock:
            sent = time.monotonic()
            sock.sendall(self.HEALTH)
            status, headers, _ = th.read_response(sock)
            self.assertEqual(status, 200)
            self.assertNotEqual(headers.get("connection"), "close")
            # The idle timer starts once the answer is written, after `sent`; the bound is far
            # below both the header timeout and the idle timeout's default (60 s).
            _, data, how = th.wait_eof(sock, 30)
            closed_after = time.monotonic() - sent
            self.assertEqual((how, data), ("eof", b""),
                             "the idle connection was not closed within 30 s")
            self.assertGreaterEqual(closed_after, 0.9 * self.IDLE_TIMEOUT,
                                    "closed before the idle timeout")
        self.assert_still_serving()


# ==============================================================================================
class LogLevelTest(unittest.TestCase):
    """--log-level debug adds one prediction_made line per /predict (text_length, latency_ms);
    at the default level (info) there is none."""

    def test_prediction_made_only_at_debug_level(self):
        texts = ["hello world", "the quick brown fox jumps over the lazy dog"]
        debug = th.Server(BINARY, "--log-level", "debug")
        info = th.Server(BINARY)  # both load at once
        latencies = []
        try:
            debug.start()
            info.start()
            for text in texts:
                status, _, body = debug.post_json("/predict", {"text": text})
                self.assertEqual(status, 200, body)
                latencies.append(body["latency_ms"])
            # Other routes are not predictions.
            self.assertEqual(debug.post_json("/embed", {"inputs": texts})[0], 200)
            status, _, body = info.post_json("/predict", {"text": texts[0]})
            self.assertEqual(status, 200, body)
        finally:
            rc_debug, rc_info = debug.stop(), info.stop()  # the whole log is read at the exit
        self.assertEqual(rc_debug, 0, debug.log_text())
        self.assertEqual(rc_info, 0, info.log_text())
        made = debug.events_named("prediction_made")
        self.assertEqual([e["text_length"] for e in made], [len(t) for t in texts],
                         debug.log_text())
        self.assertEqual({e["level"] for e in made}, {"debug"})
        # The same measurement as the answer's latency_ms (both printed with 3 decimals).
        self.assertEqual([e["latency_ms"] for e in made], latencies)
        self.assertEqual(info.events_named("prediction_made"), [], info.log_text())
        self.assertIsNotNone(info.event("shutdown_complete"))  # the info log was read whole


# ==============================================================================================
class ApiKeyTest(ServerCase):
    """--api-key (here through its environment variable API_KEY) guards the inference routes."""

    server_env = {"API_KEY": KEY, "MODEL_VERSION": "env-9"}
    infer = "/v2/models/%s/infer" % th.MODEL_ID
    guarded = (("POST", "/predict", {"text": "a"}, "seed"),
               ("POST", "/embed", {"inputs": "a"}, "tei"),
               ("POST", "/tokenize", {"inputs": "a"}, "tei"),
               ("POST", "/v1/embeddings", {"input": "a"}, "openai"),
               ("GET", "/v1/models", None, "openai"),
               ("POST", "/v2/models/%s/infer" % th.MODEL_ID,
                {"inputs": [{"datatype": "BYTES", "shape": [1], "data": ["a"]}]}, "kserve"))

    def auth_headers(self):
        return {"Authorization": "Bearer " + KEY}

    def test_guarded_routes_need_the_key(self):
        wrong_headers = ({}, {"Authorization": "Bearer wrong"},
                         {"Authorization": "Bearer " + KEY + "x"},
                         {"Authorization": "Bearer " + KEY[:-1]}, {"Authorization": KEY},
                         {"Authorization": "Basic " + KEY}, {"Authorization": "Bearer "})
        for method, path, obj, family in self.guarded:
            for headers in wrong_headers:
                result = self.curl_json(method, path, obj, headers)
                self.assert_error(result, 401, family)
                self.assertEqual(result[1].get("www-authenticate"), "Bearer", result[1])
            status, _, body = self.curl_json(method, path, obj, self.auth_headers())
            self.assertEqual(status, 200, (path, body))
        self.assert_still_serving()

    def test_open_routes(self):
        for path in ("/health", "/metrics", "/v2/health/ready", "/v2/health/live", "/v2",
                     "/info", "/v2/models/%s/ready" % th.MODEL_ID,
                     "/v2/models/" + th.MODEL_ID):
            status, _, body = self.curl("GET", path)
            self.assertEqual(status, 200, (path, body))
        # MODEL_VERSION from the environment.
        self.assertEqual(self.curl_json("GET", "/health")[2],
                         {"status": "healthy", "model_version": "env-9"})

    def test_openai_npm_client(self):
        r = th.run_node_client(self, "openai", "openai_client.mjs",
                               [self.server.url("/v1"), KEY, th.MODEL_ID, th.HIDDEN], timeout=120)
        self.assertEqual(r.returncode, 0, "openai_client.mjs failed:\n" + r.stdout + r.stderr)
        self.assertIn("openai client: ok", r.stdout)


# ==============================================================================================
class ConnectionLimitTest(unittest.TestCase):
    """--max-connections: a connection over the limit gets a 503 and is closed; a freed slot is
    reused; the refusals are counted."""

    def test_over_the_limit_a_new_connection_is_refused_cleanly(self):
        server = th.Server(BINARY, "--max-connections", "3").start()
        held = []
        try:
            self.assertEqual(server.event("listening")["max_connections"], 3)
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                status, _, _ = th.read_response(sock)
                self.assertEqual(status, 200)
                held.append(sock)  # kept alive: each holds its slot
            extra = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = th.read_response(extra)
            self.assertEqual(status, 503)
            self.assertEqual(headers.get("connection"), "close")
            self.assertEqual(headers.get("retry-after"), "1")
            self.assertIn("too many connections", json.loads(body)["error"])
            self.assertEqual(th.wait_eof(extra, 10)[2], "eof", "the refused connection stayed open")
            extra.close()
            # The held connections still work; a freed slot takes a new connection.
            held[1].sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(th.read_response(held[1])[0], 200)
            held.pop(0).close()
            deadline = time.monotonic() + 20
            refused = 1
            while True:
                status, _, text = server.request("GET", "/metrics")
                if status == 200 or time.monotonic() > deadline:
                    break
                refused += 1  # the server had not seen the close yet: refused too, and counted
                time.sleep(0.05)
            self.assertEqual(status, 200)
            samples = th.parse_prometheus(text.decode())
            self.assertEqual(th.metric(samples, "tideserve_refused_connections_total"), refused)
        finally:
            for sock in held:
                sock.close()
            self.assertEqual(server.stop(), 0, server.log_text())


# ==============================================================================================
class LifecycleTest(unittest.TestCase):
    """Liveness, readiness, the SIGTERM drain, exit codes and `tideserve healthcheck`."""

    def healthcheck(self, url):
        return subprocess.run([BINARY, "healthcheck", "--url", url], capture_output=True,
                              text=True, timeout=60, env=th.clean_env())

    def test_live_at_once_ready_after_load(self):
        server = th.Server(BINARY)
        try:
            server.wait_listening()
            status, _, body = server.get_json("/v2/health/live")
            self.assertEqual((status, body), (200, {"live": True}))
            # The tiny model may finish loading before this request: either answer is right,
            # but a 503 must say why.
            status, _, body = server.get_json("/v2/health/ready")
            loaded = server.event("model_loaded") is not None
            if status == 503:
                self.assertEqual(body, {"ready": False, "reason": "loading models"})
            else:
                self.assertEqual((status, body), (200, {"ready": True}))
                self.assertTrue(loaded, "ready before the model_loaded line")
            server.wait_ready()
            loaded = server.event("model_loaded")
            self.assertEqual(loaded["model_id"], th.MODEL_ID)
            self.assertGreater(loaded["duration_ms"], 0)
            self.assertGreater(loaded["warm_up_ms"], 0)
            self.assertLessEqual(loaded["warm_up_ms"], loaded["duration_ms"])
            self.assertEqual(server.get_json("/v2/health/ready")[:1], (200,))
            self.assertEqual(server.get_json("/health")[0], 200)
        finally:
            self.assertEqual(server.stop(), 0, server.log_text())

    def test_sigterm_drains_then_exits_zero(self):
        # Inside the drain delay only a few HTTP requests, each on a connection of its own or
        # the one opened before the signal (no subprocess): milliseconds of work, even under
        # ASan on two busy cores, against a 3 s delay; the last assertion before the exit says
        # whether it all really happened inside the delay.
        drain, timeout = 3.0, 20.0
        server = th.Server(BINARY, "--drain-delay", drain, "--shutdown-timeout", timeout)
        conn = None
        try:
            server.start()
            port = server.port
            self.assertEqual(self.healthcheck(server.url("/health")).returncode, 0)
            # What a container HEALTHCHECK does with a draining server's /health (503, checked
            # below) or any other answer but 200: exit 1, naming the status. Checked on a 404,
            # an answer that lasts, outside the drain delay.
            r = self.healthcheck(server.url("/v2/models/nosuchmodel/ready"))
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("answered 404", r.stderr)
            conn = server.connection()  # a keep-alive connection opened before the signal
            status, hdrs, _ = th.send(conn, "GET", "/v2/health/ready")
            self.assertEqual(status, 200)
            self.assertNotEqual(hdrs.get("connection"), "close")
            t0 = time.monotonic()
            server.signal(signal.SIGTERM)
            event = server.wait_event("shutting_down", 30)
            self.assertEqual(event["signal"], "SIGTERM")
            self.assertEqual(event["drain_delay_s"], drain)
            # Requests are still answered during the drain delay, on old and new connections,
            # and their answers close the connection.
            status, hdrs, data = th.send(conn, "POST", "/embed", '{"inputs": "old connection"}')
            self.assertEqual(status, 200, data)
            self.assertEqual(hdrs.get("connection"), "close")
            status, hdrs, body = server.post_json("/embed", {"inputs": "still answered"})
            self.assertEqual(status, 200, body)
            self.assertEqual(hdrs.get("connection"), "close")
            # Readiness flipped at once (the flag is set right after the log line: polled).
            deadline = time.monotonic() + 5
            while True:
                status, _, body = server.get_json("/v2/health/ready")
                if status == 503 or time.monotonic() > deadline:
                    break
            self.assertEqual((status, body), (503, {"ready": False, "reason": "shutting down"}))
            status, _, body = server.get_json("/health")
            self.assertEqual(status, 503, body)
            self.assertEqual(body["status"], "unhealthy")
            status, _, body = server.request("GET", "/metrics")
            self.assertEqual(status, 200)
            self.assertEqual(th.metric(th.parse_prometheus(body.decode()), "tideserve_ready"), 0)
            served_in_drain = time.monotonic() - t0
            self.assertLess(served_in_drain, drain, "the test was too slow to observe the drain")
            rc = server.wait_exit(timeout + 30)
            elapsed = time.monotonic() - t0
            self.assertEqual(rc, 0, server.log_text())
            self.assertGreaterEqual(elapsed, drain * 0.9, "exited before the drain delay")
            self.assertLess(elapsed, timeout, "did not exit within --shutdown-timeout")
            done = server.event("shutdown_complete")
            self.assertIsNotNone(done, server.log_text())
            self.assertIs(done["drained"], True)
            self.assertEqual(done["unanswered_requests"], 0)
            # Nothing listens any more.
            hc = self.healthcheck("http://127.0.0.1:%d/health" % port)
            self.assertEqual(hc.returncode, 1, hc.stderr)
            self.assertIn("unhealthy", hc.stderr)
        finally:
            if conn is not None:
                conn.close()
            server.kill()

    def test_healthcheck_nothing_listening(self):
        r = self.healthcheck("http://127.0.0.1:%d/health" % th.free_port())
        self.assertEqual(r.returncode, 1)
        self.assertIn("unhealthy", r.stderr)

    def test_environment_configures_serve(self):
        server = th.Server(BINARY, model=None, with_defaults=False,
                           env={"MODEL_NAME": th.MODEL, "PORT": "0", "HOST": "127.0.0.1",
                                "MODEL_VERSION": "env-2", "DRAIN_DELAY": "0",
                                "TIDESERVE_THREADS": "1", "MAX_CLIENT_BATCH_SIZE": "3"})
        try:
            server.start()
            self.assertEqual(server.get_json("/health")[2],
                             {"status": "healthy", "model_version": "env-2"})
            self.assertEqual(server.get_json("/info")[2]["max_client_batch_size"], 3)
            r = subprocess.run([BINARY, "healthcheck"], capture_output=True, text=True,
                               timeout=60, env=th.clean_env({"PORT": str(server.port)}))
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            self.assertEqual(server.stop(), 0, server.log_text())

    def embed_cli(self, text, *extra):
        r = subprocess.run([BINARY, "embed", "--model", th.MODEL, *extra, text],
                           capture_output=True, text=True, timeout=120, env=th.clean_env())
        return r

    def test_dtype_int8_from_environment(self):
        text = "量化以后的向量和原来的方向几乎一样"
        server = th.Server(BINARY, env={"DTYPE": "int8"})
        try:
            server.start()
            loaded = server.event("model_loaded")
            self.assertEqual(loaded["dtype"], "int8")
            self.assertTrue(loaded["cpu_isa"])
            self.assertEqual(server.get_json("/info")[2]["model_dtype"], "int8")
            status, _, body = server.request("GET", "/metrics")
            self.assertEqual(th.metric(th.parse_prometheus(body.decode()), "tideserve_model_info",
                                       model_id=th.MODEL_ID, model_version="1", dtype="int8",
                                       cpu_isa=loaded["cpu_isa"]), 1)
            status, _, body = server.post_json("/embed", {"inputs": text, "normalize": False})
            self.assertEqual(status, 200, body)
        finally:
            self.assertEqual(server.stop(), 0, server.log_text())
        fp32 = self.embed_cli(text)
        self.assertEqual(fp32.returncode, 0, fp32.stderr)
        reference = json.loads(fp32.stdout)
        got = body[0]
        cos = sum(a * b for a, b in zip(got, reference)) / (
            math.sqrt(sum(a * a for a in got)) * math.sqrt(sum(b * b for b in reference)))
        self.assertGreaterEqual(cos, 0.999)
        self.assertGreater(th.max_abs_diff(got, reference), 0, "int8 gave the fp32 answer")
        int8 = self.embed_cli(text, "--dtype", "int8")
        self.assertEqual(int8.returncode, 0, int8.stderr)
        self.assertLessEqual(th.max_abs_diff(json.loads(int8.stdout), got), 1e-5)

    def test_dtype_auto_picks_by_the_cpu_and_names_its_kernels(self):
        server = th.Server(BINARY, "--dtype", "auto")
        try:
            server.start()
            loaded = server.event("model_loaded")
            isa = loaded["cpu_isa"]
            want = ("bfloat16" if isa in ("avx512_core_bf16", "avx512_core_amx") else
                    "int8" if isa in ("avx2_vnni", "avx512_core_vnni") else "float32")
            self.assertEqual(loaded["dtype"], want, loaded)
            info = server.get_json("/info")[2]
            self.assertEqual(info["model_dtype"], want)
            self.assertEqual(info["matmul"], loaded["matmul"])
            for kernel in info["matmul"].split(","):
                self.assertTrue(kernel and not kernel.startswith("ref"), info["matmul"])
        finally:
            self.assertEqual(server.stop(), 0, server.log_text())

    def test_model_load_failure_exits_one(self):
        server = th.Server(BINARY, model=os.path.join("models", "no-such-model"))
        try:
            server.wait_listening()
            server.wait_event("model_load_failed")
            self.assertEqual(server.wait_exit(60), 1, server.log_text())
        finally:
            server.kill()


# ==============================================================================================
BF16_REFUSAL = "bfloat16 matmul is not available on this CPU"
DISPATCHED_ISA = re.compile(r"oneDNN dispatches ([a-z0-9_]+)")


class Bf16Test(unittest.TestCase):
    """`serve --dtype bf16`: on a CPU with a bf16 matmul it serves bfloat16 (close to fp32); on
    one without, it refuses at load (exit 1, the message naming the ISA, below avx512_core) and
    the test reports SKIPPED. CTest runs this class alone (server_test_bf16, SKIP_RETURN_CODE 77)
    so that the skip shows there."""

    def test_dtype_bf16_serves_or_refuses_at_load(self):
        text = "半精度的向量和原来的方向几乎一样"
        server = th.Server(BINARY, "--dtype", "bf16")
        try:
            event = server.wait_any_event(("model_loaded", "model_load_failed"))
            if event["event"] == "model_load_failed":
                message = event["error"]
                self.assertIn(BF16_REFUSAL, message)
                match = DISPATCHED_ISA.search(message)
                self.assertIsNotNone(match, "the refusal does not name the ISA: " + message)
                isa = match.group(1)
                self.assertFalse(isa.startswith("avx512_core"), "refused bf16 on " + isa)
                self.assertEqual(server.wait_exit(60), 1, server.log_text())
                self.assertIsNone(server.event("model_loaded"))
                self.skipTest("no bf16 matmul on this CPU (oneDNN dispatches %s); the refusal "
                              "at load was checked" % isa)
            self.assertEqual(event["dtype"], "bfloat16")
            server.wait_ready()
            self.assertEqual(server.get_json("/info")[2]["model_dtype"], "bfloat16")
            status, _, body = server.post_json("/embed", {"inputs": text, "normalize": False})
            self.assertEqual(status, 200, body)
        finally:
            if server.proc.poll() is None:
                self.assertEqual(server.stop(), 0, server.log_text())
            server.kill()
        got = body[0]
        self.assertEqual(len(got), th.HIDDEN)
        (reference,) = embed_cli_text_vectors([text])
        cos = sum(a * b for a, b in zip(got, reference)) / (th.norm(got) * th.norm(reference))
        self.assertGreaterEqual(cos, 0.99)
        self.assertGreater(th.max_abs_diff(got, reference), 0, "bf16 gave the fp32 answer")


# ==============================================================================================
class MetricsTest(ServerCase):
    """/metrics after known traffic: promtool accepts it; the counts are exact."""

    server_args = ("--max-client-batch-size", MAX_BATCH)

    def scrape(self):
        status, hdrs, body = self.curl("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(hdrs["content-type"].startswith("text/plain"), hdrs)
        return body.decode("utf-8")

    def test_scrape_after_traffic(self):
        for _ in range(3):
            self.assertEqual(self.post("/embed", {"inputs": ["a", "b"]})[0], 200)
        for _ in range(2):
            self.assertEqual(self.post("/embed", {"inputs": 5})[0], 422)
        self.assertEqual(self.post("/v1/embeddings", {"input": "hi"})[0], 200)
        self.assertEqual(self.post("/predict", {"text": "hi"})[0], 200)
        self.assertEqual(self.curl("GET", "/nope")[0], 404)
        text = self.scrape()

        promtool = shutil.which("promtool") or "/usr/bin/promtool"
        self.assertTrue(os.path.exists(promtool), "promtool missing (Debian package prometheus)")
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, "promtool check metrics:\n" + r.stdout + r.stderr)

        s = th.parse_prometheus(text)
        m = th.metric
        self.assertEqual(m(s, "tideserve_requests_total", route="/embed", code="200"), 3)
        self.assertEqual(m(s, "tideserve_requests_total", route="/embed", code="422"), 2)
        self.assertEqual(m(s, "tideserve_requests_total", route="/v1/embeddings", code="200"), 1)
        self.assertEqual(m(s, "tideserve_requests_total", route="/predict", code="200"), 1)
        self.assertEqual(m(s, "tideserve_requests_total", route="other", code="404"), 1)
        self.assertEqual(m(s, "tideserve_request_duration_seconds_count", route="/embed"), 5)
        self.assertEqual(m(s, "tideserve_request_duration_seconds_bucket", route="/embed",
                           le="+Inf"), 5)
        buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in s.items()
                         if n == "tideserve_request_duration_seconds_bucket"
                         and dict(l).get("route") == "/embed")
        self.assertGreater(len(buckets), 5)
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets), "cumulative")
        self.assertEqual(m(s, "tideserve_queue_depth"), 0)
        self.assertEqual(m(s, "tideserve_inflight_requests"), 0)
        self.assertEqual(m(s, "tideserve_ready"), 1)
        self.assertEqual(m(s, "tideserve_rejected_requests_total"), 0)
        self.assertEqual(m(s, "tideserve_build_info", version="0.1.0"), 1)
        info = [dict(l) for (n, l), v in s.items() if n == "tideserve_model_info" and v == 1]
        self.assertEqual(len(info), 1, info)
        self.assertEqual(info[0]["model_id"], th.MODEL_ID)
        self.assertEqual(info[0]["dtype"], "float32")
        self.assertTrue(info[0]["cpu_isa"])
        # 5 inference requests with 6 + 1 + 1 = 8 inputs: every sequence is in exactly one batch.
        batches = m(s, "tideserve_batch_size_count")
        sequences = m(s, "tideserve_batch_size_sum")
        self.assertEqual(sequences, 8)
        self.assertGreaterEqual(batches, 5)  # sequential requests never share a batch
        self.assertLessEqual(batches, 8)
        self.assertEqual(m(s, "tideserve_input_length_tokens_count"), 8)
        self.assertIsNotNone(m(s, "tideserve_batch_tokens_count"))
        self.assertIsNotNone(m(s, "tideserve_queue_duration_seconds_count"))
        self.assertIsNotNone(m(s, "tideserve_inference_duration_seconds_count"))
        # The process series agree with what the kernel says of the server's process.
        with open("/proc/%d/stat" % self.server.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        kernel_cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        self.assertGreater(m(s, "process_cpu_seconds_total"), 0)
        self.assertLessEqual(m(s, "process_cpu_seconds_total"), kernel_cpu + 0.1)
        self.assertGreater(m(s, "process_cpu_seconds_total"), 0.5 * kernel_cpu - 0.1)
        with open("/proc/%d/statm" % self.server.proc.pid) as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        self.assertAlmostEqual(m(s, "process_resident_memory_bytes"), resident,
                               delta=0.2 * resident)

    def test_scrape_counts_itself_afterwards(self):
        before = th.metric(th.parse_prometheus(self.scrape()), "tideserve_requests_total",
                           route="/metrics", code="200") or 0
        after = th.metric(th.parse_prometheus(self.scrape()), "tideserve_requests_total",
                          route="/metrics", code="200")
        self.assertEqual(after, before + 1)


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
