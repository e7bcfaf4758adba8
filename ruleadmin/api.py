"""REST API under /api/v1: thin views over RuleService; JSON in, JSON out, revisions as ETags."""
from __future__ import annotations

import msgspec
from flask import Blueprint, current_app, jsonify, request

from rulegate.errors import LimitError, NamespaceLimitError, RuleConflictError
from rulegate.schema import encode_validated, is_valid_id

from . import api_accounts, api_killswitch, api_upstreams, rulelist
from .api_request import if_match, int_arg, json_body
from .auth import api_role, api_user
from .errors import APIError
from .extensions import backend, csrf
from .idempotency import idempotent
from .inputs import MAX_REVISION, percent_strings
from .json_answer import json_answer
from .killswitch import RESERVED_MESSAGE, is_reserved
from .metrics import write_counter
from .openapi import document
from .rule_etag import etag_of_hash, if_match_condition, rule_etag
from .rules import (
    ROLLBACK_TO_ZERO,
    AlreadyExistsError,
    ConflictError,
    HistoryUnavailableError,
    NamespaceMissing,
    NotFoundError,
    ValidationError,
)
from .simulation import parse_request

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.register_blueprint(api_accounts.bp)
bp.record_once(lambda _state: csrf.exempt(api_accounts.bp))
bp.register_blueprint(api_upstreams.bp)
bp.record_once(lambda _state: csrf.exempt(api_upstreams.bp))
bp.register_blueprint(api_killswitch.bp)
bp.record_once(lambda _state: csrf.exempt(api_killswitch.bp))
ID_RULE = "must match [a-z0-9][a-z0-9_.-]{0,63}"


@bp.errorhandler(ValidationError)
def _invalid(exc: ValidationError):
    write_counter("invalid").inc()
    return APIError(400, "invalid rule", exc.errors).response()


@bp.errorhandler(ConflictError)
def _conflict(exc: ConflictError):
    write_counter("conflict").inc()
    return APIError(412, f"stale revision: you sent {exc.expected}, the namespace is at {exc.current}",
                    {"If-Match": f"is stale: the namespace is at revision {exc.current}"},
                    extra={"current_revision": exc.current},
                    headers={"ETag": _etag(exc.current)}).response()


@bp.errorhandler(RuleConflictError)
def _rule_conflict(exc: RuleConflictError):
    write_counter("conflict").inc()
    current = etag_of_hash(exc.current_hash)
    state = f"its ETag is now {current}" if current else "it does not exist"
    return APIError(412, f"rule {exc.rule_id!r} changed since the ETag you sent: {state}",
                    {"If-Match": f"is stale: {state}"}, extra={"current_etag": current,
                                                               "current_revision": exc.current},
                    headers={"ETag": current} if current else {}).response()


@bp.errorhandler(NamespaceLimitError)
def _namespace_limit(exc: NamespaceLimitError):
    setting = "RULEADMIN_NAMESPACE_MAX_" + exc.limit.upper()
    return APIError(413, str(exc), {"namespace": f"would exceed {setting}={exc.maximum} ({exc.limit})"},
                    extra={"limit": exc.limit, "setting": setting, "maximum": exc.maximum,
                           "current": exc.current, "after": exc.after}).response()


@bp.errorhandler(NamespaceMissing)
def _no_namespace(exc: NamespaceMissing):
    return APIError(404, f"namespace {exc.args[0]!r} does not exist (an admin creates namespaces)",
                    {"namespace": "does not exist"}).response()


@bp.errorhandler(NotFoundError)
def _not_found(exc: NotFoundError):
    return APIError(404, str(exc), {"id": "does not exist"}).response()


@bp.errorhandler(LimitError)
def _limit(exc: LimitError):
    return APIError(400, str(exc), {"namespace": str(exc)}).response()


_json = msgspec.json.Encoder(order="sorted").encode


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


