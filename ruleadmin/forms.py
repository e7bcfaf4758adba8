"""WTForms for the web UI and the conversion between form data and rule dicts (both directions)."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, NumberRange, Optional

from rulegate.schema import ACTIONS, KEY_SOURCES, POLICY_TYPES

from .display import UNITS_PER_PERCENT, parse_percent, percent

_SPLIT = re.compile(r"[\n,]+")


def _items(text: str | None) -> list[str]:
    return [x.strip() for x in _SPLIT.split(text or "") if x.strip()]


RAMP_FIELDS = ("ramp_mode", "ramp_from", "ramp_to", "ramp_start", "ramp_end", "ramp_steps")
# which fields each choice uses (the form shows only these; ruleadmin/static/rule_form.js hides the rest instantly)
POLICY_FIELDS = {"uid_range": ("values", "upstream"), "uid_suffix": ("values", "upstream"),
                 "ip_cidr": ("values", "upstream"), "header": ("name", "values", "upstream"),
                 "cookie": ("name", "values", "upstream"), "arg": ("name", "values", "upstream"),
                 "percent": ("buckets", "salt") + RAMP_FIELDS}
ACTION_FIELDS = {"static": ("status", "content_type", "headers", "body"), "redirect": ("status", "location"),
                 "upstream": ("upstream",), "reject": ("status", "retry_after")}
POLICY_FIELD_TYPES = {f: [t for t, fs in POLICY_FIELDS.items() if f in fs]
                      for f in ("name", "values", "upstream", "buckets", "salt") + RAMP_FIELDS}
ACTION_FIELD_TYPES = {f: [t for t, fs in ACTION_FIELDS.items() if f in fs]
                      for f in ("status", "content_type", "headers", "body", "location", "upstream", "retry_after")}
POLICY_LABELS = {"uid_range": "user id in a range", "uid_suffix": "user id ends with", "ip_cidr": "client IP in a network",
                 "header": "header value", "cookie": "cookie value", "arg": "query argument value",
                 "percent": "a share of users (percent)"}
ACTION_LABELS = {"static": "answer with a fixed response", "redirect": "redirect", "upstream": "send to another upstream",
                 "reject": "reject with a status"}


class PolicyForm(Form):
    """One split policy; `values` holds ranges/suffixes/CIDRs/values, `buckets` 'upstream share' lines."""

    type = SelectField("Matches by", choices=[SelectChoice(t, f"{t}: {POLICY_LABELS[t]}") for t in POLICY_TYPES])
    name = StringField("Header, cookie or argument name", validators=[Optional(), Length(max=128)])
    values = TextAreaField("Values", validators=[Optional(), Length(max=16384)],
                           description="one per line: lo-hi user id ranges, user id suffixes, CIDRs (10.0.0.0/8) "
                                       "or exact values")
    upstream = StringField("Upstream", validators=[Optional(), Length(max=128)],
                           description="where matching requests go")
    buckets = TextAreaField("Shares", validators=[Optional(), Length(max=16384)],
                            description="one 'upstream percent' per line, e.g. canary 12.5% (steps of 0.01%, "
                                        "at most 100% in all; the rest goes on to the next policy)")
    salt = StringField("Salt", validators=[Optional(), Length(max=64)],
                       description="optional; a new salt reshuffles which users fall in each share")
    ramp_mode = SelectField("Ramp", choices=[SelectChoice("", "no ramp: the shares above are fixed"),
                                             SelectChoice("linear", "linear: the total share moves every second"),
                                             SelectChoice("step", "in steps: the total share moves in equal stages")],
                            default="", validate_choice=False,
                            description="with a ramp the shares above are proportions of the ramped total share")
    ramp_from = StringField("Ramp: total share before the start", validators=[Optional(), Length(max=16)],
                            description="e.g. 1%")
    ramp_to = StringField("Ramp: total share from the end on", validators=[Optional(), Length(max=16)],
                          description="e.g. 20% (lower than the start share ramps down)")
    ramp_start = StringField("Ramp start (UTC)", validators=[Optional(), Length(max=32)],
                             description="YYYY-MM-DDTHH:MM")
    ramp_end = StringField("Ramp end (UTC)", validators=[Optional(), Length(max=32)],
                           description="at most 366 days after the start")
    ramp_steps = IntegerField("Ramp steps", validators=[Optional(), NumberRange(1, 1000)],
                              description="for a ramp in steps: how many equal stages (1 to 1000)")
    ramp_guard = HiddenField(validators=[Optional(), Length(max=4096)])  # the stored guard (API-only), kept as JSON


def policy_fields(ptype: str | None, policy: PolicyForm | None = None) -> tuple[str, ...]:
    """Return the fields shown for a policy type (a percent policy also shows an upstream it still holds)."""
    shown = POLICY_FIELDS.get(ptype or "", POLICY_FIELDS["percent"])
    if ptype == "percent" and policy is not None and (policy.upstream.data or "").strip():
        shown += ("upstream",)
    return shown


class _RuleForm(FlaskForm):
    id = StringField("Id", validators=[Length(max=64)])
    description = StringField("Description", validators=[Optional(), Length(max=1024)])
    enabled = BooleanField("Enabled", default=True)
    host = StringField("Host", validators=[Length(max=253)])
    path = StringField("Path prefix", default="/", validators=[Length(max=512)])
    methods = StringField("Methods", validators=[Optional(), Length(max=128)], description="e.g. GET, POST; empty = all")
    key_source = SelectField("Key source", choices=[SelectChoice("", "-")] + list(KEY_SOURCES), default="",
                             validate_choice=False)
    key_name = StringField("Key name", validators=[Optional(), Length(max=128)])
    expected_rev = HiddenField()
    force = BooleanField("Save anyway: I checked these upstream names exist", default=False)


class SplitForm(_RuleForm):
    """Create/edit a split rule: key, ordered policies, default upstream, active window."""

    default = StringField("Default upstream", validators=[Length(max=128)])
    policies = FieldList(FormField(PolicyForm), min_entries=0, max_entries=32)
    window_start = StringField("Active from (UTC)", validators=[Optional(), Length(max=32)],
                               description="YYYY-MM-DDTHH:MM, empty = now; outside its window the rule is skipped")
    window_end = StringField("Active until (UTC)", validators=[Optional(), Length(max=32)])


class DegradeForm(_RuleForm):
    """Create/edit a degrade rule: action and its fields, percent, window. `breaker` and `scope` are API-only:
    not offered here, and saving an edit keeps the stored rule's (web.API_ONLY_FIELDS)."""

    action_type = SelectField("Action", choices=[SelectChoice(a, f"{a}: {ACTION_LABELS[a]}") for a in ACTIONS])
    status = IntegerField("Status", validators=[Optional(), NumberRange(100, 599)])
    content_type = StringField("Content type", validators=[Optional(), Length(max=128)])
    headers = TextAreaField("Headers", validators=[Optional(), Length(max=16384)], description="'Name: value' per line")
    body = TextAreaField("Body", validators=[Optional(), Length(max=65536)])
    location = StringField("Location", validators=[Optional(), Length(max=2048)])
    upstream = StringField("Fallback upstream", validators=[Optional(), Length(max=128)])
    retry_after = IntegerField("Retry-After (s)", validators=[Optional(), NumberRange(0, 86400)])
    percent = StringField("Share of matching requests", default="100%", validators=[Optional(), Length(max=16)],
                          description="e.g. 12.5% (steps of 0.01%); 100% = every matching request")
    window_start = StringField("Active from (UTC)", validators=[Optional(), Length(max=32)],
                               description="YYYY-MM-DDTHH:MM, empty = now")
    window_end = StringField("Active until (UTC)", validators=[Optional(), Length(max=32)])
    salt = StringField("Salt", validators=[Optional(), Length(max=64)])


