"""rulegate.router inside nginx gives the Python evaluator's decision for every vector."""

from __future__ import annotations

from typing import Any

import pytest

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import validate_rule
from rulegate_dev.nginx import NginxLauncher
from tests.conftest import load_vectors

CASES = load_vectors()


def normalise_lua(d: dict[str, Any]) -> dict[str, Any]:
    """Return the Lua decision in the evaluator's to_dict() shape."""
    out: dict[str, Any] = {"action": d["action"], "rule_id": d.get("rule_id"), "revision": d["revision"]}
    if d["action"] == "proxy":
        out["upstream"] = d["upstream"]
    elif d["action"] in ("respond", "redirect"):
        out.update(status=d["status"], headers=d.get("headers") or {}, body=d.get("body", ""))
        if d.get("location") is not None:
            out["location"] = d["location"]
    return out


@pytest.mark.parametrize("file,data,case", CASES, ids=[f"{f}:{c['name']}" for f, _, c in CASES])
def test_router_matches_evaluator(lua_harness: NginxLauncher, file: str, data: dict, case: dict) -> None:
    """The Lua router's decision equals the Python evaluator's for this vector case."""
    rules = [validate_rule(r) for r in data["rules"]]
    request = Request.from_dict(case["request"])
    want = decide(RuleSet(rules, data["revision"]), request).to_dict()
    req = {
        "host": request.host, "path": request.path, "method": request.method, "ip": request.ip,
        "now": request.now, "headers": dict(request.headers), "cookies": dict(request.cookies),
        "args": dict(request.args),
    }
    got = lua_harness.json("/decide", {"rules": rules, "revision": data["revision"], "request": req})
    assert normalise_lua(got) == want
