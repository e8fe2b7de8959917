#!/usr/bin/python3
"""The model repository against the real server: versions swapped under load, broken versions
that never go live, several models at once, the admin routes and their key, the memory limit.

Every model here is written by this script into a temporary repository: the bundled model's
tokenizer with wider layers (hidden 384, so one model is a good part of the process's memory) and
weights from a seeded pattern, stored as F16 (the server widens them to F32, all resident). Each
version's reference vectors come from `tideserve embed` on that version's directory.

    repository_test.py PATH_TO_TIDESERVE [--only CLASS] [--exclude CLASS] [unittest args]
"""
import json
import os
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import unittest
import zlib
import subprocess

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None
TEXTS = ["今天天气很好", "hello world", "模型仓库的热更新"]
HIDDEN, INTERMEDIATE, HEADS = 384, 1536, 6
TOL = 2e-4
ADMIN = {"Authorization": "Bearer admin-secret"}


def write_model(directory, seed):
    """A BERT directory like the bundled model's, wider, with weights from `seed`."""
    os.makedirs(directory)
    bundled = th.MODEL
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(bundled, name), directory)
    with open(os.path.join(bundled, "config.json")) as f:
        config = json.load(f)
    small = {config["hidden_size"]: HIDDEN, config["intermediate_size"]: INTERMEDIATE}
    config.update(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_attention_heads=HEADS)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(bundled, "model.safetensors"), "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    header.pop("__metadata__", None)
    # A block of F16 values in [-0.06, 0.06] from a linear congruential sequence, repeated.
    state, block = seed * 7919 + 1, bytearray()
    for _ in range(65521):
        state = (state * 1103515245 + 12345) % (1 << 31)
        block += struct.pack("<e", (state / (1 << 31) - 0.5) * 0.12)
    tensors, offset = {}, 0
    for name in sorted(header):
        shape = [small.get(d, d) for d in header[name]["shape"]]
        count = 1
        for d in shape:
            count *= d
        tensors[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + 2 * count]}
        offset += 2 * count
    head = json.dumps(tensors).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for name in sorted(tensors):
            size = tensors[name]["data_offsets"][1] - tensors[name]["data_offsets"][0]
            start = (zlib.crc32(name.encode()) % 1000) * 2  # a phase of the block per tensor
            data = (block[start:] + block * (size // len(block) + 2))[:size]
            f.write(data)


def copy_in(src, model_dir, version):
    """The repository's write convention: copy under a dot name, then rename into place."""
    tmp = os.path.join(model_dir, ".%s.tmp-%d" % (version, os.getpid()))
    shutil.copytree(src, tmp)
    os.rename(tmp, os.path.join(model_dir, str(version)))


def reference(directory, normalize=False):
    """`tideserve embed` on a version's directory: one vector per text."""
    cmd = [BINARY, "embed", "--model", directory] + (["--normalize"] if normalize else []) + TEXTS
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=th.clean_env())
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def close(a, b):
    return len(a) == len(b) and th.max_abs_diff(a, b) <= TOL


def infer_body(texts):
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                        "data": texts}]}


def infer_rows(body):
    out = body["outputs"][0]
    n, width = out["shape"]
    return [out["data"][i * width:(i + 1) * width] for i in range(n)]


def metrics(server):
    status, _, body = server.request("GET", "/metrics")
    assert status == 200
    return th.parse_prometheus(body.decode())


def index(server, ready=None):
    status, _, body = server.post_json("/v2/repository/index", {} if ready is None
                                       else {"ready": ready}, ADMIN)
    assert status == 200, body
    return {(e["name"], e["version"]): e for e in body}


def wait_for(predicate, what, timeout=th.START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Repo:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="tideserve-repo-")
        self.sources = tempfile.mkdtemp(prefix="tideserve-src-")

    def source(self, name, seed):
        path = os.path.join(self.sources, name)
        if not os.path.exists(path):
            write_model(path, seed)
        return path

    def model_dir(self, name):
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.sources, ignore_errors=True)