class SimulateForm(FlaskForm):
    """A request to simulate."""

    host = StringField("Host", validators=[Length(max=253)])
    path = StringField("Path", default="/", validators=[Length(max=2048)])
    method = SelectField("Method", choices=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    ip = StringField("Client IP", validators=[Optional(), Length(max=64)])
    headers = TextAreaField("Headers", validators=[Optional(), Length(max=8192)], description="'name: value' per line")
    cookies = TextAreaField("Cookies", validators=[Optional(), Length(max=8192)], description="'name=value' per line")
    args = TextAreaField("Query args", validators=[Optional(), Length(max=8192)], description="'name=value' per line")
    now = StringField("At (UTC)", validators=[Optional(), Length(max=32)],
                      description="YYYY-MM-DDTHH:MM[:SS]; empty = now (windows and ramps are decided at this time)")


def simulate_time(form: SimulateForm) -> tuple[int, dict[str, str]]:
    """Return the simulated request's clock from the form (empty: the current second) and field errors."""
    errors = FormErrors()
    at = _parse_utc(form.now.data, "now", errors)
    return int(time.time()) if at is None else at, errors


class ConfirmForm(FlaskForm):
    """A confirmation (rollback, delete, toggle) carrying the revision the page showed."""

    expected_rev = HiddenField()


class NamespaceForm(FlaskForm):
    """Create a namespace."""

    name = StringField("Name", validators=[Length(max=64)])


class UpstreamsForm(FlaskForm):
    """The declared upstream names of a namespace (admin)."""

    names = TextAreaField("Declared upstream names", validators=[Length(max=70_000)],
                          description="one per line; rule writes naming anything else are refused unless confirmed")


# ---- form -> rule ------------------------------------------------------------------------------
class FormErrors(dict):
    """Field name -> message for problems found while parsing form text (before schema checks)."""


def _pairs(text: str | None, sep: str) -> dict[str, str]:
    out = {}
    for line in (text or "").splitlines():
        if line.strip():
            k, _, v = line.partition(sep)
            out[k.strip()] = v.strip()
    return out


def _parse_utc(text: str | None, field: str, errors: FormErrors) -> int | None:
    if not text or not text.strip():
        return None
    try:
        return int(datetime.fromisoformat(text.strip()).replace(tzinfo=timezone.utc).timestamp())
    except ValueError:
        errors[field] = "must look like 2026-01-31T18:00 (UTC)"
        return None


def _common(form: _RuleForm, kind: str) -> dict:
    rule: dict[str, Any] = {"id": (form.id.data or "").strip(), "kind": kind, "enabled": bool(form.enabled.data),
                            "description": form.description.data or "",
                            "route": {"host": (form.host.data or "").strip(), "path": (form.path.data or "").strip()}}
    methods = [m.upper() for m in _items(form.methods.data)]
    if methods:
        rule["route"]["methods"] = methods
    if form.key_source.data:
        rule["key"] = {"source": form.key_source.data}
        if form.key_source.data != "ip" or form.key_name.data:
            rule["key"]["name"] = (form.key_name.data or "").strip()
    return rule


def _policy(p: PolicyForm, i: int, errors: FormErrors) -> dict:
    ptype = p.type.data
    out: dict[str, Any] = {"type": ptype}
    items = _items(p.values.data)
    if ptype == "percent":
        out["buckets"] = _buckets(p.buckets.data, f"policies-{i}-buckets", errors)
        kept = (p.upstream.data or "").strip()
        if kept and kept not in {b["upstream"] for b in out["buckets"]}:
            errors[f"policies-{i}-upstream"] = (f"a percent policy sends traffic by its shares: add a line "
                                                f"'{kept} 10%' (with the share it should get) or clear this field")
        if p.salt.data:
            out["salt"] = p.salt.data
        if p.ramp_mode.data:
            out["ramp"] = _ramp(p, f"policies-{i}-", errors)
        return out
    out["upstream"] = (p.upstream.data or "").strip()
    if ptype == "uid_range":
        ranges = []
        for item in items:
            m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item)
            if not m:
                errors[f"policies-{i}-values"] = f"{item!r}: expected lo-hi"
                continue
            ranges.append([int(m.group(1)), int(m.group(2))])
        out["ranges"] = ranges
    elif ptype == "uid_suffix":
        out["suffixes"] = items
    elif ptype == "ip_cidr":
        out["cidrs"] = items
    else:
        out["name"] = (p.name.data or "").strip()
        out["values"] = items
    return out


