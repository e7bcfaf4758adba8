"""Host names: the canonical rule host (once, at write time) and the request host (every request).

A rule host is stored lower-case ASCII (internationalized labels as punycode, `xn--...`) without
a trailing dot; a request host is compared after the normalization nginx applies to `$host`
(lua/rulegate/request.lua does the same). docs/rules.md "Hosts" is the spec.
"""
from __future__ import annotations

import string
import unicodedata

MAX_HOST = 253
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_LABEL_CATEGORIES = ("Ll", "Lo", "Lm", "Mn", "Mc", "Nd")


def ascii_lower(text: str) -> str:
    """Return text with A-Z lower-cased and every other character unchanged."""
    return text.translate(_LOWER)


def ascii_upper(text: str) -> str:
    """Return text with a-z upper-cased and every other character unchanged."""
    return text.translate(_UPPER)


def request_host(raw: str) -> str:
    """Return the host a gateway routes on: port stripped, A-Z lower-cased, one trailing dot removed."""
    if raw.startswith("["):
        end = raw.find("]")
        host = raw if end == -1 else raw[:end + 1]
    else:
        colon = raw.find(":")
        host = raw if colon == -1 else raw[:colon]
    host = host.translate(_LOWER)
    return host[:-1] if host.endswith(".") else host


def _label(label: str) -> str:
    if label.isascii():
        return label.translate(_LOWER)
    mapped = unicodedata.normalize("NFC", label.lower())
    if mapped.isascii() or unicodedata.normalize("NFKC", mapped.casefold()) != mapped or any(
            ch != "-" and unicodedata.category(ch) not in _LABEL_CATEGORIES for ch in mapped):
        raise ValueError(f"label {label!r} is not a plain internationalized label; write it in punycode (xn--...)")
    return "xn--" + mapped.encode("punycode").decode("ascii")


def canonical_rule_host(host: str) -> str:
    """Return the canonical form of a rule host; raise ValueError when it is not a host pattern.

    Patterns: an exact host, '*.' + a domain, or '*'. Canonical: A-Z lower-cased, one trailing dot
    removed, non-ASCII labels as IDNA punycode; then only a-z 0-9 '-' '.', no empty label, no
    leading or trailing '-', at most 253 characters.
    """
    if host == "*":
        return host
    wildcard = host.startswith("*.")
    bare = host[2:] if wildcard else host
    if bare.endswith("."):
        bare = bare[:-1]
    labels = [_label(label) for label in bare.split(".")]
    out = ".".join(labels)
    if not all(labels) or not _HOST_CHARS.issuperset("".join(labels)) \
            or out.startswith("-") or out.endswith("-"):
        raise ValueError("must be a host name (letters, digits, '-', '.'), '*.' + a domain, or '*'")
    out = "*." + out if wildcard else out
    if len(out) > MAX_HOST:
        raise ValueError(f"must be at most {MAX_HOST} characters")
    return out
