"""Agent health tells causes apart: an unknown namespace, refused credentials, unreachable Redis;
and the agent reports its configured upstream names in every heartbeat."""
from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError, NoPermissionError

from gateway_agent import RuleClient
from gateway_agent.budget import BudgetConfig, BudgetExhausted
from gateway_agent.client import parse_upstreams
from gateway_agent.health import STATES, AuthFailed, SyncHealth, UnknownNamespace, error_kind
from gateway_agent.metrics import AgentMetrics
from gateway_agent.sidecar import SidecarApp
from rulegate.errors import ValidationError
from rulegate.fleet import read_fleet
from rulegate.keyspace import Keys
from rulegate.schema import validate_rule
from rulegate_dev.acl import gateway_user
from rulegate_dev.nginx import free_port

from .conftest import ROOT, make_client, split_rule
from .test_sidecar import call

FAST = BudgetConfig(deadline=0.5, socket_timeout=0.2, connect_timeout=0.2)


def state_metric(client: RuleClient) -> dict[str, float]:
    """Return rulegate_agent_sync_state by state label, parsed from the Prometheus text."""
    body, _ = AgentMetrics(client).render()
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "rulegate_agent_sync_state":
            return {s.labels["state"]: s.value for s in family.samples}
    raise AssertionError("no rulegate_agent_sync_state metric")


