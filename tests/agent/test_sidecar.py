"""The sidecar's HTTP contract (WSGI app in-process) and the fleet heartbeat."""
from __future__ import annotations

import io
import json
import time

import pytest
import redis

from gateway_agent import RuleClient
from gateway_agent.sidecar import SidecarApp
from rulegate.fleet import read_fleet

from .conftest import make_client, split_rule


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
    (b'{"host": "a", "bogus": 1}', "unknown field"),
    (b"", "body must be"),
])
def test_bad_decide_requests_get_400(idle_app, body, reason):
    """Malformed decide bodies are answered 400 with a reason."""
    status, payload = call(idle_app, "POST", "/v1/decide", body)
    assert status == 400 and reason in payload["error"]


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
