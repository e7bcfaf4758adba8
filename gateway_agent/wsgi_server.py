"""The sidecar's HTTP server: gevent's pywsgi with limits (sidecar.ServerLimits), so no client can hold a
connection or memory.

A connection may wait `idle_timeout` for its next request; a request must arrive whole (line,
headers, body) within `request_timeout`, else 408 and close; a body above `max_body` is
refused with 413 before it is read, one without Content-Length with 411, oversized headers
with 431; each write of a response must be done within `request_timeout`, else the connection
is closed. The application gets the body already read, so it never blocks on a slow client.
"""
from __future__ import annotations

import errno
import http.client
import io
import json
import socket
from time import monotonic, time
from typing import TYPE_CHECKING, Any, Callable

import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer, format_date_time

if TYPE_CHECKING:
    from .sidecar import ServerLimits


class RequestTimeout(TimeoutError):
    """The request did not arrive whole within request_timeout."""

    def __init__(self) -> None:
        super().__init__(errno.ETIMEDOUT, "request not received in time")


class IdleTimeout(TimeoutError):
    """No next request within idle_timeout (the connection is closed quietly)."""


class _WriteTimeout(socket.timeout):
    """A response write not done within request_timeout (what a socket timeout raises)."""

    def __init__(self) -> None:
        super().__init__("timed out")


