"""Compiled rules of the bytes held: what a full reload re-uses instead of decoding them again.

A full reload (new generation, reconnect, log gap, digest mismatch, snapshot then Redis) usually
reads mostly the bytes the agent already applied. Equal bytes decode and validate equally, so the
compiled form of a rule whose stored bytes equal those held under its id is exactly what decode +
validate + compile would give again; only other bytes are decoded, validated and compiled. Bytes
that fail are never held, so a corrupt rule is refused on every load.

The cache holds nothing of its own once told what the agent holds (`hold`: the applied set's raw
dict and RuleSet, whose routes and placement give back each compiled rule), so it costs no memory
beyond the applied set (bench/agent_memory.py).
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

from rulegate.digest import EMPTY, rule_hash
from rulegate.errors import CorruptDataError
from rulegate.evaluator import CompiledRule, RuleSet, compile_rule
from rulegate.ramps import has_guard
from rulegate.schema import decode_rule
from rulegate.schema_fast import decode_canonical


class Loaded(NamedTuple):
    """The compiled rules of one load, the ids of the guarded ones and the content digest.

    `raw` is the load's raw map keyed by the compiled rules' own id strings (the held ones for rules
    re-used): what to hold instead of the map read, so the ids are not held twice."""

    rules: list[CompiledRule]
    guarded: frozenset[str]
    digest: str
    raw: dict[str, bytes]


class CompileCache:
    """The compiled form of each rule held, re-used for its stored bytes (not thread-safe: the sync
    thread owns it).

    After a successful `load` it holds that load's rules; `hold` replaces them with what the agent
    applied (a delta's result included), which it shares instead of keeping its own copies.
    """

    def __init__(self) -> None:
        self._raw: Mapping[str, bytes] = {}  # id -> stored bytes held (never mutated by anyone)
        self._rules: Mapping[str, CompiledRule] | None = {}  # id -> compiled rule; None: ask self._set
        self._set: RuleSet | None = None
        self._guarded: frozenset[str] = frozenset()
        self._digest = EMPTY  # the content digest of self._raw
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._raw)

    def hold(self, raw: Mapping[str, bytes], ruleset: RuleSet, guarded: frozenset[str], digest: str,
             pause: Callable[[], None] | None = None) -> None:
        """Re-use from now on what the agent applied: raw (never to be mutated), the RuleSet compiled from
        it, its guarded ids and content digest. What was held before is released a slice at a time."""
        old = self._rules
        self._raw, self._rules, self._set, self._guarded, self._digest = raw, None, ruleset, guarded, digest
        if isinstance(old, dict):
            n = 0
            while old:  # a load's compiled rules (~2 ms in one block at 10,000)
                old.popitem()
                n += 1
                if pause is not None and not n & 63:
                    pause()

    def load(self, raw: Mapping[str, bytes], revision: int, *, where: str,
             pause: Callable[[], None] | None = None) -> Loaded:
        """Return raw's rules compiled (new ones stamped `revision`), their guarded ids and digest.

        Raises CorruptDataError naming the first rule (in raw's order) that is undecodable, invalid or
        stored under another id (`where` prefixes the message: "namespace 'x'", "snapshot"). On success
        the cache holds exactly raw's rules; on failure it is unchanged.
        """
        held_raw, held_guarded = self._raw, self._guarded
        held: Mapping[str, CompiledRule] = {}
        if held_raw:
            held = self._rules if self._rules is not None else self._set.compiled_rules(pause)
        rules, guarded, out, by_id = [], [], {}, {}
        acc, hits = 0, 0  # acc: XOR of the hashes of the rules not held
        for rule_id, value in raw.items():
            if pause is not None:
                pause()
            old = held_raw.get(rule_id)
            if old is not None and type(value) is bytes and old == value:
                rule = held[rule_id]
                hits += 1
                is_guarded = rule_id in held_guarded
            else:
                rule, is_guarded, hashed = _compile(rule_id, value, revision, where)
                acc ^= hashed
            rule_id = rule.rule_id  # the string the compiled rule holds (held ones: the held string)
            rules.append(rule)
            out[rule_id] = value
            by_id[rule_id] = rule
            if is_guarded:
                guarded.append(rule_id)
        acc ^= self._held_hashes(raw, hits, pause)
        self._raw, self._rules, self._set, self._guarded = out, by_id, None, frozenset(guarded)
        self._digest = digest = f"{acc:040x}"
        self.hits += hits
        self.misses += len(rules) - hits
        return Loaded(rules, self._guarded, digest, out)

    def _held_hashes(self, raw: Mapping[str, bytes], hits: int, pause: Callable[[], None] | None) -> int:
        """Return the XOR of the hashes of raw's rules that were held (`hits` of them): from the held digest
        less the held rules not in raw when those are fewer, else hashing the hits."""
        held_raw = self._raw
        if not hits:
            return 0
        if hits == len(held_raw):  # every rule held was read again, unchanged
            return int(self._digest, 16)
        acc = 0
        if len(held_raw) - hits <= hits:
            acc = int(self._digest, 16)
            for rule_id, old in held_raw.items():
                if pause is not None:
                    pause()
                value = raw.get(rule_id)
                if value is None or type(value) is not bytes or old != value:
                    acc ^= rule_hash(rule_id, old)
            return acc
        for rule_id, value in raw.items():
            if pause is not None:
                pause()
            old = held_raw.get(rule_id)
            if old is not None and type(value) is bytes and old == value:
                acc ^= rule_hash(rule_id, value)
        return acc


def _compile(rule_id: str, value: bytes, revision: int, where: str) -> tuple[CompiledRule, bool, int]:
    """Return the compiled rule of the stored bytes, whether it is guarded and its digest hash."""
    rule = decode_canonical(value)  # what ruleadmin stores: no full validation (rulegate/schema_fast.py)
    if rule is None:  # anything else: the full validator, its errors
        rule = decode_rule(value, where=f"{where} rule {rule_id!r}")
    if rule["id"] != rule_id:
        raise CorruptDataError(f"{where} rule {rule_id!r}: stored under another id")
    rule["id"] = rule_id  # the same string as raw's key: the compiled set shares it with raw
    return compile_rule(rule, revision), has_guard(rule), rule_hash(rule_id, value)
