"""Kill switches: one commit of one degrade rule that answers a route, or a whole namespace (a rule of scope
namespace, tried before routing), with a preset response, and its undo (one commit deleting exactly that switch's
rules, then a digest check against the content before it). Switches engaged by an older ruleadmin (one rule per
route of the namespace) list and undo the same way. The REST API, the web UI and the CLI all go through this
module (docs/design.md "Kill switch")."""
from __future__ import annotations

import json
import logging
import secrets
import time
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rulegate.digest import EMPTY, apply_change, content_digest
from rulegate.errors import AlreadyExistsError, CorruptDataError, NotFoundError, StoreError, ValidationError
from rulegate.history import HistoryUnavailableError, rule_diffs, states_at
from rulegate.keyspace import Keys
from rulegate.namespace import as_text, decode_stored
from rulegate.schema import NAMESPACE_SCOPE, encode_rule, validate_rule
from rulegate.store import WriteResult, rule_hash

from .display import iso_utc

if TYPE_CHECKING:
    from .rules import RuleService

log = logging.getLogger("ruleadmin.killswitch")

# Rule ids sort as strings; ids start with [a-z0-9] and go on with [a-z0-9_.-], so "0-" + "-" is the smallest
# start an id can have: only the ids "0" and "0-" sort before a kill rule. Operators cannot write "0--..." ids.
RESERVED_PREFIX = "0--"
KILL_PREFIX = RESERVED_PREFIX + "kill."
# what a kill switch may add past the namespace's rule and byte limits: the emergency brake must work on a full
# namespace (a switch is one rule of ~300 bytes, whatever its scope); small beside nginx's dict sizing (docs/api.md)
KILL_HEADROOM = (256, 256 * 1024)
RESERVED_MESSAGE = f"ids starting with {RESERVED_PREFIX!r} are reserved for kill switches (engage or undo one instead)"
DEFAULT_PRESET: dict[str, Any] = {"type": "static", "status": 503, "headers": {"Retry-After": "30"},
                                  "body": "service temporarily unavailable\n"}
OP_ENGAGE, OP_UNDO = "kill-switch", "kill-switch-undo"
SCOPES = ("namespace", "route")
FIELDS = ("scope", "route", "action")
ENGAGE_ATTEMPTS = 5  # switch ids drawn when one is taken
SHADOW_SCAN_COUNT = 1000  # fields Redis walks per HSCAN round trip looking for ids "0--*"
ANY_ROUTE = {"host": "*", "path": "/"}  # the route of a namespace kill rule (scope namespace needs it)
ENGAGE_SCAN = 5000  # log entries searched for a switch's engage commit when its record is missing


class KillSwitchNotFound(NotFoundError):
    """No kill switch with this id is engaged in the namespace (no record, no rules)."""


@dataclass(frozen=True)
class Engaged:
    """An engaged switch: its record, the commit, the rules that still decide before its kill rule (`_shadowed`),
    and whether the record could be saved (the kill rule alone is enough to undo it)."""

    record: dict
    result: WriteResult
    shadowed: list[dict]
    shadows_checked: bool  # False: the namespace could not be read after the commit (shadowed is then empty)
    record_saved: bool


@dataclass(frozen=True)
class Undone:
    """An undone switch: the commit (None: its rules were already gone), the revision and digest after it, whether
    the digest equals the digest before the switch (None: unknown), and the rules that differ from that content."""

    switch_id: str
    result: WriteResult | None
    revision: int
    digest: str
    revision_before: int | None
    digest_before: str | None
    exact: bool | None
    differences: list[dict] | None
    removed: list[str]
    note: str = ""


def is_reserved(rule_id: object) -> bool:
    """Return whether rule_id is in the kill switches' reserved id space."""
    return isinstance(rule_id, str) and rule_id.startswith(RESERVED_PREFIX)


def check_action(action: Any, where: str = "action") -> dict:
    """Return the canonical degrade action; raise ValidationError naming `where`.<field>."""
    probe = {"id": KILL_PREFIX + "check.0", "kind": "degrade", "route": {"host": "*", "path": "/"}, "action": action}
    try:
        return validate_rule(probe)["action"]
    except ValidationError as exc:
        raise ValidationError({_rename(k, "action", where): v for k, v in exc.errors.items()}) from None


