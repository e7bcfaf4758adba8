"""nginx to Redis over TLS: the Lua cluster client and a whole gateway against the launcher's
TLS-only cluster, with the namespace's own gateway user (ACL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rulegate.connection import RedisConfig
from rulegate.fleet import read_fleet
from rulegate.schema import validate_rule
from rulegate.store import RuleStore
from rulegate_dev.acl import ADMIN_USER
from rulegate_dev.cluster import LocalCluster
from rulegate_dev.nginx import NginxLauncher
from rulegate_dev.tls import TlsFiles, make_tls_files

from .conftest import HARNESS_HTTP, HERE, Gateway

pytestmark = pytest.mark.integration

NS = "tlsgw"
FLEET = "{rg:" + NS + "}:fleet"


def trust(ca: Path) -> str:
    """Return the http-block directives that make the Lua cosockets trust ca."""
    return f"lua_ssl_trusted_certificate {ca};\nlua_ssl_verify_depth 2;"


def harness(prefix: Path, ca: Path | None) -> NginxLauncher:
    """Return a started cluster-client harness nginx trusting ca (nothing when None)."""
    return NginxLauncher(HARNESS_HTTP, prefix=prefix, extra_lua_paths=(f"{HERE}/?.lua",), workers=1,
                         http_extra=trust(ca) if ca else "").start()


@pytest.fixture(scope="module")
def trusting(tls_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxLauncher]:
    """A harness nginx that trusts the cluster's CA."""
    ngx = harness(tmp_path_factory.mktemp("trusting"), tls_cluster.tls.ca_cert)
    yield ngx
    ngx.stop()


def call(ngx: NginxLauncher, cluster: LocalCluster, cmds: list[list[str]], **opts: Any) -> dict:
    """Run cmds on the fleet key's slot through rulegate.cluster in ngx with the gateway user and opts."""
    user, password = cluster.acl.gateway(NS)
    return ngx.json("/call", {"nodes": cluster.startup_nodes[:2], "key": FLEET, "cmds": cmds, "forget_map": True,
                              "opts": {"username": user, "password": password, **opts}})


def refused_by_tls(res: dict) -> bool:
    """Return True when a call failed on certificate verification.

    lua-nginx-module 0.10.23 sometimes reports a failed verification as a successful handshake
    on a connection it has already closed: the next command then fails with "closed"."""
    return not res["ok"] and ("TLS handshake" in res["err"] or res["err"].endswith(": closed"))


def test_tls_client_verifies_and_authenticates(trusting: NginxLauncher, tls_cluster: LocalCluster) -> None:
    """With ssl, the CA and the certificate's name, the gateway user writes and reads its fleet key."""
    res = call(trusting, tls_cluster, [["HSET", FLEET, "lua-tls", "1"], ["HGET", FLEET, "lua-tls"]],
               ssl=True, server_name="localhost")
    assert res["ok"], res["err"]
    assert res["res"][1] == "1"
    assert trusting.error_lines() == []


@pytest.mark.parametrize("opts, reason", [
    ({}, "failed to authenticate"),
    ({"ssl": True, "server_name": "localhost", "password": "wrong"}, "WRONGPASS"),
])
def test_tls_client_refuses(trusting: NginxLauncher, tls_cluster: LocalCluster, opts: dict, reason: str) -> None:
    """Plaintext against TLS and a wrong password fail with their reason."""
    res = call(trusting, tls_cluster, [["HGET", FLEET, "x"]], **opts)
    assert not res["ok"]
    assert reason in res["err"], res["err"]


def test_certificate_for_another_name_is_refused(trusting: NginxLauncher, tls_cluster: LocalCluster) -> None:
    """A server_name the certificate does not carry fails verification (and is sent as SNI)."""
    for _ in range(5):
        res = call(trusting, tls_cluster, [["HGET", FLEET, "x"]], ssl=True, server_name="redis.evil.example")
        assert refused_by_tls(res), res.get("err")


def test_untrusted_ca_is_refused(tls_cluster: LocalCluster, tmp_path: Path) -> None:
    """An nginx trusting another CA (or none) fails the handshake; ssl_verify=false would connect."""
    other: TlsFiles = make_tls_files(tmp_path / "other")
    for ca in (other.ca_cert, None):
        ngx = harness(tmp_path / f"ngx-{'other' if ca else 'none'}", ca)
        try:
            res = call(ngx, tls_cluster, [["HGET", FLEET, "x"]], ssl=True, server_name="localhost")
            assert refused_by_tls(res), res.get("err")
            unverified = call(ngx, tls_cluster, [["HGET", FLEET, "x"]], ssl=True, ssl_verify=False)
            assert unverified["ok"], unverified["err"]
        finally:
            ngx.stop()


def test_pool_names_keep_tls_and_plain_apart(trusting: NginxLauncher, tls_cluster: LocalCluster) -> None:
    """A pooled TLS connection is never handed to a plaintext or differently verified client."""
    good = call(trusting, tls_cluster, [["HGET", FLEET, "x"]], ssl=True, server_name="localhost")
    assert good["ok"], good["err"]
    plain = call(trusting, tls_cluster, [["HGET", FLEET, "x"]])
    assert not plain["ok"]
    other_name = call(trusting, tls_cluster, [["HGET", FLEET, "x"]], ssl=True, server_name="redis.evil.example")
    assert refused_by_tls(other_name), other_name.get("err")


def rule(upstream: str) -> dict:
    return validate_rule({"id": "r1", "kind": "split", "route": {"host": "app.example.com", "path": "/"},
                          "key": {"source": "ip"}, "policies": [], "default": upstream})


def test_gateway_syncs_listens_and_heartbeats_over_tls(tls_cluster: LocalCluster, tmp_path: Path) -> None:
    """A gateway with ssl and its namespace's user applies rules (poll and SSUBSCRIBE) and heartbeats."""
    cfg = RedisConfig.from_nodes(tls_cluster.startup_nodes, mode="cluster", username=ADMIN_USER,
                                 password=tls_cluster.acl.admin_password, ssl=True,
                                 ssl_ca_certs=str(tls_cluster.tls.ca_cert))
    store = RuleStore.from_config(cfg)
    user, password = tls_cluster.acl.gateway(NS)
    gw = Gateway({"namespace": NS, "startup_nodes": tls_cluster.startup_nodes, "refresh_interval": 10,
                  "response_headers": "vars", "gateway_id": "nginx-tls", "heartbeat_interval": 0.2,
                  "username": user, "password": password, "ssl": True, "server_name": "localhost"},
                 prefix=tmp_path / "gw", http_extra=trust(tls_cluster.tls.ca_cert))
    try:
        rev = store.put_rule(NS, rule("a"), store.revision(NS), "alice").revision
        gw.start()
        gw.wait_revision(rev)
        deadline = time.monotonic() + 10
        while gw.status()["listener"] is None:
            assert time.monotonic() < deadline, gw.status()
            time.sleep(0.05)
        time.sleep(0.2)
        rev = store.put_rule(NS, rule("b"), rev, "alice").revision  # the 10 s poll is too slow: SSUBSCRIBE
        gw.wait_revision(rev, timeout=3)
        assert gw.get("/").headers["x-echo-upstream"] == "b"
        while "nginx-tls" not in read_fleet(store.client, NS):
            assert time.monotonic() < deadline, gw.status()
            time.sleep(0.05)
        st = gw.status()
        assert st["heartbeat_error"] is None and st["listener_error"] is None, st
        assert gw.error_lines() == []
    finally:
        gw.stop()
        store.close()
