"""REST API under /api/v1: thin views over RuleService; JSON in, JSON out, revisions as ETags."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from rulegate.errors import LimitError
from rulegate.schema import is_valid_id

from .accounts import AccountError
from .auth import api_role, api_user
from .errors import APIError
from .extensions import backend
from .idempotency import idempotent
from .metrics import WRITES
from .openapi import document
from .rules import (
    AlreadyExistsError,
    ConflictError,
    HistoryUnavailableError,
    NamespaceMissing,
    NotFoundError,
    NothingToDo,
    ValidationError,
)
from .simulation import parse_request

bp = Blueprint("api", __name__, url_prefix="/api/v1")
ID_RULE = "must match [a-z0-9][a-z0-9_.-]{0,63}"


@bp.errorhandler(ValidationError)
def _invalid(exc: ValidationError):
    WRITES.labels("invalid").inc()
    return APIError(400, "invalid rule", exc.errors).response()


@bp.errorhandler(ConflictError)
def _conflict(exc: ConflictError):
    WRITES.labels("conflict").inc()
    return APIError(412, f"stale revision: you sent {exc.expected}, the namespace is at {exc.current}",
                    extra={"current_revision": exc.current},
                    headers={"ETag": _etag(exc.current)}).response()


@bp.errorhandler(NamespaceMissing)
def _no_namespace(exc: NamespaceMissing):
    return APIError(404, f"namespace {exc.args[0]!r} does not exist (an admin creates namespaces)",
                    {"namespace": "does not exist"}).response()


@bp.errorhandler(NotFoundError)
def _not_found(exc: NotFoundError):
    return APIError(404, str(exc)).response()


@bp.errorhandler(LimitError)
def _limit(exc: LimitError):
    return APIError(400, str(exc)).response()


def _etag(rev: int) -> str:
    return f'"{rev}"'


def _check_names(ns: str, rule_id: str | None = None) -> None:
    fields = {}
    if not is_valid_id(ns):
        fields["namespace"] = ID_RULE
    if rule_id is not None and not is_valid_id(rule_id):
        fields["id"] = ID_RULE
    if fields:
        raise APIError(400, "bad name in the URL", fields)


def _json_body(allowed: tuple[str, ...] | None = None) -> Any:
    """Return the parsed JSON body; raise 415/400 on a wrong content type, bad JSON or unknown fields."""
    if not request.is_json:
        raise APIError(415, "send the body as application/json", {"Content-Type": "must be application/json"})
    data = request.get_json(silent=True)
    if data is None:
        raise APIError(400, "the body is not valid JSON", {"<body>": "must be valid JSON"})
    if allowed is not None:
        if not isinstance(data, dict):
            raise APIError(400, "the body must be a JSON object", {"<body>": "must be an object"})
        unknown = {k: "unknown field" for k in data if k not in allowed}
        if unknown:
            raise APIError(400, "unknown fields in the body", unknown)
    return data


def _if_match(required: bool) -> int | None:
    """Return the revision in If-Match, None when absent and optional; raise 428/400."""
    raw = request.headers.get("If-Match")
    if raw is None:
        if required:
            raise APIError(428, "send If-Match: \"<revision>\" with the revision you last saw",
                           {"If-Match": "is required"})
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit() or len(value) > 18:
        raise APIError(400, "If-Match must be a revision like \"12\"", {"If-Match": "must be \"<revision>\""})
    return int(value)


def _int_arg(name: str, lo: int, hi: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise APIError(400, f"bad query parameter {name}", {name: f"must be an integer between {lo} and {hi}"})
    return int(raw)


def _write_response(body: dict, result, status: int):
    WRITES.labels("ok" if result.replicated else "unreplicated").inc()
    body.update(revision=result.revision, replicated=result.replicated,
                replicas_acked=result.replicas_acked, replicas_wanted=result.replicas_wanted)
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["ETag"] = _etag(result.revision)
    return resp


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI 3.0 document of this API."""
    return jsonify(document())


@bp.get("/whoami")
@api_role("viewer")
def whoami():
    """Return the token's user and role."""
    user = api_user()
    return jsonify(username=user.username, role=user.role, token_id=user.token_id)


@bp.get("/namespaces")
@api_role("viewer")
def list_namespaces():
    """Return every namespace with its revision."""
    return jsonify(namespaces=backend().rules.namespaces())


@bp.post("/namespaces")
@api_role("admin")
@idempotent()
def create_namespace():
    """Create a namespace (admin); 201, or 200 when it already existed."""
    data = _json_body(("name",))
    name = data.get("name")
    if not is_valid_id(name):
        raise APIError(400, "invalid namespace name", {"name": ID_RULE})
    created = backend().rules.create_namespace(name)
    if created:
        backend().accounts.audit("namespace.created", api_user().username, name)
    return jsonify(name=name, created=created), 201 if created else 200


@bp.get("/namespaces/<ns>/rules")
@api_role("viewer")
def list_rules(ns: str):
    """Return the rules of a namespace; ETag is the namespace revision."""
    _check_names(ns)
    rev, rules = backend().rules.list_rules(ns)
    resp = jsonify(namespace=ns, revision=rev, rules=rules)
    resp.headers["ETag"] = _etag(rev)
    return resp


