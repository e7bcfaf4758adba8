"""nginx + lua/rulegate: the sync state names its cause (unknown namespace, refused credentials,
unreachable Redis), and the heartbeat and status carry the configured upstream names."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from redis.cluster import RedisCluster

from rulegate.fleet import read_fleet
from rulegate.schema import validate_rule
from rulegate.store import RuleStore
from rulegate_dev.acl import gateway_user
from rulegate_dev.gateway_conf import include_options, upstream_blocks
from rulegate_dev.nginx import NginxError, free_port

from .conftest import UPSTREAMS, Gateway

pytestmark = pytest.mark.integration

RULE = validate_rule({"id": "r1", "kind": "split", "route": {"host": "app.example.com", "path": "/"},
                      "key": {"source": "ip"}, "policies": [], "default": "a"})


def wait_state(gw: Gateway, state: str, timeout: float = 10.0) -> dict[str, Any]:
    """Return the status once its state is `state`."""
    deadline = time.monotonic() + timeout
    st = gw.status()
    while st["state"] != state:
        assert time.monotonic() < deadline, f"state {st['state']} never became {state}: {st}"
        time.sleep(0.05)
        st = gw.status()
    return st


def test_misspelled_namespace_is_unknown_namespace(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    """A namespace without rev/meta keys: state unknown_namespace naming it, served as an empty rule set
    (revision 0: the location's default upstream), one log line."""
    store.put_rule(namespace, RULE, None, "test")
    gw = make_gateway(namespace + "x", cluster.startup_nodes)
    st = wait_state(gw, "unknown_namespace")
    assert f"namespace '{namespace}x' does not exist in the store" in st["last_error"]
    assert st["error_kind"] == "unknown_namespace" and st["stale"] is True
    assert gw.wait_revision(0)["rules"] == 0
    assert gw.get("/").headers["x-echo-upstream"] == "default"
    time.sleep(0.5)  # more checks: still one line, a warning (the empty set routes like no rules)
    lines = [line for line in gw.log_lines() if "unknown_namespace" in line]
    assert len(lines) == 1 and "[warn]" in lines[0], lines
    assert gw.error_lines() == []


@pytest.mark.parametrize("who", ["wrong password", "another namespace's user"])
def test_refused_credentials_are_auth_failed(make_gateway: Callable[..., Gateway], acl_cluster: Any, who: str) -> None:
    """A wrong password (WRONGPASS at AUTH) or another namespace's user (NOPERM on the reads): auth_failed."""
    cluster, users = acl_cluster
    user, password = users.gateway("gw")
    creds = {"wrong password": {"username": user, "password": "not-" + password},
             "another namespace's user": {"username": gateway_user("other"), "password": users.gateway("other")[1]}}
    gw = make_gateway("gw", cluster.startup_nodes, notifications=False, **creds[who])
    st = wait_state(gw, "auth_failed")
    assert st["error_kind"] == "auth_failed" and st["revision"] is None
    assert ("WRONGPASS" if who == "wrong password" else "NOPERM") in st["last_error"]
    assert password not in str(st)


def test_unreachable_redis_is_an_unreachable_error(make_gateway: Callable[..., Gateway]) -> None:
    """No Redis at the configured address: state error, error_kind unreachable."""
    gw = make_gateway("nowhere", [f"127.0.0.1:{free_port()}"], notifications=False)
    st = wait_state(gw, "error")
    assert st["error_kind"] == "unreachable" and st["revision"] is None


def test_heartbeat_and_status_carry_the_upstream_names(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    """The names of the upstream {} blocks (passed by gateway_conf) are in the status and every heartbeat."""
    rev = store.put_rule(namespace, RULE, None, "test").revision
    blocks = upstream_blocks(sorted(set(UPSTREAMS) | {"default"}), 1)  # what the Gateway fixture writes
    gw = make_gateway(namespace, cluster.startup_nodes, heartbeat_interval=0.2, **include_options({}, blocks))
    expected = sorted(set(UPSTREAMS) | {"default"})
    assert gw.wait_revision(rev)["upstreams"] == expected
    host, port = cluster.startup_nodes[0].rsplit(":", 1)
    client = RedisCluster(host=host, port=int(port))
    try:
        deadline = time.monotonic() + 5
        while (beat := read_fleet(client, namespace).get(gw.options["gateway_id"])) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        client.close()
    assert beat.kind == "nginx" and list(beat.upstreams) == expected


def test_no_upstreams_configured_reports_none(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    """Without the option the status says null and the heartbeat (an empty msgpack map) decodes as none."""
    rev = store.put_rule(namespace, RULE, None, "test").revision
    gw = make_gateway(namespace, cluster.startup_nodes, heartbeat_interval=0.2)
    assert gw.wait_revision(rev)["upstreams"] is None
    host, port = cluster.startup_nodes[0].rsplit(":", 1)
    client = RedisCluster(host=host, port=int(port))
    try:
        deadline = time.monotonic() + 5
        while (beat := read_fleet(client, namespace).get(gw.options["gateway_id"])) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        client.close()
    assert beat.upstreams == ()


@pytest.mark.parametrize("upstreams, message", [
    (["stable", "has space"], 'opts.upstreams[2] "has space" is not an upstream name'),
    (["x" * 129], "opts.upstreams[1]"),
    ("stable,canary", "opts.upstreams must be a list"),
    ({"stable": True}, "opts.upstreams must be a list"),
])
def test_bad_upstream_option_stops_nginx_with_a_clear_error(
    make_gateway: Callable[..., Gateway], upstreams: Any, message: str
) -> None:
    """A bad upstreams option is a configuration error that names the entry; nginx does not start."""
    with pytest.raises(NginxError) as failed:
        make_gateway("cfg", ["127.0.0.1:1"], upstreams=upstreams)
    assert message in str(failed.value)