class SwapUnderLoadTest(unittest.TestCase):
    """poll: a new highest version is copied in while clients keep calling; it replaces the one
    serving with no failed request, and the old version's memory is given back."""

    def test_new_version_replaces_the_old_under_load(self):
        repo = Repo()
        self.addCleanup(repo.cleanup)
        v1, v2 = repo.source("v1", 1), repo.source("v2", 2)
        refs = {"1": reference(v1), "2": reference(v2)}
        unit = {"1": reference(v1, True), "2": reference(v2, True)}
        self.assertFalse(close(refs["1"][0], refs["2"][0]), "the versions must differ")
        model_dir = repo.model_dir("m")
        copy_in(v1, model_dir, 1)
        server = th.Server(BINARY, "--model-repository", repo.root, "--model-control", "poll",
                           "--repository-poll-seconds", "0.2", "--admin-key", "admin-secret",
                           model=None).start()
        self.addCleanup(lambda: server.proc.poll() is None and server.kill())
        pid = server.proc.pid

        # A load in poll mode is the repository's business, not the API's.
        status, _, body = server.post_json("/v2/repository/models/m/load", {}, ADMIN)
        self.assertEqual(status, 409, body)
        for _ in range(20):  # warm: the allocator's pools and the caches at their working size
            self.assertEqual(server.post_json("/v2/models/m/infer", infer_body(TEXTS))[0], 200)
        rss_one_model = th.status_kb(pid, "VmRSS")

        results, stop = [], threading.Event()
        lock = threading.Lock()

        def client(k):
            conn = server.connection()
            i = 0
            while not stop.is_set():
                route = (i + k) % 4
                i += 1
                if route == 0:
                    st, _, b = th.send(conn, "POST", "/v2/models/m/infer",
                                       json.dumps(infer_body(TEXTS)))
                    b = th.parse_json(b)
                    row = (b.get("model_version"), infer_rows(b)) if st == 200 else None
                elif route == 1:
                    st, _, b = th.send(conn, "POST", "/predict", json.dumps({"text": TEXTS[0]}))
                    b = th.parse_json(b)
                    row = (b.get("model_version"), [b["embedding"]]) if st == 200 else None
                elif route == 2:
                    st, _, b = th.send(conn, "POST", "/v1/embeddings",
                                       json.dumps({"input": TEXTS, "model": "m"}))
                    b = th.parse_json(b)
                    row = (None, [d["embedding"] for d in b["data"]]) if st == 200 else None
                else:
                    st, _, b = th.send(conn, "POST", "/embed", json.dumps({"inputs": TEXTS}))
                    row = (None, th.parse_json(b)) if st == 200 else None
                with lock:
                    results.append((k, route, st, row, b if st != 200 else None))
            conn.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        copy_in(v2, model_dir, 2)
        released = server.wait_event("model_released")
        self.assertEqual(released["version"], "1")
        if not th.sanitized(pid):
            self.assertGreater(released["released_bytes"], 10 << 20, released)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(60)

        failures = [r for r in results if r[2] != 200]
        self.assertEqual(failures, [], "requests failed during the swap")
        seen = {k: [] for k in range(3)}
        for k, route, _, (version, rows), _ in results:
            want = unit if route >= 2 else refs
            texts = TEXTS[:1] if route == 1 else TEXTS
            matches = [v for v in ("1", "2")
                       if all(close(r, want[v][j]) for j, r in enumerate(rows[:len(texts)]))]
            self.assertEqual(len(matches), 1, "an answer matches neither version's weights")
            if version is not None:
                self.assertEqual(version, matches[0], "model_version disagrees with the weights")
            seen[k].append(matches[0])
        for k, versions in seen.items():
            self.assertEqual(versions, sorted(versions), "client %d went back to v1" % k)
            self.assertEqual(versions[-1], "2")
        self.assertIn("1", sum(seen.values(), []))
        print("  %d requests during the swap: %d on v1, %d on v2" % (
            len(results), sum(v.count("1") for v in seen.values()),
            sum(v.count("2") for v in seen.values())))

        # The old version left: the index and the metrics say so, its memory is back.
        entries = index(server)
        self.assertEqual(entries[("m", "2")]["state"], "READY")
        self.assertEqual(entries[("m", "1")]["state"], "UNAVAILABLE")
        samples = metrics(server)
        self.assertEqual(th.metric(samples, "tideserve_model_ready", model="m", version="1"), 0)
        self.assertEqual(th.metric(samples, "tideserve_model_ready", model="m", version="2"), 1)
        self.assertGreater(th.metric(samples, "tideserve_model_memory_bytes", model="m",
                                     version="2"), 20 << 20)
        self.assertGreater(th.metric_sum(samples, "tideserve_model_requests_total", model="m",
                                         version="1", code="200"), 0)
        rss_after = th.status_kb(pid, "VmRSS")
        print("  RSS with v1: %.1f MiB; after the swap, v1 released: %.1f MiB" % (
            rss_one_model / 1024, rss_after / 1024))
        if not th.sanitized(pid):
            self.assertLessEqual(rss_after, rss_one_model * 1.10,
                                 "the old version's memory was not given back")
        self.assertEqual(server.stop(), 0, server.log_text())


