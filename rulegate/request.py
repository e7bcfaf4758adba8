"""The request the evaluator sees, and how it is built from raw HTTP values.

lua/rulegate/request.lua builds the same request inside nginx; docs/rules.md "Requests" is the
spec both follow. Strings are text; bytes that are not UTF-8 travel as the lone surrogates
U+DC80..U+DCFF (Python's "surrogateescape"), so every request string maps to exactly the bytes
nginx saw (`wire_bytes`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .hostnames import ascii_lower, ascii_upper, request_host

MAX_ARGS = 100
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def wire_bytes(text: str) -> bytes:
    """Return the bytes a request string stands for: UTF-8, U+DC80..U+DCFF as raw bytes; never raises.

    A string holding any other lone surrogate is encoded with every surrogate in its 3-byte form.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def from_wire(raw: bytes) -> str:
    """Return request bytes as a string (invalid UTF-8 as lone surrogates, reversible by wire_bytes)."""
    return raw.decode("utf-8", "surrogateescape")


def _unescape(raw: bytes) -> bytes:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = _ESCAPE.sub(lambda m: bytes((int(m[1], 16),)), raw)
    return raw


def parse_query(query: str, max_args: int = MAX_ARGS) -> dict[str, str]:
    """Return the arguments of a raw query string: the first `max_args` '&'-separated segments count.

    A segment is `name=value` (no '=': the value is ''); '+' is a space, then %XX is decoded (an
    invalid escape stays as it is); a segment with an empty name is ignored but counted; the
    first occurrence of a name counts.
    """
    out: dict[str, str] = {}
    for segment in wire_bytes(query).split(b"&", max_args)[:max_args]:
        name, _, value = segment.partition(b"=")
        name = _unescape(name)
        if name:
            key = from_wire(name)
            if key not in out:
                out[key] = from_wire(_unescape(value))
    return out


def parse_cookies(raw: str) -> dict[str, str]:
    """Return the cookies of a Cookie header: `name=value` pieces split on ';', spaces and tabs trimmed.

    Pieces without '=' or with an empty name are ignored; the first occurrence of a name counts;
    values are taken as they are (no unquoting, no decoding).
    """
    out: dict[str, str] = {}
    for piece in raw.split(";"):
        name, eq, value = piece.partition("=")
        name = name.strip(" \t")
        if eq and name and name not in out:
            out[name] = value.strip(" \t")
    return out


def header_map(headers: Headers) -> dict[str, str]:
    """Return lower-case name -> value; the first occurrence of a name counts, Cookie lines join with '; '."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    cookie: str | None = None
    for name, value in items:
        name, value = ascii_lower(str(name)), str(value)
        if name == "cookie":
            cookie = value if cookie is None else f"{cookie}; {value}"
        elif name not in out:
            out[name] = value
    if cookie is not None:
        out["cookie"] = cookie
    return out


@dataclass(frozen=True, slots=True)
class Request:
    """What the evaluator needs of an HTTP request, as a gateway built it (see `from_dict`).

    `host` is normalized (`hostnames.request_host`), `path` has no query, header names are
    lower-case; `headers`, `cookies` and `args` hold the counting (first) value of each name.
    """

    host: str
    path: str = "/"
    method: str = "GET"
    ip: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    args: Mapping[str, str] = field(default_factory=dict)
    now: float | None = None
    request_id: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Request":
        """Return the Request of a JSON-shaped mapping (the vectors', the sidecar's, the simulator's).

        `host` is the raw Host header (port, case and a trailing dot are normalized); `path` the
        request target, whose query gives the args unless `args` is given; `headers` an object or a
        list of [name, value] pairs; `cookies`, when absent, come from the Cookie header; `request_id`
        the id a degrade keyed on `request` hashes (absent: a random id per decision).
        """
        target = str(data.get("path") or "/")
        path, has_query, query = target.partition("?")
        headers = header_map(data.get("headers") or {})
        cookies = data.get("cookies")
        args = data.get("args")
        return cls(
            host=request_host(str(data.get("host", ""))), path=path or "/",
            method=ascii_upper(str(data.get("method") or "GET")), ip=str(data.get("ip") or ""),
            headers=headers,
            cookies={str(k): str(v) for k, v in cookies.items()} if cookies is not None
            else parse_cookies(headers.get("cookie", "")),
            args={str(k): str(v) for k, v in list(args.items())[:MAX_ARGS]} if args is not None
            else parse_query(query) if has_query else {},
            now=data.get("now"), request_id=str(data.get("request_id") or ""))
