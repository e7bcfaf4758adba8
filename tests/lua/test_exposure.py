"""nginx exposure counts: decisions per rule and upstream over 2 workers reach the status JSON and the fleet
heartbeat, through per-worker tables flushed by a timer (no shared-dict write per request)."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from rulegate.fleet import read_fleet
from rulegate.schema import validate_rule
from rulegate.store import RuleStore

from .conftest import Gateway, wait_for

pytestmark = pytest.mark.integration

SENT = {("web", "v1"): 120, ("shop", "v2"): 60, ("", "@pass"): 30}
PATHS = {("web", "v1"): ("app.example.com", "/"), ("shop", "v2"): ("app.example.com", "/shop"),
         ("", "@pass"): ("other.example.com", "/")}


def _rule(rule_id: str, upstream: str, path: str) -> dict:
    return validate_rule({"id": rule_id, "kind": "split", "route": {"host": "app.example.com", "path": path},
                          "key": {"source": "ip"}, "policies": [], "default": upstream})



def test_nginx_counts_reach_status_and_heartbeat_without_per_request_writes(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    """210 requests on fresh connections (both workers accept) are summed per (rule, target) in the status and
    in the heartbeat sent after them; the shared-dict writes are per flush and key, far fewer than requests."""
    store.put_rule(namespace, _rule("web", "v1", "/"), None, "test")
    rev = store.put_rule(namespace, _rule("shop", "v2", "/shop"), None, "test").revision
    gw = make_gateway(namespace, cluster.startup_nodes, heartbeat_interval=3600, exposure_flush_interval=0.2)
    gw.wait_revision(rev)
    for key, n in SENT.items():
        host, path = PATHS[key]
        for _ in range(n):
            r = gw.get(path, host=host)
            assert r.status == 200
    requests = sum(SENT.values())
    st = wait_for(lambda: (s := gw.status())["exposure"]["total"] == requests and s, "the workers' flushes")
    ex = st["exposure"]
    assert {(c["rule"], c["target"]): c["count"] for c in ex["counts"]} == SENT
    assert ex["rules"] == {"web": 120, "shop": 60, "": 30} and ex["targets"] == {"v1": 120, "v2": 60, "@pass": 30}
    # one incr per (rule, target) key per flush, 2 per flush for the flush counters, 2 per new key for the index
    assert 0 < ex["writes"] <= ex["flushes"] * (len(SENT) + 2) + 2 * len(SENT) and ex["writes"] < requests / 2
    # a rule change forces a heartbeat: it carries every decision since the previous (start-up) heartbeat
    rev = store.put_rule(namespace, _rule("idle", "v3", "/idle"), None, "test").revision
    gw.wait_revision(rev)
    gateway_id = gw.options["gateway_id"]
    beat = wait_for(lambda: (b := read_fleet(store.client, namespace).get(gateway_id)) and b.revision == rev and b,
                 "the heartbeat of the new revision")
    assert beat.exposure is not None and beat.exposure.window > 0
    assert {(rule, target): n for rule, target, n in beat.exposure.counts} == SENT
    assert set(beat.exposure.last_match) == {"web", "shop"} and beat.exposure.other == 0
    assert beat.exposure.last_match["web"] == pytest.approx(beat.heartbeat_at)
