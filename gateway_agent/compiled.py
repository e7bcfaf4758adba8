"""Compiled rules of the bytes held: what a full reload re-uses instead of decoding them again.

A full reload (new generation, reconnect, log gap, digest mismatch, snapshot then Redis) usually
reads mostly the bytes the agent already applied. Equal bytes decode and validate equally, so the
compiled (or placed, still pending) form of a rule whose stored bytes equal those held under its id
is what decode + validate would give again; only other bytes are decoded, validated and placed
(`rulegate.evaluator.place_rule`: a route's first request compiles its rules). Bytes that fail are
never held, so a corrupt rule is refused on every load.

The cache holds nothing of its own once told what the agent holds (`hold`: the applied set's raw
dict and RuleSet, whose routes and placement give back each compiled rule), so it costs no memory
beyond the applied set (bench/agent_memory.py).
"""
from __future__ import annotations

from typing import Callable, Mapping

from rulegate.digest import EMPTY, rule_hash
from rulegate.errors import CorruptDataError
from rulegate.evaluator import CompiledRule, RuleSet, place_rule, place_stored
from rulegate.layered import derive
from rulegate.ramps import has_guard
from rulegate.schema import decode_rule
from rulegate.schema_fast import stored_guarded, stored_rule

COPY_ON_WRITE_MAX = 64  # changes up to which a load over a held set builds the new set copy-on-write


class Loaded:
    """The compiled rules of one load, the ids of the guarded ones and the content digest.

    `raw` is the map to hold (Applied.raw): raw's content, keyed by the id strings the compiled set
    holds (so they are not held twice). A load over a held RuleSet (`CompileCache.hold`) keeps only
    what changed: `ruleset()` builds the new set copy-on-write from the held one, and `rules` (the
    compiled rule of every id, in raw's order) is built from it on first use only.
    """

    __slots__ = ("guarded", "digest", "raw", "_base", "_changed", "_removed", "_order", "_rules")

    def __init__(self, raw: Mapping[str, bytes], guarded: frozenset[str], digest: str, *,
                 rules: list[CompiledRule] | None = None, base: RuleSet | None = None,
                 changed: dict[str, CompiledRule] | None = None, removed: list[str] | None = None,
                 order: Mapping[str, bytes] | None = None):
        self.raw, self.guarded, self.digest = raw, guarded, digest
        self._rules, self._base, self._changed, self._removed, self._order = rules, base, changed, removed, order

    @property
    def rules(self) -> list[CompiledRule]:
        return self._compiled()

    def _compiled(self, pause: Callable[[], None] | None = None) -> list[CompiledRule]:
        if self._rules is None:
            changed = self._changed
            if len(changed) == len(self._order):  # every rule new: changed is in the order read
                self._rules = list(changed.values())
            else:
                held = self._base.compiled_rules(pause)
                self._rules = [changed[i] if i in changed else held[i] for i in self._order]
        return self._rules

    def ruleset(self, revision: int, generation: str, pause: Callable[[], None] | None = None) -> RuleSet:
        """Return the RuleSet of these rules at `revision` (what RuleSet.from_compiled(self.rules) gives).

        Copy-on-write from the held set when few rules changed (`with_compiled` does not pause: ~30 µs a
        change), else built rule by rule with `pause`."""
        if self._base is not None and len(self._changed) + len(self._removed) <= COPY_ON_WRITE_MAX:
            return self._base.with_compiled(self._changed, self._removed, revision, generation)
        return RuleSet.from_compiled(self._compiled(pause), revision, generation, pause=pause)

    def release(self, piece: int = 1000) -> list[list[CompiledRule]]:
        """Drop this load's compiled rules and return them in lists of `piece`: once the caller drops those one
        at a time, the rules the applied set does not share (every rule's shell after a load from scratch,
        ~2 ms for 10,000 in one block) are freed a slice at a time. The load is of no use after this."""
        rules = self._rules if self._rules is not None else list(self._changed.values() if self._changed else ())
        self._rules = self._changed = self._base = self._order = None
        return [rules[i:i + piece] for i in range(0, len(rules), piece)]


