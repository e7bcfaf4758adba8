"""The decoded rules of the namespaces an instance read lately, kept current from the revision log.

Listing a namespace (API, rule pages, kill switch, simulation) decoded every rule on every request: ~1 s of
a worker's CPU in one block at 20,000 rules, for a page of 50 as for all of them. A `Listing` is one
namespace's rules at one (revision, generation, digest). `ListingCache.get` first reads those three (one
round trip): equal to the cached listing's, it is returned as is; a few revisions ahead in the same
generation, the log entries since are applied to a copy (O(changed rules): the maps are derived,
rulegate/layered.py) and the result's content digest must equal the store's; anything else (a new
generation, a trimmed log, a digest that disagrees, nothing cached) reads and decodes the whole namespace,
yielding every ~2 ms. Rules in a listing are shared by every request that gets it: read them, never change them.
"""
from __future__ import annotations

import bisect
import logging
import threading
from typing import Callable, Mapping

import msgspec
from cachetools import LRUCache

from rulegate.digest import apply_change
from rulegate.errors import CorruptDataError
from rulegate.evaluator import RuleSet, place_rule
from rulegate.gc_hold import collector_held
from rulegate.keyspace import Keys
from rulegate.layered import derive
from rulegate.namespace import Slicer, as_text, decode_rules, decode_stored
from rulegate.store import LogEntry, RuleStore

log = logging.getLogger("ruleadmin")

MAX_CACHED_RULES = 50_000  # rules kept over all cached namespaces (~1.5 KiB of Python objects each)
JSON_SLICE = 250  # rules encoded between two yields (~1 ms)
MAX_DELTA = 256  # log entries applied to a cached listing; further behind, the namespace is read whole


class Listing:
    """One namespace's rules at one (revision, generation, digest): by id, in id order, and their stored bytes."""

    __slots__ = ("revision", "generation", "digest", "by_id", "raw", "ids", "rules", "_ruleset", "_json",
                 "_fragments", "_parent_fragments", "_changed_ids", "_lock", "_json_lock")

    def __init__(self, revision: int, generation: str, digest: str, by_id: Mapping[str, dict],
                 raw: Mapping[str, bytes], ids: list[str], rules: list[dict], ruleset: RuleSet | None = None,
                 parent_fragments: Mapping[str, bytes] | None = None, changed_ids: set[str] | None = None):
        self.revision, self.generation, self.digest = revision, generation, digest
        self.by_id, self.raw = by_id, raw
        self.ids, self.rules = ids, rules  # sorted ids, and the rules in that order
        self._ruleset = ruleset
        self._json: bytes | None = None
        self._fragments: Mapping[str, bytes] | None = None  # id -> its rule's JSON, once rules_json() ran
        # the parent listing's fragments (when it had them) and the ids changed since: derived, not re-encoded
        self._parent_fragments, self._changed_ids = parent_fragments, changed_ids
        self._lock = threading.Lock()  # the compiled set's (a compile yields: JSON readers need not wait for it)
        self._json_lock = threading.Lock()

    @classmethod
    def whole(cls, revision: int, generation: str, digest: str, rules: dict[str, dict],
              raw: dict[str, bytes]) -> "Listing":
        ids = sorted(rules)
        return cls(revision, generation, digest, rules, raw, ids, [rules[i] for i in ids])

    def version(self) -> tuple[int, str, str]:
        return self.revision, self.generation, self.digest

    def ruleset(self) -> RuleSet:
        """Return these rules as a RuleSet (once per listing, yielding between rules; a listing from deltas derives
        it from its parent's). The rules are placed, not compiled (`place_rule`): a simulation compiles the routes
        its request looks at, from the stored bytes (checked again unless canonical), as the agent does."""
        with self._lock:
            if self._ruleset is None:
                raw, pause, placed = self.raw, Slicer(), []
                with collector_held():
                    for n, rule in enumerate(self.rules):
                        if not n & 63:
                            pause()
                        placed.append(place_rule(rule, raw[rule["id"]]))
                    self._ruleset = RuleSet.from_compiled(placed, self.revision, self.generation, pause=pause)
            return self._ruleset

    def rules_json(self) -> bytes:
        """Return the JSON array of the rules in id order (keys in each rule's order: sorted in the canonical form
        ruleadmin stores), encoded once per listing by msgspec in C, rule by rule with a yield every JSON_SLICE
        (~65 ms at 20,000 rules in all; jsonify took ~290 ms in one block); a listing made from deltas whose parent
        had its JSON re-encodes only the changed rules and joins the rest."""
        with self._json_lock:
            if self._json is None:
                parent, changed = self._parent_fragments, self._changed_ids
                if parent is not None and changed is not None:  # O(changed rules): the parent's fragments
                    fragments = derive(parent)
                    by_id = self.by_id
                    for rule_id in changed:
                        rule = by_id.get(rule_id)
                        if rule is None:
                            fragments.pop(rule_id, None)
                        else:
                            fragments[rule_id] = _json(rule)
                else:
                    pause, fragments = Slicer(), {}
                    for n, (rule_id, rule) in enumerate(zip(self.ids, self.rules)):
                        if not n % JSON_SLICE:
                            pause()
                        fragments[rule_id] = _json(rule)
                self._fragments, self._parent_fragments, self._changed_ids = fragments, None, None
                self._json = b"[" + b",".join([fragments[rule_id] for rule_id in self.ids]) + b"]"
            return self._json

    def with_entries(self, entries: list[LogEntry], where: str) -> "Listing":
        """Return this listing with the log entries applied (self unchanged); raise CorruptDataError when a stored
        rule does not decode or the digest the entries give is not the one they carry."""
        by_id, raw, ids, rules = derive(self.by_id), derive(self.raw), list(self.ids), list(self.rules)
        digest = self.digest
        changed: dict[str, dict] = {}
        removed: set[str] = set()
        for entry in entries:
            for rule_id, _before, after in entry.changes:
                digest = apply_change(digest, rule_id, raw.get(rule_id), after)
                at = bisect.bisect_left(ids, rule_id)
                present = at < len(ids) and ids[at] == rule_id
                if after:
                    rule = decode_stored(rule_id, after, f"{where} log revision {entry.revision} rule {rule_id!r}")
                    by_id[rule_id], raw[rule_id] = rule, after
                    changed[rule_id] = rule
                    removed.discard(rule_id)
                    if present:
                        rules[at] = rule
                    else:
                        ids.insert(at, rule_id)
                        rules.insert(at, rule)
                elif present:
                    del by_id[rule_id], raw[rule_id], ids[at], rules[at]
                    changed.pop(rule_id, None)
                    removed.add(rule_id)
            if entry.digest and entry.digest != digest:
                raise CorruptDataError(f"{where}: after log revision {entry.revision} the store has digest "
                                       f"{entry.digest[:12]}, the entries give {digest[:12]}")
        last = entries[-1]
        ruleset = self._ruleset
        if ruleset is not None:
            ruleset = ruleset.with_changes(changed, removed, last.revision, self.generation)
        return Listing(last.revision, self.generation, digest, by_id, raw, ids, rules, ruleset,
                       parent_fragments=self._fragments, changed_ids=set(changed) | removed)