def preset_from_config(value: Any) -> dict:
    """Return the preset action of RULEADMIN_KILL_SWITCH_PRESET (None: the default; JSON text or an object);
    raise ValueError naming the setting."""
    if value is None or value == "":
        return check_action(DEFAULT_PRESET)
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("RULEADMIN_KILL_SWITCH_PRESET must be a JSON object (a degrade action)") from None
    try:
        return check_action(value, "RULEADMIN_KILL_SWITCH_PRESET")
    except ValidationError as exc:
        raise ValueError(f"RULEADMIN_KILL_SWITCH_PRESET is not a valid degrade action: {exc}") from None


def parse_request(data: Any, preset: dict) -> tuple[str, dict | None, dict]:
    """Return (scope, route or None, action) from {"scope", "route"?, "action"?}; raise ValidationError naming
    every bad field (route.host, route.path, action.status, ...)."""
    if not isinstance(data, dict):
        raise ValidationError({"<body>": "must be an object"})
    errors = {k: "unknown field" for k in data if k not in FIELDS}
    scope = data.get("scope")
    if scope not in SCOPES:
        errors["scope"] = "is required" if scope is None else f"must be one of {', '.join(SCOPES)}"
    route = data.get("route")
    if scope == "namespace" and route is not None:
        errors["route"] = "must be absent with scope 'namespace'"
    elif scope == "route" and route is None:
        errors["route"] = "is required with scope 'route'"
    action = data.get("action", preset)
    probe = {"id": KILL_PREFIX + "check.0", "kind": "degrade",
             "route": route if scope == "route" else dict(ANY_ROUTE), "action": action}
    if isinstance(route, dict) and "methods" in route:
        errors["route.methods"] = "unknown field: a kill switch covers every method"
    try:
        checked = validate_rule(probe)
    except ValidationError as exc:
        ours = {k: v for k, v in exc.errors.items() if k.split(".")[0] in ("route", "action")}
        errors = {**(ours or exc.errors), **errors}  # this function's messages say more than the schema's
        checked = None
    if errors or checked is None:
        raise ValidationError(errors)
    return scope, checked["route"] if scope == "route" else None, checked["action"]


def engage(svc: RuleService, ns: str, scope: str, route: dict | None, action: dict, actor: str,
           now: int | None = None) -> Engaged:
    """Commit the switch's one kill rule (namespace: scope namespace, tried before routing for every request;
    route: on that route) in one revision, op kill-switch, then save the switch record. Nothing of the namespace
    is read before the commit (the brake costs the same at 10 or 20,000 rules): the content before it is the
    commit's revision less one and the digest of the commit's log entry less the kill rule (revisions are
    gap-free), the rules that decide first are found in the instance's listing once the switch is engaged.
    Raise NamespaceMissing, NamespaceLimitError, StoreError."""
    svc.require_namespace(ns)
    store = svc.store
    now = int(time.time()) if now is None else now
    for _attempt in range(ENGAGE_ATTEMPTS):
        sid = secrets.token_hex(4)
        kill = _kill_rule(sid, scope, route, action, actor, now)
        value = encode_rule(kill)
        try:
            result = store.commit(ns, [(kill["id"], value)], None, actor, op=OP_ENGAGE, create_only=True,
                                  headroom=KILL_HEADROOM)
        except AlreadyExistsError:  # a switch of that id exists (2^-32 a switch): draw another
            continue
        record = {"id": sid, "namespace": ns, "scope": scope, "route": route, "action": action,
                  "engaged_by": actor, "engaged_at": now, "engaged_at_iso": iso_utc(now),
                  "revision_before": result.revision - 1,
                  "digest_before": apply_change(_digest_at(svc, ns, result.revision), kill["id"], value, None),
                  "rule_ids": [kill["id"]], "revision": result.revision}
        saved = _save_record(store, ns, record)
        return Engaged(record, result, *_shadows(svc, ns, kill), saved)
    raise StoreError(f"no free kill switch id in {ENGAGE_ATTEMPTS} draws")


