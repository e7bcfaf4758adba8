"""nginx memory across full reloads: a replaced rule set is freed, not kept alive by the worker's JIT traces."""
from __future__ import annotations

import time
from typing import Any, Callable

from rulegate.digest import content_digest
from rulegate.keyspace import Keys
from rulegate.schema import encode_rule, validate_rule
from rulegate.store import RuleStore

from .conftest import Gateway
from .test_gateway_sync import raw_client

RULES = 3000


def rule(i: int, note: str = "") -> dict:
    return validate_rule({
        "id": f"r{i:05d}", "kind": "split", "description": note,
        "route": {"host": f"svc{i % 100}.example.com", "path": f"/api/v{i // 100}"},
        "key": {"source": "header", "name": "x-uid"},
        "policies": [{"type": "uid_suffix", "suffixes": ["7"], "upstream": "canary"},
                     {"type": "percent", "buckets": [{"upstream": "canary", "weight": 100}]}],
        "default": "stable"})


def heaps(gw: Gateway, workers: int) -> dict[int, float]:
    """Return each worker's Lua heap in KiB after a full collection (asked until every worker answered)."""
    out: dict[int, float] = {}
    for _ in range(200):
        m = gw.json("/lua-memory")
        out[m["pid"]] = m["kb"]
        if len(out) == workers:
            break
    assert len(out) == workers, out
    return out


def test_full_reloads_free_the_replaced_set(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    """Three full reloads in which every rule's bytes are new leave each worker's heap (after a full GC) where
    the first load left it. Before the traces were flushed on a whole-set install, a replaced set stayed alive
    through the closures its loader's traces had recorded as constants: +60-150 % of heap here."""
    for lo in range(0, RULES, 1000):
        store.commit(namespace, [(f"r{i:05d}", encode_rule(rule(i))) for i in range(lo, lo + 1000)], None, "test",
                     op="import")
    gw = make_gateway(namespace, cluster.startup_nodes, refresh_interval=0.2)
    deadline = time.monotonic() + 60
    while gw.status().get("worker_compiles", 0) < 1:  # the other worker compiled the first set too
        assert time.monotonic() < deadline, gw.status()
        time.sleep(0.1)
    for _ in range(50):  # requests: the request path's traces exist, as in service
        assert gw.get("/api/v7/x", host="svc7.example.com", headers={"x-uid": "7"}).headers[
            "x-echo-upstream"] == "canary"
    first = heaps(gw, 2)
    client = raw_client(cluster)
    keys = Keys(namespace)
    try:
        for n in range(3):
            before = gw.status()
            raw = {f"r{i:05d}": encode_rule(rule(i, f"rewritten {n}")) for i in range(RULES)}
            client.hset(keys.rules, mapping=raw)
            client.hset(keys.meta, mapping={"digest": content_digest(raw), "gen": f"memory-test-{n}"})
            client.execute_command("SPUBLISH", keys.events, f"rev {int(client.get(keys.rev) or 0)}")
            deadline = time.monotonic() + 60
            while True:
                st = gw.status()
                if (st["generation"] == f"memory-test-{n}" and st["full_reloads"] > before["full_reloads"]
                        and st["worker_compiles"] > before["worker_compiles"]):
                    break
                assert time.monotonic() < deadline, st
                time.sleep(0.1)
            for _ in range(50):
                gw.get("/api/v7/x", host="svc7.example.com", headers={"x-uid": "7"})
    finally:
        client.close()
    after = heaps(gw, 2)
    grown = {pid: round(after[pid] / first[pid], 2) for pid in first}
    print(f"\nLua heap after 3 full reloads / after the first load, per worker: {grown}")
    assert all(ratio < 1.25 for ratio in grown.values()), (first, after, grown)
    assert [line for line in gw.error_lines() if "new generation" not in line] == []
