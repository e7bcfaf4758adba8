"""The sidecar's HTTP server restarts its per-connection deadline timer for every request.

The server runs in-process on its own gevent hub in a thread (no sidecar process, no Redis).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Iterator

import pytest

from gateway_agent.sidecar import ServerLimits
from gateway_agent.wsgi_server import make_server
from rulegate_dev.nginx import free_port

BODY = b'{"ok":true}'


def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """A limited server (1 s request and idle timeouts) on a thread of its own."""
    import gevent

    port, ready, state = free_port(), threading.Event(), {}

    def run() -> None:  # the server and its pool belong to this thread's hub
        state["hub"] = gevent.get_hub()
        state["server"] = server = make_server(app, "127.0.0.1", port, ServerLimits(idle_timeout=1, request_timeout=1),
                                               logging.getLogger("test"))
        server.start()
        ready.set()
        server.serve_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield port
    state["hub"].loop.run_callback_threadsafe(state["server"].stop)
    thread.join(5)


def request(length: int = 2) -> bytes:
    return f"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode() + b"{}"[:length]


def read_response(sock: socket.socket) -> bytes:
    out = b""
    while not out.endswith(BODY):
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def test_many_requests_on_one_connection(port):
    """Fifty requests on one keep-alive connection are all answered (the timer restarts cleanly)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for _ in range(50):
            sock.sendall(request())
            assert read_response(sock).startswith(b"HTTP/1.1 200")


def test_a_dripping_second_request_is_cut_off(port):
    """After a complete request, a second one trickling in is answered 408 within request_timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request())
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)  # idle, below idle_timeout
        sock.sendall(b"POST /x HTTP/1.1\r\n")
        t0, out = time.monotonic(), b""
        try:
            while time.monotonic() - t0 < 4:
                sock.sendall(b"X-Drip: 1\r\n")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 3
    assert out.startswith(b"HTTP/1.1 408"), out


def test_an_idle_connection_is_closed_quietly(port):
    """After a request, a connection sending nothing is closed after idle_timeout, with no response."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request())
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        assert sock.recv(65536) == b""  # closed by the server, no 408
