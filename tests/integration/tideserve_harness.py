"""Shared harness for the integration tests that drive a real `tideserve serve` process.

Hermetic: every server binds 127.0.0.1 port 0 and we read the bound port from its "listening"
log line; readiness is the "serving" line (after every model's "model_loaded"), never a sleep. Standard library only.
"""
import base64
import http.client
import json
import math
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

MODEL = os.path.join("models", "tideserve-tiny-zh")
MODEL_ID = "tideserve-tiny-zh"
HIDDEN = 64

# Variables that would change how `serve` configures itself: the tests set what they mean.
_SERVE_ENV = (
    "MODEL_NAME MODEL_ID MODEL_VERSION HOST PORT IO_THREADS TIDESERVE_THREADS POOLING "
    "MAX_CONCURRENT_REQUESTS MAX_CLIENT_BATCH_SIZE MAX_INPUT_LENGTH MAX_BATCH_TOKENS "
    "MAX_BATCH_REQUESTS BATCH_WAIT_US API_KEY PAYLOAD_LIMIT HEADER_TIMEOUT IDLE_TIMEOUT "
    "MAX_REQUESTS_PER_CONNECTION DRAIN_DELAY SHUTDOWN_TIMEOUT LOG_LEVEL HEALTHCHECK_URL "
    "TOKENIZATION_WORKERS MAX_TOKENIZE_TOKENS DTYPE MAX_CHUNKS_PER_DOCUMENT MAX_DOCUMENT_BYTES "
    "MAX_CONNECTIONS MAX_INFLIGHT_BYTES MODEL_REPOSITORY MODEL_CONTROL REPOSITORY_POLL_SECONDS "
    "DEFAULT_MODEL MEMORY_LIMIT ADMIN_KEY PIN_VERSIONS "
    "REDIS_URL JOBS JOBS_PREFIX JOBS_CONSUMER JOBS_VISIBILITY_TIMEOUT JOBS_MAX_DELIVERIES "
    "JOBS_READ_COUNT JOBS_MAX_FILE_BYTES JOBS_MAX_LINES JOBS_MAX_BACKLOG JOBS_TTL "
    "JOBS_COMPLETION_WINDOW_SECONDS"
).split()

# Startup and shutdown bounds, generous for the ASan build on two busy cores.
START_TIMEOUT = float(os.environ.get("TIDESERVE_TEST_START_TIMEOUT", "90"))


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in _SERVE_ENV}
    if extra:
        env.update(extra)
    return env


