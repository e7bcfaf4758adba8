"""The demo's check (what `rulegate-dev demo --check` runs once everything is up): the whole system on loopback
routes the expected split, the degrades and the redirect, and a live change through ruleadmin reaches nginx."""
from __future__ import annotations

import pytest

from rulegate_dev.demo import check

from ..demo_system import DemoSystem

pytestmark = pytest.mark.integration


def test_demo_check_passes(demo_system: DemoSystem, capsys: pytest.CaptureFixture[str]) -> None:
    """Against the shared demo (first of its users: the seeded rules untouched) the check finds nothing wrong."""
    assert check(demo_system.system) == []
    out = capsys.readouterr().out
    assert "expected 10% +- 3%" in out and "reached nginx in" in out
