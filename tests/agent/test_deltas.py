"""The agent applies log deltas incrementally; a trimmed log still converges by a full reload."""
from __future__ import annotations

from redis.cluster import RedisCluster

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.keyspace import Keys

from .conftest import make_client, request, split_rule

DELTA_CHANGES = 1000  # the "1,000 small changes"


def test_changes_apply_as_deltas_without_full_reloads(cluster, store, namespace):
    """Puts and deletes after the first load are deltas; decisions equal a fresh compile of the store."""
    store.put_rule(namespace, split_rule("r0", "v0"), None, "test")
    with make_client(cluster, namespace, refresh_interval=0.1) as client:
        stats = client.syncer.stats
        reloads = stats.full_reloads
        deltas = stats.deltas_applied
        rev = 1
        for i in range(DELTA_CHANGES):
            rule_id = f"r{i % 25}"
            if i % 40 == 39:
                rev = store.delete_rule(namespace, rule_id, None, "test").revision
            else:
                rev = store.put_rule(namespace, split_rule(rule_id, f"v{i}", path=f"/{rule_id}"), None,
                                     "test").revision
        assert client.wait_for_revision(rev, 10.0)
        assert stats.full_reloads == reloads
        assert stats.deltas_applied - deltas == DELTA_CHANGES
        assert client.syncer.in_sync()
        state = store.load(namespace)
        fresh = RuleSet(state.rules.values(), state.revision, state.generation)
        for path in ["/"] + [f"/r{i}" for i in range(25)]:
            req = Request.from_dict(request(path))
            assert client.decide(req) == decide(fresh, req), path


def test_trimmed_log_converges_by_full_reload(cluster, store, namespace):
    """A change whose log entry is gone (XTRIM) arrives by a full reload."""
    rev = store.put_rule(namespace, split_rule("r1", "a"), None, "test").revision
    with make_client(cluster, namespace, refresh_interval=30.0, notifications=False) as client:
        assert client.revision == rev
        reloads = client.syncer.stats.full_reloads
        rev = store.put_rule(namespace, split_rule("r1", "b"), rev, "test").revision
        host, port = cluster.startup_nodes[0].rsplit(":", 1)
        raw = RedisCluster(host=host, port=int(port))
        raw.xtrim(Keys(namespace).log, maxlen=0, approximate=False)
        raw.close()
        client.syncer.wake()
        assert client.wait_for_revision(rev, 5.0)
        assert client.syncer.stats.full_reloads == reloads + 1
        assert client.decide(request()).upstream == "b"
        assert client.syncer.in_sync()
