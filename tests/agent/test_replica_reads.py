"""Replica reads and batched heartbeats of the agent's sync loop, against the session cluster.

The loop is driven by hand (`syncer.cycle()`) where counts matter, so every number below is exact. A
lagging-but-answering replica is made with `CLIENT PAUSE <ms> WRITE` on it (it keeps answering reads but
stops applying the replication stream; the pause ends by itself) and an unresponsive one with
`CLIENT PAUSE <ms> ALL`; both are undone in `finally`.
"""
from __future__ import annotations

import time

import pytest

from gateway_agent import RuleClient
from gateway_agent.budget import BudgetConfig
from gateway_agent.cli import build_parser
from rulegate.connection import RedisConfig
from rulegate.fleet import read_fleet
from rulegate.keyspace import Keys
from rulegate.store import RuleStore
from rulegate_dev.acl import ADMIN_USER

from .conftest import make_client, split_rule

FAST = BudgetConfig(deadline=1.0, socket_timeout=0.3, connect_timeout=0.2)


def manual_client(cluster, namespace: str, **kwargs) -> RuleClient:
    """Return a RuleClient whose loop is not started (the test calls syncer.cycle())."""
    kwargs.setdefault("notifications", False)
    kwargs.setdefault("heartbeat_interval", 3600.0)
    return RuleClient(cluster.startup_nodes, namespace, budget=FAST, gateway_id=f"gw-{namespace}", **kwargs)


def slot_nodes(cluster, namespace: str):
    master = cluster.slot_owner(Keys(namespace).slot)
    return master, cluster.replicas_of(master)[0]


def calls(cluster, node, command: str) -> int:
    return cluster.client(node).info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


@pytest.fixture()
def unacked_store(redis_config):
    """A RuleStore that does not WAIT for a replica (the tests pause it)."""
    s = RuleStore.from_config(redis_config, wait_replicas=0)
    yield s
    s.close()


def test_polls_go_to_the_replica_and_changes_apply_from_it(cluster, store, namespace):
    store.put_rule(namespace, split_rule("r1", "a"), None, "test")
    master, replica = slot_nodes(cluster, namespace)
    client = manual_client(cluster, namespace, read_replica=True)
    s = client.syncer
    try:
        s.cycle()  # the first sync: a full reload from the master
        assert client.revision == 1
        on_replica, on_master = calls(cluster, replica, "xrange"), calls(cluster, master, "xrange")
        for _ in range(10):
            s.cycle()
        assert s.stats.replica_reads == 10
        assert calls(cluster, replica, "xrange") - on_replica >= 10
        assert calls(cluster, master, "xrange") - on_master < 10
        rev = store.put_rule(namespace, split_rule("r1", "b"), 1, "test").revision  # WAITs for the replica
        s.cycle()
        assert s.stats.replica_reads == 11 and s.stats.deltas_applied == 1 and s.stats.full_reloads == 1
        assert client.revision == rev == store.revision(namespace)
        assert client.rules["r1"]["default"] == "b" and s.in_sync()
    finally:
        client.stop()


def test_a_lagging_replica_is_bypassed_and_the_agent_converges(cluster, store, unacked_store, namespace):
    store.put_rule(namespace, split_rule("r1", "a"), None, "test")
    _, replica = slot_nodes(cluster, namespace)
    client = make_client(cluster, namespace, read_replica=True, refresh_interval=0.05, heartbeat_interval=3600.0)
    s = client.syncer
    paused = cluster.client(replica)
    try:
        assert client.wait_for_revision(1, 5)
        deadline = time.monotonic() + 5
        while s.notifier.subscribed_to is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.notifier.subscribed_to is not None
        paused.execute_command("CLIENT", "PAUSE", 20000, "WRITE")  # answers reads, applies no replication
        rev = unacked_store.put_rule(namespace, split_rule("r1", "b"), 1, "test").revision
        assert client.wait_for_revision(rev, 4), "the announced revision was not read from the master"
        assert client.rules["r1"]["default"] == "b"
        lagging = s.stats.replica_lagging
        assert lagging >= 1
        deadline = time.monotonic() + 10
        while s.stats.replica_lagging < lagging + 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # more polls meet the replica at the older revision
        assert s.stats.replica_lagging >= lagging + 3
        assert client.revision == rev and s.stats.rollbacks_refused == 0 and s.health.state == "ok"
    finally:
        paused.execute_command("CLIENT", "UNPAUSE")
        client.stop()
    assert client.revision == store.revision(namespace)


