"""Pure-Lua unit specs, run inside a real nginx by the spec runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from rulegate_dev.nginx import NginxLauncher

SPECS = sorted(p.stem for p in (Path(__file__).parent / "spec").glob("*_spec.lua"))


@pytest.mark.parametrize("spec", SPECS)
def test_lua_spec(lua_harness: NginxLauncher, spec: str) -> None:
    """Every case of the Lua spec file passes inside nginx."""
    res = lua_harness.json(f"/spec?name={spec}")
    assert not res["failed"], "\n".join(f"{f['name']}: {f['err']}" for f in res["failed"])
    assert res["passed"], f"{spec} registered no case"
    assert lua_harness.error_lines() == []
