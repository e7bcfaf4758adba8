"""Straight-line `pick` functions for the shapes split rules take: a key source and the kinds of its policies.

A split's generic `pick` loops over its policies and calls each one's `match`; on CPython every call, loop
step and type test costs about as much as the match itself. `make_pick(source, kinds)` returns the same
function written out for one shape: the key read for that source, then each policy in order — percent and
uid_suffix policies matched inline, any other kind through its `match` — then the rule's `default`. The
generated code reads only the attributes of the compiled objects (rulegate/evaluator.py); it embeds no
value of any rule.
"""
from __future__ import annotations

import zlib
from typing import Callable

from .request import wire_bytes
from .schema import BUCKETS

MAX_CHECKS = 4  # policies a generated pick handles; a split with more keeps the generic loop

_KEY_LINES = {
    "header": "key = req.headers.get(self.name)",
    "ip": "key = req.ip or None",
    "cookie": "key = req.cookies.get(self.name)",
}
_ARG_LINE = "key = req.args.get(self.name)"  # any other source reads the args, as the generic pick does

_BLOCKS = {
    "percent": """
    text = key if key is not None else req.ip
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        raw = wire_bytes(text)
    bucket = crc32(raw, c{i}.seed) % BUCKETS
    for edge, decision in c{i}.edges:
        if bucket < edge:
            return decision""",
    "uid_suffix": """
    if key is not None and key.endswith(c{i}.suffixes):
        return c{i}.hit""",
    "match": """
    hit = c{i}.match(key, req)
    if hit is not None:
        return hit""",
}


def pick_source(source: str, kinds: tuple[str, ...]) -> str:
    """Return the source of `pick(self, req)` for a split reading `source` whose policies are `kinds`.

    `kinds` holds 1..MAX_CHECKS of "percent", "uid_suffix" and "match"; with one, `self.checks` is that
    policy, with more a tuple of them. Raises ValueError for another count or kind."""
    if not 0 < len(kinds) <= MAX_CHECKS or any(kind not in _BLOCKS for kind in kinds):
        raise ValueError(f"no generated pick for policies {kinds!r}")
    names = ", ".join(f"c{i}" for i in range(len(kinds)))
    lines = ["def pick(self, req):", "    " + _KEY_LINES.get(source, _ARG_LINE),
             f"    {names} = self.checks" if len(kinds) > 1 else "    c0 = self.checks"]
    lines += [_BLOCKS[kind].format(i=i)[1:] for i, kind in enumerate(kinds)]
    lines.append("    return self.default")
    return "\n".join(lines) + "\n"


def make_pick(source: str, kinds: tuple[str, ...]) -> Callable:
    """Return the function `pick_source(source, kinds)` defines; raises ValueError as it does."""
    namespace = {"wire_bytes": wire_bytes, "crc32": zlib.crc32, "BUCKETS": BUCKETS}
    code = compile(pick_source(source, kinds), f"<split pick {source} {'+'.join(kinds)}>", "exec")
    exec(code, namespace)
    return namespace["pick"]
