"""End to end in the agent: a breaker rule opens on reported errors, probes after open_seconds, recovery closes it."""
from __future__ import annotations

from .conftest import HOST, make_client, split_rule

BREAKER = {"id": "api-breaker", "kind": "degrade", "route": {"host": HOST, "path": "/"},
           "action": {"type": "static", "status": 503, "body": "degraded"},
           "breaker": {"window": 10, "min_requests": 3, "error_ratio": 0.5, "open_seconds": 2, "probes": 1}}


def _request(now: float) -> dict:
    return {"host": HOST, "path": "/", "ip": "10.0.0.1", "now": now}


def test_breaker_opens_probes_and_closes(cluster, store, namespace):
    """Three reported 500s open it (static response), a good probe after open_seconds closes it; health shows it."""
    store.put_rule(namespace, split_rule("web", "v1"), None, "test")
    store.put_rule(namespace, BREAKER, None, "test")
    with make_client(cluster, namespace) as client:
        assert client.wait_for_revision(2, 5.0)
        t = 1_000.0
        for i in range(3):
            d = client.decide(_request(t + i * 0.1))
            assert (d.action, d.upstream, d.breaker) == ("proxy", "v1", "api-breaker")
            assert client.report(d, 500, 12.0, now=t + i * 0.1 + 0.05)
        opened = client.decide(_request(t + 1))
        assert (opened.action, opened.status, opened.body, opened.rule_id) == ("respond", 503, "degraded",
                                                                               "api-breaker")
        assert client.breakers.snapshot(t + 1)["api-breaker"]["state"] == "open"
        probe = client.decide(_request(t + 2.5))
        assert (probe.action, probe.breaker) == ("proxy", "api-breaker")
        assert client.decide(_request(t + 2.6)).action == "respond"  # beyond the one probe
        assert client.report("api-breaker", 200, 5.0, now=t + 2.7)
        assert client.decide(_request(t + 2.8)).action == "proxy"
        assert "api-breaker" in client.health()["breakers"]
        assert not client.report("web", 500, 1.0)  # no breaker on that rule