_json = msgspec.json.encode


def _current(listing: Listing | None, want: tuple[int, str, str]) -> bool:
    """True when listing holds exactly the content `want` names (a digest, or an empty namespace)."""
    return listing is not None and listing.version() == want and bool(want[2] or want[0] == 0)


class ListingCache:
    """The latest listing of each namespace read lately (LRU, at most `max_rules` rules in all)."""

    def __init__(self, store: RuleStore, max_rules: int = MAX_CACHED_RULES,
                 pause: Callable[[], Callable[[], None]] = Slicer):
        self.store = store
        self.max_rules = max_rules
        self._pause = pause
        self._entries: LRUCache = LRUCache(maxsize=max(1, max_rules), getsizeof=lambda e: max(1, len(e.ids)))
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}  # ns -> held while a reader updates its listing
        self.hits = self.deltas = self.loads = 0

    def version(self, ns: str) -> tuple[int, str, str]:
        """Return ns's (revision, generation, digest) as the store holds them now (one round trip)."""
        keys = Keys(ns)
        rev, gen, digest = self.store.slot_read(ns, [("GET", keys.rev), ("HGET", keys.meta, "gen"),
                                                     ("HGET", keys.meta, "digest")])
        return int(rev or 0), as_text(gen or b""), as_text(digest or b"")

    def get(self, ns: str, version: tuple[int, str, str] | None = None) -> Listing:
        """Return ns's listing at its current version (`version`: what `version(ns)` just gave, to spare a read)."""
        want = version or self.version(ns)
        with self._lock:
            cached = self._entries.get(ns)
            building = self._building.setdefault(ns, threading.Lock())
        if _current(cached, want):
            self.hits += 1
            return cached
        with building:  # one reader brings ns up to date; the others wait for it instead of reading it too
            with self._lock:
                cached = self._entries.get(ns)
            if _current(cached, want) or (cached is not None and cached.generation == want[1]
                                           and cached.revision > want[0] and cached.digest):
                self.hits += 1
                return cached
            return self._update(ns, cached, want)

    def _update(self, ns: str, cached: Listing | None, want: tuple[int, str, str]) -> Listing:
        """Return ns's listing brought from `cached` to `want` (its log entries, or a whole read), and keep it."""
        listing = None
        if cached is not None and cached.generation == want[1] and cached.digest and 0 < want[0] - cached.revision:
            listing = self._follow(ns, cached, want)
        if listing is None:
            listing = self._load(ns)
        with self._lock:
            current = self._entries.get(ns)
            if (len(listing.ids) <= self.max_rules
                    and (current is None or current.generation != listing.generation
                         or current.revision <= listing.revision)):
                self._entries[ns] = listing
        return listing

    def _follow(self, ns: str, cached: Listing, want: tuple[int, str, str]) -> Listing | None:
        """Return cached with the log entries since applied when they lead to want's digest, else None."""
        if want[0] - cached.revision > MAX_DELTA:
            return None
        entries = self.store.changes_since(ns, cached.revision, limit=MAX_DELTA)
        if not entries:
            return None
        try:
            listing = cached.with_entries(entries, f"namespace {ns!r}")
        except CorruptDataError as exc:
            log.warning("rule listing of %s: %s; reading it whole", ns, exc)
            return None
        if want[2] and listing.revision == want[0] and listing.digest != want[2]:
            log.warning("rule listing of %s: the log gives digest %s at revision %s, the store has %s; reading it "
                        "whole", ns, listing.digest[:12], listing.revision, want[2][:12])
            return None
        self.deltas += 1
        return listing

    def _load(self, ns: str) -> Listing:
        """Read and decode the whole namespace (yielding between rules)."""
        read = self.store.load_raw(ns)
        with collector_held():
            rules = decode_rules(ns, read.raw, pause=self._pause())
        self.loads += 1
        return Listing.whole(read.revision, read.generation, read.digest, rules, read.raw)
