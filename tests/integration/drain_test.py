#!/usr/bin/env python3
"""The drain after SIGTERM, at its edges: responses during the drain delay close their
connection (so clients reconnect instead of reusing a connection about to go away), and a
request whose bytes are still arriving when the listener closes is read and answered.

usage: drain_test.py PATH_TO_TIDESERVE   (run from the repository root)
"""
import os
import signal
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as h  # noqa: E402

BINARY = None


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


if __name__ == "__main__":
    sys.exit(h.run_tests(globals(), __doc__))
