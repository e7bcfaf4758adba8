"""Known upstream names of a namespace: reported by live gateways (fleet heartbeats) and declared by an admin.

A rule write naming an upstream outside the known names is refused (unless forced); when nothing is known (no
live gateway reports names and none are declared) nothing is checked.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from rulegate.connection import redis_call
from rulegate.fleet import read_fleet
from rulegate.keyspace import Keys

MAX_DECLARED = 512
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


@dataclass(frozen=True)
class Known:
    """The upstream names of a namespace and where they come from."""

    declared: tuple[str, ...]
    reported: dict[str, tuple[str, ...]]  # live gateway id -> names it reported

    @property
    def names(self) -> tuple[str, ...]:
        """Return every known name, sorted."""
        return tuple(sorted(set(self.declared).union(*self.reported.values())))

    @property
    def checked(self) -> bool:
        """Return whether rule writes are checked (some name is known)."""
        return bool(self.names)


def check_names(value: Any) -> tuple[list[str], dict[str, str]]:
    """Return (sorted unique names, field errors) for a declared list of upstream names."""
    if not isinstance(value, list):
        return [], {"upstreams": "must be a list of upstream names"}
    if len(value) > MAX_DECLARED:
        return [], {"upstreams": f"at most {MAX_DECLARED} names"}
    errors = {}
    for i, name in enumerate(value):
        if not isinstance(name, str) or not 1 <= len(name) <= 128 or not set(name) <= NAME_CHARS:
            errors[f"upstreams[{i}]"] = "must be 1-128 characters of letters, digits, '_', '.', ':' or '-'"
    return sorted(set(value)) if not errors else [], errors


class UpstreamRegistry:
    """Reads the declared and reported upstream names of namespaces; writes the declared ones."""

    def __init__(self, client):
        self.client = client

    def declared(self, ns: str) -> tuple[str, ...]:
        """Return the admin-declared names (empty when none or undecodable)."""
        raw = redis_call(self.client.get, Keys(ns).upstreams)
        if raw is None:
            return ()
        try:
            names = msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.UnpackException):
            return ()
        return tuple(n for n in names if isinstance(n, str)) if isinstance(names, list) else ()

    def declare(self, ns: str, names: list[str]) -> None:
        """Replace the declared names of ns (an empty list removes the key)."""
        key = Keys(ns).upstreams
        if names:
            redis_call(self.client.set, key, msgpack.packb(sorted(set(names)), use_bin_type=True))
        else:
            redis_call(self.client.delete, key)

    def reported(self, ns: str, silent_after: float, now: float | None = None) -> dict[str, tuple[str, ...]]:
        """Return gateway id -> reported names for gateways that sent a heartbeat in the last silent_after s."""
        now = time.time() if now is None else now
        beats = redis_call(read_fleet, self.client, ns)
        return {gw: beat.upstreams for gw, beat in beats.items()
                if beat is not None and beat.upstreams and beat.heartbeat_at >= now - silent_after}

    def known(self, ns: str, silent_after: float, now: float | None = None) -> Known:
        """Return the declared and live-reported names of ns."""
        return Known(self.declared(ns), self.reported(ns, silent_after, now))


def named_upstreams(rule: Any) -> dict[str, str]:
    """Return field path -> upstream name for every upstream a rule dict names (default, policies, buckets, a
    ramp guard's control, degrade action); tolerant of malformed input (only string names are returned)."""
    out: dict[str, str] = {}
    if not isinstance(rule, dict):
        return out

    def add(path: str, value: Any) -> None:
        if isinstance(value, str):
            out[path] = value

    add("default", rule.get("default"))
    policies = rule.get("policies")
    for i, p in enumerate(policies if isinstance(policies, list) else []):
        if not isinstance(p, dict):
            continue
        add(f"policies[{i}].upstream", p.get("upstream"))
        buckets = p.get("buckets")
        for j, b in enumerate(buckets if isinstance(buckets, list) else []):
            if isinstance(b, dict):
                add(f"policies[{i}].buckets[{j}].upstream", b.get("upstream"))
        ramp = p.get("ramp")
        guard = ramp.get("guard") if isinstance(ramp, dict) else None
        if isinstance(guard, dict):  # a control no gateway routes to would never give the guard a sample
            add(f"policies[{i}].ramp.guard.control", guard.get("control"))
    action = rule.get("action")
    if isinstance(action, dict) and action.get("type") == "upstream":
        add("action.upstream", action.get("upstream"))
    return out


def unknown_upstreams(rule: dict, known: Known) -> dict[str, str]:
    """Return field errors for the upstreams of a (validated) rule outside the known names ({} when unchecked)."""
    if not known.checked:
        return {}
    names = set(known.names)
    return {path: f"upstream {name!r} is not known to any gateway of this namespace (known: "
                  f"{', '.join(known.names[:10])}{', ...' if len(known.names) > 10 else ''}); "
                  "check the spelling or save with force"
            for path, name in named_upstreams(rule).items() if name not in names}

