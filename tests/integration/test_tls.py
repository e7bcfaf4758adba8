"""TLS end to end: a 6-node cluster that speaks only TLS (clients, bus, replication),
the store writing through it and the agent syncing from it."""
from __future__ import annotations

import pytest

from gateway_agent import RuleClient
from gateway_agent.budget import BudgetConfig
from rulegate.connection import RedisConfig
from rulegate.errors import StoreError
from rulegate.schema import validate_rule
from rulegate.store import RuleStore
from rulegate_dev.acl import ADMIN_USER
from rulegate_dev.cluster import LocalCluster
from rulegate_dev.tls import make_tls_files

pytestmark = pytest.mark.integration


def tls_options(cluster: LocalCluster) -> dict:
    return {"ssl": True, "ssl_ca_certs": str(cluster.tls.ca_cert)}


def admin_login(cluster: LocalCluster) -> dict:
    return {"username": ADMIN_USER, "password": cluster.acl.admin_password}


def rule(upstream: str) -> dict:
    return validate_rule({"id": "r1", "kind": "split", "route": {"host": "tls.example.com", "path": "/"},
                          "key": {"source": "ip"}, "policies": [], "default": upstream})


def test_store_and_agent_over_tls(tls_cluster):
    """A write over TLS is replicated (WAIT over TLS replication) and the agent syncs it over TLS."""
    cfg = RedisConfig.from_nodes(tls_cluster.startup_nodes, mode="cluster", **tls_options(tls_cluster),
                                 **admin_login(tls_cluster))
    store = RuleStore.from_config(cfg)
    user, password = tls_cluster.acl.gateway("tlsns")
    client = RuleClient(tls_cluster.startup_nodes, "tlsns", refresh_interval=0.2, notifications=True,
                        budget=BudgetConfig(deadline=2.0, socket_timeout=1.0, connect_timeout=1.0),
                        username=user, password=password, **tls_options(tls_cluster)).start()
    try:
        first = store.put_rule("tlsns", rule("stable"), 0, "alice")
        assert first.replicated and first.replicas_acked >= 1
        assert client.wait_for_revision(first.revision, timeout=10)
        req = {"host": "tls.example.com", "path": "/", "ip": "10.0.0.1"}
        assert client.decide(req).upstream == "stable"
        second = store.put_rule("tlsns", rule("canary"), first.revision, "alice")
        assert client.wait_for_revision(second.revision, timeout=10)
        assert client.decide(req).upstream == "canary"
        health = client.health()
        assert not health["last_error"] and health["redis"] == "ok", health
    finally:
        client.stop()
        store.close()


def load_through(cluster: LocalCluster, **options) -> None:
    """Open a store with short timeouts and no retries, and read a namespace through it."""
    cfg = RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster", connect_timeout=0.5,
                                 socket_timeout=0.5, retries=0, **options)
    store = RuleStore.from_config(cfg)
    try:
        store.load("tlsns")
    finally:
        store.close()


def test_plaintext_client_is_refused_with_a_store_error(tls_cluster):
    """Without ssl the nodes do not answer Redis: a clear StoreError, not a hang or a traceback."""
    with pytest.raises(StoreError, match="cannot reach the Redis Cluster"):
        load_through(tls_cluster)


def test_wrong_ca_is_refused(tls_cluster, tmp_path):
    """A client that does not trust the nodes' CA fails the handshake."""
    other = make_tls_files(tmp_path / "other")
    with pytest.raises(StoreError, match="certificate verify failed"):
        load_through(tls_cluster, ssl=True, ssl_ca_certs=str(other.ca_cert))
