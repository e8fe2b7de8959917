#!/usr/bin/env python3
"""The drain after SIGTERM, at its edges: responses during the drain delay close their
connection (so clients reconnect instead of reusing a connection about to go away), a
request whose bytes are still arriving when the listener closes is read and answered, and a
keep-alive connection left idle through the drain delay is closed cleanly (EOF, not a reset)
when the listener closes.

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


def read_response(sock):
    """One HTTP/1.1 response from a raw socket: (status, headers {lowercase: value}, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError("connection closed before a whole response: %r" % data[:200])
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError("connection closed inside a body")
        body += chunk
    return status, headers, body[:length]


def wait_listener_closed(server, timeout=60):
    """Polls until new connections are refused (the drain delay is over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", server.port)).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.01)  # a poll interval, not a synchronization
    raise AssertionError("the listener was not closed within %.0f s" % timeout)


class DrainTest(unittest.TestCase):
    def test_drain_closes_keep_alive_and_answers_requests_in_flight(self):
        server = h.Server(BINARY, "--drain-delay", "2", "--shutdown-timeout", "30",
                          "--io-threads", "2").start()
        try:
            conn = server.connection()
            status, headers, _ = h.send(conn, "GET", "/health")
            self.assertEqual(status, 200)
            self.assertNotEqual(headers.get("connection"), "close")

            server.signal(signal.SIGTERM)
            server.wait_event("shutting_down")
            status, headers, _ = h.send(conn, "POST", "/embed", '{"inputs":"x"}')
            self.assertEqual(status, 200, "requests are still answered during the drain delay")
            self.assertEqual(headers.get("connection"), "close")
            conn.close()

            # A request whose headers are only half sent when the listener closes.
            partial = socket.create_connection(("127.0.0.1", server.port))
            partial.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            while True:  # until the listener is closed (new connections refused)
                try:
                    socket.create_connection(("127.0.0.1", server.port)).close()
                except ConnectionRefusedError:
                    break
            body = b'{"inputs":"x"}'
            partial.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            partial.settimeout(30)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = partial.recv(4096)
                if not chunk:
                    break
                answer += chunk
            partial.close()
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])
        finally:
            rc = server.wait_exit(60)
        self.assertEqual(rc, 0, server.log_text())
        summary = server.event("shutdown_complete")
        self.assertTrue(summary["drained"])
        self.assertEqual(summary["unanswered_requests"], 0)

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
            partial = socket.create_connection(("127.0.0.1", server.port))
            sockets.append(partial)
            partial.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Type: application/json\r\n")

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

            body = b'{"inputs":"x"}'
            partial.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            partial.settimeout(30)
            status, headers, payload = read_response(partial)
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
