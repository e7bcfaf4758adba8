"""The sidecar's HTTP server bounds every wait: idle, the request, each response write (one watchdog per connection).

The server runs in-process on its own gevent hub in a thread (no sidecar process, no Redis).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Iterator

import pytest
from gevent.pywsgi import format_date_time

from gateway_agent.sidecar import ServerLimits
from gateway_agent.wsgi_server import make_server
from rulegate_dev.nginx import free_port

BODY = b'{"ok":true}'
BIG = 16 << 20  # more than the server's socket buffers and the client's (tcp_wmem 4 MiB, SO_RCVBUF 4 KiB) hold
big_closed = threading.Event()


class Closing(list):
    """A response body that says when the server is done with it."""

    def close(self) -> None:
        big_closed.set()


def app(environ, start_response):
    environ["wsgi.input"].read()
    body = Closing([b"x" * BIG]) if environ["PATH_INFO"] == "/big" else [BODY]
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body[0])))])
    return body


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """A limited server (1 s idle, 0.5 s request timeouts) on a thread of its own."""
    import gevent

    port, ready, state = free_port(), threading.Event(), {}

    def run() -> None:  # the server and its pool belong to this thread's hub
        state["hub"] = gevent.get_hub()
        state["server"] = server = make_server(app, "127.0.0.1", port, ServerLimits(idle_timeout=1, request_timeout=0.5),
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


def request(length: int = 2, path: str = "/x") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode() + b"{}"[:length]


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


def test_a_client_that_stops_reading_is_cut_off(port):
    """A response the client does not read is given up after request_timeout and the connection closed."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request(path="/big"))
        assert big_closed.wait(10)  # the write gave up (the server is done with the body), the client read nothing
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < BIG


def test_responses_carry_one_current_date_header(port):
    """The Date header, formatted once a second, is pywsgi's format of the current second, sent once."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        before = int(time.time())
        sock.sendall(request())
        head = read_response(sock).split(b"\r\n\r\n")[0].split(b"\r\n")
        after = int(time.time())
    dates = [line for line in head if line.lower().startswith(b"date:")]
    assert len(dates) == 1
    assert dates[0][6:] in {format_date_time(t) for t in range(before, after + 1)}
