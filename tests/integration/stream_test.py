#!/usr/bin/python3
"""Streaming (Server-Sent Events on POST /embed with "stream": true) and long documents
("chunking") against the real server on the bundled model.

Streaming: curl -N as the SSE client; one event per input, each equal to the plain answer; the
connection stays usable; a client that leaves mid-stream cancels what is not computed yet (counted
in tideserve_cancelled_requests_total); a slow reader gets every event while other clients are
answered; SIGTERM finishes an open stream. Chunking: offsets map back exactly to the original text
(CJK, emoji, combining marks from the tokenizer corpus), each chunk's vector equals embedding the
chunk's text alone, overlap and sentence boundaries honoured, the document vector is the chunks'
token-weighted mean, and the limits answer 413 / 422.

    stream_test.py PATH_TO_TIDESERVE [--only CLASS] [--exclude CLASS] [unittest args]
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None
TOL = 1e-5  # the same input in batches of other compositions


def corpus_texts():
    with open(os.path.join("tests", "fixtures", "tokenizer", "corpus.jsonl"),
              encoding="utf-8") as f:
        return [t for t in (json.loads(line) for line in f) if isinstance(t, str)]


def parse_sse(raw):
    """[(event, data as JSON)] from an SSE body."""
    events = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        events.append((name, json.loads("\n".join(data))))
    return events


def curl_stream(server, path, body):
    """curl -N, the SSE client: (status line headers, events)."""
    r = subprocess.run(["curl", "-sS", "-N", "--max-time", "120", "-D", "-", "-X", "POST",
                        "-H", "Content-Type: application/json", "-H", "Accept: text/event-stream",
                        "--data-binary", "@-", server.url(path)],
                       input=json.dumps(body).encode(), capture_output=True, timeout=150)
    assert r.returncode == 0, r.stderr
    head, _, rest = r.stdout.decode("utf-8").partition("\r\n\r\n")
    return head, parse_sse(rest)


def open_stream(server, body, rcvbuf=None):
    """A raw socket that sent a streaming request; returns it once the response head is in."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", server.port))
    data = json.dumps(body).encode()
    sock.sendall(b"POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return sock


def read_until(sock, marker, buf=b""):
    while marker not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before %r" % marker)
        buf += chunk
    return buf


def dechunk(raw):
    """The body of a chunked HTTP/1.1 response (after its head)."""
    out, rest = b"", raw
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, rest = out + rest[:size], rest[size + 2:]


class StreamCase(th.ServerCase, unittest.TestCase):

    def ok(self, path, body):
        status, _, answer = self.server.post_json(path, body)
        self.assertEqual(status, 200, (body, answer))
        return answer

    def cancelled(self):
        status, _, text = self.server.request("GET", "/metrics")
        return th.metric_sum(th.parse_prometheus(text.decode()),
                             "tideserve_cancelled_requests_total")


# ==============================================================================================
class StreamTest(StreamCase):
    # Many small batches, so that a long request takes a while and a stream has a middle.
    server_args = ("--max-batch-requests", "1", "--max-client-batch-size", "512",
                   "--max-concurrent-requests", "2048")

    def test_curl_gets_one_event_per_input_equal_to_the_plain_answer(self):
        texts = [t for t in corpus_texts()[100:150] if t][:40]
        head, events = curl_stream(self.server, "/embed", {"inputs": texts, "stream": True})
        self.assertIn("HTTP/1.1 200", head)
        self.assertIn("content-type: text/event-stream", head.lower())
        self.assertIn("transfer-encoding: chunked", head.lower())
        names = [e for e, _ in events]
        self.assertEqual(names, ["embedding"] * len(texts) + ["done"])
        plain = self.ok("/embed", {"inputs": texts})
        indices = [d["index"] for _, d in events[:-1]]
        self.assertEqual(sorted(indices), list(range(len(texts))))
        tokens = 0
        for _, d in events[:-1]:
            self.assertLessEqual(th.max_abs_diff(d["embedding"], plain[d["index"]]), TOL)
            tokens += d["tokens"]
        done = events[-1][1]
        self.assertEqual(done["usage"]["prompt_tokens"], tokens)
        self.assertEqual(done["rows"], len(texts))
        self.assertGreaterEqual(done["timings"]["inference_ms"], 0)

    def test_stream_options_and_keep_alive(self):
        conn = self.server.connection()
        try:
            for _ in range(2):  # the same connection, twice
                status, hdrs, body = th.send(conn, "POST", "/embed", json.dumps(
                    {"inputs": ["你好", "世界"], "stream": True, "dimensions": 8}))
                self.assertEqual(status, 200)
                events = parse_sse(body.decode())
                self.assertEqual([e for e, _ in events], ["embedding", "embedding", "done"])
                for _, d in events[:2]:
                    self.assertEqual(len(d["embedding"]), 8)
                    self.assertAlmostEqual(th.norm(d["embedding"]), 1.0, places=5)
            # An ordinary request on it afterwards.
            status, _, body = th.send(conn, "GET", "/health")
            self.assertEqual(status, 200, body)
        finally:
            conn.close()

    def test_a_request_refused_before_any_row_is_an_ordinary_error(self):
        status, hdrs, body = self.server.post_json(
            "/embed", {"inputs": "x", "stream": True, "dimensions": 999})
        self.assertEqual(status, 422, body)
        self.assertTrue(hdrs["content-type"].startswith("application/json"))
        self.assertIn("dimensions 999", body["error"])
        status, _, body = self.server.post_json("/embed", {"inputs": "x", "stream": "yes"})
        self.assertEqual(status, 422, body)

    def test_a_client_leaving_mid_stream_cancels_what_is_not_computed(self):
        before = self.cancelled() or 0
        texts = ["今天天气很好，我们去公园散步。" * 30] * 400
        sock = open_stream(self.server, {"inputs": texts, "stream": True})
        buf = read_until(sock, b"event: embedding")  # the first row is out
        sock.close()
        deadline = time.monotonic() + 60
        while (self.cancelled() or 0) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        dropped = (self.cancelled() or 0) - before
        self.assertGreater(dropped, 0, "no input was cancelled after the client left")
        self.assertLess(dropped, len(texts) + 1)
        self.assertIn(b"HTTP/1.1 200", buf)
        # The server still answers everyone else.
        self.assertEqual(len(self.ok("/embed", {"inputs": ["还在吗"]})), 1)

    def test_a_slow_reader_gets_everything_and_holds_up_no_one(self):
        texts = [t for t in corpus_texts()[200:500] if t][:256]
        sock = open_stream(self.server, {"inputs": texts, "stream": True, "truncate": True},
                           rcvbuf=4096)
        raw = read_until(sock, b"\r\n\r\n")
        # While that client reads a kilobyte every 20 ms, another one is answered promptly.
        got = []

        def slow():
            buf = raw
            while not buf.endswith(b"0\r\n\r\n"):
                time.sleep(0.02)
                chunk = sock.recv(1024)
                if not chunk:
                    break
                buf += chunk
            got.append(buf)

        reader = threading.Thread(target=slow)
        reader.start()
        start = time.monotonic()
        self.assertEqual(len(self.ok("/embed", {"inputs": ["别人的请求"]})), 1)
        other_s = time.monotonic() - start
        reader.join(120)
        sock.close()
        self.assertFalse(reader.is_alive(), "the slow reader never got the end of the stream")
        head, _, body = got[0].partition(b"\r\n\r\n")
        events = parse_sse(dechunk(body).decode())
        self.assertEqual(len(events), len(texts) + 1)
        self.assertEqual(events[-1][0], "done")
        self.assertLess(other_s, 10.0, "another client waited on the slow reader")


class DrainTest(StreamCase):
    server_args = ("--max-batch-requests", "1", "--max-client-batch-size", "512",
                   "--max-concurrent-requests", "2048")

    def test_sigterm_finishes_an_open_stream(self):
        texts = ["长文档" * 100] * 300
        sock = open_stream(self.server, {"inputs": texts, "stream": True})
        buf = read_until(sock, b"event: embedding")
        self.server.signal(signal.SIGTERM)
        while not buf.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        sock.close()
        head, _, body = buf.partition(b"\r\n\r\n")
        events = parse_sse(dechunk(body).decode())
        self.assertEqual([e for e, _ in events][-1], "done")
        self.assertEqual(len(events), len(texts) + 1)
        self.assertEqual(self.server.wait_exit(60), 0, self.server.log_text())


# ==============================================================================================
class ChunkingTest(StreamCase):
    server_args = ("--max-chunks-per-document", "40", "--max-document-bytes", "20000")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        texts = corpus_texts()
        # Documents from the corpus: CJK prose, mixed scripts, emoji and combining marks.
        cls.docs = [
            "".join(t for t in texts[300:700] if len(t) > 20)[:500],
            " ".join(texts[:90]),  # emoji, combining marks, controls
            "".join(t for t in texts if any(0x4E00 <= ord(c) <= 0x9FFF for c in t))[:400],
        ]
        # Ideographs only: every character is a word, so a chunk may start anywhere.
        cls.ideographs = "".join(c for c in "".join(texts) if 0x4E00 <= ord(c) <= 0x9FFF)[:400]

    def chunked(self, doc, **chunking):
        body = self.ok("/embed", {"inputs": [doc], "chunking": chunking})
        return body[0]

    def test_offsets_map_back_and_each_chunk_is_its_text_embedded_alone(self):
        for doc in self.docs:
            data = doc.encode("utf-8")
            answer = self.chunked(doc, max_tokens=32, overlap=8)
            chunks = answer["chunks"]
            self.assertGreater(len(chunks), 2)
            texts = []
            for k, c in enumerate(chunks):
                self.assertEqual((c["input"], c["chunk"], c["index"]), (0, k, k))
                text = doc[c["char_start"]:c["char_end"]]
                self.assertEqual(text, data[c["byte_start"]:c["byte_end"]].decode("utf-8"))
                self.assertLessEqual(c["tokens"], 32)
                texts.append(text)
            alone = self.ok("/embed", {"inputs": texts[:32]})
            for c, vector in zip(chunks, alone):
                self.assertLessEqual(th.max_abs_diff(c["embedding"], vector), TOL, c)
            counts = self.ok("/tokenize", {"inputs": texts[:32]})
            for c, tokens in zip(chunks, counts):
                self.assertEqual(len(tokens), c["tokens"])
            # In order, covering the document: every non-space character is in some chunk.
            covered = set()
            for c in chunks:
                covered.update(range(c["char_start"], c["char_end"]))
            for i, ch in enumerate(doc):
                if i not in covered:
                    self.assertTrue(ch.isspace() or not ch.isprintable() or ch in "\ufeff\u200b",
                                    (i, ch, doc[max(0, i - 10):i + 10]))

    def test_overlap_is_honoured(self):
        doc = self.ideographs
        chunks = self.chunked(doc, max_tokens=20, overlap=5, sentences=False)["chunks"]
        for a, b in zip(chunks, chunks[1:]):
            self.assertLess(b["char_start"], a["char_end"])
            shared = doc[b["char_start"]:a["char_end"]]
            tokens = self.ok("/tokenize", {"inputs": shared, "add_special_tokens": False})[0]
            self.assertEqual(len(tokens), 5, shared)
        none = self.chunked(doc, max_tokens=20, overlap=0, sentences=False)["chunks"]
        for a, b in zip(none, none[1:]):
            self.assertGreaterEqual(b["char_start"], a["char_end"])

    def test_sentence_ends_are_preferred(self):
        doc = "今天天气很好。我们去公园散步吧！然后一起吃午饭，再回家休息。晚上看书。" * 6
        chunks = self.chunked(doc, max_tokens=24, overlap=0)["chunks"]
        for c in chunks[:-1]:
            self.assertIn(doc[c["char_end"] - 1], "。！", doc[c["char_start"]:c["char_end"]])
        plain = self.chunked(doc, max_tokens=24, overlap=0, sentences=False)["chunks"]
        self.assertNotEqual([c["char_end"] for c in plain], [c["char_end"] for c in chunks])

    def test_document_embedding_is_the_token_weighted_mean(self):
        answer = self.chunked(self.docs[0], max_tokens=40, overlap=4, document_embedding=True)
        chunks = answer["chunks"]
        width = len(chunks[0]["embedding"])
        mean = [sum(c["tokens"] * c["embedding"][k] for c in chunks) for k in range(width)]
        n = th.norm(mean)
        self.assertLessEqual(th.max_abs_diff(answer["embedding"], [x / n for x in mean]), 1e-5)

    def test_openai_route_and_streaming_carry_the_chunks(self):
        doc = self.docs[2]
        plain = self.chunked(doc, max_tokens=32, overlap=8, document_embedding=True)
        status, _, body = self.server.post_json("/v1/embeddings", {
            "input": doc, "chunking": {"max_tokens": 32, "overlap": 8, "document_embedding": True}})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["data"]), len(plain["chunks"]))
        for item, c in zip(body["data"], plain["chunks"]):
            self.assertEqual((item["char_start"], item["char_end"]), (c["char_start"], c["char_end"]))
            self.assertLessEqual(th.max_abs_diff(item["embedding"], c["embedding"]), TOL)
        self.assertEqual(len(body["documents"]), 1)
        _, events = curl_stream(self.server, "/embed", {
            "inputs": [doc], "stream": True,
            "chunking": {"max_tokens": 32, "overlap": 8, "document_embedding": True}})
        names = [e for e, _ in events]
        self.assertEqual(names, ["embedding"] * len(plain["chunks"]) + ["document", "done"])
        for (_, d), c in zip(events, plain["chunks"]):
            self.assertEqual((d["chunk"], d["char_start"], d["byte_end"]),
                             (c["chunk"], c["char_start"], c["byte_end"]))
            self.assertLessEqual(th.max_abs_diff(d["embedding"], c["embedding"]), TOL)
        self.assertLessEqual(th.max_abs_diff(events[-2][1]["embedding"], plain["embedding"]), TOL)

    def test_limits_and_bad_chunking(self):
        # 40 chunks of 10 text tokens, one CJK character each: exactly the limit, then one over.
        unit = "文" * 10
        self.assertEqual(len(self.chunked(unit * 40, max_tokens=12)["chunks"]), 40)
        status, _, body = self.server.post_json(
            "/embed", {"inputs": unit * 40 + "文", "chunking": {"max_tokens": 12}})
        self.assertEqual(status, 413, body)
        self.assertIn("more than 40 chunks", body["error"])
        status, _, body = self.server.post_json(
            "/v1/embeddings", {"input": unit * 41, "chunking": {"max_tokens": 12}})
        self.assertEqual(status, 400, body)
        # A document of exactly --max-document-bytes, then one byte more.
        self.assertEqual(len(self.chunked("文" * 6666 + "ab", max_tokens=512)["chunks"]), 14)
        status, _, body = self.server.post_json(
            "/embed", {"inputs": "文" * 6666 + "abc", "chunking": {}})
        self.assertEqual(status, 413, body)
        self.assertIn("20000", body["error"])
        for chunking, needle in (({"max_tokens": 2}, "max_tokens"),
                                 ({"max_tokens": 10, "overlap": 8}, "overlap"),
                                 ({"max_tokens": -1}, "non-negative"),
                                 ("yes", "must be an object")):
            status, _, body = self.server.post_json(
                "/embed", {"inputs": "你好世界", "chunking": chunking})
            self.assertEqual(status, 422, (chunking, body))
            self.assertIn(needle, body["error"])
        status, _, body = self.server.post_json(
            "/v1/embeddings", {"input": [[101, 102]], "chunking": {}})
        self.assertEqual(status, 400, body)
        self.assertIn("not token ids", body["error"]["message"])


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
