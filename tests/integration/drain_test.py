#!/usr/bin/env python3
"""The drain after SIGTERM, at its edges: responses during the drain delay close their
connection (so clients reconnect instead of reusing a connection about to go away), a
request whose bytes are still arriving when the listener closes is read and answered, and a
keep-alive connection left idle through the drain delay is closed cleanly (EOF, not a reset)
when the listener closes. SIGINT drains the same way; a request still pending at
--shutdown-timeout makes the exit code 1.

usage: drain_test.py PATH_TO_TIDESERVE   (run from the repository root)
"""
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as h  # noqa: E402

BINARY = None


read_response = h.read_response


def wait_listener_closed(server, timeout=60):
    """Polls until new connections are refused (the drain delay is over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", server.port)).close()
        except ConnectionRefusedError:
            return
        except ConnectionResetError:
            pass  # in the backlog of the listener being closed: the next try is refused
        time.sleep(0.01)  # a poll interval, not a synchronization
    raise AssertionError("the listener was not closed within %.0f s" % timeout)


def assert_accepted_before_now(server):
    """The server accepts connections in the order they were made: once a new connection's
    request is answered, every connection made before it has been accepted (has a session, which
    a drain waits for) and is no longer in the listener's backlog, which closing it would reset."""
    status, _, _ = server.request("GET", "/health")
    assert status in (200, 503), status


