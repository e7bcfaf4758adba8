"""Fixtures and helpers for the agent tests: rules, a background decision loop, a sidecar process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from gateway_agent import RuleClient
from gateway_agent.budget import BudgetConfig
from rulegate.fleet import Heartbeat, read_fleet
from rulegate_dev.nginx import free_port

ROOT = Path(__file__).resolve().parents[2]
HOST = "shop.example.com"


def split_rule(rule_id: str, upstream: str, path: str = "/") -> dict:
    """Return a valid split rule sending HOST+path to `upstream`."""
    return {"id": rule_id, "kind": "split", "route": {"host": HOST, "path": path},
            "key": {"source": "ip"}, "policies": [], "default": upstream}


def request(path: str = "/") -> dict:
    return {"host": HOST, "path": path, "ip": "10.0.0.1"}


def make_client(cluster, namespace: str, **kwargs) -> RuleClient:
    """Return a started RuleClient with test-friendly short intervals."""
    kwargs.setdefault("refresh_interval", 0.2)
    kwargs.setdefault("heartbeat_interval", 0.5)
    kwargs.setdefault("budget", BudgetConfig(deadline=1.0, socket_timeout=0.3, connect_timeout=0.2))
    return RuleClient(cluster.startup_nodes, namespace, **kwargs).start()


def heartbeat_after(store, namespace: str, gateway_id: str, t: float, timeout: float = 30.0) -> Heartbeat:
    """Return the gateway's fleet heartbeat once it holds one taken after wall time t (time.time()); fail after timeout.

    The client's sync thread writes it (with a short heartbeat_interval, one rides every revision check; or
    `syncer.heartbeat_now()`): nothing else may write it while that thread runs, since both would share the
    thread's connection (replies cross: an HSET "answered" with the loop's GET) and race its own heartbeat. A
    beat taken after t read the counts after t (`_heartbeat_command` stamps it before reading them)."""
    deadline = time.monotonic() + timeout
    while True:
        beat = read_fleet(store.client, namespace).get(gateway_id)
        if beat is not None and beat.heartbeat_at > t:
            return beat
        assert time.monotonic() < deadline, f"no heartbeat of {gateway_id} taken after {t} in {timeout} s: {beat}"
        time.sleep(0.02)


class DecisionLoop:
    """Calls decide() continuously in a thread; records every decision that is not the expected one."""

    def __init__(self, client: RuleClient, allowed: set[str]):
        self.client = client
        self.allowed = set(allowed)
        self.count = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "DecisionLoop":
        self._thread.start()
        while self.count == 0 and self._thread.is_alive():
            time.sleep(0.001)
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                d = self.client.decide(request())
                if d.action != "proxy" or d.upstream not in self.allowed:
                    self.failures.append(f"unexpected decision {d}")
            except Exception as exc:  # noqa: BLE001 - the test asserts that nothing at all escapes
                self.failures.append(repr(exc))
            self.count += 1
            time.sleep(0.0005)

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 2
        while self.count < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(5)

    def check(self) -> None:
        assert self.count > 10, "the decision loop barely ran"
        assert self.failures == [], self.failures[:5]


class Sidecar:
    """A `python -m gateway_agent serve` child process."""

    def __init__(self, nodes: list[str], namespace: str, snapshot: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = snapshot.with_suffix(".log")
        cmd = [sys.executable, "-m", "gateway_agent", "serve", "--redis-nodes", ",".join(nodes),
               "--namespace", namespace, "--listen", f"127.0.0.1:{self.port}", "--snapshot", str(snapshot),
               "--refresh-interval", "0.2", "--heartbeat-interval", "0.5", *extra]
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 15
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=0.5).status_code in (200, 503):
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sidecar did not start: " + self.log.read_text()[-2000:])
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM the sidecar (by pid) and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        return self.proc.returncode


@pytest.fixture()
def sidecar_factory(tmp_path):
    """Start sidecars on demand; stop them all at teardown."""
    started: list[Sidecar] = []

    def start(nodes: list[str], namespace: str, *extra: str) -> Sidecar:
        s = Sidecar(nodes, namespace, tmp_path / f"snap-{len(started)}", *extra)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
