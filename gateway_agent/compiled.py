"""Compiled rules by their stored bytes: what a full reload re-uses instead of decoding them again.

A full reload (new generation, reconnect, log gap, digest mismatch, snapshot then Redis) usually
reads mostly the bytes the agent already applied. Equal bytes decode and validate equally, so the
compiled form of bytes seen in the previous load is exactly what decode + validate + compile would
give again; only new bytes are decoded, validated and compiled. Bytes that fail are never cached,
so a corrupt rule is refused on every load.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

from rulegate.digest import rule_hash
from rulegate.errors import CorruptDataError
from rulegate.evaluator import CompiledRule, compile_rule
from rulegate.ramps import has_guard
from rulegate.schema import decode_rule
from rulegate.schema_fast import decode_canonical


class Loaded(NamedTuple):
    """The compiled rules of one load, the ids of the guarded ones and the content digest."""

    rules: list[CompiledRule]
    guarded: frozenset[str]
    digest: str


class _Entry(NamedTuple):
    rule: CompiledRule
    guarded: bool
    hash: int  # rulegate.digest.rule_hash(rule id, bytes)


class CompileCache:
    """The compiled form of each rule of the last load, keyed by its stored bytes (not thread-safe:
    the sync thread owns it)."""

    def __init__(self) -> None:
        self._by_bytes: dict[bytes, _Entry] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._by_bytes)

    def load(self, raw: Mapping[str, bytes], revision: int, *, where: str,
             pause: Callable[[], None] | None = None) -> Loaded:
        """Return raw's rules compiled (new ones stamped `revision`), their guarded ids and digest.

        Raises CorruptDataError naming the first rule (in raw's order) that is undecodable, invalid or
        stored under another id (`where` prefixes the message: "namespace 'x'", "snapshot"). On success
        the cache holds exactly raw's rules; on failure it is unchanged.
        """
        old, new = self._by_bytes, {}
        rules, guarded, acc, hits = [], [], 0, 0
        for rule_id, value in raw.items():
            if pause is not None:
                pause()
            entry = old.get(value) if type(value) is bytes else None
            if entry is None or entry.rule.rule_id != rule_id:
                entry = _compile(rule_id, value, revision, where)
            else:
                hits += 1
            if type(value) is bytes:
                new[value] = entry
            rules.append(entry.rule)
            if entry.guarded:
                guarded.append(rule_id)
            acc ^= entry.hash
        self._by_bytes = new
        while old:  # the previous load's entries, released a slice at a time (~5 ms in one block at 10,000)
            old.popitem()
            if pause is not None:
                pause()
        self.hits += hits
        self.misses += len(rules) - hits
        return Loaded(rules, frozenset(guarded), f"{acc:040x}")


def _compile(rule_id: str, value: bytes, revision: int, where: str) -> _Entry:
    rule = decode_canonical(value)  # what ruleadmin stores: no full validation (rulegate/schema_fast.py)
    if rule is None:  # anything else: the full validator, its errors
        rule = decode_rule(value, where=f"{where} rule {rule_id!r}")
    if rule["id"] != rule_id:
        raise CorruptDataError(f"{where} rule {rule_id!r}: stored under another id")
    rule["id"] = rule_id  # the same string as raw's key: the compiled set shares it with raw
    return _Entry(compile_rule(rule, revision), has_guard(rule), rule_hash(rule_id, value))