class BrokenVersionTest(unittest.TestCase):
    """A broken new version (truncated weights, wrong shapes, half-copied) never goes live: the
    old one keeps answering, readiness stays true, the index says why, a metric counts it."""

    def test_broken_versions_never_replace_a_working_one(self):
        repo = Repo()
        self.addCleanup(repo.cleanup)
        v1, v2 = repo.source("v1", 1), repo.source("v2", 2)
        ref1 = reference(v1)
        model_dir = repo.model_dir("m")
        copy_in(v1, model_dir, 1)
        server = th.Server(BINARY, "--model-repository", repo.root,
                           "--repository-poll-seconds", "0.2", "--admin-key", "admin-secret",
                           model=None).start()
        self.addCleanup(lambda: server.proc.poll() is None and server.kill())

        # 2: the weights file cut short. 3: shapes that disagree with config.json.
        # 4: a "half-copied" directory, copied in place against the convention (no weights yet).
        # .5.tmp-x: a complete copy still under its temporary name: never looked at.
        broken = os.path.join(repo.sources, "truncated")
        shutil.copytree(v2, broken)
        path = os.path.join(broken, "model.safetensors")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        copy_in(broken, model_dir, 2)
        wrong = os.path.join(repo.sources, "wrong-shapes")
        shutil.copytree(v2, wrong)
        with open(os.path.join(wrong, "config.json")) as f:
            config = json.load(f)
        config["intermediate_size"] = 2048
        with open(os.path.join(wrong, "config.json"), "w") as f:
            json.dump(config, f)
        copy_in(wrong, model_dir, 3)
        half = os.path.join(model_dir, "4")
        os.makedirs(half)
        for name in ("config.json", "vocab.txt"):
            shutil.copy(os.path.join(v2, name), half)
        shutil.copytree(v2, os.path.join(model_dir, ".5.tmp-x"))

        def failed(version):
            return lambda: index(server).get(("m", version), {}).get("load_failures", 0) >= 1
        for version in ("2", "3", "4"):
            wait_for(failed(version), "version %s to fail" % version)
        time.sleep(0.6)  # three more polls: a failed version is not retried while unchanged
        entries = index(server)
        print("  why each broken version failed: " + json.dumps(
            {v: entries[("m", v)]["reason"] for v in ("2", "3", "4")}, ensure_ascii=False))
        self.assertIn("model.safetensors", entries[("m", "2")]["reason"])
        self.assertIn("intermediate", entries[("m", "3")]["reason"])
        self.assertIn("model.safetensors", entries[("m", "4")]["reason"])
        for version in ("2", "3", "4"):
            self.assertTrue(entries[("m", version)]["reason"].startswith("failed to load: "))
            self.assertEqual(entries[("m", version)]["state"], "UNAVAILABLE")
            self.assertEqual(entries[("m", version)]["load_failures"], 1, entries)
        self.assertNotIn(("m", "5"), entries)
        self.assertEqual(entries[("m", "1")]["state"], "READY")
        self.assertEqual(len([e for e in server.events_named("loading_model")
                              if ".5.tmp" in e.get("model", "")]), 0)

        status, _, body = server.post_json("/v2/models/m/infer", infer_body(TEXTS))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["model_version"], "1")
        for row, want in zip(infer_rows(body), ref1):
            self.assertTrue(close(row, want))
        self.assertEqual(server.get_json("/v2/health/ready")[0], 200)
        self.assertEqual(server.get_json("/v2/models/m/ready")[0], 200)
        status, _, body = server.get_json("/v2/models/m/versions/2/ready")
        self.assertEqual(status, 404, body)
        samples = metrics(server)
        for version in ("2", "3", "4"):
            self.assertEqual(th.metric(samples, "tideserve_model_load_failures_total", model="m",
                                       version=version), 1)

        # Version 2 fixed (new files, so retried): it loads and replaces 1.
        shutil.rmtree(os.path.join(model_dir, "2"))
        copy_in(v2, model_dir, 2)
        wait_for(lambda: index(server)[("m", "2")]["state"] == "READY", "the fixed version")
        status, _, body = server.post_json("/v2/models/m/infer", infer_body(TEXTS))
        self.assertEqual(body["model_version"], "2")
        self.assertEqual(server.stop(), 0, server.log_text())

    def test_a_pinned_version_serves_whatever_is_newer(self):
        repo = Repo()
        self.addCleanup(repo.cleanup)
        v1, v2 = repo.source("v1", 1), repo.source("v2", 2)
        model_dir = repo.model_dir("m")
        copy_in(v1, model_dir, 1)
        copy_in(v2, model_dir, 2)
        server = th.Server(BINARY, "--model-repository", repo.root, "--admin-key",
                           "admin-secret", model=None, env={"PIN_VERSIONS": "m=1"}).start()
        self.addCleanup(lambda: server.proc.poll() is None and server.kill())
        status, _, body = server.post_json("/v2/models/m/infer", infer_body(TEXTS))
        self.assertEqual((status, body["model_version"]), (200, "1"), body)
        entries = index(server)
        self.assertEqual(entries[("m", "1")]["state"], "READY")
        self.assertEqual(entries[("m", "2")]["reason"], "not in the version policy")
        self.assertEqual(server.stop(), 0, server.log_text())

    def test_a_load_over_the_memory_limit_is_refused_with_the_reason(self):
        repo = Repo()
        self.addCleanup(repo.cleanup)
        copy_in(repo.source("v1", 1), repo.model_dir("m"), 1)
        server = th.Server(BINARY, "--model-repository", repo.root, "--memory-limit", "8Mi",
                           "--admin-key", "admin-secret", model=None).start()
        self.addCleanup(lambda: server.proc.poll() is None and server.kill())
        status, _, body = server.get_json("/v2/health/ready")
        self.assertEqual(status, 503, body)
        self.assertIn("--memory-limit", body["reason"])
        entry = index(server)[("m", "1")]
        self.assertEqual(entry["state"], "UNAVAILABLE")
        self.assertIn("memory limit of 8 MiB", entry["reason"])
        status, _, body = server.post_json("/v2/models/m/infer", infer_body(TEXTS))
        self.assertEqual(status, 503, body)
        self.assertEqual(server.stop(), 0, server.log_text())


    def test_explicit_loads_say_why_they_fail(self):
        # --model-control explicit: a load answers once a version serves, or with the reason:
        # 400 when no version loads (truncated weights), 507 when the memory limit refuses it;
        # neither changes what serves.
        repo = Repo()
        self.addCleanup(repo.cleanup)
        v1 = repo.source("v1", 1)
        copy_in(v1, repo.model_dir("good"), 1)
        broken = os.path.join(repo.sources, "truncated")
        shutil.copytree(v1, broken)
        path = os.path.join(broken, "model.safetensors")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        copy_in(broken, repo.model_dir("broken"), 1)
        server = th.Server(BINARY, "--model-repository", repo.root, "--model-control", "explicit",
                           "--admin-key", "admin-secret", model=None).start()
        self.addCleanup(lambda: server.proc.poll() is None and server.kill())
        status, _, body = server.post_json("/v2/repository/models/broken/load", {}, ADMIN)
        self.assertEqual(status, 400, body)
        self.assertIn("model.safetensors", body["error"])  # KServe's error shape
        self.assertEqual(index(server)[("broken", "1")]["state"], "UNAVAILABLE")
        status, _, body = server.post_json("/v2/models/good/infer", infer_body(TEXTS))
        self.assertEqual(status, 200, body)
        self.assertEqual(server.stop(), 0, server.log_text())

        limited = th.Server(BINARY, "--model-repository", repo.root, "--model-control",
                            "explicit", "--memory-limit", "8Mi", "--admin-key", "admin-secret",
                            model=None).start()
        self.addCleanup(lambda: limited.proc.poll() is None and limited.kill())
        status, _, body = limited.post_json("/v2/repository/models/good/load", {}, ADMIN)
        self.assertEqual(status, 507, body)
        self.assertIn("memory limit of 8 MiB", body["error"])
        self.assertEqual(limited.stop(), 0, limited.log_text())