class Server:
    """One `tideserve serve` child process and its JSON-lines log (`command="worker"`: a
    `tideserve worker`, which takes the same defaults)."""

    def __init__(self, binary, *args, env=None, model=MODEL, with_defaults=True,
                 command="serve"):
        self.binary = binary
        cmd = [binary, command]
        if model is not None:
            cmd += ["--model", model]
        args = [str(a) for a in args]
        if with_defaults:
            defaults = {"--host": "127.0.0.1", "--port": "0", "--threads": "1",
                        "--drain-delay": "0", "--shutdown-timeout": "20"}
            for flag, value in defaults.items():
                if flag not in args:  # the test's own value wins (CLI11 refuses repeats)
                    cmd += [flag, value]
        cmd += args
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=clean_env(env))
        self.lines = []  # raw stdout lines
        self.events = []  # parsed log objects
        self.stderr_lines = []
        self._cond = threading.Condition()
        self._eof = False
        self.port = None
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()

    # -- log -----------------------------------------------------------------------------------
    def _read_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                try:
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        self.events.append(obj)
                except ValueError:
                    pass
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            with self._cond:
                self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def event(self, name):
        with self._cond:
            for e in self.events:
                if e.get("event") == name:
                    return e
        return None

    def events_named(self, name):
        with self._cond:
            return [e for e in self.events if e.get("event") == name]

    def wait_event(self, name, timeout=START_TIMEOUT):
        """Blocks until a log line with this event appears; fails if the process ends first."""
        return self.wait_any_event((name,), timeout)

    def wait_any_event(self, names, timeout=START_TIMEOUT):
        """The first log line whose event is one of `names`, once one appears; fails if the
        process ends first."""
        deadline = time.monotonic() + timeout
        what = " or ".join(repr(n) for n in names)
        with self._cond:
            while True:
                for e in self.events:
                    if e.get("event") in names:
                        return e
                if self._eof:
                    raise AssertionError("tideserve exited (rc=%s) before logging %s\n%s"
                                         % (self.proc.poll(), what, self.log_text()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s log line within %.0f s\n%s"
                                         % (what, timeout, self.log_text()))
                self._cond.wait(left)

    def stderr_text(self):
        with self._cond:
            return "\n".join(self.stderr_lines)

    def log_text(self):
        with self._cond:
            err = self.stderr_lines
            if len(err) > 120:  # sanitizer reports: the head names the error, the tail sums up
                err = err[:80] + ["[... %d lines ...]" % (len(err) - 100)] + err[-20:]
            # Long C++ frames shortened to their start.
            err = [line if len(line) < 400 else line[:400] + " [...]" for line in err]
            return ("--- stdout ---\n" + "\n".join(self.lines[-60:]) + "\n--- stderr ---\n"
                    + "\n".join(err))

    # -- lifecycle ------------------------------------------------------------------------------
    def wait_listening(self):
        self.port = int(self.wait_event("listening")["port"])
        return self.port

    def wait_ready(self):
        if self.port is None:
            self.wait_listening()
        self.wait_event("serving")
        return self

    def start(self):
        return self.wait_ready()

    def signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tideserve did not exit within %.0f s\n%s"
                                 % (timeout, self.log_text()))
        for t in self._threads:
            t.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        log_dir = os.environ.get("TIDESERVE_TEST_LOG_DIR")
        if log_dir:  # whole logs, e.g. for a sanitizer report longer than log_text() shows
            os.makedirs(log_dir, exist_ok=True)
            path = os.path.join(log_dir, "tideserve-%d.log" % self.proc.pid)
            with open(path, "w") as f:
                f.write("$ %s\nexit %s\n--- stdout ---\n%s\n--- stderr ---\n%s\n" % (
                    " ".join(self.cmd), rc, "\n".join(self.lines), "\n".join(self.stderr_lines)))
        return rc

    def stop(self, timeout=60):
        """SIGTERM, then the exit code (0 after a clean drain; ASan findings make it non-zero)."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait_exit()

    # -- HTTP -----------------------------------------------------------------------------------
    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def connection(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60):
        """One request on a fresh connection: (status, headers {lowercase: value}, body bytes)."""
        conn = self.connection(timeout)
        try:
            return send(conn, method, path, body, headers)
        finally:
            conn.close()

    def post_json(self, path, obj, headers=None):
        status, hdrs, body = self.request("POST", path, json.dumps(obj), headers)
        return status, hdrs, parse_json(body)

    def get_json(self, path, headers=None):
        status, hdrs, body = self.request("GET", path, None, headers)
        return status, hdrs, parse_json(body)


def send(conn, method, path, body=None, headers=None):
    hdrs = {}
    if body is not None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    if headers:
        hdrs.update(headers)
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def read_response(sock):
    """One HTTP/1.1 response from a raw socket: (status, headers {lowercase: value}, body).
    Reads no further than the response's own bytes, so a pipelined next response stays in the
    socket for the next call."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError("connection closed before a whole response: %r" % data[:200])
        data += chunk
    head = data[:-4]
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise AssertionError("connection closed inside a body")
        body += chunk
    return status, headers, body


