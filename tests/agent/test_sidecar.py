"""The sidecar's HTTP contract (WSGI app in-process), its server limits (a real sidecar process,
raw sockets) and the fleet heartbeat."""
from __future__ import annotations

import io
import json
import socket
import time

import pytest
import redis

from gateway_agent import RuleClient
from gateway_agent.sidecar import ServerLimits, SidecarApp
from rulegate.fleet import read_fleet

from .conftest import Sidecar, make_client, split_rule


def call(app: SidecarApp, method: str, path: str, body: bytes = b"") -> tuple[int, dict | str]:
    """Return (status, parsed body) of one in-process WSGI request."""
    seen = {}
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    out = b"".join(app(environ, lambda status, headers: seen.setdefault("status", status)))
    status = int(seen["status"].split()[0])
    return status, json.loads(out) if out.startswith(b"{") else out.decode()


@pytest.fixture()
def idle_app():
    """A sidecar app over a client that was never started (nothing loaded)."""
    return SidecarApp(RuleClient(["127.0.0.1:1"], "idle"))


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b"{}", "host is required"),
    (b'{"host": "a", "headers": {"x": 1}}', "headers must be"),
    (b'{"host": "a", "now": "soon"}', "now must be"),
    (b'{"host": "a", "now": 1e400}', "now must be a finite number"),
    (b'{"host": "a", "now": NaN}', "NaN"),
    (b'{"host": "a", "now": -Infinity}', "Infinity"),
    (b'{"host": "a", "now": 1' + b"0" * 400 + b"}", "at most 300 digits"),
    (b'{"host": "a", "now": -1' + b"0" * 300 + b"}", "at most 300 digits"),
    (b'{"host": "a", "x": 1' + b"0" * 5000 + b"}", "at most 300 digits"),
    (b'{"host": "a", "bogus": 1}', "unknown field"),
    (b"", "body must be"),
], ids=lambda v: repr(v[:24]) if isinstance(v, bytes) else None)
def test_bad_decide_requests_get_400(idle_app, body, reason):
    """Malformed decide bodies are answered 400 with a reason."""
    status, payload = call(idle_app, "POST", "/v1/decide", body)
    assert status == 400 and reason in payload["error"]


def test_large_but_finite_now_is_decided(idle_app):
    """An integer `now` a double can hold (up to 300 digits) is a valid time, however far off."""
    assert call(idle_app, "POST", "/v1/decide", b'{"host": "a", "now": 1' + b"0" * 299 + b"}")[0] == 200


def test_nothing_loaded_passes_and_is_unhealthy(idle_app):
    """Before any rule set is loaded decide() says pass and /healthz says 503."""
    assert call(idle_app, "POST", "/v1/decide", b'{"host": "a.example.com"}') == \
        (200, {"action": "pass", "rule_id": None, "revision": 0})
    status, health = call(idle_app, "GET", "/healthz")
    assert status == 503 and health["loaded"] is False
    assert call(idle_app, "GET", "/v1/decide")[0] == 405
    assert call(idle_app, "GET", "/nope")[0] == 404


def test_heartbeat_lands_in_fleet_hash(cluster, store, namespace):
    """A running client heartbeats its applied revision into {rg:<ns>}:fleet."""
    store.put_rule(namespace, split_rule("checkout", "v1"), None, "test")
    with make_client(cluster, namespace, gateway_id="agent-test-1", heartbeat_interval=0.1) as client:
        assert client.revision == 1
        time.sleep(0.4)
    reader = redis.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(*a.split(":"))
                                               for a in cluster.startup_nodes])
    try:
        fleet = read_fleet(reader, namespace)
    finally:
        reader.close()
    beat = fleet["agent-test-1"]
    assert beat.kind == "agent" and beat.revision == 1 and beat.generation == client.generation
    assert beat.heartbeat_at > time.time() - 5 and beat.staleness < 1


# ---- server limits: a sidecar process with short timeouts, driven over raw sockets ---------------

