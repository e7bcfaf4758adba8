"""Drills: the whole system under continuous load while Redis and an admin fail.

nginx, the agent sidecar and both admins take traffic the whole time; we kill the namespace's
master, SIGSTOP a master, restart the whole cluster and restart one admin mid-write. Zero gateway
requests may fail, every write acknowledged as replicated must survive, and nginx and the agent must
converge on the final revision (and show it in the fleet hash) within 2 s of recovery.
"""
from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from rulegate.connection import RedisConfig
from rulegate.fleet import read_fleet
from rulegate.keyspace import Keys
from rulegate.store import RuleStore
from rulegate_dev.acl import ADMIN_USER
from rulegate_dev.system import NAMESPACE, System

from ..demo_system import DemoSystem

pytestmark = [pytest.mark.integration, pytest.mark.drill]


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 5.0):
    req = urllib.request.Request(url, method=method, headers=headers or {},
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Load:
    """Background traffic against nginx, the agent and both admins, with outcome counters."""

    def __init__(self, system: System):
        self.s = system
        self.stop = threading.Event()
        self.gateway = Counter()
        self.gateway_failures: list[str] = []
        self.writes = Counter()
        self.acked: list[str] = []
        self.ack_times: dict[str, float] = {}
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.nginx, self.agent, self.writer)]

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def nginx(self) -> None:
        url = f"http://127.0.0.1:{self.s.nginx_port}/"
        while not self.stop.is_set():
            try:
                status, body = http("GET", url, headers={"Host": "shop.localhost", "X-Uid": str(random.randrange(10**6))})
                ok = status == 200 and body.strip() in (b"stable", b"canary")
            except OSError as exc:
                ok, status, body = False, 0, repr(exc).encode()
            self.gateway["nginx ok" if ok else "nginx failed"] += 1
            if not ok:
                self.gateway_failures.append(f"nginx {status} {body[:80]!r}")

    def agent(self) -> None:
        url = f"http://127.0.0.1:{self.s.agent_port}/v1/decide"
        while not self.stop.is_set():
            try:
                status, body = http("POST", url, {"host": "shop.localhost", "path": "/", "headers": {"x-uid": "42"}},
                                    {"Content-Type": "application/json"})
                ok = status == 200 and json.loads(body)["action"] == "proxy"
            except OSError as exc:
                ok, status, body = False, 0, repr(exc).encode()
            self.gateway["agent ok" if ok else "agent failed"] += 1
            if not ok:
                self.gateway_failures.append(f"agent {status} {body[:80]!r}")

    def writer(self) -> None:
        auth = {"Authorization": f"Bearer {self.s.token}", "Content-Type": "application/json"}
        seq = 0
        while not self.stop.is_set():
            seq += 1
            port = self.s.admin_ports[seq % 2]
            rule_id = f"drill-{seq}"
            rule = {"id": rule_id, "kind": "degrade", "route": {"host": f"{rule_id}.drill.localhost", "path": "/"},
                    "action": {"type": "reject"}}
            try:
                status, body = http("PUT", f"http://127.0.0.1:{port}/api/v1/namespaces/{NAMESPACE}/rules/{rule_id}",
                                    rule, auth, timeout=10)
            except OSError:
                status, body = 0, b""
            if status in (200, 201) and json.loads(body).get("replicated"):
                self.acked.append(rule_id)
                self.ack_times[rule_id] = time.monotonic()
                self.writes["acked+replicated"] += 1
            else:
                self.writes[f"status {status}"] += 1
            time.sleep(0.05)


def nginx_revision(s: System) -> int | None:
    status, body = http("GET", f"http://127.0.0.1:{s.nginx_port}/rulegate/status")
    return json.loads(body).get("revision") if status == 200 else None


def agent_revision(s: System) -> int | None:
    status, body = http("GET", f"http://127.0.0.1:{s.agent_port}/healthz")
    return json.loads(body).get("revision")


def wait_converged(s: System, store: RuleStore, timeout: float = 2.0) -> float:
    """Return seconds until nginx and the agent both run the store's current revision."""
    t0 = time.monotonic()
    target = store.revision(NAMESPACE)
    while time.monotonic() - t0 < timeout:
        if nginx_revision(s) == target and agent_revision(s) == target:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"not converged on rev {target} within {timeout}s: nginx={nginx_revision(s)} "
                         f"agent={agent_revision(s)}")


@pytest.fixture(scope="module")
def system(demo_system: DemoSystem) -> System:
    """The shared demo System (refresh interval 0.5 s); this drill is the last test to use it."""
    return demo_system.system


def test_drill_faults_under_load(system):
    """Kill a master, SIGSTOP a master, restart the cluster, restart an admin: no gateway request fails."""
    s, cluster = system, system.cluster
    store = RuleStore.from_config(RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster",
                                                         username=ADMIN_USER, password=s.acl.admin_password))
    slot = Keys(NAMESPACE).slot
    timeline: list[str] = []
    started = time.monotonic()
    with Load(s) as load:
        time.sleep(3)
        victim = cluster.slot_owner(slot)
        cluster.kill(victim)
        timeline.append(f"{time.monotonic() - started:.1f}s killed master {victim.port}; new master {cluster.wait_failover(slot, victim).port}")
        cluster.start_node(victim)
        cluster.wait_ready(30)
        time.sleep(3)
        paused = cluster.slot_owner(slot)
        cluster.pause(paused)
        time.sleep(4)
        cluster.resume(paused)
        cluster.wait_ready(30)
        timeline.append(f"{time.monotonic() - started:.1f}s paused master {paused.port} for 4 s")
        time.sleep(3)
        for node in cluster.nodes:
            cluster.stop_node(node)
        time.sleep(2)
        for node in cluster.nodes:
            cluster.start_node(node)
        cluster.wait_ready(30)
        timeline.append(f"{time.monotonic() - started:.1f}s restarted the whole cluster")
        time.sleep(3)
        s.admins[0].stop()
        time.sleep(1)
        s.admins[0].start()
        s.admins[0].wait_healthy()
        timeline.append(f"{time.monotonic() - started:.1f}s restarted admin #1")
        while time.monotonic() - started < 32:
            time.sleep(0.5)
    converge = wait_converged(s, store)
    print(f"\ndrill: {timeline}\n gateway {dict(load.gateway)}\n writes {dict(load.writes)}\n"
          f" converged {converge * 1000:.0f} ms after recovery")
    assert load.gateway["nginx ok"] > 100 and load.gateway["agent ok"] > 100
    assert load.gateway_failures == []
    assert load.writes["status 500"] == 0, "the admin answered 500 during the drill"
    final = store.load(NAMESPACE).rules
    lost = [rule_id for rule_id in load.acked if rule_id not in final]
    assert load.acked and lost == [], (timeline, [(r, round(load.ack_times[r] - started, 1)) for r in lost][:5],
                                       [(r, round(t - started, 1)) for r, t in load.ack_times.items()][::10])
    time.sleep(1.5)
    fleet = read_fleet(store.client, NAMESPACE)
    target = store.revision(NAMESPACE)
    assert fleet["nginx-demo"].revision == target and fleet["agent-demo"].revision == target
    # the demo's gateways report the upstreams they can route to (ruleadmin refuses unknown ones)
    assert fleet["nginx-demo"].upstreams == fleet["agent-demo"].upstreams == ("canary", "flaky", "stable")
    store.close()
