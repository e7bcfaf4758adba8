"""REST: a namespace's known upstream names (GET: viewer; PUT of the declared names: admin) and the check rule
writes go through (unknown upstream -> 400 naming the field unless ?force=true)."""
from __future__ import annotations

from typing import Callable

from flask import Blueprint, current_app, jsonify, request

from rulegate.schema import is_valid_id

from .api_request import json_body
from .auth import api_role, api_user
from .errors import APIError
from .extensions import backend
from .idempotency import idempotent
from .upstreams import Known, UpstreamRegistry, check_names, unknown_upstreams

bp = Blueprint("api_upstreams", __name__)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def registry() -> UpstreamRegistry:
    """Return the upstream registry on the app's Redis client."""
    return UpstreamRegistry(backend().store.client)


def declare(ns: str, names: list[str]) -> None:
    """Replace the declared upstreams of ns and forget this instance's cached view of them."""
    registry().declare(ns, names)
    cache = backend().upstreams_cache
    if cache is not None:
        cache.pop(ns, None)


def known(ns: str) -> Known:
    """Return the known upstreams of ns (heartbeats older than FLEET_SILENT_SECONDS ignored), from a cache of
    UPSTREAMS_CACHE_SECONDS (a rule write reads them; a declaration through this instance clears the entry)."""
    cache = backend().upstreams_cache
    if cache is not None:
        hit = cache.get(ns)
        if hit is not None:
            return hit
    got = registry().known(ns, float(current_app.config["FLEET_SILENT_SECONDS"]))
    if cache is not None:
        cache[ns] = got
    return got


def _body(ns: str, k: Known) -> dict:
    return {"namespace": ns, "declared": list(k.declared), "reported": {g: list(n) for g, n in k.reported.items()},
            "known": list(k.names), "checked": k.checked}


def force_arg() -> bool:
    """Return the `force` query parameter as a bool; raise 400 on anything but true/false/1/0/yes/no."""
    if not request._get_current_object().environ.get("QUERY_STRING"):
        return False  # no query string to parse (every plain write)
    raw = (request.args.get("force") or "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise APIError(400, "bad query parameter force", {"force": "must be true or false"})
    return raw in _TRUE


def rule_check(ns: str) -> Callable[[dict], None]:
    """Return a check for a validated rule: raise APIError 400 naming each unknown upstream (unless ?force=true)."""
    force = force_arg()

    def check(rule: dict) -> None:
        if force:
            return
        errors = unknown_upstreams(rule, known(ns))
        if errors:
            raise APIError(400, "unknown upstream: no gateway of this namespace reports it and it is not declared "
                                "(send ?force=true to save anyway)", errors)

    return check


def _namespace(ns: str) -> None:
    if not is_valid_id(ns):
        raise APIError(400, "bad name in the URL", {"namespace": "must match [a-z0-9][a-z0-9_.-]{0,63}"})
    backend().rules.require_namespace(ns)


@bp.get("/namespaces/<ns>/upstreams")
@api_role("viewer")
def get_upstreams(ns: str):
    """Return the declared names, the names each live gateway reports, their union and whether writes are checked."""
    _namespace(ns)
    return jsonify(_body(ns, known(ns)))


@bp.put("/namespaces/<ns>/upstreams")
@api_role("admin")
@idempotent()
def put_upstreams(ns: str):
    """Replace the declared upstream names of ns with {"upstreams": [...]} (admin)."""
    _namespace(ns)
    data = json_body(("upstreams",))
    names, errors = check_names(data.get("upstreams"))
    if errors:
        raise APIError(400, "invalid upstream names", errors)
    declare(ns, names)
    backend().accounts.audit("upstreams.declared", api_user().username, ns, ", ".join(names)[:500])
    return jsonify(_body(ns, known(ns)))
