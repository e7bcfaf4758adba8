"""Secrets on disk: the launchers write every file holding a password or a key 0600, in 0700 directories,
whatever the umask."""
from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rulegate_dev.acl import AclUsers
from rulegate_dev.cluster import LocalCluster
from rulegate_dev.nginx import NginxLauncher
from rulegate_dev.private_files import private_dir, write_private
from rulegate_dev.runstate import DemoState, open_run_dir
from rulegate_dev.tls import make_tls_files

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """Run with umask 022 (files 0644 unless the code says otherwise)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_launcher_redis_conf_is_private(tmp_path: Path) -> None:
    """Each node's directory is 0700, its redis.conf (ACL passwords, masterauth) and cluster.json 0600."""
    users = AclUsers()
    cluster = LocalCluster(tmp_path / "cluster", masters=1, acl=users)
    cluster.start()
    try:
        for node in cluster.nodes:
            assert mode(node.dir) == 0o700
            conf = node.dir / "redis.conf"
            assert users.ops_password in conf.read_text()
            assert mode(conf) == 0o600
        assert mode(tmp_path / "cluster" / "cluster.json") == 0o600
    finally:
        cluster.stop()


def test_tls_private_key_is_private(tmp_path: Path) -> None:
    """The TLS directory is 0700 and the private key 0600, also when the files existed before."""
    (tmp_path / "pki").mkdir(mode=0o755)
    (tmp_path / "pki" / "redis.key").write_text("old")
    files = make_tls_files(tmp_path / "pki")
    assert mode(tmp_path / "pki") == 0o700
    assert mode(files.key) == 0o600
    assert "PRIVATE KEY" in files.key.read_text()


def test_nginx_files_are_private(tmp_path: Path) -> None:
    """conf/rulegate.json (it holds the gateway's Redis password) is 0600 in a 0700 conf directory."""
    ngx = NginxLauncher("", prefix=tmp_path / "nginx", files={"conf/rulegate.json": json.dumps({"password": "s"})})
    ngx.write_conf()
    assert mode(tmp_path / "nginx" / "conf") == 0o700
    assert mode(tmp_path / "nginx" / "conf" / "rulegate.json") == 0o600
    assert mode(ngx.conf_path) == 0o600


def test_private_helpers_narrow_existing_files_but_not_shared_dirs(tmp_path: Path) -> None:
    """An existing 0644 file and 0755 directory are narrowed; a sticky shared directory is left alone."""
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    (loose / "secret").write_text("x")
    write_private(loose / "secret", "y")
    assert mode(private_dir(loose)) == 0o700
    assert mode(loose / "secret") == 0o600 and (loose / "secret").read_text() == "y"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert mode(private_dir(shared)) == 0o1777


def test_demo_run_dir_and_state_are_private(tmp_path: Path) -> None:
    """The run dir (narrowed when it existed as 0755) is 0700 and each demo's pid record 0600."""
    (tmp_path / "run").mkdir(mode=0o755)
    run = open_run_dir(tmp_path / "run")
    state = DemoState.create(run, tmp_path / "data", temporary=False)
    assert mode(run) == 0o700
    assert mode(state.path) == 0o600
    assert DemoState.load(state.path).launcher.pid == os.getpid()
