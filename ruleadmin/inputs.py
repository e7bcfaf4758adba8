"""Untrusted request input: bounded integers, same-origin redirect targets, bounded JSON, readable bodies."""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest

from .display import UNITS_PER_PERCENT, parse_percent

MAX_REVISION = 10**15  # below 2**53 (exact in Lua and JSON numbers) and far below Redis stream ids' 2**64
MAX_JSON_DEPTH = 32
_ASCII_UINT = re.compile(r"[0-9]{1,16}")
_ETAG = re.compile(r'(?:W/)?"?([0-9]{1,16})"?')
_BODY_READ_ERRORS = (OSError, ParseException)  # gunicorn: NoMoreData is an OSError, chunk errors ParseExceptions


def ascii_int(text: str | None, lo: int = 0, hi: int = MAX_REVISION) -> int | None:
    """Return text as an int when it is 1-16 ASCII digits within [lo, hi], else None (never raises)."""
    if not isinstance(text, str) or not _ASCII_UINT.fullmatch(text):
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def etag_revision(text: str) -> int | None:
    """Return the revision in an If-Match value ("12", W/"12" or 12), else None."""
    m = _ETAG.fullmatch(text.strip())
    return ascii_int(m.group(1)) if m else None


def safe_next(target: str | None, fallback: str) -> str:
    """Return target when it is a path on this site (no scheme, host, '//', backslash or control char), else fallback."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return fallback
    if "\\" in target or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in target):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    return target


def json_depth_ok(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Return True when value nests lists/objects at most `limit` levels deep (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def percent_strings(data: Any) -> tuple[Any, dict[str, str]]:
    """Return (rule input, field errors) with percent strings ("12.5%") converted where the rule takes a share:
    bucket weights and ramp from/to to stored units (1250), a degrade `percent` to its number (12.5). Other values
    pass unchanged (the schema checks them); the input is not modified in place."""
    if not isinstance(data, dict):
        return data, {}
    errors: dict[str, str] = {}
    out = dict(data)
    if isinstance(out.get("percent"), str):
        try:
            units = parse_percent(out["percent"])
            out["percent"] = units // UNITS_PER_PERCENT if units % UNITS_PER_PERCENT == 0 else units / UNITS_PER_PERCENT
        except ValueError as exc:
            errors["percent"] = str(exc)
    policies = out.get("policies")
    if isinstance(policies, list):
        out["policies"] = [_policy_percents(p, i, errors) for i, p in enumerate(policies)]
    return out, errors


def _policy_percents(policy: Any, i: int, errors: dict[str, str]) -> Any:
    if not isinstance(policy, dict):
        return policy
    ramp = policy.get("ramp")
    if isinstance(ramp, dict) and any(isinstance(ramp.get(f), str) for f in ("from", "to")):
        ramp = dict(ramp)
        for field in ("from", "to"):
            if isinstance(ramp.get(field), str):
                try:
                    ramp[field] = parse_percent(ramp[field])
                except ValueError as exc:
                    errors[f"policies[{i}].ramp.{field}"] = str(exc)
        policy = {**policy, "ramp": ramp}
    buckets = policy.get("buckets")
    if not isinstance(buckets, list):
        return policy
    converted = []
    for j, bucket in enumerate(buckets):
        if isinstance(bucket, dict) and isinstance(bucket.get("weight"), str):
            try:
                bucket = {**bucket, "weight": parse_percent(bucket["weight"])}
            except ValueError as exc:
                errors[f"policies[{i}].buckets[{j}].weight"] = str(exc)
        converted.append(bucket)
    return {**policy, "buckets": converted}


def _brackets(s: str | bytes) -> int:
    """Return how many '[' and '{' s holds (in any JSON encoding: UTF-16/32 code units hold the same byte)."""
    if isinstance(s, str):
        return s.count("[") + s.count("{")
    return s.count(b"[") + s.count(b"{")


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, but a body nested too deeply is invalid JSON (ValueError), never a RecursionError."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Return the decoded JSON; raise ValueError when it is malformed or nests deeper than MAX_JSON_DEPTH."""
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
        if _brackets(s) <= MAX_JSON_DEPTH:
            return value  # every nesting level opens with its own bracket: cannot be deeper than their count
        if not json_depth_ok(value):
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        return value


class _GuardedInput:
    """wsgi.input whose read errors (a broken chunked body, a dropped client) are a 400, not a 500."""

    def __init__(self, stream):
        self._stream = stream

    def _guard(self, fn: Callable, *args) -> Any:
        try:
            return fn(*args)
        except _BODY_READ_ERRORS:
            raise BadRequest("The request body could not be read (broken chunked encoding or connection).") from None

    def read(self, *args) -> bytes:
        return self._guard(self._stream.read, *args)

    def readline(self, *args) -> bytes:
        return self._guard(self._stream.readline, *args)

    def readlines(self, *args) -> list[bytes]:
        return self._guard(self._stream.readlines, *args)

    def __iter__(self):
        return iter(self.readline, b"")


class GuardedInputMiddleware:
    """WSGI middleware wrapping wsgi.input in _GuardedInput."""

    def __init__(self, wsgi_app: Callable):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable):
        if "wsgi.input" in environ:
            environ["wsgi.input"] = _GuardedInput(environ["wsgi.input"])
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask) -> None:
    """Install the bounded JSON provider and the guarded request body on app."""
    app.json = BoundedJSONProvider(app)
    app.wsgi_app = GuardedInputMiddleware(app.wsgi_app)