def _write_response(body: dict, result, status: int, floats: bool = False):
    """Return the answer of a write: body and the result's fields, the revision as ETag; `floats`: whether a value
    in body may be a float (the other writes' bodies hold names and counts)."""
    write_counter("unchanged" if result.unchanged else "ok" if result.replicated else "unreplicated").inc()
    body.update(revision=result.revision, replicated=result.replicated, unchanged=result.unchanged,
                replicas_acked=result.replicas_acked, replicas_wanted=result.replicas_wanted)
    resp = json_answer(body, floats)  # jsonify's bytes
    resp.status_code = status
    resp.headers["ETag"] = _etag(result.revision)
    return resp


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI 3.0 document of this API."""
    return jsonify(document())


@bp.get("/namespaces")
@api_role("viewer")
def list_namespaces():
    """Return every namespace (the token may reach) with its revision."""
    user = api_user()
    return jsonify(namespaces=[n for n in backend().rules.namespaces() if user.in_scope(n["name"])])


@bp.post("/namespaces")
@api_role("admin", unscoped=True)
@idempotent()
def create_namespace():
    """Create a namespace (admin); 201, or 200 when it already existed."""
    data = json_body(("name",))
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
    """Return the rules of a namespace (filtered and paged when ?limit/cursor/kind/upstream/q/route is given);
    ETag is the namespace revision: If-None-Match with it gives 304 after one round trip."""
    _check_names(ns)
    svc = backend().rules
    svc.require_namespace(ns)
    version = svc.listings.version(ns)
    if request.if_none_match.contains_weak(str(version[0])):  # _etag(rev), unquoted
        resp = current_app.response_class(status=304)
        resp.headers["ETag"] = _etag(version[0])
        return resp
    listing = svc.listing(ns, version)
    rev, rules = listing.revision, listing.rules
    if not rulelist.requested(request.args):  # every rule: the listing's JSON, encoded once per revision
        body = b"".join((b'{"namespace":', _json(ns), b',"revision":', _json(rev), b',"rules":', listing.rules_json(),
                         b',"usage":', _json(svc.usage(ns)), b"}"))
        resp = current_app.response_class(body, mimetype="application/json")
        resp.headers["ETag"] = _etag(rev)
        return resp
    flt, cursor, limit, errors = rulelist.from_args(request.args)
    if errors:
        raise APIError(400, "bad query parameter", errors)
    found = rulelist.page(rules, flt, cursor, limit)
    resp = jsonify({"namespace": ns, "revision": rev, "rules": found.rules, "usage": svc.usage(ns),
                    "matched": found.matched, "next_cursor": found.next_cursor})
    resp.headers["ETag"] = _etag(rev)
    return resp


@bp.get("/namespaces/<ns>/rules/<rule_id>")
@api_role("viewer")
def get_rule(ns: str, rule_id: str):
    """Return one rule and the namespace revision; ETag is the rule's own ("r-<sha1>") to send back as If-Match."""
    _check_names(ns, rule_id)
    rev, rule, raw = backend().rules.get_rule_raw(ns, rule_id)
    resp = jsonify(rule=rule, revision=rev, etag=rule_etag(raw))
    resp.headers["ETag"] = rule_etag(raw)
    return resp


@bp.put("/namespaces/<ns>/rules/<rule_id>")
@api_role("editor")
@idempotent()
def put_rule(ns: str, rule_id: str):
    """Create (no If-Match) or replace (If-Match: "<rev>") a rule."""
    _check_names(ns, rule_id)
    if is_reserved(rule_id):
        raise APIError(400, "reserved rule id", {"id": RESERVED_MESSAGE})
    data, percent_errors = percent_strings(json_body())
    if percent_errors:
        raise ValidationError(percent_errors)
    if isinstance(data, dict):
        if data.setdefault("id", rule_id) != rule_id:
            raise APIError(400, "the id in the body differs from the URL", {"id": "must equal the id in the URL"})
    expected, expected_hash = if_match_condition(required=False)
    try:
        rule, result = backend().rules.put_rule(ns, data, expected, api_user().username,
                                                check=api_upstreams.rule_check(ns), expected_hash=expected_hash)
    except AlreadyExistsError:
        raise APIError(428, "the rule exists: send If-Match: \"<revision>\" to replace it",
                       {"If-Match": "is required to replace a rule"}) from None
    created = expected is None and expected_hash is None
    raw = encode_validated(rule)  # a float in the rule is a msgpack float64 (0xcb) or float32 (0xca) byte in raw
    return _write_response({"rule": rule, "etag": rule_etag(raw)}, result, 201 if created else 200,
                           floats=raw.find(b"\xcb") >= 0 or raw.find(b"\xca") >= 0)


@bp.delete("/namespaces/<ns>/rules/<rule_id>")
@api_role("editor")
@idempotent()
def delete_rule(ns: str, rule_id: str):
    """Delete a rule; If-Match is required."""
    _check_names(ns, rule_id)
    expected, expected_hash = if_match_condition(required=True)
    result = backend().rules.delete_rule(ns, rule_id, expected, api_user().username, expected_hash=expected_hash)
    return _write_response({"deleted": rule_id}, result, 200)


