"""Outcome counts in the agent: report() on guarded rules' decisions and breaker passes reaches the fleet heartbeat
(cumulative) and /metrics; unguarded rules count nothing; breaker states are in the heartbeat; the sidecar's
/v1/report records the same."""
from __future__ import annotations

import json
import time

import pytest

from gateway_agent.metrics import AgentMetrics
from gateway_agent.sidecar import SidecarApp
from rulegate.outcomes import OutcomeCounts, latency_bucket

from .conftest import HOST, heartbeat_after, make_client, split_rule
from .test_sidecar import call, idle_app  # noqa: F401 - the fixture

GUARD = {"control": "stable", "min_requests": 10, "max_error_increase": 0.05}
GUARDED = {"id": "web", "kind": "split", "route": {"host": HOST, "path": "/"}, "key": {"source": "ip"},
           "default": "stable",
           "policies": [{"type": "percent", "buckets": [{"upstream": "canary", "weight": 5000}],
                         "ramp": {"start": 1_000_000_000, "end": 1_000_000_100, "from": 0, "to": 5000,
                                  "mode": "linear", "guard": GUARD}}]}
BREAKER = {"id": "api-breaker", "kind": "degrade", "route": {"host": HOST, "path": "/api"},
           "action": {"type": "static", "status": 503, "body": "degraded"},
           "breaker": {"window": 10, "min_requests": 3, "error_ratio": 0.5, "open_seconds": 60, "probes": 1}}
IPS = [f"10.0.0.{i}" for i in range(1, 41)]
# the sync thread writes the heartbeats (one with every revision check); the tests wait for one taken after the
# reports (heartbeat_after) instead of writing one beside that thread, on its connection
BEAT = 0.05


def _counts(n: int, cls: int, latency_ms: float) -> OutcomeCounts:
    classes, latency = [0] * 6, [0] * 12
    classes[cls], latency[latency_bucket(latency_ms)] = n, n
    return OutcomeCounts(tuple(classes), tuple(latency))


def test_guarded_rule_outcomes_reach_the_heartbeat_and_metrics(cluster, store, namespace):
    """Canary 500s at 30 ms and control 200s at 3 ms are counted per upstream, cumulatively, from two reports of each
    request; an unguarded rule's reports count nothing, and a delta that drops the guard stops the counting."""
    store.put_rule(namespace, GUARDED, None, "test")
    store.put_rule(namespace, split_rule("plain", "v1", path="/plain"), None, "test")
    with make_client(cluster, namespace, heartbeat_interval=BEAT, gateway_id="gw-outcomes") as client:
        assert client.wait_for_revision(2, 5.0)
        decisions = [client.decide({"host": HOST, "path": "/", "ip": ip}) for ip in IPS]
        by_upstream = {u: sum(d.upstream == u for d in decisions) for u in ("canary", "stable")}
        assert by_upstream["canary"] > 0 and by_upstream["stable"] > 0 and sum(by_upstream.values()) == len(IPS)
        for d in decisions:
            assert client.report(d, 500 if d.upstream == "canary" else 200, 30.0 if d.upstream == "canary" else 3.0)
        plain = client.decide({"host": HOST, "path": "/plain", "ip": "10.0.0.1"})
        assert plain.upstream == "v1" and not client.report(plain, 500, 1.0)
        first = heartbeat_after(store, namespace, "gw-outcomes", time.time()).outcomes
        for d in decisions[:3]:  # cumulative: the next heartbeat holds the earlier counts too
            client.report(d, 0, 20_000.0)
        second = heartbeat_after(store, namespace, "gw-outcomes", time.time()).outcomes
        body = AgentMetrics(client).render()[0].decode()
        store.put_rule(namespace, {**GUARDED, "policies": [{**GUARDED["policies"][0], "ramp": {
            k: v for k, v in GUARDED["policies"][0]["ramp"].items() if k != "guard"}}]}, None, "test")
        assert client.wait_for_revision(3, 5.0) and client.syncer.current.source == "redis"
        assert not client.report(client.decide({"host": HOST, "path": "/", "ip": IPS[0]}), 200, 1.0)
    assert first.counts == {("web", "canary"): _counts(by_upstream["canary"], 5, 30.0),
                            ("web", "stable"): _counts(by_upstream["stable"], 2, 3.0)}
    assert second.since == first.since
    assert sum(c.requests for c in second.counts.values()) == len(IPS) + 3
    assert sum(c.classes[0] + c.latency[-1] for c in second.counts.values()) == 6
    assert f'rulegate_agent_outcomes_total{{class="5xx",rule="web",upstream="canary"}} {by_upstream["canary"]}.0' \
        in body
    assert 'upstream="v1"' not in body.split("rulegate_agent_outcomes")[-1]