def wait_eof(sock, timeout):
    """Reads until the peer closes `sock`: (seconds waited, bytes received meanwhile, how it
    ended: "eof" for an orderly close, "reset", or "timeout" when still open after `timeout`)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return time.monotonic() - t0, data, "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return time.monotonic() - t0, data, "timeout"
        except ConnectionResetError:
            return time.monotonic() - t0, data, "reset"
        if not chunk:
            return time.monotonic() - t0, data, "eof"
        data += chunk


def parse_json(body):
    try:
        return json.loads(body)
    except ValueError:
        raise AssertionError("not JSON: %r" % body[:300])


# -- numerics -------------------------------------------------------------------------------------
def norm(v):
    return math.sqrt(sum(x * x for x in v))


def max_abs_diff(a, b):
    assert len(a) == len(b), (len(a), len(b))
    return max(abs(x - y) for x, y in zip(a, b))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def decode_base64_f32(s):
    raw = base64.b64decode(s, validate=True)
    assert len(raw) % 4 == 0, len(raw)
    return list(struct.unpack("<%df" % (len(raw) // 4), raw))


def status_kb(pid, field):
    """A /proc/PID/status field in kB (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


def sanitized(pid):
    """An ASan/TSan build: its RSS holds shadow memory and a quarantine of freed blocks, so RSS
    bounds are only checked on the release build."""
    with open("/proc/%d/maps" % pid) as f:
        return any("libasan" in line or "libtsan" in line for line in f)


def free_port():
    """A port on which nothing listens (bound then closed; nothing else binds it meanwhile in a
    hermetic run)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse_prometheus(text):
    """{(name, frozenset(labels.items())): value} from the text exposition format."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        labels = {}
        if "{" in name_labels:
            name, _, rest = name_labels.partition("{")
            rest = rest.rstrip("}")
            for part in _split_labels(rest):
                k, _, v = part.partition("=")
                labels[k] = json.loads(v)
        else:
            name = name_labels
        samples[(name, frozenset(labels.items()))] = float(value)
    return samples


def _split_labels(s):
    parts, cur, in_str, esc = [], "", False, False
    for ch in s:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == '"':
            cur += ch
            in_str = not in_str
        elif ch == "," and not in_str:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def metric(samples, name, **labels):
    """The value of one sample (None if absent)."""
    return samples.get((name, frozenset(labels.items())))


def metric_sum(samples, name, **labels):
    """Sum over the samples of `name` whose labels include `labels`."""
    total, found = 0.0, False
    for (n, lbls), v in samples.items():
        if n == name and all((k, val) in lbls for k, val in labels.items()):
            total += v
            found = True
    return total if found else None


def run_node_client(test, package, script, args, input=None, timeout=180):
    """Runs tests/integration/SCRIPT (an .mjs client) with node from tests/clients, where the npm
    clients are installed; fails `test` when the PACKAGE or node is missing. Returns the
    subprocess.CompletedProcess (text stdout and stderr)."""
    clients = os.path.join("tests", "clients")
    if not os.path.isdir(os.path.join(clients, "node_modules", package)):
        test.fail("tests/clients/node_modules/%s is missing: run tools/setup-test-clients.sh"
                  % package)
    node = shutil.which("node")
    test.assertIsNotNone(node, "node is not installed (tools/install-deps.sh)")
    path = os.path.abspath(os.path.join(os.path.dirname(__file__), script))
    return subprocess.run([node, path] + [str(a) for a in args], input=input, cwd=clients,
                          capture_output=True, text=True, timeout=timeout)


SKIP_RETURN_CODE = 77  # every test that ran was skipped (CTest: SKIP_RETURN_CODE 77)


class ServerCase:
    """Mixin for a unittest.TestCase with one server per class: `server_args`, `server_env` and
    `server_model` configure it; it must exit 0 after the class's tests. The binary is the one
    run_tests was given."""

    server_args = ()
    server_env = None
    server_model = MODEL

    @classmethod
    def setUpClass(cls):
        cls.server = Server(BINARY, *cls.server_args, env=cls.server_env,
                            model=cls.server_model).start()

    @classmethod
    def tearDownClass(cls):
        if cls.server.proc.poll() is not None and cls.server.proc.returncode == 0:
            return  # a test already stopped it cleanly
        rc = cls.server.stop()
        if rc != 0:
            raise AssertionError("tideserve exited %d\n%s" % (rc, cls.server.log_text()))


BINARY = None  # set by run_tests


def _class_filter(argv):
    """Takes --only A,B and --exclude A,B (repeatable) out of argv: (only, exclude) as sets."""
    only, exclude, rest = set(), set(), []
    it = iter(argv)
    for arg in it:
        for flag, target in (("--only", only), ("--exclude", exclude)):
            if arg == flag:
                value = next(it, None)
                if value is None:
                    raise SystemExit("%s needs a class name" % flag)
                break
            if arg.startswith(flag + "="):
                value = arg[len(flag) + 1:]
                break
        else:
            rest.append(arg)
            continue
        target.update(v for v in value.split(",") if v)
    return only, exclude, rest


def run_tests(module_globals, doc):
    """The main() of a test script, run from the repository root:

        script.py PATH_TO_TIDESERVE [--only CLASS[,CLASS]] [--exclude CLASS[,CLASS]]
                  [unittest arguments: test names (Class or Class.test_x), -k PATTERN, -f ...]

    Sets the script's BINARY and runs its unittest cases (those of the --only classes if given,
    less the --exclude ones). Returns the exit code: 0 when all passed, 1 on a failure or when no
    test ran, SKIP_RETURN_CODE (77) when every test that ran was skipped."""
    import sys
    import unittest
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(doc, file=sys.stderr)
        return 2
    global BINARY
    BINARY = module_globals["BINARY"] = os.path.abspath(sys.argv.pop(1))
    if not os.path.exists(MODEL):
        print("run from the repository root (%s not found)" % MODEL, file=sys.stderr)
        return 2
    only, exclude, argv = _class_filter(sys.argv[1:])
    classes = {name for name, obj in module_globals.items()
               if isinstance(obj, type) and issubclass(obj, unittest.TestCase)}
    unknown = sorted((only | exclude) - classes)
    if unknown:
        print("no test class %s in %s (classes: %s)" % (", ".join(unknown), sys.argv[0],
                                                       ", ".join(sorted(classes))),
              file=sys.stderr)
        return 2

    def keep(test):
        name = type(test).__name__
        return (not only or name in only) and name not in exclude

    def filtered(suite):
        out = unittest.TestSuite()
        for test in suite:
            if isinstance(test, unittest.TestSuite):
                sub = filtered(test)
                if sub.countTestCases():
                    out.addTest(sub)
            elif keep(test):
                out.addTest(test)
        return out

    class Loader(unittest.TestLoader):
        def loadTestsFromModule(self, module, *args, **kwargs):
            return filtered(super().loadTestsFromModule(module, *args, **kwargs))

        def loadTestsFromNames(self, names, module=None):
            return filtered(super().loadTestsFromNames(names, module))

    prog = unittest.main(module=module_globals["__name__"], argv=[sys.argv[0]] + argv,
                         testLoader=Loader(), exit=False, verbosity=2)
    result = prog.result
    if not result.wasSuccessful():
        return 1
    if result.testsRun == 0:
        print("no test ran", file=sys.stderr)
        return 1
    # A class skipped in its setUpClass adds a skip without running its tests: every test that
    # ran was skipped when there are at least as many skips as tests run.
    if result.skipped and result.testsRun <= len(result.skipped):
        print("every test that ran was skipped: exit %d" % SKIP_RETURN_CODE, file=sys.stderr)
        return SKIP_RETURN_CODE
    return 0


# -- Redis (the batch API's job streams) ---------------------------------------------------------
REDIS_SERVER = (os.environ.get("TIDESERVE_TEST_REDIS_SERVER") or shutil.which("redis-server")
                or "/usr/bin/redis-server")


def redis_available():
    return os.access(REDIS_SERVER, os.X_OK)


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode("utf-8", "replace")
    if kind == b"-":
        return RedisError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise AssertionError("unexpected RESP reply %r" % line)


def redis_command(port, *args, timeout=10):
    """One command on a fresh connection to 127.0.0.1:port (RESP2): the reply as str / int /
    list / None; an error reply raises RedisError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_resp_encode(args))
        with sock.makefile("rb") as f:
            reply = _resp_read(f)
    if isinstance(reply, RedisError):
        raise reply
    return reply


def redis_pairs(flat):
    """[k1, v1, k2, v2, ...] (a RESP2 map such as one XINFO GROUPS entry) as a dict."""
    return dict(zip(flat[0::2], flat[1::2]))


class RedisServer:
    """A real `redis-server` on 127.0.0.1 and a free port, with its own temporary data
    directory and no RDB snapshots; `aof=True` adds --appendonly yes --appendfsync always, so a
    kill -9 loses nothing that was acknowledged. restart() comes back on the same port and
    directory (the AOF replayed). Never the system Redis."""

    def __init__(self, aof=False):
        import tempfile
        self.aof = aof
        self.dir = tempfile.mkdtemp(prefix="tideserve-redis-")
        self.port = free_port()
        self.proc = None
        self.log = os.path.join(self.dir, "redis.log")

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=30):
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", self.dir, "--save", "", "--daemonize", "no", "--logfile", self.log,
               "--protected-mode", "yes"]
        if self.aof:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if redis_command(self.port, "PING", timeout=2) == "PONG":
                    return self
            except (OSError, RedisError):
                pass  # not listening yet, or still loading the AOF (-LOADING)
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %s\n%s"
                                     % (self.proc.returncode, self.log_text()))
            if time.monotonic() > deadline:
                raise AssertionError("redis-server not answering PING within %.0f s\n%s"
                                     % (timeout, self.log_text()))
            time.sleep(0.02)  # a poll interval: redis has no readiness line on a pipe

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def command(self, *args):
        return redis_command(self.port, *args)

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def restart(self):
        self.kill9()
        return self.start()

    def stop(self):
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)