def test_an_unresponsive_replica_costs_one_timeout_then_the_master_answers(cluster, unacked_store, namespace):
    unacked_store.put_rule(namespace, split_rule("r1", "a"), None, "test")
    _, replica = slot_nodes(cluster, namespace)
    client = manual_client(cluster, namespace, read_replica=True)
    s = client.syncer
    paused = cluster.client(replica)
    try:
        s.cycle()
        s.cycle()
        assert s.stats.replica_reads == 1
        paused.execute_command("CLIENT", "PAUSE", 4000, "ALL")
        rev = unacked_store.put_rule(namespace, split_rule("r1", "b"), 1, "test").revision
        s.cycle()  # the replica times out: the master answers in the same cycle
        assert client.revision == rev and s.stats.replica_errors == 1
        s.cycle()  # the replica is tried last for a while: straight to the master, no second timeout
        assert s.stats.replica_errors == 1 and s.stats.replica_reads == 1
        assert client.revision == rev and s.health.state == "ok" and s.stats.syncs_failed == 0
    finally:
        paused.execute_command("CLIENT", "UNPAUSE")
        client.stop()


@pytest.mark.parametrize("read_replica", [False, True])
def test_a_due_heartbeat_rides_in_the_revision_checks_round_trip(cluster, store, namespace, read_replica):
    rev = store.put_rule(namespace, split_rule("r1", "a"), None, "test").revision
    master, _ = slot_nodes(cluster, namespace)
    client = manual_client(cluster, namespace, heartbeat_interval=1e-9, read_replica=read_replica)
    s = client.syncer
    try:
        s.cycle()  # nothing applied yet: sync, then the heartbeat on its own
        assert s.stats.heartbeats_ok == 1
        ops, hsets = s.budget.stats.operations, calls(cluster, master, "hset")
        for _ in range(10):
            s.cycle()
        assert s.budget.stats.operations - ops == 10  # one round trip per cycle, heartbeat included
        assert s.stats.heartbeats_ok == 11 and s.stats.heartbeats_failed == 0
        assert calls(cluster, master, "hset") - hsets >= 10
        assert s.stats.replica_reads == 0  # a heartbeat cycle checks on the master
        beat = read_fleet(store.client, namespace)[f"gw-{namespace}"]
        assert beat is not None and beat.revision == rev and beat.in_sync
    finally:
        client.stop()


def test_replica_reads_resume_after_a_new_generation(cluster, store, namespace):
    for upstream in ("a", "b", "c"):
        store.put_rule(namespace, split_rule("r1", upstream), None, "test")
    master, _ = slot_nodes(cluster, namespace)
    client = manual_client(cluster, namespace, read_replica=True)
    s = client.syncer
    try:
        s.cycle()
        s.cycle()
        assert client.revision == 3 and s.stats.replica_reads == 1
        old_gen = client.generation
        k = Keys(namespace)
        cluster.client(master).delete(k.rules, k.rev, k.log, k.meta)
        w = store.put_rule(namespace, split_rule("r1", "new"), None, "test")  # revision 1 of a new lineage
        s.cycle()  # the replica is behind the held revision 3: the master answers, a full reload follows
        assert client.generation == w.generation != old_gen and client.revision == 1
        assert s.stats.replica_lagging == 1 and s.stats.rollbacks_refused == 0
        s.cycle()  # revision 1 of the new generation is current: the replica serves again
        assert s.stats.replica_reads == 2 and client.rules["r1"]["default"] == "new"
    finally:
        client.stop()


def test_the_gateway_acl_user_reads_from_the_replica_and_beats_with_the_check(acl_cluster):
    """Least privilege is enough: READONLY, the check on the replica, the heartbeat in the master's round trip."""
    cluster, users = acl_cluster
    admin = RuleStore.from_config(RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster", username=ADMIN_USER,
                                                         password=users.admin_password))
    user, password = users.gateway("gw")
    client = RuleClient(cluster.startup_nodes, "gw", budget=FAST, gateway_id="gw-replica-acl", notifications=False,
                        heartbeat_interval=3600.0, read_replica=True, username=user, password=password)
    s = client.syncer
    try:
        rev = admin.put_rule("gw", split_rule("acl-r", "a"), None, "test").revision
        s.cycle()
        s.cycle()
        assert client.revision == rev and s.stats.replica_reads == 1 and s.stats.replica_errors == 0
        s._next_heartbeat = 0.0  # due now: it rides in this cycle's round trip to the master
        s.cycle()
        assert s.stats.heartbeats_ok == 2 and s.stats.heartbeats_failed == 0 and s.stats.syncs_failed == 0
        beat = read_fleet(admin.client, "gw")["gw-replica-acl"]
        assert beat is not None and beat.revision == rev
    finally:
        client.stop()
        admin.close()


def test_read_replica_from_the_flag_or_the_environment(monkeypatch):
    base = ["serve", "--redis-nodes", "127.0.0.1:7000", "--namespace", "prod"]
    assert build_parser().parse_args(base).read_replica is False
    assert build_parser().parse_args([*base, "--read-replica"]).read_replica is True
    monkeypatch.setenv("RULEGATE_READ_REPLICA", "1")
    assert build_parser().parse_args(base).read_replica is True
