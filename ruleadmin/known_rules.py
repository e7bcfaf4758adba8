"""The stored bytes of the rules this instance last wrote or read, with the revision they were stored at.

A conditional rule write first asks whether it would change anything (a no-op save commits nothing). When the
condition pins the stored rule — If-Match is the revision this instance last saw the rule at, or the hash of
bytes it holds — the stored rule is known without a read. An entry is never trusted on its own: the commit
script checks the condition (and, for the revision form, the held bytes' hash) atomically with the write, and
a refused pinned write falls back to the read (ruleadmin.rules.RuleService.put_rule).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from cachetools import LRUCache

from rulegate.store import rule_hash

MAX_BYTES = 8 * 1024 * 1024  # the rule bytes one instance holds (least recently used dropped first)
ENTRY_OVERHEAD = 200  # bytes counted per entry besides the rule's own


@dataclass(frozen=True, slots=True)
class Held:
    """A rule's stored bytes, their rule_hash and the namespace revision at which they were stored; `canonical`:
    the bytes are this instance's encoding of a validated rule (they decode to that rule without validation)."""

    revision: int
    raw: bytes
    digest: str
    canonical: bool = False


class KnownRules:
    """(namespace, rule id) -> Held, least recently used first out; thread-safe."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self._max = max_bytes
        self._held: LRUCache = LRUCache(max_bytes, getsizeof=lambda h: len(h.raw) + ENTRY_OVERHEAD)
        self._lock = threading.Lock()

    def remember(self, ns: str, rule_id: str, revision: int, raw: bytes | None, *, canonical: bool = False) -> None:
        """Hold raw as the rule's bytes at revision (None: the rule is absent, nothing held); `canonical`: raw is
        encode_rule of a validated rule, held by the write that stored it."""
        with self._lock:
            if raw is None or len(raw) + ENTRY_OVERHEAD > self._max:
                self._held.pop((ns, rule_id), None)
            else:
                self._held[(ns, rule_id)] = Held(revision, raw, rule_hash(raw), canonical)

    def forget(self, ns: str, rule_id: str) -> None:
        """Drop what is held for the rule."""
        with self._lock:
            self._held.pop((ns, rule_id), None)

    def pinned(self, ns: str, rule_id: str, revision: int | None, digest: str | None) -> Held | None:
        """Return the held bytes a write condition pins: held at `revision`, or whose hash is `digest`; else None."""
        with self._lock:
            held = self._held.get((ns, rule_id))
        if held is None or (revision is None and digest is None):
            return None
        if (revision is not None and held.revision != revision) or (digest is not None and held.digest != digest):
            return None
        return held
