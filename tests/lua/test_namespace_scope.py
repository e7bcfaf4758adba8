"""A degrade rule of scope namespace through nginx: applied to every route by both workers, as a log delta (no full
reload), by a full load too, and gone again on delete (docs/rules.md "Namespace scope")."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from rulegate.schema import validate_rule
from rulegate.store import RuleStore

from .conftest import Gateway
from .decide_harness import RawRequest
from .test_gateway_sync import import_splits
from .test_gateway_vectors import pinned_clients

pytestmark = pytest.mark.integration

KILL = validate_rule({"id": "0--kill.t.0", "kind": "degrade", "scope": "namespace",
                      "route": {"host": "*", "path": "/"},
                      "action": {"type": "reject", "status": 503, "retry_after": 30}})
# (host, path) of rules import_splits stores, and one no rule routes
TARGETS = [(f"svc{i % 100}.example.com", f"/api/v{i // 100}/x") for i in (0, 57, 199, 1234, 1999)] + \
    [("nowhere.example.com", "/")]


def answers(gw: Gateway) -> dict[int, list[tuple[int, str | None]]]:
    """(status, upstream the echo server saw) of every TARGETS request, on each worker (by pid)."""
    out = {}
    for pid, client in pinned_clients(gw).items():
        try:
            out[pid] = [(r.status, r.headers.get("x-echo-upstream")) for r in (
                client.send(RawRequest(host.encode(), path.encode())) for host, path in TARGETS)]
        finally:
            client.close()
    return out


def test_a_namespace_scope_rule_reaches_every_route_of_both_workers_as_a_delta(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    """2,000 routes: one namespace-scope reject rule, put after the gateway loaded them, makes both workers answer
    503 on every route and on a host no rule routes, through the log's delta (no full reload, the other worker
    following the shared delta); a gateway started after it (a full load) answers the same; deleting it
    gives every route back to its split, again as a delta."""
    import_splits(store, namespace, 2000)
    gw = make_gateway(namespace, cluster.startup_nodes, refresh_interval=0.1)
    gw.wait_revision(store.revision(namespace))
    served = answers(gw)
    assert len(served) == 2, "a connection on each worker"
    for got in served.values():
        assert got == [(200, "stable")] * 5 + [(200, "default")], got
    start = gw.status()

    rev = store.put_rule(namespace, KILL, None, "test").revision
    gw.wait_revision(rev)
    for got in answers(gw).values():
        assert got == [(503, None)] * len(TARGETS), got
    st = gw.status()
    assert st["full_reloads"] == start["full_reloads"] and st["deltas_applied"] == start["deltas_applied"] + 1, st
    assert st["worker_compiles"] == start["worker_compiles"] and st["in_sync"] is True, st

    fresh = make_gateway(namespace, cluster.startup_nodes, refresh_interval=0.1)
    fresh.wait_revision(rev)
    for got in answers(fresh).values():
        assert got == [(503, None)] * len(TARGETS), got

    rev = store.delete_rule(namespace, KILL["id"], None, "test").revision
    for g in (gw, fresh):
        g.wait_revision(rev)
        for got in answers(g).values():
            assert got == [(200, "stable")] * 5 + [(200, "default")], got
        assert g.status()["in_sync"] is True
        assert g.error_lines() == []
    st = gw.status()
    assert st["full_reloads"] == start["full_reloads"] and st["deltas_applied"] == start["deltas_applied"] + 2, st
