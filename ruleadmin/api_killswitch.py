"""REST: kill switches of a namespace (list: viewer; engage and undo: editor). Thin views over ruleadmin.killswitch."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from rulegate.errors import RuleConflictError, ValidationError
from rulegate.schema import is_valid_id

from . import killswitch
from .api_request import json_body
from .api_upstreams import rule_check
from .auth import api_role, api_user
from .errors import APIError
from .extensions import backend
from .idempotency import idempotent

bp = Blueprint("api_killswitch", __name__)
SWITCH_ID_RULE = "must be a kill switch id: [a-z0-9_-], 1-64 characters"


def preset() -> dict:
    """Return the configured preset action (RULEADMIN_KILL_SWITCH_PRESET, checked at start-up)."""
    return killswitch.preset_from_config(current_app.config.get("KILL_SWITCH_PRESET"))


def _names(ns: str, switch_id: str | None = None) -> None:
    fields = {}
    if not is_valid_id(ns):
        fields["namespace"] = "must match [a-z0-9][a-z0-9_.-]{0,63}"
    if switch_id is not None and (not is_valid_id(switch_id) or "." in switch_id):
        fields["id"] = SWITCH_ID_RULE
    if fields:
        raise APIError(400, "bad name in the URL", fields)


def _written(body: dict, result, status: int):
    if result is not None:
        body.update(revision=result.revision, replicated=result.replicated, replicas_acked=result.replicas_acked,
                    replicas_wanted=result.replicas_wanted)
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["ETag"] = f'"{body["revision"]}"'
    return resp


@bp.get("/namespaces/<ns>/kill-switches")
@api_role("viewer")
def list_kill_switches(ns: str):
    """Return the namespace's kill switches (records, and switches known only from their rules)."""
    _names(ns)
    switches = killswitch.list_switches(backend().rules, ns)
    return jsonify(namespace=ns, revision=backend().store.revision(ns), kill_switches=switches)


@bp.post("/namespaces/<ns>/kill-switches")
@api_role("editor")
@idempotent()
def engage(ns: str):
    """Engage a kill switch: {"scope": "namespace"} or {"scope": "route", "route": {"host", "path"}}, optional
    "action" (default: the preset); 201 with the record and the new revision."""
    _names(ns)
    data = json_body(killswitch.FIELDS)
    backend().rules.require_namespace(ns)
    try:
        scope, route, action = killswitch.parse_request(data, preset())
    except ValidationError as exc:
        raise APIError(400, "invalid kill switch", exc.errors) from None
    rule_check(ns)({"kind": "degrade", "route": route or {"host": "*", "path": "/"}, "action": action})
    user = api_user().username
    done = killswitch.engage(backend().rules, ns, scope, route, action, user)
    backend().accounts.audit("killswitch.engaged", user, ns, killswitch.audit_detail(done))
    return _written(killswitch.engaged_body(done), done.result, 201)


@bp.delete("/namespaces/<ns>/kill-switches/<switch_id>")
@api_role("editor")
@idempotent()
def undo(ns: str, switch_id: str):
    """Undo a kill switch: delete exactly its rules in one revision; `exact` says whether the content equals the
    content before it (digest), `differences` names the rules that differ."""
    _names(ns, switch_id)
    user = api_user().username
    try:
        done = killswitch.undo(backend().rules, ns, switch_id, user)
    except RuleConflictError as exc:
        raise APIError(412, f"kill rule {exc.rule_id!r} changed while the switch was undone; nothing was committed, "
                            "retry", {"id": f"rule {exc.rule_id} changed meanwhile"},
                       extra={"current_revision": exc.current}) from None
    backend().accounts.audit("killswitch.undone", user, ns, killswitch.audit_detail(done))
    return _written(killswitch.undone_body(done), done.result, 200)
