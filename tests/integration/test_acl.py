"""Least privilege: gateway credentials cannot change rules, the admin user only its keys, default is off."""
from __future__ import annotations

import pytest
import redis

from rulegate.connection import RedisConfig
from rulegate.errors import StoreError
from rulegate.keyspace import Keys
from rulegate.schema import validate_rule
from rulegate.store import RuleStore
from rulegate_dev.acl import ADMIN_USER, GATEWAY_USER, AclUsers
from rulegate_dev.cluster import LocalCluster

pytestmark = pytest.mark.integration

RULE = validate_rule({"id": "r1", "kind": "split", "route": {"host": "a.example.com", "path": "/"},
                      "key": {"source": "ip"}, "policies": [], "default": "stable"})


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory):
    """A cluster whose nodes run with the rulegate ACL users and the default user off."""
    users = AclUsers()
    c = LocalCluster(tmp_path_factory.mktemp("aclcluster"), acl=users)
    c.start()
    yield c, users
    c.stop()


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
    gateway = RuleStore.from_config(config(cluster, GATEWAY_USER, users.gateway_password), max_attempts=1)
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