class TwoModelsTest(unittest.TestCase):
    """explicit: two models at once, each with its own weights; the admin key guards the
    repository routes; unloading one does not disturb the other."""

    def test_two_models_load_and_unload(self):
        repo = Repo()
        self.addCleanup(repo.cleanup)
        a, b = repo.source("a", 3), repo.source("b", 4)
        refs = {"a": reference(a, True), "b": reference(b, True)}
        copy_in(a, repo.model_dir("alpha"), 1)
        copy_in(b, repo.model_dir("beta"), 7)
        server = th.Server(BINARY, "--model-repository", repo.root, "--model-control", "explicit",
                           "--admin-key", "admin-secret", "--api-key", "api-secret",
                           model=None).start()
        self.addCleanup(lambda: server.proc.poll() is None and server.kill())
        api = {"Authorization": "Bearer api-secret"}

        def embed(model, headers=None):
            return server.post_json("/v1/embeddings", {"input": TEXTS, "model": model},
                                    dict(api, **(headers or {})))

        for name, ref in (("alpha", refs["a"]), ("beta", refs["b"])):
            status, _, body = embed(name)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["model"], name)
            for d, want in zip(body["data"], ref):
                self.assertTrue(close(d["embedding"], want), name)
        status, _, body = embed("beta:7")
        self.assertEqual(status, 200, body)
        status, _, body = embed("beta:8")
        self.assertEqual(status, 404, body)
        self.assertIn("no version '8'", body["error"]["message"])
        status, _, body = server.post_json("/embed", {"inputs": TEXTS},
                                           dict(api, **{"x-model": "beta"}))
        self.assertEqual(status, 200, body)
        self.assertTrue(close(body[0], refs["b"][0]))
        status, _, body = server.post_json("/embed", {"inputs": TEXTS}, api)
        self.assertEqual(status, 422, body)
        self.assertIn("several models", body["error"])
        status, _, body = server.get_json("/v1/models", api)
        self.assertEqual(sorted(m["id"] for m in body["data"]), ["alpha", "beta"])
        status, _, body = server.get_json("/v2/models/beta")
        self.assertEqual(body["versions"], ["7"])
        for query, name in (("?model=beta", "beta"), ("?pretty=1&model=alpha", "alpha")):
            status, _, body = server.get_json("/info" + query)
            self.assertEqual((status, body["model_id"]), (200, name), body)
            self.assertEqual(body["models"], [{"name": "alpha", "versions": ["1"]},
                                              {"name": "beta", "versions": ["7"]}])
        self.assertEqual(server.get_json("/info?model=gamma")[0], 404)
        status, _, body = server.post_json("/v2/models/beta/versions/3/infer", infer_body(TEXTS),
                                           api)
        self.assertEqual(status, 404, body)

        # The admin routes take the admin key only.
        for headers in ({}, api, {"Authorization": "Bearer wrong"}):
            status, _, body = server.post_json("/v2/repository/index", {}, headers)
            self.assertEqual(status, 401, body)
        status, _, body = server.post_json("/v2/repository/models/beta/unload", {}, api)
        self.assertEqual(status, 401, body)
        self.assertEqual(embed("beta")[0], 200, "a refused unload changed nothing")
        self.assertEqual({k: e["state"] for k, e in index(server).items()},
                         {("alpha", "1"): "READY", ("beta", "7"): "READY"})

        # Unload beta while a client keeps calling alpha.
        results, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                results.append(embed("alpha"))
        t = threading.Thread(target=client)
        t.start()
        time.sleep(0.3)
        status, _, body = server.post_json("/v2/repository/models/beta/unload", {}, ADMIN)
        self.assertEqual((status, body), (200, {"name": "beta", "unloaded": True}))
        status, _, body = embed("beta")
        self.assertEqual(status, 404, body)
        self.assertIn("not loaded", body["error"]["message"])
        time.sleep(0.3)
        stop.set()
        t.join(60)
        self.assertTrue(results)
        for status, _, body in results:
            self.assertEqual(status, 200, body)
            self.assertTrue(close(body["data"][0]["embedding"], refs["a"][0]))
        server.wait_event("model_released")
        entries = index(server)
        self.assertEqual(entries[("beta", "7")]["state"], "UNAVAILABLE")
        self.assertEqual(entries[("beta", "7")]["reason"], "unloaded")
        self.assertEqual(list(index(server, ready=True)), [("alpha", "1")])
        self.assertEqual(server.get_json("/v2/models/beta/ready")[0], 404)

        # Load it back; a model the repository does not hold is 404.
        status, _, body = server.post_json("/v2/repository/models/beta/load", {}, ADMIN)
        self.assertEqual((status, body), (200, {"name": "beta", "versions": ["7"]}))
        status, _, body = embed("beta")
        self.assertEqual(status, 200, body)
        self.assertTrue(close(body["data"][0]["embedding"], refs["b"][0]))
        status, _, body = server.post_json("/v2/repository/models/gamma/load", {}, ADMIN)
        self.assertEqual(status, 404, body)

        # SIGHUP rescans the loaded models: a new version of alpha (latest 1) replaces 1.
        copy_in(b, repo.model_dir("alpha"), 2)
        server.signal(signal.SIGHUP)
        wait_for(lambda: index(server).get(("alpha", "2"), {}).get("state") == "READY",
                 "alpha version 2 after SIGHUP")
        status, _, body = embed("alpha")
        self.assertTrue(close(body["data"][0]["embedding"], refs["b"][0]))
        self.assertEqual(server.stop(), 0, server.log_text())


class AdminOffTest(th.ServerCase, unittest.TestCase):
    """Without --admin-key the repository routes do not exist; `--model DIR` is one model."""

    def test_repository_routes_are_off_without_an_admin_key(self):
        for path in ("/v2/repository/index", "/v2/repository/models/%s/load" % th.MODEL_ID):
            status, _, body = self.server.post_json(path, {}, ADMIN)
            self.assertEqual(status, 404, body)

    def test_one_model_serves_under_its_name(self):
        status, _, body = self.server.get_json("/v1/models")
        self.assertEqual([m["id"] for m in body["data"]], [th.MODEL_ID])
        status, _, body = self.server.post_json("/embed", {"inputs": "x"}, {"x-model": "other"})
        self.assertEqual(status, 404, body)
        status, _, body = self.server.post_json("/embed", {"inputs": "x"},
                                                {"x-model": th.MODEL_ID})
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