def _ramp(p: PolicyForm, prefix: str, errors: FormErrors) -> dict:
    """Return a policy's ramp from its form fields (shares in percent, times in UTC); leave missing parts out."""
    ramp: dict[str, Any] = {"mode": p.ramp_mode.data}
    for name in ("from", "to"):
        text = (getattr(p, f"ramp_{name}").data or "").strip()
        if text:
            try:
                ramp[name] = parse_percent(text)
            except ValueError as exc:
                errors[f"{prefix}ramp_{name}"] = f"the share {exc}"
    for name in ("start", "end"):
        ts = _parse_utc(getattr(p, f"ramp_{name}").data, f"{prefix}ramp_{name}", errors)
        if ts is not None:
            ramp[name] = ts
    if p.ramp_mode.data == "step" and p.ramp_steps.data is not None:
        ramp["steps"] = p.ramp_steps.data
    if p.ramp_guard.data:  # the form does not edit a guard; saving keeps the one the policy had
        try:
            ramp["guard"] = json.loads(p.ramp_guard.data)
        except ValueError:
            errors[f"{prefix}ramp_mode"] = "the ramp's guard could not be read back; edit it through the API"
    return ramp


def _buckets(text: str | None, field: str, errors: FormErrors) -> list[dict]:
    buckets = []
    for n, line in enumerate(l for l in (text or "").splitlines() if l.strip()):
        parts = line.replace("=", " ").split(None, 1)
        if len(parts) != 2:
            errors[field] = f"line {n + 1}: write the upstream and its share, e.g. 'canary 12.5%'"
            continue
        try:
            buckets.append({"upstream": parts[0], "weight": parse_percent(parts[1])})
        except ValueError as exc:
            errors[field] = f"line {n + 1}: the share {exc}"
    return buckets


