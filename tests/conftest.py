"""Shared fixtures: the real 6-node Redis Cluster (one per test session) and a store on it."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_agent.compiled import CompileCache
from rulegate.connection import RedisConfig
from rulegate.evaluator import RuleSet
from rulegate.schema import encode_rule
from rulegate.store import RuleStore
from rulegate_dev.acl import AclUsers
from rulegate_dev.cluster import LocalCluster
from rulegate_dev.tls import make_tls_files

from .demo_system import DemoSystem, order_items, start_demo_system

VECTORS = Path(__file__).parent / "vectors"


def load_vectors() -> list[tuple[str, dict, dict]]:
    """Return (vector file name, file content, case) for every case in tests/vectors/."""
    out = []
    for path in sorted(VECTORS.glob("*.json")):
        data = json.loads(path.read_text())
        for case in data["cases"]:
            out.append((path.stem, data, case))
    return out


def placed_ruleset(rules: list[dict], revision: int) -> RuleSet:
    """Return the set of validated rules as the agent's full load builds it: stored bytes checked and placed,
    every enabled rule pending until its route's first request compiles it (a route of more than
    PENDING_MAX rules excepted). RuleSet(rules, revision) decides the same."""
    raw = {rule["id"]: encode_rule(rule) for rule in rules}  # the last of an id wins, as in RuleSet
    return RuleSet.from_compiled(CompileCache().load(raw, where="test").rules, revision)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order_items(items)


@pytest.fixture(scope="session")
def demo_system(tmp_path_factory) -> Iterator[DemoSystem]:
    """The whole demo System (cluster, two admins, agent, nginx, backends, guard watcher), shared; see demo_system.py."""
    yield from start_demo_system(tmp_path_factory.mktemp("demo-system"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A running 3-master/3-replica Redis Cluster on free loopback ports."""
    c = LocalCluster(tmp_path_factory.mktemp("cluster"))
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def redis_config(cluster) -> RedisConfig:
    """Client settings for the session cluster."""
    return RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster")


@pytest.fixture()
def store(redis_config):
    """A RuleStore on the session cluster."""
    s = RuleStore.from_config(redis_config)
    yield s
    s.close()


@pytest.fixture()
def namespace() -> str:
    """A fresh namespace name, unique per test."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def acl_cluster(tmp_path_factory):
    """(cluster, users): a cluster whose nodes run the rulegate ACL users (default user off), with
    gateway users for namespaces `gw` and `other`; shared by the ACL tests of every package."""
    users = AclUsers.for_namespaces("gw", "other")
    c = LocalCluster(tmp_path_factory.mktemp("aclcluster"), acl=users)
    c.start()
    yield c, users
    c.stop()


@pytest.fixture(scope="session")
def tls_cluster(tmp_path_factory):
    """A TLS-only cluster (clients, bus, replication, throwaway CA) with the ACL users and gateway users
    for namespaces `tlsns` and `tlsgw`; shared by the Python and the nginx TLS tests."""
    tmp = tmp_path_factory.mktemp("tls")
    c = LocalCluster(tmp / "cluster", tls=make_tls_files(tmp / "pki"), acl=AclUsers.for_namespaces("tlsns", "tlsgw"))
    c.start()
    yield c
    c.stop()