LIMITS = ["--idle-timeout", "1", "--request-timeout", "1", "--max-body", "1024"]
DECIDE = b'{"host": "shop.example.com"}'


@pytest.fixture(scope="module")
def limited(cluster, tmp_path_factory):
    """A sidecar process with 1 s idle and request timeouts and a 1 KiB body limit."""
    s = Sidecar(cluster.startup_nodes, "limits", tmp_path_factory.mktemp("limits") / "snap", *LIMITS)
    yield s
    s.stop()


def connect(sidecar: Sidecar) -> socket.socket:
    return socket.create_connection(("127.0.0.1", sidecar.port), timeout=5)


def until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Read until the server closes the connection; return what came and how long it took."""
    t0, out = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out, time.monotonic() - t0


def post_head(length: int, extra: str = "") -> bytes:
    return (f"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


@pytest.mark.parametrize("sent", [
    post_head(100) + b'{"host":',
    b"POST /v1/decide HTTP/1.1\r\nHost: x\r\n",
    b"POST /v1/deci",
], ids=["half-body", "half-headers", "half-request-line"])
def test_half_a_request_is_cut_off(limited, sent):
    """A client that sends part of a request and stops is answered 408 (or dropped) and closed after the timeout."""
    with connect(limited) as sock:
        sock.sendall(sent)
        out, took = until_closed(sock)
    assert took < 3
    assert out == b"" or out.startswith(b"HTTP/1.1 408"), out


def test_a_dripping_request_is_cut_off(limited):
    """Bytes trickling in do not extend the deadline: the whole request must arrive within request_timeout."""
    with connect(limited) as sock:
        sock.sendall(b"POST /v1/decide HTTP/1.1\r\n")
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 4:
                sock.sendall(b"X-Drip: 1\r\n")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out, _ = until_closed(sock)
        assert time.monotonic() - t0 < 3
    assert out.startswith(b"HTTP/1.1 408"), out


def test_idle_connections_are_closed(limited):
    """A connection that sends nothing, or nothing after a complete request, is closed after idle_timeout."""
    with connect(limited) as sock:
        out, took = until_closed(sock)
    assert out == b"" and took < 3
    with connect(limited) as sock:
        sock.sendall(post_head(len(DECIDE)) + DECIDE)
        out, took = until_closed(sock)
    assert out.startswith(b"HTTP/1.1 200") and b'"action":"pass"' in out
    assert took < 3


def test_keep_alive_and_expect_continue_still_work(limited):
    """Two requests on one connection both get 200; a body announced with Expect: 100-continue is asked for."""
    with connect(limited) as sock:
        sock.sendall(post_head(len(DECIDE)) + DECIDE)
        sock.sendall(post_head(len(DECIDE), "Expect: 100-continue\r\n"))
        got = b""
        while b"100 Continue" not in got:
            got += sock.recv(65536)
        sock.sendall(DECIDE)
        while got.count(b'"action":"pass"') < 2:
            got += sock.recv(65536)
    assert got.count(b"HTTP/1.1 200") == 2


@pytest.mark.parametrize("head, status", [
    (post_head(10**9), b"413"),  # announced, never sent
    (post_head(2048), b"413"),
    (b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", b"411"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    (b"GET /healthz HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", b"431"),
], ids=["huge-length", "over-max-body", "chunked", "long-header", "many-headers"])
def test_oversized_requests_are_refused_before_reading(limited, head, status):
    """Bodies above max_body (413), bodies without a length (411) and huge headers (431) are refused at
    once and the connection closed, without waiting for (or reading) the rest."""
    with connect(limited) as sock:
        sock.sendall(head)
        out, took = until_closed(sock)
    assert out.startswith(b"HTTP/1.1 " + status), out
    assert took < 0.5


def test_server_limits_must_be_positive():
    """A zero or negative limit is a configuration error."""
    with pytest.raises(ValueError):
        ServerLimits(request_timeout=0)
