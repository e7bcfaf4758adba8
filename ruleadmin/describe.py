"""A rule in plain language for the rule page and the simulator: which requests it matches and what happens."""
from __future__ import annotations

from .display import UNITS_PER_PERCENT, iso_utc, percent

_KEY = {"header": "request header {name}", "cookie": "cookie {name}", "arg": "query argument {name}",
        "ip": "the client IP"}


def _list(items: list, limit: int = 8) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def route_text(rule: dict) -> str:
    """Return which requests a rule's route matches."""
    route = rule["route"]
    methods = route.get("methods")
    text = f"{', '.join(methods) if methods else 'Any'} request to host {route['host']} whose path starts with " \
           f"{route['path']}"
    return text


def key_text(rule: dict) -> str:
    """Return what identifies a user (the key) for a rule, or ''."""
    key = rule.get("key")
    if not key:
        return ""
    return _KEY.get(key["source"], key["source"]).format(name=key.get("name", ""))


def policy_text(p: dict) -> str:
    """Return one split policy as 'if ... -> upstream'."""
    ptype = p["type"]
    if ptype == "percent":
        shares = "; ".join(f"{percent(b['weight'])} of users → {b['upstream']}" for b in p["buckets"])
        rest = UNITS_PER_PERCENT * 100 - sum(b["weight"] for b in p["buckets"])
        return shares + (f"; the other {percent(rest)} go on to the next policy" if rest > 0 else "")
    cond = {"uid_range": lambda: "user id in " + _list([f"{lo}–{hi}" for lo, hi in p["ranges"]]),
            "uid_suffix": lambda: "user id ends with " + _list(p["suffixes"]),
            "ip_cidr": lambda: "client IP in " + _list(p["cidrs"]),
            "header": lambda: f"header {p['name']} is " + _list(p["values"]),
            "cookie": lambda: f"cookie {p['name']} is " + _list(p["values"]),
            "arg": lambda: f"query argument {p['name']} is " + _list(p["values"])}[ptype]()
    return f"if {cond} → {p['upstream']}"


def action_text(rule: dict) -> str:
    """Return what a degrade rule does to a request it affects."""
    a = rule["action"]
    if a["type"] == "static":
        return f"answer {a.get('status', 503)} with a fixed body ({len(a.get('body', ''))} bytes)"
    if a["type"] == "redirect":
        return f"redirect ({a.get('status', 302)}) to {a['location']}"
    if a["type"] == "upstream":
        return f"send it to upstream {a['upstream']}"
    retry = f", Retry-After {a['retry_after']} s" if a.get("retry_after") is not None else ""
    return f"reject it with status {a.get('status', 503)}{retry}"


def describe(rule: dict) -> list[str]:
    """Return sentences describing a (validated) rule."""
    lines = [f"Matches: {route_text(rule)}."]
    if not rule.get("enabled", True):
        lines.append("Disabled: gateways skip this rule.")
    key = key_text(rule)
    if rule["kind"] == "split":
        if key:
            lines.append(f"Users are told apart by {key}.")
        lines += [f"Policy {i + 1}: {policy_text(p)}." for i, p in enumerate(rule["policies"])]
        lines.append(f"Everything else → {rule['default']}.")
        return lines
    share = rule.get("percent", 100)
    who = "Every matching request" if share == 100 else \
        f"{percent(round(share * UNITS_PER_PERCENT))} of matching requests" + (f" (by {key})" if key else "")
    window = rule.get("window") or {}
    when = ""
    if window.get("start"):
        when += f" from {iso_utc(window['start'])}"
    if window.get("end"):
        when += f" until {iso_utc(window['end'])}"
    lines.append(f"{who}{when}: {action_text(rule)}.")
    return lines


def targets(rule: dict) -> str:
    """Return a rule's upstreams with their shares for a table cell ('canary 12.5%, header → beta; else stable')."""
    if rule["kind"] == "degrade":
        a = rule["action"]
        share = percent(round(rule.get("percent", 100) * UNITS_PER_PERCENT))
        return f"{a['type']}{' ' + a['upstream'] if a['type'] == 'upstream' else ''} for {share}"
    parts = []
    for p in rule["policies"]:
        if p["type"] == "percent":
            parts += [f"{b['upstream']} {percent(b['weight'])}" for b in p["buckets"]]
        else:
            parts.append(f"{p['type']} → {p['upstream']}")
    return ", ".join(parts) + f"; else {rule['default']}"
