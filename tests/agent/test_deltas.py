"""The agent applies log deltas incrementally; a trimmed log still converges by a full reload."""
from __future__ import annotations

import time

from redis.cluster import RedisCluster

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.keyspace import Keys
from rulegate.layered import Layered
from rulegate.schema import encode_rule, validate_rule
from rulegate_dev.store_rebuild import rebuild_store, rule_reads

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


def test_a_delta_of_more_than_a_quarter_of_the_rules_is_read_whole(cluster, store, namespace):
    """Over 400 rules a commit of 64 changes is a delta; one of 150 (more than a quarter, and more than 64) is read
    whole (a full reload decodes and compiles in slices that yield, a delta in one block), counted as a large
    delta, and decides like a fresh compile."""
    def commit(ids: range, upstream: str) -> int:
        return store.commit(namespace, [(f"r{i}", encode_rule(split_rule(f"r{i}", upstream, path=f"/{i}")))
                                        for i in ids], None, "test", op="bulk").revision

    commit(range(400), "v0")
    with make_client(cluster, namespace, refresh_interval=0.1) as client:
        stats = client.syncer.stats
        reloads, deltas = stats.full_reloads, stats.deltas_applied
        assert client.wait_for_revision(commit(range(64), "v1"), 10.0)
        assert (stats.full_reloads, stats.deltas_applied, stats.large_deltas) == (reloads, deltas + 1, 0)
        assert client.wait_for_revision(commit(range(100, 250), "v2"), 10.0)
        assert (stats.full_reloads, stats.deltas_applied, stats.large_deltas) == (reloads + 1, deltas + 1, 1)
        assert client.syncer.in_sync()
        state = store.load(namespace)
        fresh = RuleSet(state.rules.values(), state.revision, state.generation)
        for path in ("/0", "/63", "/64", "/100", "/249", "/399"):
            req = Request.from_dict(request(path))
            assert client.decide(req) == decide(fresh, req), path


def test_a_burst_of_commits_to_a_few_rules_stays_a_delta(cluster, store, namespace):
    """An agent that misses 150 one-rule commits to 5 of 20 rules (it checks only when woken: no notifications, a
    long refresh interval) follows them as one delta: 5 rules changed, not 150, is not more than a quarter
    (before: the changes were counted, and the backlog was read whole — a full reload under a busy CI)."""
    for i in range(20):
        store.put_rule(namespace, split_rule(f"r{i}", "v0", path=f"/r{i}"), None, "test")
    with make_client(cluster, namespace, refresh_interval=3600, notifications=False) as client:
        assert client.wait_for_revision(20, 10.0)
        stats = client.syncer.stats
        reloads, deltas, large = stats.full_reloads, stats.deltas_applied, stats.large_deltas
        rev = 20
        for n in range(150):
            rev = store.put_rule(namespace, split_rule(f"r{n % 5}", f"v{n}", path=f"/r{n % 5}"), None,
                                 "test").revision
        client.syncer.wake()
        assert client.wait_for_revision(rev, 10.0)
        assert (stats.full_reloads, stats.large_deltas) == (reloads, large)
        assert stats.deltas_applied - deltas == 150
        for i in range(5):
            d = client.decide(Request.from_dict(request(f"/r{i}")))
            assert d.upstream == f"v{145 + i}", (i, d)


def test_a_delta_of_many_rules_is_decoded_and_compiled_in_slices(cluster, store, namespace, monkeypatch):
    """A commit of 900 changes over 4,000 rules (under a quarter: a delta) is decoded and compiled with the sync
    loop's pause between rules (a Slicer whose every call yields here), as a full reload is, not in one block;
    it decides like a fresh compile."""
    import gateway_agent.sync as agent_sync
    from rulegate.namespace import Slicer

    def commit(ids: range, upstream: str) -> int:
        return store.commit(namespace, [(f"r{i}", encode_rule(split_rule(f"r{i}", upstream, path=f"/{i}")))
                                        for i in ids], None, "test", op="bulk").revision

    commit(range(4000), "v0")
    with make_client(cluster, namespace, refresh_interval=0.1) as client:
        assert client.wait_for_revision(store.revision(namespace), 20.0)
        pauses: list[Slicer] = []

        def counting_slicer() -> Slicer:
            pauses.append(Slicer(0.0, rest=lambda: None))
            return pauses[-1]

        monkeypatch.setattr(agent_sync, "slicer", counting_slicer)
        stats = client.syncer.stats
        reloads, deltas = stats.full_reloads, stats.deltas_applied
        assert client.wait_for_revision(commit(range(0, 3600, 4), "v1"), 20.0)
        assert (stats.full_reloads, stats.deltas_applied) == (reloads, deltas + 1)
        assert pauses and max(p.yields for p in pauses) >= 900, [p.yields for p in pauses]
        state = store.load(namespace)
        fresh = RuleSet(state.rules.values(), state.revision, state.generation)
        for path in ("/0", "/4", "/5", "/3596", "/3999"):
            req = Request.from_dict(request(path))
            assert client.decide(req) == decide(fresh, req), path


