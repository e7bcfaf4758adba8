"""Validation of the request shape accepted by the simulator (API and web panel).

The shape is docs/rules.md "Requests" (the sidecar's): `headers` is an object or a list of
[name, value] pairs. Any string passes (a decision never fails on request content).
"""
from __future__ import annotations

import math
from typing import Any

FIELDS = {"host": 253, "path": 2048, "method": 16, "ip": 64, "request_id": 256}
MAPS = ("headers", "cookies", "args")
MAX_ENTRIES = 64


def parse_request(data: Any) -> tuple[dict, dict[str, str]]:
    """Return (request dict, field errors) for a simulated request (host is required)."""
    errors: dict[str, str] = {}
    if not isinstance(data, dict):
        return {}, {"request": "must be an object with at least a host"}
    for name in data:
        if name not in FIELDS and name not in MAPS and name != "now":
            errors[f"request.{name}"] = "unknown field"
    if not isinstance(data.get("host"), str) or not data.get("host"):
        errors["request.host"] = "is required (a string)"
    for name, limit in FIELDS.items():
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            errors[f"request.{name}"] = f"must be a string of at most {limit} characters"
    for name in MAPS:
        value = data.get(name)
        if value is not None and not _entries_ok(value, pairs=name == "headers"):
            errors[f"request.{name}"] = f"must be an object of at most {MAX_ENTRIES} string values" + (
                " or a list of [name, value] strings" if name == "headers" else "")
    now = data.get("now")
    if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now)
                            or not 0 <= now < 2**40):
        errors["request.now"] = "must be a UNIX timestamp"
    return data, errors


def _entries_ok(value: Any, *, pairs: bool) -> bool:
    if isinstance(value, dict):
        items = list(value.items())
    elif pairs and isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        items = [tuple(p) for p in value]
    else:
        return False
    return len(items) <= MAX_ENTRIES and all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 256 and len(v) <= 4096 for k, v in items)