@bp.get("/namespaces/<ns>/rules/<rule_id>")
@api_role("viewer")
def get_rule(ns: str, rule_id: str):
    """Return one rule; ETag is the namespace revision to send back as If-Match."""
    _check_names(ns, rule_id)
    rev, rule = backend().rules.get_rule(ns, rule_id)
    resp = jsonify(rule=rule, revision=rev)
    resp.headers["ETag"] = _etag(rev)
    return resp


@bp.put("/namespaces/<ns>/rules/<rule_id>")
@api_role("editor")
@idempotent()
def put_rule(ns: str, rule_id: str):
    """Create (no If-Match) or replace (If-Match: "<rev>") a rule."""
    _check_names(ns, rule_id)
    data = _json_body()
    if isinstance(data, dict):
        if data.setdefault("id", rule_id) != rule_id:
            raise APIError(400, "the id in the body differs from the URL", {"id": "must equal the id in the URL"})
    expected = _if_match(required=False)
    try:
        rule, result = backend().rules.put_rule(ns, data, expected, api_user().username)
    except AlreadyExistsError:
        raise APIError(428, "the rule exists: send If-Match: \"<revision>\" to replace it",
                       {"If-Match": "is required to replace a rule"}) from None
    return _write_response({"rule": rule}, result, 201 if expected is None else 200)


@bp.delete("/namespaces/<ns>/rules/<rule_id>")
@api_role("editor")
@idempotent()
def delete_rule(ns: str, rule_id: str):
    """Delete a rule; If-Match is required."""
    _check_names(ns, rule_id)
    expected = _if_match(required=True)
    result = backend().rules.delete_rule(ns, rule_id, expected, api_user().username)
    return _write_response({"deleted": rule_id}, result, 200)


@bp.get("/namespaces/<ns>/history")
@api_role("viewer")
def history(ns: str):
    """Return newest-first changes: revision, op, actor, ts, and each rule's before/after."""
    _check_names(ns)
    max_limit = int(current_app.config["HISTORY_MAX_LIMIT"])
    since = _int_arg("since", 0, 10**15)
    before = _int_arg("before", 1, 10**15)
    limit = _int_arg("limit", 1, max_limit) or 50
    entries = backend().rules.history(ns, since, before, limit)
    return jsonify(namespace=ns, entries=entries)


@bp.post("/namespaces/<ns>/rollback")
@api_role("editor")
@idempotent()
def rollback(ns: str):
    """Commit a new revision restoring the rule set of `to_rev` (If-Match optional)."""
    _check_names(ns)
    data = _json_body(("to_rev",))
    to_rev = data.get("to_rev")
    if isinstance(to_rev, bool) or not isinstance(to_rev, int) or to_rev < 0:
        raise APIError(400, "to_rev must be a revision number", {"to_rev": "must be an integer >= 0"})
    expected = _if_match(required=False)
    try:
        result, changed = backend().rules.rollback(ns, to_rev, expected, api_user().username)
    except HistoryUnavailableError as exc:
        raise APIError(400, str(exc), {"to_rev": str(exc)}) from None
    except NothingToDo as exc:
        raise APIError(400, str(exc), {"to_rev": "equals the current rule set"}) from None
    return _write_response({"restored": to_rev, "changed_rules": changed}, result, 200)


@bp.post("/namespaces/<ns>/simulate")
@api_role("viewer")
def simulate(ns: str):
    """Return the decision the gateways would make for {"request": {...}} at the current revision."""
    _check_names(ns)
    data = _json_body(("request",))
    req, errors = parse_request(data.get("request"))
    if errors:
        raise APIError(400, "invalid request", errors)
    rev, decision = backend().rules.simulate(ns, req)
    return jsonify(revision=rev, decision=decision.to_dict())


@bp.get("/namespaces/<ns>/fleet")
@api_role("viewer")
def fleet(ns: str):
    """Return which revision every gateway of the namespace runs, with laggards flagged."""
    _check_names(ns)
    return jsonify(backend().rules.fleet(ns, float(current_app.config["FLEET_SILENT_SECONDS"])))


@bp.get("/audit")
@api_role("admin")
def audit():
    """Return the newest account events (users, tokens, namespaces, logins), newest first."""
    limit = _int_arg("limit", 1, 1000) or 100
    return jsonify(events=backend().accounts.recent_audit(limit))


@bp.get("/tokens")
@api_role("admin")
def list_tokens():
    """Return every token id with its user (admin)."""
    return jsonify(tokens=[{"id": k, **v} for k, v in backend().accounts.list_tokens().items()])


@bp.post("/tokens")
@api_role("admin")
@idempotent(redact=("token",))
def create_token():
    """Create a token for a user (admin); the secret is shown only in this response."""
    data = _json_body(("username", "name"))
    name = data.get("name", "")
    if not isinstance(name, str):
        raise APIError(400, "invalid token name", {"name": "must be a string"})
    try:
        token_id, token = backend().accounts.create_token(str(data.get("username", "")), name,
                                                          actor=api_user().username)
    except AccountError as exc:
        raise APIError(400, str(exc), {"username": str(exc)}) from None
    return jsonify(id=token_id, token=token), 201


@bp.delete("/tokens/<token_id>")
@api_role("viewer")
@idempotent()
def revoke_token(token_id: str):
    """Revoke a token: admins any token, everyone else only their own."""
    user = api_user()
    if not user.can("admin") and token_id != user.token_id:
        raise APIError(403, "only admins revoke other users' tokens")
    if not backend().accounts.revoke_token(token_id, actor=user.username):
        raise APIError(404, f"token {token_id!r} does not exist")
    return jsonify(revoked=token_id)