def split_rule_from(form: SplitForm) -> tuple[dict, FormErrors]:
    """Return (rule dict, parse errors) from a submitted split form."""
    errors = FormErrors()
    rule = _common(form, "split")
    rule["default"] = (form.default.data or "").strip()
    rule["policies"] = [_policy(entry.form, i, errors) for i, entry in enumerate(form.policies.entries)]
    if "key" not in rule:
        errors["key_source"] = "a split rule needs a key source"
    _window(form, rule, errors)
    return rule, errors


def _window(form: SplitForm | DegradeForm, rule: dict, errors: FormErrors) -> None:
    start = _parse_utc(form.window_start.data, "window_start", errors)
    end = _parse_utc(form.window_end.data, "window_end", errors)
    if start is not None or end is not None:
        rule["window"] = {k: v for k, v in (("start", start), ("end", end)) if v is not None}


def degrade_rule_from(form: DegradeForm) -> tuple[dict, FormErrors]:
    """Return (rule dict, parse errors) from a submitted degrade form."""
    errors = FormErrors()
    rule = _common(form, "degrade")
    atype = form.action_type.data
    action: dict[str, Any] = {"type": atype}
    if form.status.data is not None and atype != "upstream":
        action["status"] = form.status.data
    if atype == "static":
        action.setdefault("status", 503)
        if form.content_type.data:
            action["content_type"] = form.content_type.data
        action["headers"] = _pairs(form.headers.data, ":")
        action["body"] = form.body.data or ""
    elif atype == "redirect":
        action["location"] = (form.location.data or "").strip()
    elif atype == "upstream":
        action["upstream"] = (form.upstream.data or "").strip()
    elif form.retry_after.data is not None:
        action["retry_after"] = form.retry_after.data
    rule["action"] = action
    try:
        units = parse_percent((form.percent.data or "100").strip())
        rule["percent"] = units // UNITS_PER_PERCENT if units % UNITS_PER_PERCENT == 0 else units / UNITS_PER_PERCENT
    except ValueError as exc:
        errors["percent"] = str(exc)
    _window(form, rule, errors)
    if form.salt.data:
        rule["salt"] = form.salt.data
    return rule, errors


