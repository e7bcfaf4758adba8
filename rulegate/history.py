"""Reconstruct a namespace's rule set as of an older revision from the current rules and the log."""
from __future__ import annotations

from .errors import RulegateError
from .store import LogEntry, RuleStore

PAGE = 1000


class HistoryUnavailableError(RulegateError):
    """The log no longer reaches the requested revision (it was trimmed), or the revision is invalid."""


def rules_at(store: RuleStore, ns: str, target_rev: int) -> tuple[int, dict[str, bytes]]:
    """Return (current revision, {id: msgpack bytes} as of target_rev); raise HistoryUnavailableError."""
    current, _now, target = _reconstruct(store, ns, target_rev)
    return current, target


def rollback_plan(store: RuleStore, ns: str, target_rev: int) -> tuple[int, list[tuple[str, bytes]]]:
    """Return (current revision, commit changes restoring target_rev); raise HistoryUnavailableError."""
    current, now, target = _reconstruct(store, ns, target_rev)
    return current, diff(now, target)


def _reconstruct(store: RuleStore, ns: str, target_rev: int) -> tuple[int, dict[str, bytes], dict[str, bytes]]:
    read = store.load_raw(ns)
    current, raw = read.revision, read.raw
    if target_rev < 0 or target_rev > current:
        raise HistoryUnavailableError(f"revision {target_rev} does not exist; the namespace is at {current}")
    state = dict(raw)
    if target_rev == current:
        return current, raw, state
    entries = _entries_between(store, ns, target_rev + 1, current)
    for entry in reversed(entries):
        for rule_id, before, _after in entry.changes:
            if before is None:
                state.pop(rule_id, None)
            else:
                state[rule_id] = before
    return current, raw, state


def _entries_between(store: RuleStore, ns: str, first: int, last: int) -> list[LogEntry]:
    """Return the log entries first..last, contiguous, or raise HistoryUnavailableError."""
    out: list[LogEntry] = []
    start = first
    while start <= last:
        page = store.log_range(ns, f"{start}-0", f"{last}-0", count=PAGE)
        if not page:
            break
        out.extend(page)
        start = page[-1].revision + 1
    expected = list(range(first, last + 1))
    if [e.revision for e in out] != expected:
        oldest = out[0].revision if out else last + 1
        raise HistoryUnavailableError(
            f"the change log of namespace {ns!r} no longer reaches revision {first - 1} "
            f"(oldest kept change is revision {oldest}); cannot reconstruct it")
    return out


def diff(current: dict[str, bytes], target: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """Return the commit changes turning `current` into `target` (b"" deletes), sorted by id."""
    changes = [(rid, value) for rid, value in target.items() if current.get(rid) != value]
    changes += [(rid, b"") for rid in current if rid not in target]
    return sorted(changes)
