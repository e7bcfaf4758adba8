"""`rulegate-dev demo --check`: the whole system on loopback routes the expected split."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_check_passes(tmp_path):
    """The demo starts cluster, two admins, agent and nginx, asserts the split and a live change, and exits 0."""
    res = subprocess.run([sys.executable, "-m", "rulegate_dev", "demo", "--check", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "demo check: OK" in res.stdout
    assert "reached nginx in" in res.stdout
