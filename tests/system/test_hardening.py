"""The demo system hardened by default: private files on disk, gateways on their namespace's own Redis user."""
from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import redis

from rulegate.connection import RedisConfig
from rulegate.fleet import read_fleet
from rulegate.keyspace import Keys
from rulegate.store import RuleStore
from rulegate_dev.acl import ADMIN_USER
from rulegate_dev.system import NAMESPACE, System

from ..demo_system import DemoSystem

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def system(demo_system: DemoSystem) -> System:
    """The shared demo System: its data dir existed as 0755 and it was started under umask 022."""
    return demo_system.system


def test_secrets_on_disk_are_private(system: System) -> None:
    """The data dir is 0700; gateway.password, nginx's rulegate.json and every redis.conf are 0600."""
    assert mode(system.dir) == 0o700
    for path in [system.dir / "gateway.password", system.dir / "nginx" / "conf" / "rulegate.json",
                 *(n.dir / "redis.conf" for n in system.cluster.nodes)]:
        assert mode(path) == 0o600, path
    for node in system.cluster.nodes:
        assert mode(node.dir) == 0o700


def test_gateways_heartbeat_with_the_demo_namespace_user(system: System) -> None:
    """The agent and nginx both sync and heartbeat as the demo namespace's gateway user, which cannot
    write any other namespace's fleet hash."""
    user, password = system.acl.gateway(NAMESPACE)
    admin = RuleStore.from_config(RedisConfig.from_nodes(system.cluster.startup_nodes, mode="cluster",
                                                         username=ADMIN_USER, password=system.acl.admin_password))
    try:
        deadline = time.monotonic() + 15
        target = admin.revision(NAMESPACE)  # earlier tests on the shared demo wrote: wait for both to beat it
        while True:
            beats = read_fleet(admin.client, NAMESPACE)
            revisions = {name: beats[name].revision for name in ("agent-demo", "nginx-demo") if name in beats}
            if revisions == {"agent-demo": target, "nginx-demo": target}:
                break
            assert time.monotonic() < deadline, (target, revisions)
            time.sleep(0.1)
        assert target > 0
    finally:
        admin.close()
    gateway = RuleStore.from_config(RedisConfig.from_nodes(system.cluster.startup_nodes, mode="cluster",
                                                           username=user, password=password), max_attempts=1)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            gateway.client.hset(Keys("prod").fleet, "forged", b"x")
    finally:
        gateway.close()
