"""A full reload frees the set it replaces between its pauses, not in one block once it returns."""
from __future__ import annotations

import weakref

from redis.cluster import RedisCluster

from gateway_agent import RuleClient, sync
from rulegate.namespace import Slicer
from rulegate.schema import encode_rule, validate_rule
from rulegate_dev.store_rebuild import rebuild_store

from .conftest import split_rule

RULES = 20


def test_the_replaced_set_is_freed_between_the_reloads_pauses(cluster, store, namespace, monkeypatch):
    """sync_once's full reload (a new generation): the replaced RuleSet is gone while the reload still pauses,
    at least once per route it held (sync_once held it until it returned: every route freed in one block)."""
    for i in range(RULES):
        store.put_rule(namespace, split_rule(f"r{i}", "a", path=f"/p{i}"), None, "test")
    client = RuleClient(cluster.startup_nodes, namespace, notifications=False)
    syncer = client.syncer
    try:
        syncer.slots.refresh(client.budget, syncer.pool)
        assert syncer.sync_once()
        replaced = weakref.ref(syncer.current.ruleset)
        held: list[bool] = []  # at each pause of the reload: is the replaced set still alive?
        monkeypatch.setattr(sync, "slicer", lambda: Slicer(0.0, rest=lambda: held.append(replaced() is not None)))
        host, port = cluster.startup_nodes[0].rsplit(":", 1)
        raw = RedisCluster(host=host, port=int(port))
        changed = encode_rule(validate_rule(split_rule("r0", "b", path="/p0")))
        rebuild_store(raw, namespace, "regenerated", {"r0": changed})  # new content: a full reload
        raw.close()
        assert syncer.sync_once()
        assert syncer.current.generation == "regenerated" and len(syncer.current.ruleset) == RULES
        assert held[0] and held.count(False) >= RULES
    finally:
        syncer.pool.close()