def _shadows(svc: RuleService, ns: str, kill: dict) -> tuple[list[dict], bool]:
    """Return the rules that decide before the engaged kill rule (`_shadowed`) and whether they could be read (the
    switch is engaged either way). A namespace kill rule is decided before by rules whose id sorts first only:
    ids "0", "0-" and "0--..." (reserved, kill rules), read by name and by an HSCAN MATCH, not the namespace; a
    route's by every rule of scope namespace too, whatever its id: from the instance's listing (kept current from
    the log, read whole when cold)."""
    try:
        if "scope" in kill:
            return _shadowed(_sorting_first(svc.store, ns), kill), True
        return _shadowed(svc.listing(ns).by_id, kill), True
    except (StoreError, CorruptDataError) as exc:
        log.warning("kill switch engaged; the rules deciding before it could not be read",
                    extra={"ns": ns, "rule": kill["id"], "error": str(exc)})
        return [], False


def undo(svc: RuleService, ns: str, switch_id: str, actor: str) -> Undone:
    """Delete exactly the switch's rules in one commit (op kill-switch-undo; each conditioned on the bytes read)
    and compare the content with the content before the switch. Raise KillSwitchNotFound, RuleConflictError
    (a kill rule changed meanwhile), NamespaceMissing, StoreError."""
    svc.require_namespace(ns)
    store = svc.store
    record = get_record(svc, ns, switch_id)
    read = store.load_raw(ns)
    ids = sorted(i for i in read.raw if i.startswith(_prefix(switch_id)))
    if record is None and not ids:
        raise KillSwitchNotFound(f"no kill switch {switch_id!r} in namespace {ns!r}")
    before_rev, before_digest = ((record["revision_before"], record["digest_before"]) if record is not None
                                 else _before_from_log(svc, ns, switch_id))
    result = None
    revision, digest = read.revision, read.digest or content_digest(read.raw)
    if ids:
        result = store.commit(ns, [(i, b"") for i in ids], None, actor, op=OP_UNDO,
                              expected_hashes={i: rule_hash(read.raw[i]) for i in ids})
        revision, digest = result.revision, _digest_at(svc, ns, result.revision)
    _delete_record(store, ns, switch_id)
    if before_rev is None or before_digest is None:
        return Undone(switch_id, result, revision, digest, None, None, None, None, ids,
                      "the switch's record is gone and the log no longer reaches its engage commit")
    exact = digest == before_digest
    differences, note = ([], "") if exact else _differences(svc, ns, switch_id, before_rev, revision)
    return Undone(switch_id, result, revision, digest, before_rev, before_digest, exact, differences, ids, note)


def list_switches(svc: RuleService, ns: str) -> list[dict]:
    """Return every kill switch of ns, oldest first: saved records, and switches known only from their rules
    (record: false); each with `rules_present`, how many of its rules are stored now."""
    svc.require_namespace(ns)
    client = svc.store.client
    raw_records = svc.store._call(client.hgetall, Keys(ns).killswitch)
    try:  # the ids from the instance's listing (sorted): the kill rules found by bisection, not an HKEYS of all
        listed = svc.listing(ns).ids
        at = bisect_left(listed, KILL_PREFIX)
        ids = []
        while at < len(listed) and listed[at].startswith(KILL_PREFIX):
            ids.append(listed[at])
            at += 1
    except CorruptDataError:  # a rule that does not decode: every id, as stored
        ids = [i.decode() if isinstance(i, bytes) else i for i in svc.store._call(client.hkeys, Keys(ns).rules)]
    present: dict[str, list[str]] = {}
    for rule_id in ids:
        if rule_id.startswith(KILL_PREFIX):
            present.setdefault(rule_id[len(KILL_PREFIX):].split(".")[0], []).append(rule_id)
    out = {}
    for value in raw_records.values():
        record = _load_record(value)
        if record is not None:
            out[record["id"]] = {**record, "record": True}
    for sid, rule_ids in present.items():
        if sid not in out:
            out[sid] = _orphan(svc, ns, sid, sorted(rule_ids))
    for sid, item in out.items():
        item["rules_present"] = len(present.get(sid, ()))
    return sorted(out.values(), key=lambda r: (r.get("engaged_at") or 0, r["id"]))


def get_record(svc: RuleService, ns: str, switch_id: str) -> dict | None:
    """Return the saved record of a switch (None: none, or unreadable)."""
    raw = svc.store._call(svc.store.client.hget, Keys(ns).killswitch, switch_id)
    return None if raw is None else _load_record(raw)