class _Refused(ValueError):
    """A request refused before its body is read; carries the raw response."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        body = json.dumps({"error": message}).encode()
        self.status = str(status)
        self.response = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_MERGED_BODY = 64 * 1024  # a larger first chunk goes out in a write of its own, as pywsgi does


class _BodyInput(io.BytesIO):
    """wsgi.input over a body already read (pywsgi's Input would re-check lengths in Python on each read)."""

    def _discard(self) -> None:
        """Nothing is left on the socket to discard: the whole body was read with the request."""


_date: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    """Return the Date header value for now, formatted once a second (pywsgi formats it for every response)."""
    global _date
    second = int(time())
    if _date[0] != second:
        _date = (second, format_date_time(second))
    return _date[1]


class LimitedHandler(WSGIHandler):
    """A WSGIHandler enforcing `limits` (set on the subclass made by make_server).

    The timeouts are deadlines kept lazily: each phase of a request stores its deadline and the
    exception that ends it (waiting for the request: IdleTimeout; reading it: RequestTimeout;
    each write of the response: socket.timeout; the application: none), and one watchdog timer
    per connection, which fires at least every min(idle_timeout, request_timeout) s, throws
    that exception into the connection's greenlet once the deadline has passed. A request thus
    costs a few clock reads instead of starting and stopping timers; the socket has no timeout.
    """

    limits: ServerLimits
    _body = b""
    _deadline = 0.0
    _expiry: type[BaseException] | None = None  # what the current phase's deadline throws; None: no deadline
    _watchdog: Any = None
    _greenlet: Any = None

    def handle(self) -> None:
        # a large body goes out in a write of its own: without NODELAY, Nagle + delayed ACK add 40 ms
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.settimeout(None)  # waits are bounded by the watchdog
        self._greenlet = gevent.getcurrent()
        self._arm(min(self.limits.idle_timeout, self.limits.request_timeout))
        try:
            super().handle()
        finally:
            self._watchdog.close()
            self._expiry = None

    def _arm(self, seconds: float) -> None:
        self._watchdog = gevent.get_hub().loop.timer(seconds)
        self._watchdog.start(self._watch, update=True)

    def _watch(self) -> None:
        """Throw the current phase's timeout into the connection once its deadline has passed, else re-arm."""
        self._watchdog.close()
        expiry, left = self._expiry, self._deadline - monotonic()
        if expiry is not None and left <= 0:
            self._expiry = None
            self._arm(min(self.limits.idle_timeout, self.limits.request_timeout))
            self._greenlet.throw(expiry())
            return
        period = min(self.limits.idle_timeout, self.limits.request_timeout)
        self._arm(period if expiry is None else min(left, period))

    def handle_one_request(self) -> Any:
        # the wait for the first byte of the next request is bounded by idle_timeout; then the whole
        # request (line, headers, body) by request_timeout
        self._deadline, self._expiry = monotonic() + self.limits.idle_timeout, IdleTimeout
        try:
            started = self.rfile.peek(1)
        except OSError:  # IdleTimeout included
            return None
        if not started:
            return None
        self._deadline, self._expiry = monotonic() + self.limits.request_timeout, RequestTimeout
        result = super().handle_one_request()
        if result is not True:  # an error response may follow (pywsgi's handle writes it): bounded as writes are
            self._deadline, self._expiry = monotonic() + self.limits.request_timeout, _WriteTimeout
        return result

    def read_request(self, raw_requestline: str) -> bool:
        try:
            ok = super().read_request(raw_requestline)
        except ValueError:
            if getattr(self.headers, "status", "") == "Line too long":
                raise _Refused(431, "Request Header Fields Too Large", "a request header line is too long") from None
            raise
        if self.headers.get("transfer-encoding") is not None:
            raise _Refused(411, "Length Required", "send the body with a Content-Length")
        length = self.content_length or 0
        if length > self.limits.max_body:
            raise _Refused(413, "Payload Too Large", f"body must be at most {self.limits.max_body} bytes")
        if length and self.headers.get("expect", "").lower() == "100-continue":
            self.socket.sendall(_CONTINUE)
        self._body = self.rfile.read(length) if length else b""
        if len(self._body) < length:
            raise ValueError("connection closed inside the request body")
        return ok

    def log_request(self) -> None:
        """Log nothing: make_server's server keeps no access log (pywsgi would format the line and drop it)."""

    def get_environ(self) -> dict:
        self._expiry = None  # the request is in: the application runs without a deadline
        env = super().get_environ()
        self.wsgi_input = _BodyInput(self._body)
        env["wsgi.input"] = self.wsgi_input
        env["wsgi.input_terminated"] = True
        return env

    def _write_with_headers(self, data: bytes) -> None:
        """Send the status line, headers and first body chunk in one write (pywsgi sends two).

        One syscall and one TCP segment per small answer instead of two: the largest per-request
        saving in the sidecar (the client also wakes once). Mirrors gevent's own method.
        """
        self.headers_sent = True
        if self.provided_date is None:  # the application gave none: finalize_headers would format one
            self.response_headers.append((b"Date", _http_date()))
            self.provided_date = True
        self.finalize_headers()  # decides response_use_chunked
        out = bytearray(b"HTTP/1.1 ")
        out += self.status
        out += b"\r\n"
        for header, value in self.response_headers:
            out += header
            out += b": "
            out += value
            out += b"\r\n"
        out += b"\r\n"
        if data and not self.response_use_chunked and len(data) <= MAX_MERGED_BODY:
            out += data
            self._sendall(out)
        else:
            self._sendall(out)
            self._write(data)

    def _sendall(self, data: bytes) -> None:
        """Send data within request_timeout (else socket.timeout), as a socket timeout would bound it."""
        self._deadline, self._expiry = monotonic() + self.limits.request_timeout, _WriteTimeout
        super()._sendall(data)
        self._expiry = None

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes]:
        if isinstance(ex, RequestTimeout):
            ex = _Refused(408, "Request Timeout", "request not received in time")
        elif isinstance(ex, http.client.HTTPException):  # more than 100 headers
            ex = _Refused(431, "Request Header Fields Too Large", "too many request headers")
        if isinstance(ex, _Refused):
            return ex.status, ex.response
        return super()._handle_client_error(ex)

    def handle_error(self, t: type, v: BaseException, tb: Any) -> None:
        if isinstance(v, TimeoutError):  # the client stopped reading the response
            self.close_connection = True
            return
        super().handle_error(t, v, tb)


def make_server(app: Callable, host: str, port: int, limits: ServerLimits, error_log: Any) -> WSGIServer:
    """Return an unstarted gevent WSGI server for app on host:port that enforces limits."""
    handler = type("Handler", (LimitedHandler,), {"limits": limits})
    return WSGIServer((host, port), app, log=None, error_log=error_log, handler_class=handler,
                      spawn=limits.max_connections)
