"""How ruleadmin shows values to people: times as ISO 8601 UTC plus a relative phrase, weights as percent.

Stored weights and percentages are integers in units of 0.01 % (10000 = 100 %, see docs/rules.md); every page
shows and accepts them as percent. Registered as Jinja filters by `init_app`.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from flask import Flask
from markupsafe import Markup, escape

UNITS_PER_PERCENT = 100  # stored weight units per percent (10000 = 100 %)
MAX_UNITS = 10_000


def iso_utc(ts: float | int | None) -> str:
    """Return a UNIX time as '2026-11-30T05:40:29Z' ('' for none or 0)."""
    if not ts:
        return ""
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def relative(ts: float | int | None, now: float | None = None) -> str:
    """Return '3 min ago', 'in 2 h', 'just now' for a UNIX time ('' for none or 0)."""
    if not ts:
        return ""
    delta = (time.time() if now is None else now) - float(ts)
    ahead, seconds = delta < 0, abs(delta)
    if seconds < 10:
        return "just now"
    for limit, size, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h"), (86400 * 60, 86400, "d")):
        if seconds < limit:
            amount = int(seconds // size)
            break
    else:
        amount, unit = int(seconds // (86400 * 30)), "months"
    return f"in {amount} {unit}" if ahead else f"{amount} {unit} ago"


def when(ts: float | int | None, now: float | None = None) -> Markup:
    """Return a <time> element: ISO 8601 UTC text with the relative phrase after it ('' for none)."""
    if not ts:
        return Markup("")
    iso = iso_utc(ts)
    return Markup('<time datetime="{0}" title="{0}">{0}</time> <span class="ago">({1})</span>').format(
        escape(iso), escape(relative(ts, now)))


def percent(units: int | None) -> str:
    """Return stored weight units as percent text: 1250 -> '12.5%', 10000 -> '100%', 1 -> '0.01%'."""
    if units is None:
        return ""
    text = f"{Decimal(int(units)) / UNITS_PER_PERCENT:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}%"


def parse_percent(text: str | int | float) -> int:
    """Return stored weight units for a percent ('12.5', '12.5%', 12.5); raise ValueError naming the problem.

    At most two decimals (the stored unit is 0.01 %), between 0 and 100.
    """
    if isinstance(text, bool):
        raise ValueError("must be a percentage such as 12.5%")
    raw = str(text).strip().removesuffix("%").strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError("must be a percentage such as 12.5%") from None
    if not value.is_finite():
        raise ValueError("must be a percentage such as 12.5%")
    units = value * UNITS_PER_PERCENT
    if units != units.to_integral_value():
        raise ValueError("must have at most two decimals (the smallest step is 0.01%)")
    if not 0 <= units <= MAX_UNITS:
        raise ValueError("must be between 0% and 100%")
    return int(units)


def init_app(app: Flask) -> None:
    """Register the filters: |iso_utc, |relative, |when, |percent."""
    app.add_template_filter(iso_utc, "iso_utc")
    app.add_template_filter(relative, "relative")
    app.add_template_filter(when, "when")
    app.add_template_filter(percent, "percent")