def undone_body(done: Undone) -> dict:
    """Return the JSON shape of an undo (REST answer, CLI output)."""
    return {"id": done.switch_id, "revision": done.revision, "digest": done.digest,
            "revision_before": done.revision_before, "digest_before": done.digest_before, "exact": done.exact,
            "differences": done.differences, "removed_rules": done.removed, "note": done.note}


def engaged_body(done: Engaged) -> dict:
    """Return the JSON shape of an engage (REST answer, CLI output)."""
    warnings = [_shadow_warning(s, done.record["scope"]) for s in done.shadowed]
    if not done.shadows_checked:
        warnings.append("the switch is engaged, but the rules that could decide before it were not checked: the "
                        "namespace could not be read")
    if not done.record_saved:
        warnings.append("the switch record could not be saved; its rules carry its id, undo still works")
    return {"kill_switch": done.record, "shadowed_by": done.shadowed, "warnings": warnings}


def audit_detail(done: Engaged | Undone) -> str:
    """Return the audit log detail of an engage or an undo."""
    if isinstance(done, Engaged):
        r = done.record
        return f"{r['id']} ({r['scope']}), {len(r['rule_ids'])} rule(s), revision {r['revision']}"
    return f"{done.switch_id}, {len(done.removed)} rule(s) removed, revision {done.revision}, exact {done.exact}"


# ---- helpers ----------------------------------------------------------------------------------------------
def _rename(path: str, old: str, new: str) -> str:
    return new + path[len(old):] if path == old or path.startswith(old + ".") else path


def _prefix(switch_id: str) -> str:
    return f"{KILL_PREFIX}{switch_id}."


def _kill_rule(sid: str, scope: str, route: dict | None, action: dict, actor: str, now: int) -> dict:
    """Return the switch's one kill rule, id `0--kill.<sid>.0`, validated: scope namespace (route * /, tried before
    routing for every request of the namespace) or, for scope route, a rule of that route."""
    rule = {"id": f"{_prefix(sid)}0", "kind": "degrade", "route": dict(route if route is not None else ANY_ROUTE),
            "action": action, "percent": 100, "updated_by": actor, "updated_at": now,
            "description": f"kill switch {sid} ({scope}) engaged by {actor} at {iso_utc(now)}"}
    if scope == "namespace":
        rule["scope"] = NAMESPACE_SCOPE
    return validate_rule(rule)


def _decides_first(rule_id: str, rule: dict, kill: dict) -> bool:
    """Return whether an enabled degrade rule is tried before the kill rule: rules of scope namespace are tried
    before routing in id order (before a route's kill rule whatever their id, before a namespace kill rule when
    their id sorts first); a route's rules only before a kill rule of that route, when their id sorts first."""
    if rule["kind"] != "degrade" or not rule.get("enabled", True):
        return False
    if "scope" in rule:
        return "scope" not in kill or rule_id < kill["id"]
    same_route = (rule["route"]["host"], rule["route"]["path"]) == (kill["route"]["host"], kill["route"]["path"])
    return "scope" not in kill and same_route and rule_id < kill["id"]


def _shadowed(rules: Mapping[str, dict], kill: dict) -> list[dict]:
    """Return the enabled degrade rules that decide before the kill rule while they apply, in id order: each
    {"id", "route" (host + path), "kill_rule", "scope" ("namespace" or "route": the rule's own scope)}."""
    return [{"id": rule_id, "route": rules[rule_id]["route"]["host"] + rules[rule_id]["route"]["path"],
             "kill_rule": kill["id"], "scope": rules[rule_id].get("scope", "route")}
            for rule_id in sorted(rules) if _decides_first(rule_id, rules[rule_id], kill)]


def _sorting_first(store, ns: str) -> dict[str, dict]:
    """Return the stored rules whose id can sort before a kill rule's (`0--kill.<sid>.0`), decoded: "0", "0-", and
    those starting with the reserved "0--" (found by HSCAN MATCH: Redis walks the hash, one batch a round trip,
    and returns only those)."""
    rules_key = Keys(ns).rules
    client = store.client
    found: dict[str, bytes] = {}
    for rule_id, value in zip(("0", "0-"), store._call(client.hmget, rules_key, ["0", "0-"])):
        if value is not None:
            found[rule_id] = value
    found.update(store._call(lambda: {as_text(k): v for k, v in
                                      client.hscan_iter(rules_key, match=RESERVED_PREFIX + "*",
                                                                        count=SHADOW_SCAN_COUNT)}))
    return {rule_id: decode_stored(rule_id, value, f"rule {rule_id}") for rule_id, value in found.items()}


