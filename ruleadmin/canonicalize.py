"""`ruleadmin canonicalize`: re-save rules an older ruleadmin stored in a form this one would not write.

Every write of this ruleadmin stores a rule in its canonical form (docs/rules.md "Canonical forms"), and
nginx's schema check (lua/rulegate/schema.lua) accepts only that form. Rules stored before a form became
canonical (a CIDR as a netmask or a bare address, say) are canonicalized on read by the Python gateways and
the admin, but nginx refuses the whole rule set until they are saved again. This finds them and saves them
again, each as an ordinary commit (a new revision, in the history as op `canonicalize`), conditioned on the
rule still holding the bytes that were read: a rule edited meanwhile is left alone and reported.

A rule that does not validate at all cannot be rewritten: it is reported, and the command exits 1.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from rulegate.errors import CorruptDataError, RuleConflictError
from rulegate.schema import decode_rule, encode_rule
from rulegate.store import RuleStore, rule_hash

OP = "canonicalize"
BATCH = 100  # rules per commit: one revision per batch, each well under the commit's argument sizes


@dataclass(frozen=True)
class Finding:
    """One rule not stored canonically, and what was done about it."""

    namespace: str
    rule_id: str
    status: str  # "rewritten", "would rewrite" (--dry-run), "changed meanwhile" (left alone), "invalid"
    revision: int | None = None  # the revision that rewrote it
    error: str = ""  # why an invalid rule cannot be rewritten

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def non_canonical(raw: dict[str, bytes]) -> Iterator[tuple[str, bytes, bytes | CorruptDataError]]:
    """Yield (rule id, stored bytes, canonical bytes or the decode error) for every rule of raw whose stored
    bytes differ from what this ruleadmin would store for it, in rule id order."""
    for rule_id in sorted(raw):
        value = raw[rule_id]
        try:
            rule = decode_rule(value, where=f"rule {rule_id!r}")
        except CorruptDataError as exc:
            yield rule_id, value, exc
            continue
        if rule["id"] != rule_id:
            yield rule_id, value, CorruptDataError(f"rule {rule_id!r}: stored under another id")
            continue
        canonical = encode_rule(rule)
        if canonical != value:
            yield rule_id, value, canonical


def canonicalize(store: RuleStore, namespaces: Iterable[str], actor: str, *, dry_run: bool = False,
                 batch: int = BATCH) -> Iterator[Finding]:
    """Rewrite (or, dry_run, only report) the non-canonical rules of each namespace; yield one Finding per rule."""
    for ns in namespaces:
        read = store.load_raw(ns)
        pending: list[tuple[str, bytes, bytes]] = []
        for rule_id, old, new in non_canonical(read.raw):
            if isinstance(new, CorruptDataError):
                yield Finding(ns, rule_id, "invalid", error=str(new))
            elif dry_run:
                yield Finding(ns, rule_id, "would rewrite")
            else:
                pending.append((rule_id, old, new))
        for start in range(0, len(pending), batch):
            yield from _commit(store, ns, pending[start:start + batch], actor)


def _commit(store: RuleStore, ns: str, part: list[tuple[str, bytes, bytes]], actor: str) -> Iterator[Finding]:
    """Commit one batch, each rule conditioned on its bytes as read; a rule changed meanwhile is left out
    (the batch is retried without it) and reported."""
    while part:
        try:
            result = store.commit(ns, [(rule_id, new) for rule_id, _old, new in part], None, actor, op=OP,
                                  expected_hashes={rule_id: rule_hash(old) for rule_id, old, _new in part})
        except RuleConflictError as exc:
            if not any(rule_id == exc.rule_id for rule_id, _old, _new in part):
                raise
            yield Finding(ns, exc.rule_id, "changed meanwhile")
            part = [item for item in part if item[0] != exc.rule_id]
            continue
        for rule_id, _old, _new in part:
            yield Finding(ns, rule_id, "rewritten", revision=result.revision)
        return