class CompileCache:
    """The compiled form of each rule held, re-used for its stored bytes (not thread-safe: the sync
    thread owns it).

    After a successful `load` it holds that load's rules; `hold` replaces them with what the agent
    applied (a delta's result included), which it shares instead of keeping its own copies.
    """

    def __init__(self) -> None:
        self._raw: Mapping[str, bytes] = {}  # id -> stored bytes held (never mutated by anyone)
        self._source: RuleSet | Loaded | None = None  # their compiled rules: the applied set, or the last load
        self._guarded: frozenset[str] = frozenset()
        self._digest = EMPTY  # the content digest of self._raw
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._raw)

    def hold(self, raw: Mapping[str, bytes], ruleset: RuleSet, guarded: frozenset[str], digest: str) -> None:
        """Re-use from now on what the agent applied: raw (never to be mutated), the RuleSet compiled from
        it, its guarded ids and content digest (a load's own list of compiled rules is dropped: ~0.7 ms at
        10,000, the rules themselves live on in the set)."""
        self._raw, self._source, self._guarded, self._digest = raw, ruleset, guarded, digest

    def load(self, raw: Mapping[str, bytes], *, where: str,
             pause: Callable[[], None] | None = None) -> Loaded:
        """Return raw's rules checked and placed (new ones pending: `place_rule`), their guarded ids and digest.

        Raises CorruptDataError naming the first rule (in raw's order) that is undecodable, invalid or
        stored under another id (`where` prefixes the message: "namespace 'x'", "snapshot"). On success
        the cache holds exactly raw's rules; on failure it is unchanged.
        """
        source = self._source
        if isinstance(source, RuleSet) and self._raw:
            loaded = self._load_changes(source, raw, where, pause)
        else:
            held = {r.rule_id: r for r in source.rules} if isinstance(source, Loaded) and self._raw else {}
            loaded = self._load_all(held, raw, where, pause)
        self._raw, self._source, self._guarded, self._digest = loaded.raw, loaded, loaded.guarded, loaded.digest
        return loaded

    def _load_all(self, held: Mapping[str, CompiledRule], raw: Mapping[str, bytes], where: str,
                  pause: Callable[[], None] | None) -> Loaded:
        """Check and place every rule of raw (the held ones from `held`, id -> compiled rule)."""
        held_raw, held_guarded = self._raw, self._guarded
        rules, guarded, out = [], [], {}
        acc, hits = 0, 0  # acc: XOR of the hashes of the rules not held
        for n, (rule_id, value) in enumerate(raw.items()):
            if pause is not None and not n & 3:  # every 4 rules: a rule not held costs ~25 µs, a call ~0.3 µs
                pause()
            old = held_raw.get(rule_id)
            if old is not None and type(value) is bytes and old == value:
                rule = held[rule_id]
                hits += 1
                is_guarded = rule_id in held_guarded
            else:
                rule, is_guarded, hashed = _place(rule_id, value, where)
                acc ^= hashed
            rule_id = rule.rule_id  # the string the compiled rule holds (held ones: the held string)
            rules.append(rule)
            out[rule_id] = value
            if is_guarded:
                guarded.append(rule_id)
        acc ^= self._held_hashes(raw, hits, pause)
        self._count(hits, len(rules) - hits)
        return Loaded(out, frozenset(guarded), f"{acc:040x}", rules=rules)

    def _load_changes(self, base: RuleSet, raw: Mapping[str, bytes], where: str,
                      pause: Callable[[], None] | None) -> Loaded:
        """Check and place only raw's rules whose bytes differ from those held; the rest stays in `base`."""
        held_raw, held_guarded = self._raw, self._guarded
        out = derive(held_raw)  # the held ids and bytes (equal to those read for the rules re-used); O(changes)
        changed: dict[str, CompiledRule] = {}
        guarded, acc, hits, replaced = [], 0, 0, 0
        for rule_id, value in raw.items():
            if pause is not None:
                pause()
            old = held_raw.get(rule_id)
            if old is not None and type(value) is bytes and old == value:
                hits += 1
                continue
            rule, is_guarded, hashed = _place(rule_id, value, where)
            acc ^= hashed
            changed[rule_id] = rule
            out[rule_id] = value
            if old is not None:
                replaced += 1
            if is_guarded:
                guarded.append(rule_id)
        removed = []
        if hits + replaced < len(held_raw):
            removed = [rule_id for rule_id in held_raw if rule_id not in raw]
            for rule_id in removed:
                del out[rule_id]
        acc ^= self._held_hashes(raw, hits, pause)
        if changed or removed:
            gone = set(removed)
            guarded.extend(rule_id for rule_id in held_guarded if rule_id not in changed and rule_id not in gone)
            held_guarded = frozenset(guarded)
        self._count(hits, len(changed))
        return Loaded(out, held_guarded, f"{acc:040x}", base=base, changed=changed, removed=removed, order=raw)

    def _count(self, hits: int, misses: int) -> None:
        self.hits += hits
        self.misses += misses

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


def _place(rule_id: str, value: bytes, where: str) -> tuple[CompiledRule, bool, int]:
    """Return the rule of the stored bytes, checked and placed (`place_rule`: compiled by its route's first
    request, its decisions stamped with that set's revision), whether it is guarded and its digest hash."""
    stored = stored_rule(value)  # what ruleadmin stores: typed, no full validation (rulegate/schema_fast.py)
    if stored is not None:
        if stored.id != rule_id:
            raise CorruptDataError(f"{where} rule {rule_id!r}: stored under another id")
        stored.id = rule_id  # the same string as raw's key: the compiled set shares it with raw
        return place_stored(stored, value), stored_guarded(stored), rule_hash(rule_id, value)
    rule = decode_rule(value, where=f"{where} rule {rule_id!r}")  # anything else: the full validator, its errors
    if rule["id"] != rule_id:
        raise CorruptDataError(f"{where} rule {rule_id!r}: stored under another id")
    rule["id"] = rule_id
    return place_rule(rule, value), has_guard(rule), rule_hash(rule_id, value)