def _shadow_warning(shadow: dict, switch_scope: str) -> str:
    """Return the warning naming a rule that decides before a kill rule of a switch of `switch_scope`."""
    if shadow.get("scope") != NAMESPACE_SCOPE:
        return (f"rule {shadow['id']} on {shadow['route']} is a degrade rule that sorts before the kill rule and "
                "decides first while it applies")
    if switch_scope == "namespace":
        return (f"rule {shadow['id']} (scope namespace) is a namespace-wide degrade rule that sorts before the kill "
                "rule and decides first while it applies")
    return f"rule {shadow['id']} (scope namespace) decides before every route's rules while it applies"


def _save_record(store, ns: str, record: dict) -> bool:
    try:
        store._call(store.client.hset, Keys(ns).killswitch, record["id"], json.dumps(record, sort_keys=True))
        return True
    except StoreError as exc:
        log.warning("kill switch record not saved", extra={"ns": ns, "switch": record["id"], "error": str(exc)})
        return False


def _delete_record(store, ns: str, switch_id: str) -> None:
    try:
        store._call(store.client.hdel, Keys(ns).killswitch, switch_id)
    except StoreError as exc:
        log.warning("kill switch record not removed", extra={"ns": ns, "switch": switch_id, "error": str(exc)})


def _load_record(raw: bytes | str) -> dict | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("id"), str) else None


def _orphan(svc: RuleService, ns: str, sid: str, rule_ids: list[str]) -> dict:
    """Return what the rules of a switch without a record tell about it."""
    try:
        _rev, rule = svc.get_rule(ns, rule_ids[0])
    except NotFoundError:
        rule = {}
    scope = "namespace" if rule.get("scope") == NAMESPACE_SCOPE else None  # the others do not tell it
    return {"id": sid, "namespace": ns, "scope": scope, "route": None, "action": rule.get("action"),
            "engaged_by": rule.get("updated_by", ""), "engaged_at": rule.get("updated_at", 0),
            "engaged_at_iso": iso_utc(rule.get("updated_at", 0)), "revision_before": None, "digest_before": None,
            "rule_ids": rule_ids, "revision": None, "record": False}


def _digest_at(svc: RuleService, ns: str, revision: int) -> str:
    """Return the namespace digest right after `revision` (from its log entry)."""
    entries = svc.store.log_range(ns, f"{revision}-0", f"{revision}-0", count=1)
    return entries[0].digest if entries and entries[0].digest else svc.store.load_raw(ns).digest or EMPTY


def _before_from_log(svc: RuleService, ns: str, switch_id: str) -> tuple[int | None, str | None]:
    """Return (revision, digest) before the switch's engage commit, found in the log (None, None: not found)."""
    prefix = _prefix(switch_id)
    before = None
    for _ in range(ENGAGE_SCAN // 500):
        entries = svc.store.history(ns, before, 500)
        for entry in entries:
            if entry.op == OP_ENGAGE and any(c[0].startswith(prefix) for c in entry.changes):
                digest = entry.digest
                if not digest:
                    return entry.revision - 1, None
                for rule_id, old, new in entry.changes:
                    digest = apply_change(digest, rule_id, new, old)
                return entry.revision - 1, digest
        if len(entries) < 500:
            break
        before = entries[-1].revision
    return None, None


def _differences(svc: RuleService, ns: str, switch_id: str, before_rev: int, revision: int) -> tuple[list | None, str]:
    """Return ([{id, change}] between before_rev and revision without this switch's rules, note)."""
    try:
        _current, states = states_at(svc.store, ns, (before_rev, revision))
    except HistoryUnavailableError as exc:
        return None, f"cannot list the differences: {exc}"
    prefix = _prefix(switch_id)
    return [{"id": d.id, "change": d.change} for d in rule_diffs(states[before_rev], states[revision])
            if not d.id.startswith(prefix)], ""
