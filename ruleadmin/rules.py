"""The rule service: the only place the admin's views read and change rules (through RuleStore)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

import msgpack

from rulegate.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptDataError,
    NotFoundError,
    RuleConflictError,
    ValidationError,
)
from rulegate.evaluator import Decision, Request, decide
from rulegate.fleet import Heartbeat, read_fleet
from rulegate.history import (
    HistoryUnavailableError,
    LogTrimmedError,
    RevisionMissingError,
    rollback_plan,
    rule_diffs,
    states_at,
)
from rulegate.history import page as history_page
from rulegate.keyspace import NAMESPACES_KEY
from rulegate.namespace import decode_stored
from rulegate.outcomes import Outcomes, total
from rulegate.schema import decode_rule, encode_rule, encode_validated, is_valid_id, validate_rule
from rulegate.schema_fast import decode_rule as fast_decode_rule
from rulegate.store import LogEntry, RuleRead, RuleStore, WriteResult, rule_hash

from .display import iso_utc
from .guards import SUMMARY_WINDOW, read_guards, read_outcomes
from .known_rules import Held, KnownRules
from .listing import MAX_CACHED_RULES, Listing, ListingCache

__all__ = ["RuleService", "Change", "AlreadyExistsError", "ConflictError", "NotFoundError",
           "ValidationError", "HistoryUnavailableError", "LogTrimmedError", "RevisionMissingError",
           "NamespaceMissing", "NothingToDo"]


REBASE_ATTEMPTS = 5
IDLE_RULE_SECONDS = 3600.0  # RULEADMIN_IDLE_RULE_SECONDS: a rule no gateway matched for this long is flagged idle
STAMP_FIELDS = ("updated_by", "updated_at")  # ignored when deciding whether a save changes anything
ROLLBACK_TO_ZERO = ("must be 1 or more: revision 0 is the empty namespace; an admin empties a namespace "
                    "explicitly (POST /api/v1/namespaces/{ns}/empty)")


class NamespaceMissing(LookupError):
    """The namespace does not exist (an admin creates namespaces)."""


class NothingToDo(ValueError):
    """The requested change would not change anything (e.g. rollback to the current rule set)."""


@dataclass(frozen=True)
class Change:
    """One rule change of a history entry, decoded for display (None = absent)."""

    id: str
    before: dict | None
    after: dict | None


READ_RULE_ATTEMPTS = 3  # one-rule reads whose revision moved before the namespace is read whole


class RuleService:
    """Validated, conflict-safe reads and writes of rules, history, rollback and simulation."""

    def __init__(self, store: RuleStore, listing_rules: int = MAX_CACHED_RULES):
        self.store = store
        self.known = KnownRules()  # rule bytes this instance last wrote or read: pinned writes skip the no-op read
        self.listings = ListingCache(store, listing_rules)  # decoded rules of the namespaces read lately

    # ---- namespaces ------------------------------------------------------------------------
    def namespaces(self) -> list[dict]:
        """Return [{name, revision}] for every namespace."""
        return [{"name": ns, "revision": self.store.revision(ns)} for ns in self.store.namespaces()]

    def require_namespace(self, ns: str) -> None:
        """Return None when ns exists; raise NamespaceMissing otherwise."""
        # namespaces are never removed (no command deletes one): a name seen once exists for good, and every
        # write skips the round trip to the global set
        if self.store.is_registered(ns):
            return
        if not is_valid_id(ns) or not self.store._call(self.store.client.sismember, NAMESPACES_KEY, ns):
            raise NamespaceMissing(ns)
        self.store.note_registered(ns)

    def create_namespace(self, ns: str) -> bool:
        """Register a namespace name; return False when it already existed."""
        if not is_valid_id(ns):
            raise ValidationError({"name": "must match [a-z0-9][a-z0-9_.-]{0,63}"})
        self.store.init_namespace(ns)
        added = bool(self.store._call(self.store.client.sadd, NAMESPACES_KEY, ns))
        self.store.note_registered(ns)
        return added

    # ---- rules -----------------------------------------------------------------------------
    def list_rules(self, ns: str) -> tuple[int, list[dict]]:
        """Return (revision, rules sorted by id): a new list of shared rule dicts (read them, do not change them)."""
        listing = self.listing(ns)
        return listing.revision, list(listing.rules)

    def listing(self, ns: str, version: tuple[int, str, str] | None = None) -> Listing:
        """Return ns's current Listing (ruleadmin/listing.py: re-used or brought up to date from the log, not
        decoded whole on every call); `version`: `self.listings.version(ns)`'s result, read just before."""
        self.require_namespace(ns)
        return self.listings.get(ns, version)

    def usage(self, ns: str) -> dict:
        """Return what ns holds against its limits: {"rules", "bytes", "max_rules", "max_bytes"}."""
        used = self.store.usage(ns)
        return {"rules": used.rules, "bytes": used.bytes, "max_rules": self.store.max_rules,
                "max_bytes": self.store.max_bytes}

    def get_rule(self, ns: str, rule_id: str) -> tuple[int, dict]:
        """Return (revision, rule); raise NotFoundError."""
        rev, rule, _raw = self.get_rule_raw(ns, rule_id)
        return rev, rule

    def get_rule_raw(self, ns: str, rule_id: str) -> tuple[int, dict, bytes]:
        """Return (revision, rule, its stored bytes: what its ETag hashes); raise NotFoundError.

        Reads the one rule with the namespace revision (one round trip, retried while writes move the revision),
        not the whole namespace."""
        self.require_namespace(ns)
        for _ in range(READ_RULE_ATTEMPTS):
            read = self.store.read_rule(ns, rule_id)
            if read is not None:
                break
        else:
            state = self.store.load_raw(ns)  # a namespace written faster than one round trip: its consistent read
            read = RuleRead(state.revision, state.generation, state.raw.get(rule_id))
        if read.raw is None:
            raise NotFoundError(f"rule {rule_id!r} does not exist")
        rule = decode_stored(rule_id, read.raw, f"namespace {ns!r} rule {rule_id!r}")
        self.known.remember(ns, rule_id, read.revision, read.raw)
        return read.revision, rule, read.raw

    def prepare(self, data: Any, actor: str) -> dict:
        """Return the validated rule with updated_by/updated_at stamped; raise ValidationError."""
        if isinstance(data, dict):
            data = {**data, "updated_by": actor, "updated_at": int(time.time())}
        return validate_rule(data)

    def put_rule(self, ns: str, data: Any, expected_rev: int | None, actor: str,
                 check: Callable[[dict], None] | None = None,
                 expected_hash: str | None = None) -> tuple[dict, WriteResult]:
        """Create (expected_rev and expected_hash None: create-only) or replace a rule at expected_rev, or while
        it still has expected_hash (rule_hash of its bytes; "*": it exists); `check(rule)` may refuse the
        validated rule by raising before anything is written."""
        self.require_namespace(ns)
        rule = self.prepare(data, actor)
        if check is not None:
            check(rule)
        raw = encode_validated(rule)  # the stored bytes, encoded once
        result = self._pinned_write(ns, rule, raw, expected_rev, expected_hash, actor)
        if result is not None:
            return rule, result
        if expected_rev is not None:
            same = self.unchanged(ns, rule)
            if same is not None:
                if same[1].revision != expected_rev:
                    raise ConflictError(expected_rev, same[1].revision)
                return same
        if expected_hash is not None:
            same = self.unchanged(ns, rule)
            if same is not None and expected_hash in ("*", rule_hash(encode_rule(same[0]))):
                return same
        result = self.store.put_rule(ns, rule, expected_rev, actor, expected_hash=expected_hash,
                                     create_only=expected_rev is None and expected_hash is None, encoded=raw)
        self.known.remember(ns, rule["id"], result.revision, raw, canonical=True)
        return rule, result

    def _pinned_write(self, ns: str, rule: dict, raw: bytes, expected_rev: int | None, expected_hash: str | None,
                      actor: str) -> WriteResult | None:
        """Return the result of committing rule without the no-op read when the write's condition pins held bytes
        (KnownRules) that differ from rule (so the save changes something); None when nothing is pinned, the held
        rule equals rule, or (revision form) the held bytes turn out not to be the stored ones: then the read
        decides. The revision form adds the held bytes' hash as a condition, checked by the commit script."""
        digest = expected_hash if expected_hash != "*" else None
        held = self.known.pinned(ns, rule["id"], expected_rev if digest is None else None, digest)
        if held is None or _same_rule(held, rule):
            return None
        try:
            result = self.store.put_rule(ns, rule, expected_rev, actor, expected_hash=held.digest, encoded=raw)
        except RuleConflictError:
            if digest is not None:
                raise
            self.known.forget(ns, rule["id"])
            return None
        self.known.remember(ns, rule["id"], result.revision, raw, canonical=True)
        return result

    def unchanged(self, ns: str, rule: dict) -> tuple[dict, WriteResult] | None:
        """Return (stored rule, an `unchanged` result at the current revision) when the stored rule equals the
        validated `rule` apart from updated_by/updated_at (a save would change nothing); None otherwise."""
        read = self.store.read_rule(ns, rule["id"])
        if read is None:
            return None
        self.known.remember(ns, rule["id"], read.revision, read.raw)
        if read.raw is None:
            return None
        try:
            stored = decode_rule(read.raw)
        except CorruptDataError:
            return None
        if _canonical(stored) != _canonical(rule):
            return None
        return stored, WriteResult(read.revision, read.generation, 0, 0, unchanged=True)

    def _unchanged_at(self, ns: str, rev: int) -> WriteResult:
        return WriteResult(rev, self.store._generation(ns), 0, 0, unchanged=True)

    def delete_rule(self, ns: str, rule_id: str, expected_rev: int | None, actor: str,
                    expected_hash: str | None = None) -> WriteResult:
        """Delete a rule at expected_rev, or while it still has expected_hash; raise NotFoundError, ConflictError
        or RuleConflictError."""
        self.require_namespace(ns)
        self.known.forget(ns, rule_id)
        return self.store.delete_rule(ns, rule_id, expected_rev, actor, expected_hash=expected_hash)

    def rebased(self, ns: str, rule_id: str, seen_rev: int, write: Callable[[int], WriteResult]) -> WriteResult:
        """Run write(expected_rev); on a conflict caused only by other rules' changes, retry at the newer
        revision (the web UI's per-rule optimistic locking). Raise ConflictError when rule_id changed."""
        expected = seen_rev
        for _ in range(REBASE_ATTEMPTS):
            try:
                return write(expected)
            except ConflictError as exc:
                entries = self.store.changes_since(ns, expected)
                if not entries or any(c[0] == rule_id for e in entries for c in e.changes):
                    raise ConflictError(seen_rev, exc.current) from None
                expected = entries[-1].revision
        raise ConflictError(seen_rev, self.store.revision(ns))

    def changes_to(self, ns: str, rule_id: str, since_rev: int) -> list[dict]:
        """Return the history entries after since_rev that touched rule_id (newest first)."""
        entries = self.store.changes_since(ns, since_rev) or []
        return [self.describe(e, only=rule_id) for e in reversed(entries) if any(c[0] == rule_id for c in e.changes)]

    # ---- history & rollback ----------------------------------------------------------------
    def history(self, ns: str, since: int | None, before: int | None, limit: int) -> list[dict]:
        """Return history with decoded changes: with `since`, the `limit` oldest entries after it
        (oldest first, to follow the feed); otherwise the newest entries older than `before`."""
        self.require_namespace(ns)
        if since is not None:
            entries = self.store.log_range(ns, f"{since + 1}-0", "+", count=limit)
            if before is not None:
                entries = [e for e in entries if e.revision < before]
        else:
            entries = self.store.history(ns, before, limit)
        return [self.describe(e) for e in entries]

    def describe(self, entry: LogEntry, *, only: str | None = None, limit: int | None = None) -> dict:
        """Return a log entry as a JSON-shaped dict: its changes decoded — only rule `only`'s, or the first `limit`
        (an import or an emptying changes thousands of rules in one revision); `changes_total` counts them all."""
        changes = entry.changes
        if only is not None:
            changes = [c for c in changes if c[0] == only]
        elif limit is not None:
            changes = changes[:limit]
        return {"revision": entry.revision, "op": entry.op, "actor": entry.actor, "ts": entry.ts,
                "ts_iso": iso_utc(entry.ts), "changes_total": len(entry.changes),
                "changes": [{"id": rid, "before": _decode(b), "after": _decode(a)} for rid, b, a in changes]}

    def history_of_rule(self, ns: str, rule_id: str, scan: int, shown: int) -> list[dict]:
        """Return the newest log entries (at most `shown`, searching the newest `scan`) that changed rule_id, with
        only that rule's change decoded."""
        self.require_namespace(ns)
        found: list[LogEntry] = []
        before = None
        for _ in range(max(1, scan // 500)):
            entries = self.store.history(ns, before, 500)
            found += [e for e in entries if any(c[0] == rule_id for c in e.changes)]
            if len(entries) < 500 or len(found) >= shown:
                break
            before = entries[-1].revision
        return [self.describe(e, only=rule_id) for e in found[:shown]]

    def history_page(self, ns: str, *, before: int | None = None, after: int | None = None, limit: int = 25,
                     rule_id: str | None = None, changes: int | None = None) -> dict:
        """Return {"entries" (newest first, decoded), "older", "newer"}: a page of the log, optionally only the
        entries that changed rule_id (with only its change decoded when `changes` is given); at most `changes`
        changes decoded per entry (None: all); `older` is the `before` of the next older page, `newer` the
        `after` of the next newer page (None: none)."""
        self.require_namespace(ns)
        found = history_page(self.store, ns, before=before, after=after, limit=limit, rule_id=rule_id)
        only = rule_id if changes is not None else None
        return {"entries": [self.describe(e, only=only, limit=changes) for e in found.entries],
                "older": found.older, "newer": found.newer}

    def rollback(self, ns: str, to_rev: int, expected_rev: int | None, actor: str) -> tuple[WriteResult, int]:
        """Commit a new revision restoring the rule set of to_rev (1 or more); return (result, changed rules).
        When the rule set already equals it nothing is committed (result.unchanged). Raise ValidationError for
        revision 0, RevisionMissingError / LogTrimmedError when it cannot be reconstructed, ConflictError."""
        self.require_namespace(ns)
        if to_rev < 1:
            raise ValidationError({"to_rev": ROLLBACK_TO_ZERO})
        current, changes = rollback_plan(self.store, ns, to_rev)
        if expected_rev is not None and expected_rev != current:
            raise ConflictError(expected_rev, current)
        if not changes:
            return self._unchanged_at(ns, current), 0
        return self.store.commit(ns, changes, current, actor, op="rollback"), len(changes)

    def diff(self, ns: str, from_rev: int | None, to_rev: int | None = None, limit: int | None = None) -> dict:
        """Return the rule-by-rule difference from revision from_rev to to_rev (None: the current one):
        {"from", "to", "revision" (current), "rules": [{"id", "change": added|removed|changed, "before", "after"}],
        "total"}: the first `limit` differences by id decoded (None: all), `total` counting them all;
        raise RevisionMissingError / LogTrimmedError."""
        self.require_namespace(ns)
        current, states = states_at(self.store, ns, (from_rev, to_rev))
        frm = current if from_rev is None else from_rev
        to = current if to_rev is None else to_rev
        diffs = rule_diffs(states[from_rev], states[to_rev])
        shown = diffs if limit is None else diffs[:limit]
        return {"from": frm, "to": to, "revision": current, "total": len(diffs),
                "rules": [{"id": d.id, "change": d.change, "before": _decode(d.before), "after": _decode(d.after)}
                          for d in shown]}

    def empty_namespace(self, ns: str, expected_rev: int, actor: str) -> tuple[WriteResult, int]:
        """Delete every rule of ns in one revision (op "empty") at expected_rev; return (result, rules removed).
        An already empty namespace commits nothing (result.unchanged). Raise ConflictError when stale."""
        self.require_namespace(ns)
        read = self.store.load_raw(ns)
        if expected_rev != read.revision:
            raise ConflictError(expected_rev, read.revision)
        if not read.raw:
            return self._unchanged_at(ns, read.revision), 0
        changes = [(rule_id, b"") for rule_id in sorted(read.raw)]
        return self.store.commit(ns, changes, read.revision, actor, op="empty"), len(changes)

    # ---- fleet -----------------------------------------------------------------------------
    def fleet(self, ns: str, silent_after: float, now: float | None = None,
              idle_after: float = IDLE_RULE_SECONDS, rule_ids: Iterable[str] | None = None) -> dict:
        """Return the namespace revision, digest and every gateway's heartbeat with a status: current
        (same content: digest-equal, or revision-equal for gateways that report no digest), lagging, ahead,
        diverged (same revision, other content), refused (a revision it cannot apply), other-generation,
        silent (no heartbeat for silent_after s), undecodable. `alarms` counts the ones an operator must see.
        `exposure` (fleet_exposure) sums the live gateways' decisions per rule and upstream — for `rule_ids` only
        when given (a page of rules), else for every rule."""
        self.require_namespace(ns)
        rules: Mapping[str, dict]
        try:
            listing = self.listing(ns)  # kept per instance, not decoded whole per call (ruleadmin/listing.py)
            rev, gen, digest, rules = listing.revision, listing.generation, listing.digest, listing.by_id
        except CorruptDataError:  # a rule that does not decode: the fleet view still shows, with what decodes
            read = self.store.load_raw(ns)
            rev, gen, digest = read.revision, read.generation, read.digest
            rules = {rule_id: _decode(raw) or {} for rule_id, raw in read.raw.items()}
        beats = self.store._call(read_fleet, self.store.client, ns)
        now = time.time() if now is None else now
        gateways, live = [], []
        for gateway_id, beat in beats.items():
            if beat is None:
                gateways.append({"id": gateway_id, "status": "undecodable"})
                continue
            status = _fleet_status(beat, rev, gen, digest, now - silent_after)
            gateways.append({"id": gateway_id, **asdict(beat), "exposure": _gateway_exposure(beat),
                             "outcomes": _gateway_outcomes(beat),
                             "lag": max(rev - beat.revision, 0), "status": status})
            if status != "silent":
                live.append(beat)
        counts = {s: sum(g["status"] == s for g in gateways) for s in FLEET_STATUSES}
        return {"namespace": ns, "revision": rev, "generation": gen, "digest": digest, "gateways": gateways,
                "counts": counts, "alarms": sum(counts[s] for s in FLEET_ALARMS),
                "exposure": fleet_exposure(rules if rule_ids is None else {i: rules[i] for i in rule_ids if i in rules},
                                           live, now, idle_after),
                "outcomes": fleet_outcomes(self.store._call(read_outcomes, self.store.client, ns), now),
                "guards": self.store._call(read_guards, self.store.client, ns, now)}

    # ---- simulation ------------------------------------------------------------------------
    def simulate(self, ns: str, request: dict) -> tuple[int, Decision]:
        """Return (revision, the decision the gateways would make for request)."""
        listing = self.listing(ns)
        return listing.revision, decide(listing.ruleset(), Request.from_dict(request))


FLEET_STATUSES = ("current", "lagging", "ahead", "diverged", "refused", "other-generation", "silent",
                  "undecodable")
FLEET_ALARMS = ("diverged", "refused", "other-generation", "undecodable")


def _gateway_exposure(beat: Heartbeat) -> dict | None:
    """Return a gateway row's exposure summary: its decisions per minute, window and counting start."""
    e = beat.exposure
    if e is None:
        return None
    return {"per_minute": round(e.per_minute(sum(n for _r, _t, n in e.counts) + e.other), 2), "window": e.window,
            "since": e.since}


def _gateway_outcomes(beat: Heartbeat) -> dict | None:
    """Return a gateway row's outcome totals since its counters started (JSON-friendly; None when not reported)."""
    o = beat.outcomes
    if o is None:
        return None
    sums = total(o.counts.values())
    return {"since": o.since, "requests": sums.requests, "errors": sums.errors, "keys": len(o.counts)}


def fleet_exposure(rules: Mapping[str, dict], beats: list[Heartbeat], now: float, idle_after: float) -> dict:
    """Return decisions per minute per rule (and per upstream within it), per upstream, for pass and `other`,
    summed over the heartbeats' windows; each rule's last match; and `idle` for a rule no gateway matched in
    idle_after s, when the rule is older (updated_at) and some reporting gateway has counted that long."""
    reporting = [b.exposure for b in beats if b.exposure is not None]
    by_rule: dict[str, dict[str, float]] = {}
    targets: dict[str, float] = {}
    last: dict[str, float] = {}
    other = 0.0
    for e in reporting:
        other += e.per_minute(e.other)
        for rule, target, n in e.counts:
            rate = e.per_minute(n)
            by_rule.setdefault(rule, {})[target] = by_rule.get(rule, {}).get(target, 0.0) + rate
            targets[target] = targets.get(target, 0.0) + rate
        for rule, at in e.last_match.items():
            last[rule] = max(at, last.get(rule, 0.0))
    covered = any(now - e.since >= idle_after for e in reporting)
    out_rules = {}
    # a rule no gateway counted or matched: one of two shared entries (read only), not a dict of its own per rule
    silent = {flag: {"per_minute": 0.0, "targets": {}, "last_match_at": None, "idle": flag} for flag in (False, True)}
    for rule_id in sorted(rules):
        per_target = by_rule.get(rule_id)
        matched = last.get(rule_id)
        old = now - float(rules[rule_id].get("updated_at") or 0) >= idle_after
        if per_target is None and matched is None:
            out_rules[rule_id] = silent[covered and old]
            continue
        per_target = per_target or {}
        out_rules[rule_id] = {
            "per_minute": round(sum(per_target.values()), 2),
            "targets": {t: round(r, 2) for t, r in sorted(per_target.items())}, "last_match_at": matched,
            "idle": covered and old and (matched is None or now - matched >= idle_after)}
    return {"gateways": len(reporting), "idle_after": idle_after, "rules": out_rules,
            "targets": {t: round(r, 2) for t, r in sorted(targets.items())},
            "pass_per_minute": round(sum(by_rule.get("", {}).values()), 2), "other_per_minute": round(other, 2),
            "per_minute": round(sum(targets.values()) + other, 2),
            "idle": [rule_id for rule_id, r in out_rules.items() if r["idle"]]}


def fleet_outcomes(summary: Outcomes | None, now: float) -> dict:
    """Return the fleet's outcomes per rule and upstream over the guard watcher's last SUMMARY_WINDOW seconds
    (requests/min, error ratio, p95 ms, status classes); `available` is False when no watcher wrote them lately."""
    if summary is None:
        return {"available": False, "window": SUMMARY_WINDOW, "rules": {}}
    rules: dict[str, dict[str, dict]] = {}
    for (rule, upstream), c in sorted(summary.counts.items()):
        rules.setdefault(rule, {})[upstream] = {
            "per_minute": round(c.requests * 60.0 / SUMMARY_WINDOW, 2), "requests": c.requests,
            "errors": c.errors, "error_ratio": c.error_ratio(), "p95_ms": c.quantile_ms(0.95),
            "classes": {f"{k}xx" if k else "failed": n for k, n in enumerate(c.classes) if n}}
    return {"available": True, "window": SUMMARY_WINDOW, "at": summary.since, "age": max(now - summary.since, 0.0),
            "rules": rules}


def _fleet_status(beat, rev: int, gen: str, digest: str, silent_before: float) -> str:
    if beat.heartbeat_at < silent_before:
        return "silent"
    if gen and beat.generation and beat.generation != gen:
        return "other-generation"
    if beat.refused_revision:
        return "refused"
    if digest and beat.digest:
        if beat.digest == digest:
            return "current"
        if beat.revision == rev:
            return "diverged"
    if beat.revision < rev:
        return "lagging"
    return "ahead" if beat.revision > rev else "current"


def _canonical(rule: dict) -> dict:
    return {k: v for k, v in rule.items() if k not in STAMP_FIELDS}


def _same_rule(held: Held, rule: dict) -> bool:
    """Return True when the held rule equals rule apart from updated_by/updated_at (as unchanged()). Bytes this
    instance encoded from a validated rule decode to that rule as they are; others are validated (decode_rule)."""
    try:
        stored = msgpack.unpackb(held.raw, raw=False) if held.canonical else decode_rule(held.raw)
    except (CorruptDataError, ValueError, msgpack.UnpackException):
        return False
    return _canonical(stored) == _canonical(rule)


def _decode(raw: bytes | None) -> dict | None:
    if raw is None:
        return None
    try:
        return fast_decode_rule(raw)  # decode_rule's result and errors; canonical bytes skip the full validator
    except CorruptDataError:
        try:
            return {"_undecodable": True, "raw": repr(msgpack.unpackb(raw, raw=False))[:500]}
        except (ValueError, msgpack.UnpackException, TypeError):
            return {"_undecodable": True}
