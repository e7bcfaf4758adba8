"""Least privilege: gateway credentials cannot change rules nor touch another namespace, the admin
user only its keys, default is off."""
from __future__ import annotations

import time

import pytest
import redis

from gateway_agent import RuleClient
from gateway_agent.budget import BudgetConfig
from rulegate.connection import RedisConfig
from rulegate.errors import StoreError
from rulegate.fleet import read_fleet
from rulegate.keyspace import Keys
from rulegate.schema import validate_rule
from rulegate.store import RuleStore
from rulegate_dev.acl import ADMIN_USER
from rulegate_dev.cluster import LocalCluster

pytestmark = pytest.mark.integration

RULE = validate_rule({"id": "r1", "kind": "split", "route": {"host": "a.example.com", "path": "/"},
                      "key": {"source": "ip"}, "policies": [], "default": "stable"})


def config(cluster: LocalCluster, user: str, password: str) -> RedisConfig:
    return RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster", username=user, password=password)


def test_admin_user_can_commit_and_wait(acl_cluster):
    """The admin user runs the commit script, WAIT, and the reads it needs."""
    cluster, users = acl_cluster
    store = RuleStore.from_config(config(cluster, ADMIN_USER, users.admin_password))
    result = store.put_rule("acl", RULE, store.revision("acl"), "alice")
    assert result.replicated
    assert "r1" in store.load("acl").rules
    store.close()


def test_gateway_user_reads_but_cannot_change_rules(acl_cluster):
    """Gateway credentials read rules and write their heartbeat, and every rule write is NOPERM."""
    cluster, users = acl_cluster
    admin = RuleStore.from_config(config(cluster, ADMIN_USER, users.admin_password))
    admin.put_rule("gw", RULE, admin.revision("gw"), "alice")
    gateway = RuleStore.from_config(config(cluster, *users.gateway("gw")), max_attempts=1)
    assert gateway.load("gw").rules["r1"]["default"] == "stable"
    gateway.client.hset(Keys("gw").fleet, "gw-1", b"x")
    for attempt in (lambda: gateway.client.hset(Keys("gw").rules, "r1", b"evil"),
                    lambda: gateway.client.incr(Keys("gw").rev),
                    lambda: gateway.client.delete(Keys("gw").rules)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    with pytest.raises(StoreError, match="no permissions"):
        gateway.put_rule("gw", RULE, gateway.revision("gw"), "mallory")
    assert admin.load("gw").rules["r1"]["default"] == "stable"
    admin.close()
    gateway.close()


def test_gateway_user_cannot_touch_another_namespace(acl_cluster):
    """A namespace's gateway user heartbeats its own fleet hash; another namespace's keys and
    channel are NOPERM, so it can neither forge nor erase nor read that fleet."""
    cluster, users = acl_cluster
    admin = RuleStore.from_config(config(cluster, ADMIN_USER, users.admin_password))
    admin.put_rule("other", RULE, admin.revision("other"), "alice")
    gateway = RuleStore.from_config(config(cluster, *users.gateway("gw")), max_attempts=1)
    gateway.client.hset(Keys("gw").fleet, "gw-1", b"beat")
    other = Keys("other")
    for attempt in (lambda: gateway.client.hset(other.fleet, "forged", b"x"),
                    lambda: gateway.client.hdel(other.fleet, "victim"),
                    lambda: gateway.client.hgetall(other.fleet),
                    lambda: gateway.client.hgetall(other.rules),
                    lambda: gateway.client.get(other.rev)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    owner = cluster.slot_owner(other.slot)
    with redis.Redis(port=owner.port, username=users.gateway("gw")[0], password=users.gateway("gw")[1],
                     socket_timeout=2) as r:
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.execute_command("SSUBSCRIBE", other.events)
    assert "forged" not in read_fleet(admin.client, "other")
    admin.close()
    gateway.close()


@pytest.mark.parametrize("namespace, works", [("gw", True), ("other", False)])
def test_agent_syncs_and_heartbeats_only_with_its_namespaces_user(acl_cluster, namespace, works):
    """An agent with the gw gateway user syncs and heartbeats namespace gw; pointed at another
    namespace with the same credentials it loads nothing and writes no heartbeat."""
    cluster, users = acl_cluster
    admin = RuleStore.from_config(config(cluster, ADMIN_USER, users.admin_password))
    rev = admin.put_rule(namespace, RULE, admin.revision(namespace), "alice").revision
    user, password = users.gateway("gw")
    client = RuleClient(cluster.startup_nodes, namespace, username=user, password=password, refresh_interval=0.2,
                        heartbeat_interval=0.2, gateway_id=f"agent-{namespace}",
                        budget=BudgetConfig(deadline=1.0, socket_timeout=0.5, connect_timeout=0.5)).start()
    try:
        assert client.wait_for_revision(rev, timeout=5 if works else 1) is works
        deadline = time.monotonic() + (5 if works else 1)
        while f"agent-{namespace}" not in read_fleet(admin.client, namespace) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (f"agent-{namespace}" in read_fleet(admin.client, namespace)) is works
    finally:
        client.stop()
        admin.close()


def test_admin_user_cannot_touch_other_keys_or_flush(acl_cluster):
    """The admin user is limited to rg: keys and cannot run dangerous commands."""
    cluster, users = acl_cluster
    node = cluster.nodes[0]
    with redis.Redis(port=node.port, username=ADMIN_USER, password=users.admin_password) as r:
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.get("other-app:key")
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.config_get("*")


def test_default_user_is_off(acl_cluster):
    """Connecting without credentials (the default user) is refused."""
    cluster, _ = acl_cluster
    with redis.Redis(port=cluster.nodes[0].port, socket_timeout=2) as r:
        with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError,
                            redis.exceptions.ResponseError)):
            r.get("{rg:gw}:rev")
