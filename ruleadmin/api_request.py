"""Reading an API request: JSON body, If-Match, query integers; every problem is an APIError naming the field."""
from __future__ import annotations

from typing import Any

from flask import request

from .errors import APIError
from .inputs import MAX_JSON_DEPTH, MAX_REVISION, ascii_int, etag_revision


def json_body(allowed: tuple[str, ...] | None = None) -> Any:
    """Return the parsed JSON body; raise 415/400 on a wrong content type, bad JSON or unknown fields."""
    req = request._get_current_object()
    if not req.is_json:
        raise APIError(415, "send the body as application/json", {"Content-Type": "must be application/json"})
    data = req.get_json(silent=True)
    if data is None:
        raise APIError(400, "the body is not valid JSON",
                       {"<body>": f"must be valid JSON nested at most {MAX_JSON_DEPTH} levels deep"})
    if allowed is not None:
        if not isinstance(data, dict):
            raise APIError(400, "the body must be a JSON object", {"<body>": "must be an object"})
        unknown = {k: "unknown field" for k in data if k not in allowed}
        if unknown:
            raise APIError(400, "unknown fields in the body", unknown)
    return data


def if_match(required: bool) -> int | None:
    """Return the revision in If-Match, None when absent and optional; raise 428/400."""
    raw = request.headers.get("If-Match")
    if raw is None:
        if required:
            raise APIError(428, "send If-Match: \"<revision>\" with the revision you last saw",
                           {"If-Match": "is required"})
        return None
    rev = etag_revision(raw)
    if rev is None:
        raise APIError(400, "If-Match must be a revision like \"12\"",
                       {"If-Match": f"must be \"<revision>\" with 0 <= revision <= {MAX_REVISION}"})
    return rev


def int_arg(name: str, lo: int, hi: int) -> int | None:
    """Return query parameter `name` as an int in [lo, hi], None when absent or empty; raise 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    value = ascii_int(raw, lo, hi)
    if value is None:
        raise APIError(400, f"bad query parameter {name}", {name: f"must be an integer between {lo} and {hi}"})
    return value