@bp.get("/namespaces/<ns>/history")
@api_role("viewer")
def history(ns: str):
    """Return changes (revision, op, actor, ts, ts_iso, each rule's before/after), newest first with the
    `next_before` cursor, or with `since` oldest first with `next_since`; `rule` keeps one rule's changes."""
    _check_names(ns)
    max_limit = int(current_app.config["HISTORY_MAX_LIMIT"])
    since = int_arg("since", 0, MAX_REVISION)
    before = int_arg("before", 1, MAX_REVISION)
    limit = int_arg("limit", 1, max_limit) or 50
    rule_id = request.args.get("rule") or None
    if rule_id is not None and not is_valid_id(rule_id):
        raise APIError(400, "bad query parameter rule", {"rule": ID_RULE})
    svc = backend().rules
    if since is None:
        found = svc.history_page(ns, before=before, limit=limit, rule_id=rule_id)
        return jsonify(namespace=ns, entries=found["entries"], next_before=found["older"])
    found = svc.history_page(ns, after=since, limit=limit, rule_id=rule_id)
    entries = found["entries"][::-1]
    kept = [e for e in entries if before is None or e["revision"] < before]
    return jsonify(namespace=ns, entries=kept, next_since=found["newer"] if len(kept) == len(entries) else None)


@bp.post("/namespaces/<ns>/rollback")
@api_role("editor")
@idempotent()
def rollback(ns: str):
    """Commit a new revision restoring the rule set of `to_rev` (1 or more; If-Match required); nothing is
    committed (`unchanged`: true) when the rule set already equals it."""
    _check_names(ns)
    data = json_body(("to_rev",))
    to_rev = data.get("to_rev")
    if isinstance(to_rev, bool) or not isinstance(to_rev, int) or not 0 <= to_rev <= MAX_REVISION:
        raise APIError(400, "to_rev must be a revision number", {"to_rev": f"must be an integer 1-{MAX_REVISION}"})
    if to_rev == 0:
        raise APIError(400, "cannot roll back to revision 0 (the empty namespace)",
                       {"to_rev": ROLLBACK_TO_ZERO})
    expected = if_match(required=True)
    try:
        result, changed = backend().rules.rollback(ns, to_rev, expected, api_user().username)
    except HistoryUnavailableError as exc:
        raise APIError(404, str(exc), {"to_rev": str(exc)}) from None
    return _write_response({"restored": to_rev, "changed_rules": changed}, result, 200)


@bp.post("/namespaces/<ns>/simulate")
@api_role("viewer")
def simulate(ns: str):
    """Return the decision the gateways would make for {"request": {...}} at the current revision."""
    _check_names(ns)
    data = json_body(("request",))
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
    return jsonify(backend().rules.fleet(ns, float(current_app.config["FLEET_SILENT_SECONDS"]),
                                         idle_after=float(current_app.config["IDLE_RULE_SECONDS"])))


@bp.get("/namespaces/<ns>/diff")
@api_role("viewer")
def diff(ns: str):
    """Return the rule-by-rule difference between revisions `from` and `to` (default: the current one)."""
    _check_names(ns)
    from_rev = int_arg("from", 0, MAX_REVISION)
    to_rev = int_arg("to", 0, MAX_REVISION)
    if from_rev is None:
        raise APIError(400, "from is required", {"from": f"is required: a revision 0-{MAX_REVISION}"})
    try:
        body = backend().rules.diff(ns, from_rev, to_rev)
    except HistoryUnavailableError as exc:
        field = "from" if exc.revision == from_rev else "to"
        raise APIError(404, str(exc), {field: str(exc)}) from None
    resp = jsonify(namespace=ns, **body)
    resp.headers["ETag"] = _etag(body["revision"])
    return resp


@bp.post("/namespaces/<ns>/empty")
@api_role("admin")
@idempotent()
def empty_namespace(ns: str):
    """Delete every rule of the namespace in one revision (admin; If-Match required); audited."""
    _check_names(ns)
    expected = if_match(required=True)
    user = api_user().username
    result, removed = backend().rules.empty_namespace(ns, expected, user)
    if not result.unchanged:
        backend().accounts.audit("namespace.emptied", user, ns, f"{removed} rule(s) removed, revision {result.revision}")
    return _write_response({"emptied": ns, "removed_rules": removed}, result, 200)