# ---- rule -> form ------------------------------------------------------------------------------
def _fmt_utc(ts: int | None) -> str:
    """Return a UTC time for a form field: minutes, or seconds when the time has them (so it round-trips)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M" if ts % 60 == 0 else "%Y-%m-%dT%H:%M:%S")


def _ramp_data(ramp: dict | None) -> dict:
    if not ramp:
        return {"ramp_mode": ""}
    return {"ramp_mode": ramp["mode"], "ramp_from": percent(ramp["from"]), "ramp_to": percent(ramp["to"]),
            "ramp_start": _fmt_utc(ramp["start"]), "ramp_end": _fmt_utc(ramp["end"]), "ramp_steps": ramp.get("steps"),
            "ramp_guard": json.dumps(ramp["guard"], sort_keys=True) if "guard" in ramp else ""}


def policy_data(p: dict) -> dict:
    """Return PolicyForm data for a policy dict."""
    values = {"uid_range": lambda: [f"{lo}-{hi}" for lo, hi in p.get("ranges", [])],
              "uid_suffix": lambda: p.get("suffixes", []), "ip_cidr": lambda: p.get("cidrs", [])}
    vals = values.get(p["type"], lambda: p.get("values", []))()
    return {"type": p["type"], "name": p.get("name", ""), "values": "\n".join(map(str, vals)),
            "upstream": p.get("upstream", ""), "salt": p.get("salt", ""),
            "buckets": "\n".join(f"{b['upstream']} {percent(b['weight'])}" for b in p.get("buckets", [])),
            **_ramp_data(p.get("ramp"))}


def form_data(rule: dict, revision: int) -> dict:
    """Return form data (SplitForm or DegradeForm) for a stored rule."""
    key = rule.get("key") or {}
    data = {"id": rule["id"], "description": rule.get("description", ""), "enabled": rule.get("enabled", True),
            "host": rule["route"]["host"], "path": rule["route"]["path"],
            "methods": ", ".join(rule["route"].get("methods", [])), "key_source": key.get("source", ""),
            "key_name": key.get("name", ""), "expected_rev": str(revision)}
    if rule["kind"] == "split":
        window = rule.get("window") or {}
        data.update(default=rule["default"], policies=[policy_data(p) for p in rule["policies"]],
                    window_start=_fmt_utc(window.get("start")), window_end=_fmt_utc(window.get("end")))
        return data
    a = rule["action"]
    window = rule.get("window") or {}
    data.update(action_type=a["type"], status=a.get("status"), content_type=a.get("content_type", ""),
                headers="\n".join(f"{k}: {v}" for k, v in a.get("headers", {}).items()), body=a.get("body", ""),
                location=a.get("location", ""), upstream=a.get("upstream", ""), retry_after=a.get("retry_after"),
                percent=percent(round(rule.get("percent", 100) * UNITS_PER_PERCENT)), window_start=_fmt_utc(window.get("start")),
                window_end=_fmt_utc(window.get("end")), salt=rule.get("salt", ""))
    return data


# ---- schema errors -> form fields --------------------------------------------------------------
_TOP = {"id": "id", "description": "description", "enabled": "enabled", "route.host": "host", "route.path": "path",
        "route.methods": "methods", "route": "host", "key": "key_source", "key.source": "key_source",
        "key.name": "key_name", "default": "default", "action.type": "action_type", "action": "action_type",
        "action.status": "status", "action.content_type": "content_type", "action.headers": "headers",
        "action.body": "body", "action.location": "location", "action.upstream": "upstream",
        "action.retry_after": "retry_after", "percent": "percent", "window": "window_start",
        "window.start": "window_start", "window.end": "window_end", "salt": "salt"}
_RAMP_PARTS = ("mode", "from", "to", "start", "end", "steps")
_POLICY = {"type": "type", "name": "name", "upstream": "upstream", "buckets": "buckets", "salt": "salt",
           "ranges": "values", "suffixes": "values", "cidrs": "values", "values": "values"}


def field_for(path: str) -> str | None:
    """Return the form field name ('host', 'policies-0-buckets', ...) for a schema error path."""
    m = re.match(r"policies\[(\d+)\]\.ramp(?:\.([a-z_]+))?(\.|$)", path)
    if m:
        return f"policies-{m.group(1)}-ramp_{m.group(2) if m.group(2) in _RAMP_PARTS else 'mode'}"
    m = re.match(r"policies\[(\d+)\]\.?([a-z_]*)", path)
    if m:
        return f"policies-{m.group(1)}-{_POLICY.get(m.group(2), 'type')}"
    base = re.sub(r"\[\d+\].*$", "", path)
    for candidate in (base, base.rsplit(".", 1)[0] if "." in base else base):
        if candidate in _TOP:
            return _TOP[candidate]
    if base.startswith("action.headers"):
        return "headers"
    return None


def attach_errors(form: FlaskForm, errors: dict[str, str]) -> list[str]:
    """Put each error next to its field (schema paths or form field names); return the unplaced ones."""
    fields = {f.name: f for f in form}
    if hasattr(form, "policies"):
        for entry in form.policies.entries:
            fields.update({f.name: f for f in entry.form})
    unplaced = []
    for path, message in errors.items():
        name = path if path in fields else field_for(path)
        field = fields.get(name) if name else None
        message = plain_message(path, message)
        if field is None:
            unplaced.append(f"{plain_path(path)}: {message}")
            continue
        if not isinstance(field.errors, list):
            field.errors = list(field.errors)
        field.errors.append(_where(path) + message)
    return unplaced


_WEIGHT_MESSAGES = {"must be > 0": "the share must be more than 0%", "must be an integer": "the share must be a "
                    "percentage such as 12.5%", f"must be <= {10_000}": "the share must be at most 100%"}


def plain_message(path: str, message: str) -> str:
    """Return a schema message in the form's words (weights as percent)."""
    if path.endswith(".weight"):
        return _WEIGHT_MESSAGES.get(message, message)
    m = re.fullmatch(r"weights sum to (\d+); .*", message)
    if m:
        return f"the shares add up to {percent(int(m.group(1)))}; they must add up to at most 100%"
    if ".ramp.guard" in path:
        part = path.partition(".ramp.guard")[2].lstrip(".")
        return f"the ramp's guard (kept from the API; edit it there): {part + ' ' if part else ''}{message}"
    if ".ramp" in path:
        message = re.sub(r"policies\[\d+\]\.ramp\.start", "the ramp start", message)
        return _RAMP_MESSAGES.get(message, message)
    return message


