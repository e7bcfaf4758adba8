"""`rulegate-dev demo` cleans up after itself: SIGTERM, `rulegate-dev stop` from another process and a start-up
failure half-way each leave no process, no temp dir and no state file behind; credentials are printed once.

Each demo runs under tests/integration/subreaper.py, which adopts whatever the demo leaves running, reports it
and kills it, so a leak fails the test without outliving it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from rulegate_dev.ports import free_port, is_ephemeral

pytestmark = pytest.mark.integration

REAPER = Path(__file__).with_name("subreaper.py")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    """A `rulegate-dev demo` started under the subreaper, its output so far (read by a thread) and its run dir."""

    proc: subprocess.Popen
    report: Path
    run_dir: Path
    out: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    @property
    def pid(self) -> int:
        """Return the demo launcher's pid (the subreaper's child)."""
        return json.loads(self.report.read_text())["child"]

    def wait_for(self, ready) -> str:
        """Poll until ready(output so far) or the demo exits; return the output so far."""
        while not ready("".join(self.out)) and self.proc.poll() is None:
            time.sleep(0.05)
        return "".join(self.out)

    def read_until(self, marker: str) -> str:
        """Return stdout once a line contains marker (or all of it when the demo exits first)."""
        return self.wait_for(lambda out: marker in out)

    def finish(self, timeout: float = 120) -> dict:
        """Wait for the subreaper; return its report (rc of the demo, processes it left behind)."""
        self.proc.wait(timeout)
        self.reader.join(timeout)
        return json.loads(self.report.read_text())

    def states(self) -> list[dict]:
        """Return the demo state files in the run dir."""
        return [json.loads(p.read_text()) for p in sorted(self.run_dir.glob("demo-*.json"))]


def start_demo(tmp_path: Path, *args: str) -> Demo:
    """Start `python -m rulegate_dev demo ARGS` under the subreaper, with its own run dir and temp dir."""
    run_dir, report = tmp_path / "run", tmp_path / "report.json"
    env = {**os.environ, "RULEGATE_RUN_DIR": str(run_dir), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(REAPER), str(report), "--", sys.executable, "-m", "rulegate_dev",
                             "demo", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    while not report.exists() and proc.poll() is None:
        time.sleep(0.01)  # the subreaper writes the report right after starting the demo
    return Demo(proc, report, run_dir)


def temp_dirs(tmp_path: Path) -> list[Path]:
    """Return the demo temp dirs (rulegate-demo-*) under tmp_path."""
    return sorted(tmp_path.glob("rulegate-demo-*"))


def alive(pid: int) -> bool:
    """Return True when pid runs (a zombie does not count)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Demo, Path]]:
    """(demo, its tmp dir): the whole demo, up and idle; stopped by the last test of this module (or here)."""
    tmp = tmp_path_factory.mktemp("demo")
    demo = start_demo(tmp)
    banner = demo.read_until("running; press Ctrl-C")
    assert "running; press Ctrl-C" in banner, banner[-3000:]
    yield demo, tmp
    if demo.proc.poll() is None:
        demo.proc.send_signal(signal.SIGTERM)  # the subreaper passes it on to the demo
        demo.finish()


def test_credentials_block_lists_every_created_secret_once(running_demo: tuple[Demo, Path]) -> None:
    """The admin login, API token and the three Redis ACL users' passwords are printed once, and they work."""
    demo, _ = running_demo
    out = "".join(demo.out)
    block = out.split("credentials created for this demo", 1)[1].split("\n\n", 1)[0]
    secrets = dict(re.findall(r"^  (.+?)  +(\S+)   \(", block, re.M))
    assert set(secrets) == {"ruleadmin login admin", "API token", "Redis user rg-ops", "Redis user rg-admin",
                            "Redis user rg-gateway-demo"}
    for secret in secrets.values():
        assert out.count(secret) == 1
    nodes = re.search(r"^  Redis Cluster\s+(\S+)", out, re.M).group(1).split(",")
    host, port = nodes[0].split(":")
    for user in ("rg-ops", "rg-admin", "rg-gateway-demo"):
        with redis.Redis(host=host, port=int(port), username=user, password=secrets[f"Redis user {user}"]) as r:
            assert r.ping()
    admin = re.search(r"ruleadmin #1\s+(http://\S+)/", out).group(1)
    req = urllib.request.Request(admin + "/api/v1/namespaces/demo/rules",
                                 headers={"Authorization": f"Bearer {secrets['API token']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def test_demo_ports_lie_outside_the_ephemeral_range(running_demo: tuple[Demo, Path]) -> None:
    """Every port the demo listens on (cluster, admins, agent, nginx) is outside ip_local_port_range."""
    demo, _ = running_demo
    ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", "".join(demo.out))}
    assert len(ports) >= 10
    assert [p for p in ports if is_ephemeral(p)] == []


def test_stop_from_another_process_stops_everything(running_demo: tuple[Demo, Path]) -> None:
    """`rulegate-dev stop` in another process stops every recorded process; the temp dir and state are gone."""
    demo, tmp = running_demo
    [state] = demo.states()
    recorded = [p["pid"] for p in state["processes"]]
    assert len(recorded) == 11 and all(alive(pid) for pid in recorded)  # 6 redis, 2 admins, guard watcher, agent, nginx
    res = subprocess.run([sys.executable, "-m", "rulegate_dev", "stop"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "RULEGATE_RUN_DIR": str(demo.run_dir)}, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    report = demo.finish()
    assert report["rc"] == 0 and report["left"] == []
    assert not any(alive(pid) for pid in recorded)
    assert temp_dirs(tmp) == [] and demo.states() == []


def test_sigterm_stops_every_process_and_removes_the_temp_dir(tmp_path: Path) -> None:
    """SIGTERM to the demo, once it has started every process (gunicorn still booting its workers), stops all of
    them (workers included) and removes its temp dir and state."""

    def all_spawned(out: str) -> bool:
        return "running; press Ctrl-C" in out or any(p["name"] == "nginx" for s in demo.states()
                                                      for p in s["processes"])

    demo = start_demo(tmp_path)
    out = demo.wait_for(all_spawned)
    assert demo.proc.poll() is None, out[-3000:]
    [data_dir] = temp_dirs(tmp_path)
    assert data_dir.stat().st_mode & 0o777 == 0o700
    os.kill(demo.pid, signal.SIGTERM)
    report = demo.finish()
    assert report["left"] == [], "".join(demo.out)[-3000:]
    assert report["rc"] == 0
    assert "SIGTERM: stopping everything" in "".join(demo.out)
    assert temp_dirs(tmp_path) == [] and demo.states() == []


def test_half_way_failure_stops_what_was_started(tmp_path: Path) -> None:
    """When nginx cannot bind its port, the demo stops the cluster, admins and agent it started and exits 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        demo = start_demo(tmp_path, "--nginx-port", str(port))
        report = demo.finish()
    out = "".join(demo.out)
    assert report["left"] == [], out[-3000:]
    assert report["rc"] == 1, out[-3000:]
    assert "seeded the sample rules" in out  # the cluster was up when nginx failed
    assert f"127.0.0.1:{port}" in out and "start-up failed" in out
    assert "Traceback" not in out
    assert temp_dirs(tmp_path) == [] and demo.states() == []
