"""nginx's master compiles the shared dict's rule set (init_by_lua) for the workers it forks.

After a SIGHUP the dict still holds the rules; new workers used to compile them in init_worker before answering
anything. They now inherit the master's compiled set, and a worker forked later (a crashed one replaced) brings
the inherited set up to date before it serves: through the published deltas, or by compiling the dict's set when
the deltas are gone (a new generation), never by serving the master's older set.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

import pytest

from rulegate.keyspace import Keys
from rulegate.store import RuleStore

from .conftest import Gateway, wait_for
from .test_gateway_sync import raw_client, split_rule

pytestmark = pytest.mark.integration


def _import(store: RuleStore, namespace: str, count: int, upstream: str) -> int:
    from rulegate.schema import encode_rule

    changes = [(f"r{i}", encode_rule(split_rule(f"r{i}", upstream, path=f"/p{i}"))) for i in range(count)]
    return store.commit(namespace, changes, None, "test", op="import").revision


def _respawn(gw: Gateway) -> int:
    """Kill the gateway's serving worker (by pid); return the pid of the one its master forks instead."""
    old = gw.status()["worker"]["pid"]
    assert old in gw.worker_pids()
    os.kill(old, signal.SIGKILL)
    return wait_for(lambda: [p for p in gw.worker_pids() if p != old], "nginx to replace its worker")[0]


def test_workers_started_by_a_reload_serve_the_set_the_master_compiled(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    rev = _import(store, namespace, 300, "b")
    gw = make_gateway(namespace, cluster.startup_nodes, workers=2)
    gw.wait_revision(rev)
    before = gw.status_when(lambda st: st["worker_compiles"] >= 1, "the other worker's first set")  # timer/request
    assert before["master_compiles"] == 0  # the first start had nothing in the dict
    gw.reload()
    for i in (0, 150, 299):  # the first requests to the new workers: the current rules
        r = gw.get(f"/p{i}")
        assert r.headers["x-echo-upstream"] == "b" and r.headers["x-rulegate-rev"] == str(rev), r
    seen = set()
    for _ in range(40):
        st = gw.status()
        seen.add(st["worker"]["pid"])
        assert st["worker"]["revision"] == rev
    assert seen == set(gw.worker_pids())  # both new workers answered
    assert st["master_compiles"] == 1
    assert st["worker_compiles"] == before["worker_compiles"], st  # no worker compiled the set again
    assert gw.error_lines() == []


def test_a_replaced_worker_brings_the_inherited_set_up_to_date_before_serving(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    rev = _import(store, namespace, 50, "a")
    gw = make_gateway(namespace, cluster.startup_nodes, workers=1)
    gw.wait_revision(rev)
    gw.reload()  # the master now holds the set of revision rev
    assert gw.status()["master_compiles"] == 1

    # a change since: the replaced worker follows the published delta
    rev = store.put_rule(namespace, split_rule("r7", "c", path="/p7"), None, "test").revision
    gw.wait_revision(rev)
    # the payload rewritten (a checkpoint): the dict's version moved
    st = gw.status_when(lambda st: not st["payload_pending"], "the checkpoint")
    _respawn(gw)
    r = gw.get("/p7")  # the new worker's first request
    assert r.headers["x-echo-upstream"] == "c" and r.headers["x-rulegate-rev"] == str(rev), r
    st2 = gw.status()
    assert st2["worker"]["revision"] == rev and st2["worker_deltas"] > st["worker_deltas"], st
    assert st2["worker_compiles"] == st["worker_compiles"], st2

    # a new generation with new bytes: no delta leads from the master's set; the worker compiles the dict's set
    keys = Keys(namespace)
    client = raw_client(cluster)
    try:
        from rulegate.digest import content_digest
        from rulegate.schema import encode_rule

        raw = {k.decode(): v for k, v in client.hgetall(keys.rules).items()}
        raw["r9"] = encode_rule(split_rule("r9", "b", path="/p9"))
        client.hset(keys.rules, "r9", raw["r9"])
        client.hset(keys.meta, "digest", content_digest(raw))
        client.hset(keys.meta, "gen", "regenerated")
    finally:
        client.close()
    gw.status_when(lambda st: st["generation"] == "regenerated", "the new generation")
    compiles = gw.status()["worker_compiles"]
    _respawn(gw)
    r = gw.get("/p9")
    assert r.headers["x-echo-upstream"] == "b" and r.headers["x-rulegate-rev"] == str(rev), r
    assert gw.get("/p7").headers["x-echo-upstream"] == "c"
    st = gw.status()
    assert st["generation"] == "regenerated" and st["worker_compiles"] == compiles + 1, st
    expected = ("exited on signal 9", "has a new generation regenerated")  # the kills, the rebuild reported loudly
    assert not [line for line in gw.error_lines() if not any(e in line for e in expected)]
