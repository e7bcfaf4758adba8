"""Filtering and paging of a namespace's rule list (API and web UI): by route text, kind, upstream, free text."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Sequence

from rulegate.schema import is_valid_id

from .inputs import ascii_int
from .upstreams import named_upstreams

KINDS = ("split", "degrade")
MAX_LIMIT = 500
WEB_PAGE = 50
MAX_TEXT = 200


@dataclass(frozen=True)
class RuleFilter:
    """What to show: route text (host+path substring), kind, upstream name, free text; all optional."""

    route: str = ""
    kind: str = ""
    upstream: str = ""
    q: str = ""

    @property
    def active(self) -> bool:
        """Return whether any criterion is set."""
        return bool(self.route or self.kind or self.upstream or self.q)

    def matches(self, rule: dict) -> bool:
        """Return whether rule passes every set criterion (text matches are case-insensitive substrings)."""
        route = rule.get("route") or {}
        if self.kind and rule.get("kind") != self.kind:
            return False
        if self.route and self.route.lower() not in f"{route.get('host', '')}{route.get('path', '')}".lower():
            return False
        if self.upstream and self.upstream not in named_upstreams(rule).values():
            return False
        if self.q:
            text = " ".join((rule.get("id", ""), rule.get("kind", ""), route.get("host", ""), route.get("path", ""),
                             rule.get("description", ""), *named_upstreams(rule).values()))
            return self.q.lower() in text.lower()
        return True


def check_filter(route: str | None, kind: str | None, upstream: str | None, q: str | None) -> tuple[RuleFilter,
                                                                                                      dict[str, str]]:
    """Return (filter, field errors) from request parameters (None or '' = not set)."""
    errors = {}
    values = {"route": route or "", "kind": kind or "", "upstream": upstream or "", "q": q or ""}
    for name, value in values.items():
        if len(value) > MAX_TEXT or any(ord(c) < 0x20 for c in value):
            errors[name] = f"must be at most {MAX_TEXT} printable characters"
    if values["kind"] and values["kind"] not in KINDS:
        errors["kind"] = "must be split or degrade"
    return RuleFilter(**{k: v.strip() for k, v in values.items()}) if not errors else RuleFilter(), errors


def check_cursor(cursor: str | None) -> tuple[str, dict[str, str]]:
    """Return (cursor, field errors): a cursor is the id of the last rule of the previous page ('' = first)."""
    if not cursor:
        return "", {}
    if not is_valid_id(cursor):
        return "", {"cursor": "must be the next_cursor of a previous page (a rule id)"}
    return cursor, {}


@dataclass(frozen=True)
class Page:
    """One page of matching rules (sorted by id), the number of matches and the cursor of the next page."""

    rules: list[dict]
    matched: int
    next_cursor: str | None


def page(rules: Sequence[dict], flt: RuleFilter, cursor: str, limit: int) -> Page:
    """Return the rules (sorted by id) matching flt after cursor, at most limit of them.

    Without a criterion, the page is found by bisection (O(limit + log n): the plain browsing of a large
    namespace); with one, every rule is matched."""
    if not flt.active:
        start = bisect_right(rules, cursor, key=_rule_id) if cursor else 0
        shown = list(rules[start:start + limit])
        more = start + limit < len(rules)
        return Page(shown, len(rules), shown[-1]["id"] if more and shown else None)
    matching = [r for r in rules if flt.matches(r)]
    after = [r for r in matching if r["id"] > cursor] if cursor else matching
    shown = after[:limit]
    more = len(after) > limit
    return Page(shown, len(matching), shown[-1]["id"] if more and shown else None)


def offset_of(rules: Sequence[dict], flt: RuleFilter, cursor: str) -> int:
    """Return how many matching rules come before cursor (for 'rules 51-100 of 505')."""
    if not cursor:
        return 0
    if not flt.active:
        return bisect_right(rules, cursor, key=_rule_id)
    return sum(1 for r in rules if flt.matches(r) and r["id"] <= cursor)


def _rule_id(rule: dict) -> str:
    return rule["id"]


PARAMS = ("limit", "cursor", "kind", "upstream", "q", "route")
API_DEFAULT_LIMIT = 100


def requested(args) -> bool:
    """Return whether a request asks for filtering or paging (any of PARAMS present)."""
    return any(name in args for name in PARAMS)


def from_args(args, default_limit: int = API_DEFAULT_LIMIT) -> tuple[RuleFilter, str, int, dict[str, str]]:
    """Return (filter, cursor, limit, field errors) from query parameters."""
    flt, errors = check_filter(args.get("route"), args.get("kind"), args.get("upstream"), args.get("q"))
    cursor, cursor_errors = check_cursor(args.get("cursor"))
    errors.update(cursor_errors)
    raw = args.get("limit")
    limit = default_limit
    if raw:
        limit = ascii_int(raw, 1, MAX_LIMIT) or 0
        if not limit:
            errors["limit"] = f"must be an integer between 1 and {MAX_LIMIT}"
    return flt, cursor, limit, errors
