"""Validation of the request shape accepted by the simulator (API and web panel)."""
from __future__ import annotations

from typing import Any

FIELDS = {"host": 253, "path": 2048, "method": 16, "ip": 64}
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
        if value is None:
            continue
        if not isinstance(value, dict) or len(value) > MAX_ENTRIES or not all(
                isinstance(v, str) and len(k) <= 256 and len(v) <= 4096 for k, v in value.items()):
            errors[f"request.{name}"] = f"must be an object of at most {MAX_ENTRIES} string values"
    now = data.get("now")
    if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float)) or not 0 <= now < 2**40):
        errors["request.now"] = "must be a UNIX timestamp"
    return data, errors
