"""Per-rule ETags ("r-<SHA-1 of the stored rule bytes>") and the If-Match forms a rule write accepts.

A rule write may be conditioned on the namespace revision (If-Match: "12", as before) or on the rule's
own ETag (If-Match: "r-<40 hex>", or * for "the rule exists"): the two are told apart by their shape.
The commit script compares the hash atomically with the write (rulegate/commit_script.py).
"""
from __future__ import annotations

import re

from flask import request

from rulegate.store import rule_hash

from .errors import APIError
from .inputs import MAX_REVISION, etag_revision

PREFIX = "r-"
_RULE_ETAG = re.compile(r'"r-([0-9a-fA-F]{40})"')
IF_MATCH_FORMS = (f'must be the rule\'s ETag "r-<40 hex digits>" (strong, no W/), * (the rule exists) or '
                  f'the namespace revision "<revision>" with 0 <= revision <= {MAX_REVISION}')


def rule_etag(raw: bytes) -> str:
    """Return the strong ETag of a rule stored as `raw`."""
    return f'"{PREFIX}{rule_hash(raw)}"'


def etag_of_hash(digest: str | None) -> str | None:
    """Return the ETag for a rule hash the store reported (None: the rule does not exist)."""
    return f'"{PREFIX}{digest}"' if digest else None


def if_match_condition(required: bool) -> tuple[int | None, str | None]:
    """Return (revision, None) for If-Match "12", (None, hash or "*") for a rule ETag or *, and (None, None)
    when the header is absent and optional; raise APIError 428 (absent, required) or 400 (any other form)."""
    raw = request._get_current_object().headers.get("If-Match")
    if raw is None:
        if required:
            raise APIError(428, "send If-Match: the rule's ETag (\"r-...\") or the namespace revision (\"12\")",
                           {"If-Match": "is required"})
        return None, None
    text = raw.strip()
    if text == "*":
        return None, "*"
    found = _RULE_ETAG.fullmatch(text)
    if found:
        return None, found.group(1).lower()
    rev = etag_revision(text)
    if rev is None:
        raise APIError(400, "If-Match must be a rule ETag, * or a namespace revision", {"If-Match": IF_MATCH_FORMS})
    return rev, None
