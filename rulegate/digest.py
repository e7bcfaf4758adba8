"""Content identity of a namespace: the XOR of SHA-1(id "\\n" stored bytes) over its rules.

Written as 40 lowercase hex digits (all zeros for an empty namespace). XOR makes it independent
of order and O(change) to maintain: a change of one rule XORs out its old hash and XORs in the
new one. The commit script keeps `{rg:<ns>}:meta` field `digest` and each log entry's `digest`
current with the same arithmetic (Redis Lua: `redis.sha1hex` + `bit.bxor` over 8-digit words),
nginx recomputes it with `ngx.sha1_bin` (lua/rulegate/digest.lua), the agent with hashlib.
Equal revision numbers say nothing about equal content after a split brain; equal digests do.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Mapping

EMPTY = "0" * 40


def rule_hash(rule_id: str, value: bytes) -> int:
    """Return the 160-bit hash of one stored rule."""
    return int.from_bytes(hashlib.sha1(rule_id.encode() + b"\n" + value).digest(), "big")


def content_digest(raw: Mapping[str, bytes], pause: Callable[[], None] | None = None) -> str:
    """Return the digest of a whole rule set (rule id -> stored bytes); call pause() before each rule."""
    acc = 0
    for rule_id, value in raw.items():
        if pause is not None:
            pause()
        acc ^= rule_hash(rule_id, value)
    return f"{acc:040x}"


def apply_change(digest: str, rule_id: str, before: bytes | None, after: bytes | None) -> str:
    """Return digest after rule_id went from `before` to `after` (None = absent)."""
    acc = int(digest or EMPTY, 16)
    if before is not None:
        acc ^= rule_hash(rule_id, before)
    if after is not None:
        acc ^= rule_hash(rule_id, after)
    return f"{acc:040x}"