def test_breaker_pass_outcomes_and_breaker_states(cluster, store, namespace):
    """A breaker pass counts under ("", "@pass") with no split; the heartbeat and metrics show the breaker open."""
    store.put_rule(namespace, BREAKER, None, "test")
    with make_client(cluster, namespace, heartbeat_interval=BEAT, gateway_id="gw-breakers") as client:
        assert client.wait_for_revision(1, 5.0)
        before = heartbeat_after(store, namespace, "gw-breakers", time.time())
        for _ in range(3):
            d = client.decide({"host": HOST, "path": "/api", "ip": "10.0.0.1"})
            assert (d.action, d.breaker) == ("pass", "api-breaker")
            assert client.report(d, 502, 4.0)
        assert client.decide({"host": HOST, "path": "/api", "ip": "10.0.0.1"}).action == "respond"
        beat = heartbeat_after(store, namespace, "gw-breakers", time.time())
        body = AgentMetrics(client).render()[0].decode()
    assert before.revision == 1 and before.outcomes is None and before.breakers == {}
    assert beat.outcomes.counts == {("", "@pass"): _counts(3, 5, 4.0)}
    assert beat.breakers == {"api-breaker": {"closed": 0, "open": 1, "half_open": 0}}
    assert 'rulegate_agent_breaker_state{rule="api-breaker"} 2.0' in body


def _report(app: SidecarApp, payload: dict) -> tuple[int, object]:
    return call(app, "POST", "/v1/report", json.dumps(payload).encode())


def test_sidecar_report_records_what_decide_answered(cluster, store, namespace):
    """/v1/decide answers `breaker` for a breaker pass; /v1/report with it feeds the breaker and counts (204)."""
    store.put_rule(namespace, BREAKER, None, "test")
    with make_client(cluster, namespace, heartbeat_interval=3600) as client:
        assert client.wait_for_revision(1, 5.0)
        app = SidecarApp(client)
        status, answer = call(app, "POST", "/v1/decide", json.dumps({"host": HOST, "path": "/api"}).encode())
        assert status == 200 and answer["breaker"] == "api-breaker" and answer["action"] == "pass"
        for _ in range(3):
            assert _report(app, {"rule_id": answer["rule_id"], "upstream": answer.get("upstream"),
                                 "breaker": answer["breaker"], "status": 503, "latency_ms": 12.5}) == (204, "")
        assert _report(app, {"rule_id": "nope", "upstream": "x", "breaker": None, "status": 200,
                             "latency_ms": 1}) == (204, "")  # nothing to record: accepted, not counted
        assert client.outcomes.outcomes().counts == {("", "@pass"): _counts(3, 5, 12.5)}
        assert client.breakers.snapshot(0)["api-breaker"]["state"] == "open"


@pytest.mark.parametrize("payload, field", [
    ({"status": 200}, "latency_ms"),
    ({"latency_ms": 1}, "status"),
    ({"status": True, "latency_ms": 1}, "status"),
    ({"status": 1000, "latency_ms": 1}, "status"),
    ({"status": 200.0, "latency_ms": 1}, "status"),
    ({"status": 200, "latency_ms": -1}, "latency_ms"),
    ({"status": 200, "latency_ms": "5"}, "latency_ms"),
    ({"status": 200, "latency_ms": 1, "rule_id": 5}, "rule_id"),
    ({"status": 200, "latency_ms": 1, "upstream": ""}, "upstream"),
    ({"status": 200, "latency_ms": 1, "breaker": ["b"]}, "breaker"),
    ({"status": 200, "latency_ms": 1, "extra": 1}, "extra"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_sidecar_bad_reports_get_400_naming_the_field(idle_app, payload, field):  # noqa: F811
    """A bad /v1/report body is answered 400 with the field named."""
    status, body = _report(idle_app, payload)
    assert status == 400 and field in body["error"] and list(body["fields"]) == [field]


def test_sidecar_report_needs_a_json_object_by_post(idle_app):  # noqa: F811
    """Not JSON, not an object, or not POST: 400 / 405."""
    assert call(idle_app, "POST", "/v1/report", b"nope")[0] == 400
    assert call(idle_app, "POST", "/v1/report", b"[1]")[0] == 400
    assert call(idle_app, "GET", "/v1/report")[0] == 405