_RAMP_MESSAGES = {"is required with mode 'step'": "is required for a ramp in steps",
                  "is only used with mode 'step'": "is only used for a ramp in steps"}


def _where(path: str) -> str:
    """Return 'line 2: ' / 'header X: ' for an error inside a multi-line field ('' otherwise)."""
    m = re.search(r"\.(?:buckets|ranges|suffixes|cidrs|values)\[(\d+)\]", path) or re.search(
        r"^route\.methods\[(\d+)\]", path)
    if m:
        return f"line {int(m.group(1)) + 1}: " if "methods" not in path else f"method {int(m.group(1)) + 1}: "
    if path.startswith("action.headers."):
        return f"header {path.removeprefix('action.headers.')}: "
    return ""


_LABELS = {"route": "Route", "route.host": "Host", "route.path": "Path prefix", "key": "Key", "action": "Action",
           "window": "Active window", "policies": "Policies", "default": "Default upstream"}


def plain_path(path: str) -> str:
    """Return a schema path in words: 'policies[0].buckets' -> 'Policy 1, shares'."""
    m = re.match(r"policies\[(\d+)\]\.?([a-z_]*)", path)
    if m:
        part = {"buckets": "shares", "ranges": "values", "suffixes": "values", "cidrs": "values"}.get(
            m.group(2), m.group(2))
        return f"Policy {int(m.group(1)) + 1}" + (f", {part}" if part else "")
    base = re.sub(r"\[\d+\].*$", "", path)
    return _LABELS.get(base, base.replace("_", " ").replace(".", " ").capitalize())


def pretty(rule: dict | None) -> str:
    """Return a rule as stable, indented JSON for display and diffs."""
    return json.dumps(rule, indent=2, sort_keys=True) if rule is not None else ""


class KillSwitchForm(FlaskForm):
    """Engage a kill switch: the scope (a route needs host and path) and the response (the preset or a custom one)."""

    scope = SelectField("Scope", choices=[SelectChoice("namespace", "the whole namespace"),
                                          SelectChoice("route", "one route")], default="namespace")
    host = StringField("Host", validators=[Optional(), Length(max=253)], description="scope 'one route' only")
    path = StringField("Path prefix", default="/", validators=[Optional(), Length(max=512)])
    response = SelectField("Response", default="preset", choices=[
        SelectChoice("preset", "the preset response"), SelectChoice("static", "a custom static response"),
        SelectChoice("upstream", "send to a fallback upstream")])
    status = IntegerField("Status", validators=[Optional()], description="custom static response; default 503")
    body = TextAreaField("Body", validators=[Optional(), Length(max=65536)])
    upstream = StringField("Fallback upstream", validators=[Optional(), Length(max=128)])
    force = BooleanField("Use it anyway: I checked this upstream exists", default=False)
