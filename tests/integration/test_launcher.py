"""The cluster launcher: readiness, clear errors, fault helpers acting on its own pids."""
from __future__ import annotations

import socket

import pytest

from rulegate.keyspace import Keys
from rulegate_dev.cluster import LauncherError, LocalCluster, find_free_base

pytestmark = pytest.mark.integration


def test_ready_cluster_has_three_masters_with_a_synced_replica_each(cluster):
    """After start(), every master has exactly one replica whose link is up."""
    masters = [n for n in cluster.live_nodes() if cluster.role_of(n) == "master"]
    assert len(masters) == 3
    for master in masters:
        assert len(cluster.replicas_of(master)) == 1
    assert cluster.slot_owner(Keys("prod").slot) in masters


def test_taken_port_is_a_clear_error(tmp_path):
    """A port in use makes start() fail naming the port, before any process starts."""
    base = find_free_base(6)
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 2))
        s.listen()
        c = LocalCluster(tmp_path, base)
        with pytest.raises(LauncherError, match=f"port {base + 2} .* is taken"):
            c.start()
        assert all(n.pid is None for n in c.nodes)


def test_missing_redis_server_is_a_clear_error(tmp_path, monkeypatch):
    """Without redis-server on PATH the launcher says how to install it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LauncherError, match="apt-get install -y redis-server"):
        LocalCluster(tmp_path).start()


def test_cli_up_status_down(tmp_path):
    """`rulegate-dev cluster up|status|down` manages a detached cluster recorded in the data dir."""
    from rulegate_dev.cli import main
    base = find_free_base(6)
    assert main(["cluster", "up", "--data-dir", str(tmp_path), "--base-port", str(base)]) == 0
    try:
        assert main(["cluster", "status", "--data-dir", str(tmp_path)]) == 0
    finally:
        assert main(["cluster", "down", "--data-dir", str(tmp_path)]) == 0
    with pytest.raises(SystemExit):
        main(["cluster", "bogus"])