def send_partial_request(server):
    """A connection with the first half of a POST /embed's headers sent: a request in flight
    that the drain must wait for, accepted by the server before this returns. Returns the socket
    and the function that sends the rest and reads the answer."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    assert_accepted_before_now(server)

    def finish():
        body = b'{"inputs":"x"}'
        sock.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        sock.settimeout(30)
        return read_response(sock)

    return sock, finish


class DrainTest(unittest.TestCase):
    def test_drain_closes_keep_alive_and_answers_requests_in_flight(self):
        # Inside the drain delay the test only sends one request on a connection it already
        # holds, right after the shutting_down line: a few milliseconds against 3 s. The request
        # whose headers are half sent when the listener closes was started before the signal,
        # and the header timeout is far beyond the test, so nothing else depends on the delay.
        server = h.Server(BINARY, "--drain-delay", "3", "--shutdown-timeout", "60",
                          "--header-timeout", "120", "--io-threads", "2").start()
        sockets = []
        try:
            conn = server.connection()
            status, headers, _ = h.send(conn, "GET", "/health")
            self.assertEqual(status, 200)
            self.assertNotEqual(headers.get("connection"), "close")
            # A request whose headers are only half sent when the listener closes.
            partial, finish = send_partial_request(server)
            sockets.append(partial)

            server.signal(signal.SIGTERM)
            server.wait_event("shutting_down")
            status, headers, _ = h.send(conn, "POST", "/embed", '{"inputs":"x"}')
            self.assertEqual(status, 200, "requests are still answered during the drain delay")
            self.assertEqual(headers.get("connection"), "close")
            conn.close()

            wait_listener_closed(server)
            status, headers, payload = finish()
            self.assertEqual(status, 200, payload[:200])
            self.assertEqual(headers.get("connection"), "close")
        finally:
            server.signal(signal.SIGTERM)  # (again: a no-op once sent)
            for s in sockets:  # on a failure, lets the drain end
                s.close()
            rc = server.wait_exit(60)
        self.assertEqual(rc, 0, server.log_text())
        summary = server.event("shutdown_complete")
        self.assertTrue(summary["drained"])
        self.assertEqual(summary["unanswered_requests"], 0)

    def test_sigint_drains_like_sigterm(self):
        # SIGINT (Ctrl-C) starts the same drain: the request in flight across the signal is
        # answered, and the process exits 0 with everything drained.
        server = h.Server(BINARY, "--drain-delay", "0", "--shutdown-timeout", "60",
                          "--header-timeout", "120").start()
        sockets = []
        try:
            partial, finish = send_partial_request(server)
            sockets.append(partial)
            server.signal(signal.SIGINT)
            event = server.wait_event("shutting_down")
            self.assertEqual(event["signal"], "SIGINT")
            self.assertEqual(event["drain_delay_s"], 0)
            wait_listener_closed(server)
            self.assertIsNone(server.proc.poll(), "exited with a request in flight")
            status, headers, payload = finish()
            self.assertEqual(status, 200, payload[:200])
            self.assertEqual(headers.get("connection"), "close")
        finally:
            for s in sockets:
                s.close()
            rc = server.wait_exit(60)
        self.assertEqual(rc, 0, server.log_text())
        summary = server.event("shutdown_complete")
        self.assertIs(summary["drained"], True)
        self.assertEqual(summary["unanswered_requests"], 0)

    def test_work_pending_at_the_shutdown_timeout_exits_one(self):
        # A client that sent its headers and part of the body, then nothing: with a header
        # timeout far beyond the test, the request is still pending when --shutdown-timeout
        # (from the signal, the drain delay being 0) passes. The process exits 1 then.
        shutdown_timeout = 1.0
        server = h.Server(BINARY, "--drain-delay", "0", "--shutdown-timeout", shutdown_timeout,
                          "--header-timeout", "300").start()
        stalled = socket.create_connection(("127.0.0.1", server.port))
        try:
            stalled.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                            b"\r\nContent-Length: 100\r\n\r\n{\"inputs\": ")
            assert_accepted_before_now(server)  # before the signal
            t0 = time.monotonic()
            server.signal(signal.SIGTERM)
            rc = server.wait_exit(60)
            elapsed = time.monotonic() - t0
        finally:
            stalled.close()
            server.kill()
        self.assertEqual(rc, 1, server.log_text())
        self.assertNotIn("Sanitizer", server.stderr_text(), "exit 1 from a sanitizer report")
        summary = server.event("shutdown_complete")
        self.assertIsNotNone(summary, server.log_text())
        self.assertIs(summary["drained"], False)
        self.assertEqual(summary["unanswered_requests"], 1)
        self.assertGreaterEqual(elapsed, 0.9 * shutdown_timeout, "did not wait for the timeout")

    def test_idle_keep_alive_is_closed_cleanly_when_the_listener_closes(self):
        # Nothing but the drain may end the idle connection or the half-sent request: the header
        # and idle timeouts are far beyond the test's bound on the EOF.
        server = h.Server(BINARY, "--drain-delay", "1", "--shutdown-timeout", "120",
                          "--header-timeout", "120", "--idle-timeout", "120",
                          "--io-threads", "2").start()
        sockets = []
        try:
            idle = socket.create_connection(("127.0.0.1", server.port))
            sockets.append(idle)
            idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = read_response(idle)
            self.assertEqual(status, 200)
            self.assertNotEqual(headers.get("connection"), "close")

            # A request in flight across the listener's close: its headers are half sent, so
            # the process cannot exit (and close the idle connection by exiting) before we
            # finish it below.
            partial, finish = send_partial_request(server)
            sockets.append(partial)

            server.signal(signal.SIGTERM)
            server.wait_event("shutting_down")
            wait_listener_closed(server)

            # The idle connection is closed by the server while it still serves: an orderly
            # EOF (a reset raises ConnectionResetError), well before any timeout could.
            idle.settimeout(30)
            try:
                self.assertEqual(idle.recv(4096), b"", "the idle keep-alive connection got data")
            except socket.timeout:
                self.fail("the idle keep-alive connection was still open 30 s after the "
                          "listener closed")
            self.assertIsNone(server.proc.poll(), "the EOF must come from the drain, not the exit")

            status, headers, payload = finish()
            self.assertEqual(status, 200, payload[:200])
            self.assertEqual(headers.get("connection"), "close")
            # Idle after its answer during the drain: closed right after it, cleanly.
            self.assertEqual(partial.recv(4096), b"")
        finally:
            server.signal(signal.SIGTERM)  # (again: a no-op once sent)
            for s in sockets:  # on a failure, lets the drain end
                s.close()
            rc = server.wait_exit(60)
        self.assertEqual(rc, 0, server.log_text())
        summary = server.event("shutdown_complete")
        self.assertTrue(summary["drained"])
        self.assertEqual(summary["unanswered_requests"], 0)


if __name__ == "__main__":
    sys.exit(h.run_tests(globals(), __doc__))
