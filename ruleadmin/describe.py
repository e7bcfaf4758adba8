"""A rule in plain language for the rule page and the simulator: which requests it matches and what happens."""
from __future__ import annotations

import math
import time

from rulegate.schema import BUCKETS, NAMESPACE_SCOPE, ramp_share

from .display import UNITS_PER_PERCENT, iso_utc, percent

_KEY = {"header": "request header {name}", "cookie": "cookie {name}", "arg": "query argument {name}",
        "ip": "the client IP"}


def _list(items: list, limit: int = 8) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def route_text(rule: dict) -> str:
    """Return which requests a rule's route matches (a degrade rule of scope namespace: every request of the
    namespace, whatever its host and path, tried before routing)."""
    route = rule["route"]
    methods = route.get("methods")
    if rule.get("scope") == NAMESPACE_SCOPE:
        return (f"{', '.join(methods) if methods else 'Any'} request of the namespace, whatever its host and path "
                "(scope namespace: tried before routing, ahead of every route's rules)")
    text = f"{', '.join(methods) if methods else 'Any'} request to host {route['host']} whose path starts with " \
           f"{route['path']}"
    return text


def key_text(rule: dict) -> str:
    """Return what identifies a user (the key) for a rule, or ''."""
    key = rule.get("key")
    if not key:
        return ""
    return _KEY.get(key["source"], key["source"]).format(name=key.get("name", ""))


def bucket_shares(p: dict, share: int) -> list[tuple[str, int]]:
    """Return (upstream, units) of each bucket of a ramped percent policy at effective share E (docs/rules.md)."""
    total = sum(b["weight"] for b in p["buckets"])
    out, running, edge = [], 0, 0
    for b in p["buckets"]:
        running += b["weight"]
        upper = share * running // total
        out.append((b["upstream"], upper - edge))
        edge = upper
    return out


def ramp_text(ramp: dict) -> str:
    """Return a ramp's schedule: '1% until 2027-01-01T00:00:00Z, then in 5 steps to 20% at ...'."""
    how = "linearly" if ramp["mode"] == "linear" else f"in {ramp['steps']} step{'s' if ramp['steps'] > 1 else ''}"
    return (f"{percent(ramp['from'])} until {iso_utc(ramp['start']) or '1970-01-01T00:00:00Z'}, then {how} "
            f"to {percent(ramp['to'])} at {iso_utc(ramp['end'])}")


def policy_text(p: dict, now: float | None = None) -> str:
    """Return one split policy as 'if ... -> upstream' (a ramped share as it is at now, default: the clock)."""
    ptype = p["type"]
    if ptype == "percent" and "ramp" in p:
        at = time.time() if now is None else now
        share = ramp_share(p["ramp"], at)
        shares = "; ".join(f"{percent(units)} of users → {up}" for up, units in bucket_shares(p, share))
        rest = f"; the other {percent(BUCKETS - share)} go on to the next policy" if share < BUCKETS else ""
        return (f"ramped share, {percent(share)} at {iso_utc(math.floor(at)) or '1970-01-01T00:00:00Z'}: {shares}"
                f"{rest} (ramp: {ramp_text(p['ramp'])})")
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


def window_text(window: dict) -> str:
    """Return ' from <start> until <end>' for a rule's window ('' for none)."""
    text = ""
    if window.get("start") is not None:
        text += f" from {iso_utc(window['start']) or '1970-01-01T00:00:00Z'}"
    if window.get("end") is not None:
        text += f" until {iso_utc(window['end'])}"
    return text


def describe(rule: dict, now: float | None = None) -> list[str]:
    """Return sentences describing a (validated) rule; ramped shares and windows as they are at now (the clock)."""
    lines = [f"Matches: {route_text(rule)}."]
    if not rule.get("enabled", True):
        lines.append("Disabled: gateways skip this rule.")
    key = key_text(rule)
    if rule["kind"] == "split":
        window = rule.get("window")
        if window:
            at = time.time() if now is None else now
            outside = (window.get("start") is not None and at < window["start"]) or (
                window.get("end") is not None and at >= window["end"])
            lines.append(f"Active{window_text(window)} (UTC); outside this window gateways skip the rule"
                         + (" — it is outside it now." if outside else "."))
        if key:
            lines.append(f"Users are told apart by {key}.")
        lines += [f"Policy {i + 1}: {policy_text(p, now)}." for i, p in enumerate(rule["policies"])]
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
        if p["type"] == "percent" and "ramp" in p:
            ramp = p["ramp"]
            parts.append(f"{'/'.join(b['upstream'] for b in p['buckets'])} ramp {percent(ramp['from'])}→"
                         f"{percent(ramp['to'])}")
        elif p["type"] == "percent":
            parts += [f"{b['upstream']} {percent(b['weight'])}" for b in p["buckets"]]
        else:
            parts.append(f"{p['type']} → {p['upstream']}")
    return ", ".join(parts) + f"; else {rule['default']}"


MAX_TIMELINE_POINTS = 11


def _stage_starts(ramp: dict) -> list[int]:
    """Return when each stage of a ramp begins: quarters of a linear one, the first second of each step."""
    start, span = ramp["start"], ramp["end"] - ramp["start"]
    parts = ramp.get("steps", 4)
    stages = range(parts) if parts <= MAX_TIMELINE_POINTS else sorted(
        {round(i * (parts - 1) / (MAX_TIMELINE_POINTS - 1)) for i in range(MAX_TIMELINE_POINTS)})
    return [start - (-k * span // parts) for k in stages]  # ceil(k * span / parts): the first second of stage k


def ramp_timeline(ramp: dict, now: float | None = None) -> dict:
    """Return the rule page's timeline of a ramp: points (time, share, state past/now/future), the share now,
    and how far through the ramp now is (0 … 100, for the bar)."""
    at = time.time() if now is None else now
    share = ramp_share(ramp, at)
    points = [{"ts": ts, "share": ramp_share(ramp, ts), "label": "start" if ts == ramp["start"] else ""}
              for ts in _stage_starts(ramp)]
    points.append({"ts": ramp["end"], "share": ramp["to"], "label": "end"})
    current = max((i for i, pt in enumerate(points) if pt["ts"] <= at), default=None)
    for i, pt in enumerate(points):
        pt["state"] = "now" if i == current else "past" if current is not None and i < current else "future"
    span = ramp["end"] - ramp["start"]
    done = min(max(at - ramp["start"], 0), span) * 100 / span
    return {"share": share, "points": points, "done": round(done, 1), "text": ramp_text(ramp),
            "now": math.floor(at), "before": at < ramp["start"], "after": at >= ramp["end"]}


def ramps(rule: dict, now: float | None = None) -> list[dict]:
    """Return the timeline of each ramped percent policy of a split rule, with its policy number (1-based)."""
    if rule["kind"] != "split":
        return []
    return [dict(ramp_timeline(p["ramp"], now), policy=i + 1,
                 buckets=bucket_shares(p, ramp_share(p["ramp"], time.time() if now is None else now)))
            for i, p in enumerate(rule["policies"]) if p["type"] == "percent" and "ramp" in p]