def test_a_delta_shares_the_applied_maps_instead_of_copying_them(cluster, store, namespace):
    """A one-rule delta over 400 rules derives the raw bytes, placement and host maps from the applied set's
    (rulegate/layered.py: O(change)) instead of copying them, and decides like a fresh compile."""
    rules = [split_rule(f"r{i}", f"v{i}", path=f"/{i}") for i in range(400)]
    for i, rule in enumerate(rules):
        rule["route"]["host"] = f"h{i}.example.com"
    store.commit(namespace, [(r["id"], encode_rule(r)) for r in rules], None, "test", op="put")
    with make_client(cluster, namespace, refresh_interval=0.1) as client:
        before = client.syncer.current
        assert len(before.raw) == 400
        changed = split_rule("r7", "changed", path="/7")
        changed["route"]["host"] = "h7.example.com"
        rev = store.put_rule(namespace, changed, None, "test").revision
        assert client.wait_for_revision(rev, 10.0)
        after = client.syncer.current
        assert client.syncer.stats.full_reloads == 1 and client.syncer.stats.deltas_applied == 1
        assert type(after.raw) is Layered and after.raw.shares_base_with(before.raw)
        assert after.raw.layers() == (400, 1) and len(after.raw) == 400
        assert type(after.ruleset.exact) is Layered and after.ruleset.exact.shares_base_with(before.ruleset.exact)
        assert after.ruleset.placement.shares_base_with(before.ruleset.placement)
        assert client.syncer.in_sync()
        state = store.load(namespace)
        fresh = RuleSet(state.rules.values(), state.revision, state.generation)
        for i in (0, 7, 399):
            req = Request.from_dict({"host": f"h{i}.example.com", "path": f"/{i}", "ip": "10.0.0.1"})
            assert client.decide(req) == decide(fresh, req), i
            assert client.decide(req).upstream == ("changed" if i == 7 else f"v{i}")


def test_trimmed_log_converges_by_full_reload(cluster, store, namespace):
    """A change whose log entry is gone (XTRIM) before the agent read it arrives by a full reload.

    The trim follows the commit at once (the raw client made first; making it took tens of ms, a window in which
    the agent's check could read the entry and apply it as a delta), no heartbeat rides a check meanwhile, and a
    change the agent read before its trim is followed by another."""
    rev = store.put_rule(namespace, split_rule("r1", "a"), None, "test").revision
    host, port = cluster.startup_nodes[0].rsplit(":", 1)
    raw = RedisCluster(host=host, port=int(port))
    try:
        with make_client(cluster, namespace, refresh_interval=30.0, heartbeat_interval=30.0,
                         notifications=False) as client:
            assert client.revision == rev
            for target in ["b", "c", "a", "b"]:
                reloads = client.syncer.stats.full_reloads
                rev = store.put_rule(namespace, split_rule("r1", target), rev, "test").revision
                raw.xtrim(Keys(namespace).log, maxlen=0, approximate=False)
                time.sleep(0.05)  # a check that read the entry before the trim has applied it by now
                if client.revision != rev:
                    break  # trimmed before the agent read the entry
            assert client.revision != rev, "every change was read before its log entry was trimmed"
            client.syncer.wake()
            assert client.wait_for_revision(rev, 5.0)
            assert client.syncer.stats.full_reloads == reloads + 1
            assert client.decide(request()).upstream == target
            assert client.syncer.in_sync()
    finally:
        raw.close()


def _wait_generation(client, generation: str) -> None:
    deadline = time.monotonic() + 5
    while client.generation != generation:
        assert time.monotonic() < deadline, client.health()
        time.sleep(0.02)


def test_new_generation_of_the_same_rules_is_taken_without_reading_them(cluster, store, namespace):
    """A store restored with the rules the agent holds (new generation, same digest) is applied at once as its
    revision and generation: no full reload, no read of the rules, decisions stamped with it; the new
    generation's next commit is a delta. New rules under a new generation still reload fully."""
    for i in range(30):
        store.put_rule(namespace, split_rule(f"r{i}", "v0", path=f"/r{i}"), None, "test")
    host, port = cluster.startup_nodes[0].rsplit(":", 1)
    raw = RedisCluster(host=host, port=int(port))
    keys = Keys(namespace)
    with make_client(cluster, namespace, notifications=False) as client:
        assert client.wait_for_revision(30, 5.0)
        stats = client.syncer.stats
        reloads, digest, reads = stats.full_reloads, client.syncer.current.digest, rule_reads(raw)
        raw.delete(keys.log)  # restored: its own revision, log and generation, the same rules
        raw.set(keys.rev, 7)
        rebuild_store(raw, namespace, "restored-generation")
        _wait_generation(client, "restored-generation")
        assert client.revision == 7 and client.syncer.current.digest == digest
        assert rule_reads(raw) == reads and stats.full_reloads == reloads
        assert stats.reloads_skipped == 1 and stats.generation_changes == 1 and client.syncer.in_sync()
        decision = client.decide(request("/r3"))
        assert decision.upstream == "v0" and decision.revision == 7
        rev = store.put_rule(namespace, split_rule("r1", "v1", path="/r1"), None, "test").revision
        assert rev == 8 and client.wait_for_revision(rev, 5.0)
        assert stats.full_reloads == reloads and stats.deltas_applied >= 1
        assert client.decide(request("/r1")).upstream == "v1"
        rebuild_store(raw, namespace, "another-generation",
                      {"r2": encode_rule(validate_rule(split_rule("r2", "v2", path="/r2")))})
        _wait_generation(client, "another-generation")
        assert stats.full_reloads == reloads + 1 and stats.reloads_skipped == 1
        assert client.decide(request("/r2")).upstream == "v2"
    raw.close()