def fleet_entry(cluster, namespace: str, gateway_id: str, timeout: float = 5.0):
    """Return the decoded heartbeat of gateway_id once it is in the namespace's fleet hash."""
    reader = redis.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(*a.split(":"))
                                               for a in cluster.startup_nodes])
    try:
        deadline = time.monotonic() + timeout
        while (beat := read_fleet(reader, namespace).get(gateway_id)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return beat
    finally:
        reader.close()


@pytest.mark.parametrize("exc, kind", [
    (UnknownNamespace("namespace 'x' does not exist"), "unknown_namespace"),
    (AuthFailed("refused"), "auth_failed"),
    (AuthenticationError("invalid username-password pair"), "auth_failed"),
    (AuthenticationWrongNumberOfArgsError("wrong number of arguments for 'auth' command"), "auth_failed"),
    (NoPermissionError("this user has no permissions to access one of the keys"), "auth_failed"),
    (redis.ResponseError("NOAUTH Authentication required."), "auth_failed"),
    (redis.ResponseError("WRONGPASS invalid username-password pair"), "auth_failed"),
    (redis.ConnectionError("Error 111 connecting to 127.0.0.1:1"), "unreachable"),
    (redis.TimeoutError("Timeout reading from socket"), "unreachable"),
    (BudgetExhausted("revision check: gave up after 3 attempt(s)"), "unreachable"),
    (redis.ResponseError("ERR unknown command"), "error"),
], ids=lambda v: v.__class__.__name__ if isinstance(v, Exception) else None)
def test_error_kind(exc, kind):
    """Each failure maps to the health state that names its cause."""
    assert error_kind(exc) == kind and kind in STATES


def test_one_log_line_per_state_change(caplog):
    """Repeated failures of one kind log once, whatever their text; each change of state logs one line."""
    health = SyncHealth("ns")
    with caplog.at_level(logging.INFO, logger="rulegate.agent.sync"):
        for text in ("gave up after 0.51s", "gave up after 0.73s", "ConnectionError: refused"):
            health.failed("unreachable", text, None, 1.0)
        health.failed("auth_failed", "AuthFailed: Redis 127.0.0.1:7000 refused the credentials", None, 2.0)
        health.failed("auth_failed", "AuthFailed: Redis 127.0.0.1:7001 refused the credentials", None, 3.0)
        health.ok(4)
        health.ok(4)
    assert [(r.previous_state, r.state, r.levelname) for r in caplog.records] == [
        ("starting", "unreachable", "WARNING"), ("unreachable", "auth_failed", "ERROR"), ("auth_failed", "ok", "INFO")]
    assert all(r.namespace == "ns" for r in caplog.records)


def test_misspelled_namespace_is_not_ready(cluster, store, namespace):
    """A namespace with no rev/meta key is not ready and says so by name; writing a rule makes it ready."""
    with make_client(cluster, namespace + "x") as client:
        health = client.health()
        assert health["ready"] is False and health["loaded"] is False
        assert health["state"] == "unknown_namespace"
        assert f"namespace '{namespace}x' does not exist" in health["message"]
        status, body = call(SidecarApp(client), "GET", "/healthz")
        assert status == 503 and body["state"] == "unknown_namespace"
        assert state_metric(client) == {s: float(s == "unknown_namespace") for s in STATES}
        rev = store.put_rule(namespace + "x", split_rule("checkout", "v1"), None, "test").revision
        client.refresh()
        assert client.wait_for_revision(rev, 5)
        deadline = time.monotonic() + 5
        while client.health()["state"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.health()["ready"] is True and client.health()["state"] == "ok"


def test_vanished_namespace_keeps_serving_the_last_good_rules(cluster, store, namespace):
    """Keys deleted under a running agent: state unknown_namespace, still ready with the rules it holds."""
    rev = store.put_rule(namespace, split_rule("checkout", "v1"), None, "test").revision
    with make_client(cluster, namespace) as client:
        assert client.wait_for_revision(rev, 5)
        k = Keys(namespace)
        store.client.delete(k.rules, k.rev, k.log, k.meta)
        deadline = time.monotonic() + 5
        while client.health()["state"] != "unknown_namespace" and time.monotonic() < deadline:
            client.refresh()
            time.sleep(0.05)
        health = client.health()
        assert health["state"] == "unknown_namespace" and health["ready"] is True
        assert "serving the last good rule set" in health["message"]
        assert client.decide({"host": "shop.example.com", "path": "/"}).upstream == "v1"


@pytest.mark.parametrize("who", ["wrong password", "no credentials", "another namespace's user"])
def test_refused_credentials_are_auth_failed(acl_cluster, who):
    """A wrong password, no credentials (default user off) or another namespace's gateway user: auth_failed,
    not ready, and the metric says auth_failed; the password never appears in the report."""
    cluster, users = acl_cluster
    user, password = users.gateway("gw")
    creds = {"wrong password": {"username": user, "password": "not-" + password},
             "no credentials": {},
             "another namespace's user": {"username": gateway_user("other"), "password": users.gateway("other")[1]}}
    client = RuleClient(cluster.startup_nodes, "gw", refresh_interval=0.2, budget=FAST, **creds[who]).start()
    try:
        health = client.health()
        assert health["state"] == "auth_failed", health
        assert health["ready"] is False and health["redis"] == "down"
        assert password not in str(health) and users.gateway("other")[1] not in str(health)
        assert state_metric(client)["auth_failed"] == 1 and state_metric(client)["unreachable"] == 0
    finally:
        client.stop()


def test_unreachable_redis_is_unreachable():
    """No Redis listening at the configured address: unreachable, not ready, metric set."""
    client = RuleClient([f"127.0.0.1:{free_port()}"], "nowhere", refresh_interval=0.2, budget=FAST).start()
    try:
        health = client.health()
        assert health["state"] == "unreachable" and health["ready"] is False
        assert state_metric(client)["unreachable"] == 1 and state_metric(client)["auth_failed"] == 0
    finally:
        client.stop()


def test_heartbeat_carries_configured_upstreams(cluster, store, namespace):
    """The upstream names given to the client are in every heartbeat, sorted and without duplicates."""
    store.put_rule(namespace, split_rule("checkout", "v1"), None, "test")
    with make_client(cluster, namespace, gateway_id="agent-ups", heartbeat_interval=0.1,
                     upstreams="v1, canary,v1") as client:
        assert client.health()["upstreams"] == ["canary", "v1"]
        beat = fleet_entry(cluster, namespace, "agent-ups")
    assert beat is not None and beat.upstreams == ("canary", "v1")


def test_heartbeat_now_is_written_by_the_sync_thread_after_the_call(cluster, store, namespace):
    """heartbeat_now() from other threads while the loop runs: each call returns once a heartbeat taken after it
    was written (its time is later than the call's), by the sync thread on its own connection — no sync cycle
    fails on crossed replies; with the loop stopped it is written in the caller."""
    store.put_rule(namespace, split_rule("checkout", "v1"), None, "test")
    client = make_client(cluster, namespace, gateway_id="agent-now", heartbeat_interval=3600, refresh_interval=0.02)
    try:
        assert client.wait_for_revision(1, 5.0)
        failed = client.syncer.stats.syncs_failed
        for _ in range(20):
            t = time.time()
            assert client.syncer.heartbeat_now(timeout=10)
            beat = read_fleet(store.client, namespace)["agent-now"]
            assert beat.heartbeat_at > t
        assert client.syncer.stats.syncs_failed == failed
    finally:
        client.stop()
    t = time.time()
    assert client.syncer.heartbeat_now()
    assert read_fleet(store.client, namespace)["agent-now"].heartbeat_at > t


def test_upstreams_from_the_environment(monkeypatch):
    """RULEGATE_UPSTREAMS (comma-separated) is the default; an explicit option wins."""
    monkeypatch.setenv("RULEGATE_UPSTREAMS", "stable,canary")
    assert RuleClient(["127.0.0.1:1"], "ns").config.upstreams == ("canary", "stable")
    assert RuleClient(["127.0.0.1:1"], "ns", upstreams=["v2"]).config.upstreams == ("v2",)
    monkeypatch.setenv("RULEGATE_UPSTREAMS", "ok,not ok")
    with pytest.raises(ValueError, match="RULEGATE_UPSTREAMS: bad upstream name 'not ok'"):
        RuleClient(["127.0.0.1:1"], "ns")


@pytest.mark.parametrize("name", ["has space", "a/b", "x" * 129, "caf\u00e9", "{a}", ""])
def test_bad_upstream_names_are_refused(name):
    """A name a rule could not use is a configuration error naming it; the schema refuses it too."""
    with pytest.raises(ValueError, match="bad upstream name"):
        parse_upstreams(["ok", name])
    with pytest.raises(ValidationError) as refused:
        validate_rule({**split_rule("r", "x"), "default": name})
    assert "default" in refused.value.errors


@pytest.mark.parametrize("name", ["stable", "v1.2", "svc:8080", "A_b-c", "x" * 128])
def test_good_upstream_names_are_accepted(name):
    """Every name the rule schema accepts as an upstream is accepted here."""
    assert validate_rule({**split_rule("r", "x"), "default": name})["default"] == name
    assert parse_upstreams(name) == (name,)


def test_sidecar_reports_upstreams(cluster, store, namespace, sidecar_factory):
    """`gateway-agent serve --upstreams a,b` puts the names in /healthz and in the heartbeat."""
    store.put_rule(namespace, split_rule("checkout", "v1"), None, "test")
    s = sidecar_factory(cluster.startup_nodes, namespace, "--upstreams", "v1,canary", "--gateway-id", "sidecar-ups")
    assert requests.get(s.url + "/healthz", timeout=5).json()["upstreams"] == ["canary", "v1"]
    beat = fleet_entry(cluster, namespace, "sidecar-ups")
    assert beat is not None and beat.upstreams == ("canary", "v1")


def test_sidecar_refuses_a_bad_upstream_name():
    """`--upstreams` with a name a rule could not use exits 2 with one line naming it."""
    out = subprocess.run([sys.executable, "-m", "gateway_agent", "serve", "--redis-nodes", "127.0.0.1:1",
                          "--namespace", "ns", "--upstreams", "stable,bad name"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "bad upstream name 'bad name'" in out.stderr, out.stderr


def test_namespace_created_in_ruleadmin_is_known_before_its_first_rule(cluster, store, namespace):
    """Creating a namespace (ruleadmin) gives it a generation: an agent configured for it is ready with an empty
    rule set at revision 0, not reported as unknown."""
    from ruleadmin.rules import RuleService

    assert RuleService(store).create_namespace(namespace) is True
    with make_client(cluster, namespace) as client:
        assert client.wait_for_revision(0, 5)
        health = client.health()
        assert health["state"] == "ok" and health["ready"] is True and client.rules == {}
