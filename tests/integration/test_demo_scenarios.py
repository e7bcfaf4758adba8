"""`rulegate-dev scenario` and `rulegate-dev fault` against one running demo System: each scenario exits 0 and prints
what an operator watches (the ramp measured against E(now), the breaker opening and closing, the guard halting the
failing canary, the kill switch and its exact undo)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rulegate_dev.demo_client import DemoClient
from rulegate_dev.system import DemoEndpoints

from ..demo_system import DemoSystem

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run_dir(demo_system: DemoSystem) -> Path:
    """The run dir of the shared demo System (this process recorded as its launcher)."""
    return demo_system.run_dir


def rulegate_dev(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `python -m rulegate_dev ARGS` against the demo of run_dir."""
    return subprocess.run([sys.executable, "-m", "rulegate_dev", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "RULEGATE_RUN_DIR": str(run_dir)}, timeout=120)


def test_fault_switches_the_flaky_backend(demo_run_dir: Path) -> None:
    """`fault on` makes flaky answer 500, `slow --ms` delays it, `off` restores 200."""
    demo = DemoClient(DemoEndpoints.load(demo_run_dir.parent / "data"))
    assert "fault on" in rulegate_dev(demo_run_dir, "fault", "on").stdout
    assert demo.backend("flaky", "/x").status == 500
    assert "after 300 ms" in rulegate_dev(demo_run_dir, "fault", "slow", "--ms", "300").stdout
    t0 = time.monotonic()
    reply = demo.backend("flaky", "/x")
    assert (reply.status, reply.body, time.monotonic() - t0 >= 0.3) == (200, "flaky\n", True)
    assert rulegate_dev(demo_run_dir, "fault", "off").returncode == 0
    assert (demo.backend("flaky", "/x").status, demo.fault()) == (200, {"mode": "off", "ms": 0})


def run_scenario(run_dir: Path, name: str) -> str:
    res = rulegate_dev(run_dir, "scenario", name)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert f"[{name}] OK" in res.stdout
    return res.stdout


def test_scenario_ramp(demo_run_dir: Path) -> None:
    """The /beta split through nginx and the agent puts no user on the wrong side of E(now); /fleet counts it."""
    out = run_scenario(demo_run_dir, "ramp")
    assert re.search(r"E\(now\) = \d+% at .*; next change at", out)
    assert re.search(r"nginx: 1000 users on /beta -> .*; E = \d+%; 0 user\(s\) on the wrong side", out)
    assert re.search(r"agent /v1/decide: 300 users -> .*; 0 on the wrong side", out)
    assert re.search(r"admin API GET /fleet: exposure of shop-beta-ramp [1-9]\d*/min", out)


def test_scenario_breaker(demo_run_dir: Path) -> None:
    """The injected failure opens the /pay breaker in nginx and the agent; after open_seconds it closes again."""
    out = run_scenario(demo_run_dir, "breaker")
    opened = next(line for line in out.splitlines() if "then the breaker opened" in line)
    assert "nginx: " in opened and "x failure" in opened and "x fallback" in opened and "agent: " in opened
    assert "agent: open (" in out and "nginx worker" in out
    closed = out.split("probes passed and the breaker closed", 1)[1]
    assert "agent: closed (" in closed and ": open (" not in closed and "half_open" not in closed


def test_scenario_guard(demo_run_dir: Path) -> None:
    """Failing the guarded /search canary gets its ramp halted by the guard watcher (actor guard); /search then
    answers stable only."""
    out = run_scenario(demo_run_dir, "guard")
    assert "the guard watcher halted the ramp: revision" in out and "by actor 'guard'" in out
    assert "the ramp now: 0% -> 0%" in out
    assert "100 users on /search now: {'stable': 100}" in out


def test_scenario_kill_switch(demo_run_dir: Path) -> None:
    """The namespace kill switch makes every route answer the preset; its undo is exact and the routes come back."""
    out = run_scenario(demo_run_dir, "kill-switch")
    assert "every route answers the preset 503" in out
    assert "exact: True" in out
    assert "every route answers as before the switch" in out
