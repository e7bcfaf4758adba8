"""nginx end to end: a breaker rule opens on upstream 500s, serves its static response, probes and recovers."""
from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

from rulegate.schema import validate_rule
from rulegate.store import RuleStore

from .conftest import Gateway

pytestmark = pytest.mark.integration

HOST = "app.example.com"
RULES = [
    {"id": "web", "kind": "split", "route": {"host": HOST, "path": "/"}, "key": {"source": "ip"},
     "policies": [], "default": "stable"},
    {"id": "api-breaker", "kind": "degrade", "route": {"host": HOST, "path": "/"},
     "action": {"type": "static", "status": 503, "body": "degraded"},
     "breaker": {"window": 10, "min_requests": 3, "error_ratio": 0.5, "open_seconds": 1, "probes": 1}},
]


def _state(gw: Gateway, conn: http.client.HTTPConnection) -> str:
    """Return the breaker's state in the worker serving conn (breakers are per worker)."""
    res = gw.get("/rulegate/status", conn=conn)
    return json.loads(res.body)["breakers"]["api-breaker"]["state"]


def test_breaker_opens_on_500s_probes_and_closes(cluster: Any, redis_config: Any, tmp_path) -> None:
    """min_requests upstream 500s open it (static 503), after open_seconds a good probe closes it."""
    ns = "breaker-" + tmp_path.name[-6:].replace("_", "-")
    store = RuleStore.from_config(redis_config)
    rev = 0
    for rule in RULES:
        rev = store.put_rule(ns, validate_rule(rule), None, "t").revision
    store.close()
    gw = Gateway({"namespace": ns, "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 0.2},
                 prefix=tmp_path / "gw")
    try:
        gw.start().wait_revision(rev)
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)  # one worker: its breakers
        for _ in range(3):
            assert gw.get("/x", headers={"X-Echo-Fail": "1"}, conn=conn).status == 500
        opened = gw.get("/x", conn=conn)
        assert (opened.status, opened.body) == (503, "degraded")
        assert _state(gw, conn) == "open"
        time.sleep(1.1)
        probe = gw.get("/x", conn=conn)
        assert (probe.status, probe.body) == (200, "stable")
        assert _state(gw, conn) == "closed"
        assert gw.get("/x", conn=conn).status == 200
        conn.close()
        assert gw.error_lines() == []
    finally:
        gw.stop()


def test_requests_of_other_routes_never_feed_the_breaker(cluster: Any, redis_config: Any, tmp_path) -> None:
    """A request the breaker let through, then failing requests to another host's route (no degrade rule there) on
    the same worker: only the first is the breaker's outcome (the worker's request table is reused; a stale mark would
    open the breaker on the other route's 500s)."""
    ns = "breaker-other-" + tmp_path.name[-6:].replace("_", "-")
    store = RuleStore.from_config(redis_config)
    rev = 0
    for rule in RULES + [{"id": "other", "kind": "split", "route": {"host": "other.example.com", "path": "/"},
                          "key": {"source": "ip"}, "policies": [], "default": "stable"}]:
        rev = store.put_rule(ns, validate_rule(rule), None, "t").revision
    store.close()
    gw = Gateway({"namespace": ns, "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 0.2},
                 prefix=tmp_path / "gw")
    try:
        gw.start().wait_revision(rev)
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        assert gw.get("/x", conn=conn).status == 200  # passed by the (closed) breaker: a good outcome
        for _ in range(5):
            assert gw.get("/x", host="other.example.com", headers={"X-Echo-Fail": "1"}, conn=conn).status == 500
        assert gw.get("/x", conn=conn).status == 200
        assert _state(gw, conn) == "closed"
        conn.close()
        assert gw.error_lines() == []
    finally:
        gw.stop()
