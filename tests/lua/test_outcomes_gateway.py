"""nginx outcome counts: requests of a guarded split rule (canary answering 500, stable 200) and of a breaker pass are
counted per rule and upstream in /rulegate/status and in the fleet heartbeat; an unguarded rule's are not; breaker
states of all workers reach both."""
from __future__ import annotations

import http.client
from typing import Any, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rulegate.evaluator import bucket_of
from rulegate.fleet import read_fleet
from rulegate.schema import validate_rule
from rulegate.store import RuleStore

from .conftest import Gateway, wait_for

pytestmark = pytest.mark.integration

HOST = "app.example.com"
GUARDED = {"id": "web", "kind": "split", "route": {"host": HOST, "path": "/"},
           "key": {"source": "header", "name": "x-uid"}, "default": "stable",
           "policies": [{"type": "percent", "buckets": [{"upstream": "canary", "weight": 5000}],
                         "ramp": {"start": 1_000_000_000, "end": 1_000_000_100, "from": 0, "to": 5000,
                                  "mode": "linear",
                                  "guard": {"control": "stable", "min_requests": 10, "max_error_increase": 0.05}}}]}
PLAIN = {"id": "plain", "kind": "split", "route": {"host": HOST, "path": "/plain"}, "key": {"source": "ip"},
         "policies": [], "default": "v1"}
BREAKER = {"id": "api-breaker", "kind": "degrade", "route": {"host": HOST, "path": "/api"},
           "action": {"type": "static", "status": 503, "body": "degraded"},
           "breaker": {"window": 10, "min_requests": 3, "error_ratio": 0.5, "open_seconds": 600, "probes": 1}}
UIDS = [f"u{i}" for i in range(30)]
CANARY = [u for u in UIDS if bucket_of("web", u) < 5000]  # the ramp's share is 5000 (50 %): buckets [0, 5000)



def test_guarded_and_breaker_outcomes_reach_status_and_heartbeat(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    """Canary 500s and stable 200s of the guarded rule and three 500s of a breaker pass (to the location's default
    upstream) are counted by class in the status and the heartbeat; /plain counts nothing; the open breaker of the
    one worker that saw /api is in `breakers_fleet` and the heartbeat's `breakers`."""
    assert 0 < len(CANARY) < len(UIDS)
    rev = 0
    for rule in (GUARDED, PLAIN, BREAKER):
        rev = store.put_rule(namespace, validate_rule(rule), None, "test").revision
    gw = make_gateway(namespace, cluster.startup_nodes, heartbeat_interval=3600, exposure_flush_interval=0.2)
    gw.wait_revision(rev)
    for uid in UIDS:
        fail = {"X-Echo-Fail": "1"} if uid in CANARY else {}
        r = gw.get("/", host=HOST, headers={"X-Uid": uid, **fail})
        assert (r.status, r.headers["x-echo-upstream"]) == ((500, "canary") if fail else (200, "stable"))
    for _ in range(4):
        assert gw.get("/plain", host=HOST, headers={"X-Echo-Fail": "1"}).status == 500
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)  # one worker: its breaker opens
    for _ in range(3):
        assert gw.get("/api", host=HOST, headers={"X-Echo-Fail": "1"}, conn=conn).status == 500
    assert gw.get("/api", host=HOST, conn=conn).status == 503
    conn.close()
    expected = {("web", "canary"): (5, len(CANARY)), ("web", "stable"): (2, len(UIDS) - len(CANARY)),
                ("", "default"): (5, 3)}

    def counted() -> dict | None:
        st = gw.status()
        got = {(c["rule"], c["upstream"]): c for c in st["outcomes"]["counts"]}
        return st if {k: c["requests"] for k, c in got.items()} == {k: n for k, (_, n) in expected.items()} \
            and st["breakers_fleet"] else None

    st = wait_for(counted, "the workers' outcome flushes")
    for c in st["outcomes"]["counts"]:
        cls, n = expected[(c["rule"], c["upstream"])]
        assert c["classes"][cls] == n == sum(c["latency"])
    assert st["breakers_fleet"] == {"api-breaker": {"closed": 0, "open": 1, "half_open": 0}}
    rev = store.put_rule(namespace, validate_rule({**PLAIN, "id": "idle", "route": {"host": HOST, "path": "/i"}}),
                         None, "test").revision  # a rule change forces a heartbeat
    gw.wait_revision(rev)
    gateway_id = gw.options["gateway_id"]
    beat = wait_for(lambda: (b := read_fleet(store.client, namespace).get(gateway_id)) and b.revision == rev and b,
                 "the heartbeat of the new revision")
    assert beat.outcomes is not None and beat.outcomes.since == st["outcomes"]["since"]
    assert {k: (c.classes[expected[k][0]], c.requests, sum(c.latency)) for k, c in beat.outcomes.counts.items()} \
        == {k: (n, n, n) for k, (_, n) in expected.items()}
    assert beat.breakers == {"api-breaker": {"closed": 0, "open": 1, "half_open": 0}}
    assert gw.error_lines() == []

    # the same counts as Prometheus series, one per gateway (all workers), parsed by prometheus-client's parser
    metrics = gw.get("/rulegate/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(metrics.body)}
    outcomes = {(s.labels["rule"], s.labels["upstream"], s.labels["class"]): s.value
                for s in families["rulegate_nginx_outcomes"].samples}
    assert outcomes == {("web", "canary", "5xx"): len(CANARY), ("web", "stable", "2xx"): len(UIDS) - len(CANARY),
                        ("", "default", "5xx"): 3}
    counts = {(s.labels["rule"], s.labels["upstream"]): s.value
              for s in families["rulegate_nginx_outcome_latency_seconds"].samples if s.name.endswith("_count")}
    assert counts == {k: n for k, (_, n) in expected.items()}
    bounds = {s.labels["le"] for s in families["rulegate_nginx_outcome_latency_seconds"].samples
              if s.name.endswith("_bucket")}  # as written: a dashboard's le="0.005" matcher is a string match
    assert bounds == {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
    breakers = {s.labels["state"]: s.value for s in families["rulegate_nginx_breaker_instances"].samples}
    assert breakers == {"closed": 0, "half_open": 0, "open": 1}
    assert [s.value for s in families["rulegate_nginx_revision"].samples] == [rev]
    assert [s.value for s in families["rulegate_nginx_in_sync"].samples] == [1]
    decisions = {(s.labels["rule"], s.labels["target"]): s.value
                 for s in families["rulegate_nginx_rule_decisions"].samples}
    assert decisions[("web", "canary")] == len(CANARY)

    # deleting the breaker rule forgets its breaker in every worker that applies the change (a request applies it)
    rev = store.delete_rule(namespace, "api-breaker", None, "test").revision
    gw.wait_revision(rev)
    wait_for(lambda: gw.get("/", host=HOST).status and not gw.status()["breakers_fleet"],
          "the deleted rule's breaker to leave every worker")

