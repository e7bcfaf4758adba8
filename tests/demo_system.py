"""One whole demo System for the session, shared by every test that needs a running demo and does not start or
stop it itself (the demo check, the scenarios, the hardening checks, and last the fault drill), and the order
those tests run in: they go to the end of the session, the drill (which kills, pauses and restarts nodes) last."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rulegate_dev.runstate import DemoState, open_run_dir
from rulegate_dev.system import System

# the modules whose tests use `demo_system`, in the order they run: the check wants the seeded rules untouched,
# the drill leaves hundreds of extra rules and restarted nodes behind
ORDER = ("tests/system/test_demo.py", "tests/integration/test_demo_scenarios.py", "tests/system/test_hardening.py",
         "tests/drills/test_drills.py")


@dataclass(frozen=True)
class DemoSystem:
    """A started demo System and the run dir that records this process as its launcher (for `rulegate-dev`
    commands run against it with RULEGATE_RUN_DIR)."""

    system: System
    run_dir: Path


def start_demo_system(tmp: Path) -> Iterator[DemoSystem]:
    """Start the demo System in tmp (its data dir created 0755 under umask 022: the System must make it
    private itself), yield it, stop it."""
    old = os.umask(0o022)
    try:
        data_dir = tmp / "data"
        data_dir.mkdir(mode=0o755)
        state = DemoState.create(open_run_dir(tmp / "run"), data_dir, temporary=False)
        system = System(data_dir, refresh_interval=0.5, on_spawn=state.record)
    finally:
        os.umask(old)
    try:
        old = os.umask(0o022)
        try:
            system.start(progress=lambda _msg: None)
        finally:
            os.umask(old)
        yield DemoSystem(system, tmp / "run")
    finally:
        system.stop()
        state.forget()


def order_items(items: list[pytest.Item]) -> None:
    """Move the tests of ORDER's modules to the end of the session, in ORDER (stable within a module)."""
    def key(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return ORDER.index(path) + 1 if path in ORDER else 0

    items.sort(key=key)
