"""A namespace's past from its current rules and the revision log: rule sets as of older revisions,
rollback plans, rule-by-rule diffs between two revisions, and history pages (optionally for one rule)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .errors import RulegateError
from .store import LogEntry, RuleStore

PAGE = 1000
SCAN_CHUNK = 200
SCAN_MAX = 5000  # log entries one filtered history page reads at most (the page then ends with a cursor)


class HistoryUnavailableError(RulegateError):
    """The requested revision cannot be reconstructed: it does not exist or the log no longer reaches it."""

    def __init__(self, message: str, revision: int | None = None):
        super().__init__(message)
        self.revision = revision  # the requested revision that cannot be reconstructed


class RevisionMissingError(HistoryUnavailableError):
    """The revision does not exist (beyond the namespace's current revision)."""


class LogTrimmedError(HistoryUnavailableError):
    """The capped log no longer reaches the revision."""


@dataclass(frozen=True)
class RuleDiff:
    """One rule's difference between two revisions: `change` is added, removed or changed (raw msgpack)."""

    id: str
    change: str
    before: bytes | None
    after: bytes | None


@dataclass(frozen=True)
class HistoryPage:
    """Log entries newest first, with the cursors of the neighbouring pages (None: there is none).

    `older` is the revision to pass as `before` for the next older page; `newer` the revision to pass as
    `after` for the next newer page (the page then holds the oldest entries after it)."""

    entries: list[LogEntry]
    older: int | None
    newer: int | None


def rules_at(store: RuleStore, ns: str, target_rev: int) -> tuple[int, dict[str, bytes]]:
    """Return (current revision, {id: msgpack bytes} as of target_rev); raise HistoryUnavailableError."""
    current, states = states_at(store, ns, (target_rev,))
    return current, states[target_rev]


def rollback_plan(store: RuleStore, ns: str, target_rev: int) -> tuple[int, list[tuple[str, bytes]]]:
    """Return (current revision, commit changes restoring target_rev); raise HistoryUnavailableError."""
    current, states = states_at(store, ns, (target_rev, None))
    return current, diff(states[None], states[target_rev])


def states_at(store: RuleStore, ns: str, revs: Iterable[int | None]) -> tuple[int, dict]:
    """Return (current revision, {rev: {id: msgpack bytes}}) for every rev (None: the current one), read in one
    consistent pass back from the current rules; raise RevisionMissingError or LogTrimmedError."""
    revs = tuple(revs)
    read = store.load_raw(ns)
    current, state = read.revision, dict(read.raw)
    wanted = {current if r is None else r for r in revs}
    for rev in wanted:
        if rev < 0 or rev > current:
            raise RevisionMissingError(f"revision {rev} does not exist: the namespace is at revision {current}", rev)
    out: dict = {}
    if current in wanted:
        out[current] = dict(state)
    lowest = min(wanted)
    if lowest < current:
        entries = _entries_between(store, ns, lowest + 1, current)
        for entry in reversed(entries):
            for rule_id, before, _after in entry.changes:
                if before is None:
                    state.pop(rule_id, None)
                else:
                    state[rule_id] = before
            if entry.revision - 1 in wanted:
                out[entry.revision - 1] = dict(state)
    return current, {r: out[current if r is None else r] for r in revs}


def rule_diffs(before: dict[str, bytes], after: dict[str, bytes]) -> list[RuleDiff]:
    """Return the rules added, removed or changed from `before` to `after`, sorted by id."""
    out = []
    for rule_id in sorted(set(before) | set(after)):
        old, new = before.get(rule_id), after.get(rule_id)
        if old == new:
            continue
        change = "added" if old is None else "removed" if new is None else "changed"
        out.append(RuleDiff(rule_id, change, old, new))
    return out


def oldest_restorable(store: RuleStore, ns: str) -> int:
    """Return the oldest revision the log can still reconstruct (the revision before the oldest kept entry;
    the current revision when the log is empty)."""
    first = store.log_range(ns, "-", "+", count=1)
    return first[0].revision - 1 if first else store.revision(ns)


def page(store: RuleStore, ns: str, *, before: int | None = None, after: int | None = None, limit: int = 25,
         rule_id: str | None = None, scan_max: int = SCAN_MAX) -> HistoryPage:
    """Return a page of the log, newest first: the `limit` newest entries older than `before` (default: all),
    or with `after` the `limit` oldest entries newer than it; with `rule_id` only the entries that changed that
    rule (reading at most scan_max entries: a page may then hold fewer, its cursor continues the scan)."""
    current = store.revision(ns)
    if after is not None:
        found, last = _scan(store, ns, f"{after + 1}-0", "+", False, limit, rule_id, scan_max)
        top = last if last is not None else current
        bottom = after + 1
        entries = list(reversed(found))
    else:
        if before is not None and before <= 1:
            return HistoryPage([], None, 0 if current > 0 else None)
        end = f"{before - 1}-0" if before is not None else "+"
        found, last = _scan(store, ns, "-", end, True, limit, rule_id, scan_max)
        top = min(before - 1, current) if before is not None else current
        bottom = last if last is not None else 1
        entries = found
    oldest_kept = oldest_restorable(store, ns) + 1
    older = bottom if bottom > max(oldest_kept, 1) else None
    newer = top if top < current else None
    return HistoryPage(entries, older, newer)


def _scan(store: RuleStore, ns: str, start: str, end: str, reverse: bool, limit: int, rule_id: str | None,
          scan_max: int) -> tuple[list[LogEntry], int | None]:
    """Return (matching entries in scan order, the last revision read) reading start..end in chunks."""
    found: list[LogEntry] = []
    last: int | None = None
    read = 0
    while len(found) < limit and read < scan_max:
        chunk = limit if rule_id is None else min(SCAN_CHUNK, scan_max - read)
        got = store.log_range(ns, start, end, count=chunk, reverse=reverse)
        for entry in got:
            read += 1
            last = entry.revision
            if rule_id is None or any(c[0] == rule_id for c in entry.changes):
                found.append(entry)
                if len(found) == limit:
                    break
        if len(got) < chunk:
            break
        if reverse:
            if last is None or last <= 1:
                break
            end = f"{last - 1}-0"
        else:
            start = f"{last + 1}-0"
    return found, last


def _entries_between(store: RuleStore, ns: str, first: int, last: int) -> list[LogEntry]:
    """Return the log entries first..last, contiguous, or raise LogTrimmedError."""
    out: list[LogEntry] = []
    start = first
    while start <= last:
        chunk = store.log_range(ns, f"{start}-0", f"{last}-0", count=PAGE)
        if not chunk:
            break
        out.extend(chunk)
        start = chunk[-1].revision + 1
    expected = list(range(first, last + 1))
    if [e.revision for e in out] != expected:
        oldest = out[0].revision if out else last + 1
        raise LogTrimmedError(
            f"the change log of namespace {ns!r} no longer reaches revision {first - 1} "
            f"(oldest kept change is revision {oldest}); cannot reconstruct it", first - 1)
    return out


def diff(current: dict[str, bytes], target: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """Return the commit changes turning `current` into `target` (b"" deletes), sorted by id."""
    changes = [(rid, value) for rid, value in target.items() if current.get(rid) != value]
    changes += [(rid, b"") for rid in current if rid not in target]
    return sorted(changes)
