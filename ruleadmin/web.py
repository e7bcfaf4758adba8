"""Server-rendered web UI: namespaces, rule list, split/degrade forms, simulate, history, rollback."""
from __future__ import annotations

import difflib

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from rulegate.errors import LimitError
from rulegate.schema import is_valid_id

from . import forms, web_killswitch, web_rules
from .auth import web_role
from .display import iso_utc
from .extensions import backend
from .inputs import ascii_int
from .killswitch import RESERVED_MESSAGE, is_reserved
from .metrics import WRITES
from .rules import (
    AlreadyExistsError,
    ConflictError,
    HistoryUnavailableError,
    NamespaceMissing,
    NotFoundError,
    ValidationError,
)
from .simulation import parse_request

bp = Blueprint("web", __name__)
bp.register_blueprint(web_rules.bp)
bp.register_blueprint(web_killswitch.bp)


@bp.errorhandler(NamespaceMissing)
def _no_namespace(exc: NamespaceMissing):
    return render_template("error.html", status=404, message=f"Namespace {exc.args[0]!r} does not exist."), 404


@bp.errorhandler(NotFoundError)
def _not_found(exc: NotFoundError):
    return render_template("error.html", status=404, message=str(exc)), 404


def _rev_field(value: str | None) -> int:
    rev = ascii_int(value)
    if rev is None:
        abort(400, "The form lost the revision it was based on; reload the page.")
    return rev


@bp.get("/")
@web_role("viewer")
def index():
    """Namespaces overview (admins can create one)."""
    return render_template("index.html", namespaces=backend().rules.namespaces(), form=forms.NamespaceForm())


@bp.post("/namespaces")
@web_role("admin")
def create_namespace():
    """Create a namespace (admin)."""
    form = forms.NamespaceForm()
    if not form.validate_on_submit() or not is_valid_id(form.name.data):
        form.name.errors = list(form.name.errors) + ["must match [a-z0-9][a-z0-9_.-]{0,63}"]
        return render_template("index.html", namespaces=backend().rules.namespaces(), form=form), 400
    if backend().rules.create_namespace(form.name.data):
        backend().accounts.audit("namespace.created", current_user.username, form.name.data)
    flash(f"Namespace {form.name.data} created.")
    return redirect(url_for("web.rules", ns=form.name.data))


@bp.get("/ns/<ns>/")
@web_role("viewer")
def rules(ns: str):
    """Rule list, 50 a page, filtered by route, kind, upstream and text, with enabled toggles."""
    return web_rules.rules_page(ns)


def _form_class(kind: str):
    if kind not in ("split", "degrade"):
        abort(404)
    return forms.SplitForm if kind == "split" else forms.DegradeForm


def _edit_policies(form: forms.SplitForm, action: str) -> forms.SplitForm:
    """Return a new form with a policy added, removed or moved (no save, no validation)."""
    data = form.data
    policies = data["policies"]
    verb, _, index = action.partition("-")
    i = ascii_int(index, 0, 31)
    i = -1 if i is None else i
    if verb == "add" and len(policies) < 32:
        policies.append({"type": "percent", "buckets": "", "values": "", "name": "", "upstream": "", "salt": ""})
    elif verb == "remove" and 0 <= i < len(policies):
        policies.pop(i)
    elif verb in ("up", "down") and 0 <= i < len(policies):
        j = i - 1 if verb == "up" else i + 1
        if 0 <= j < len(policies):
            policies[i], policies[j] = policies[j], policies[i]
    data.pop("csrf_token", None)
    return forms.SplitForm(formdata=None, data=data)


def _render_form(ns: str, kind: str, form, rule_id: str | None, errors: list[str] | None = None, status: int = 200):
    return web_rules.render_form(ns, kind, form, rule_id, errors, status)


# fields the forms do not show, kept from the stored rule on save (docs/rules.md "Breakers", docs/api.md "Endpoints")
API_ONLY_FIELDS = {"degrade": ("breaker", "scope")}


def _keep_api_only_fields(ns: str, rule_id: str, rule: dict) -> None:
    """An edit through the form keeps the stored rule's API-only fields instead of silently dropping them."""
    try:
        _rev, stored = backend().rules.get_rule(ns, rule_id)
    except NotFoundError:
        return
    if stored.get("kind") == rule["kind"]:
        for name in API_ONLY_FIELDS.get(rule["kind"], ()):
            if name in stored and name not in rule:
                rule[name] = stored[name]


def _save(ns: str, kind: str, form, rule_id: str | None):
    """Validate and write a submitted rule form; return a response (form with errors, conflict page, redirect)."""
    action = request.form.get("action", "save")
    if action != "save":  # add/remove/move a policy, or show the fields of a newly chosen type (no JavaScript)
        return _render_form(ns, kind, _edit_policies(form, action) if kind == "split" else form, rule_id)
    if not form.validate_on_submit():
        return _render_form(ns, kind, form, rule_id, status=400)
    rule, parse_errors = (forms.split_rule_from if kind == "split" else forms.degrade_rule_from)(form)
    svc = backend().rules
    if rule_id is not None:
        rule["id"] = rule_id
        _keep_api_only_fields(ns, rule_id, rule)
    if is_reserved(rule.get("id")):
        parse_errors["id"] = RESERVED_MESSAGE
    try:
        prepared = svc.prepare(rule, current_user.username)
        if parse_errors:
            raise ValidationError({})
        web_rules.check_upstreams(ns, prepared, form)
        if rule_id is None:
            result = svc.store.put_rule(ns, prepared, None, current_user.username, create_only=True)
        else:
            seen = _rev_field(form.expected_rev.data)
            same = svc.unchanged(ns, prepared)
            if same is not None:
                flash(f"No changes: {rule_id} already looks like this (still revision {same[1].revision}).")
                return redirect(url_for("web.rules", ns=ns))
            result = svc.rebased(ns, rule_id, seen, lambda exp: svc.store.put_rule(
                ns, prepared, exp, current_user.username))
    except ValidationError as exc:
        WRITES.labels("invalid").inc()
        unplaced = forms.attach_errors(form, {**parse_errors, **exc.errors})
        return _render_form(ns, kind, form, rule_id, unplaced, 400)
    except AlreadyExistsError:
        forms.attach_errors(form, {"id": "a rule with this id already exists"})
        return _render_form(ns, kind, form, rule_id, status=400)
    except LimitError as exc:
        return _render_form(ns, kind, form, rule_id, [str(exc)], 400)
    except ConflictError as exc:
        WRITES.labels("conflict").inc()
        resubmit = [(k, v) for k, v in request.form.items(multi=True) if k not in ("csrf_token", "expected_rev")]
        return _conflict(ns, rule_id, rule, exc, reapply=(request.path, resubmit))
    WRITES.labels("ok" if result.replicated else "unreplicated").inc()
    note = "" if result.replicated else " (not yet confirmed by a replica)"
    flash(f"Saved {rule['id']} as revision {result.revision}{note}.")
    return redirect(url_for("web.rules", ns=ns))


def shown(rule: dict | None) -> str:
    """Return a rule as forms.pretty JSON for people: updated_at as ISO 8601 UTC instead of UNIX seconds."""
    if rule and isinstance(rule.get("updated_at"), int) and rule["updated_at"]:
        rule = {**rule, "updated_at": iso_utc(rule["updated_at"])}
    return forms.pretty(rule)


def _conflict(ns: str, rule_id: str, yours: dict | None, exc: ConflictError,
              reapply: tuple[str, list[tuple[str, str]]] | None = None):
    """Render the conflict page: your version, the current one, who changed it meanwhile and how (the rule as
    you started from it -> as stored now), and `reapply` (url, form fields) to resubmit yours at the current
    revision."""
    svc = backend().rules
    try:
        rev, theirs = svc.get_rule(ns, rule_id)
    except NotFoundError:
        rev, theirs = exc.current, None
    changes = svc.changes_to(ns, rule_id, exc.expected) if exc.expected is not None else []
    started = None
    try:
        if exc.expected is not None:
            started = next((c for c in svc.diff(ns, exc.expected, rev)["rules"] if c["id"] == rule_id), None)
    except HistoryUnavailableError:
        pass
    meanwhile = _diff(shown(started["before"]), shown(started["after"])) if started else []
    return render_template("conflict.html", ns=ns, rule_id=rule_id, rev=rev, seen=exc.expected,
                           yours=shown(yours), theirs=shown(theirs), changes=changes,
                           diff=_diff(shown(theirs), shown(yours)), meanwhile=meanwhile,
                           reapply=reapply, reapply_form=forms.ConfirmForm(formdata=None, expected_rev=str(rev))), 409


@bp.route("/ns/<ns>/rules/new", methods=["GET", "POST"])
@web_role("editor")
def new_rule(ns: str):
    """Create form for a split or degrade rule (?kind=)."""
    backend().rules.require_namespace(ns)
    kind = request.args.get("kind", "split")
    form_class = _form_class(kind)
    if request.method == "POST":
        return _save(ns, kind, form_class(), None)
    form = form_class()
    if kind == "split" and not form.policies.entries:
        form.policies.append_entry({"type": "percent"})
    return _render_form(ns, kind, form, None)


@bp.route("/ns/<ns>/rules/<rule_id>/edit", methods=["GET", "POST"])
@web_role("editor")
def edit_rule(ns: str, rule_id: str):
    """Edit form; the hidden revision makes a concurrent change show the conflict page."""
    rev, rule = backend().rules.get_rule(ns, rule_id)
    form_class = _form_class(rule["kind"])
    if request.method == "POST":
        return _save(ns, rule["kind"], form_class(), rule_id)
    return _render_form(ns, rule["kind"], form_class(formdata=None, data=forms.form_data(rule, rev)), rule_id)


def _valid(form):
    """Return form when it validates (CSRF token included); else answer 400."""
    if not form.validate_on_submit():
        abort(400, "Invalid form (CSRF).")
    return form


@bp.post("/ns/<ns>/rules/<rule_id>/toggle")
@web_role("editor")
def toggle_rule(ns: str, rule_id: str):
    """Flip a rule's enabled flag (or set it: enabled=on|off) at the revision the list showed."""
    form = _valid(forms.ConfirmForm())
    if is_reserved(rule_id):
        flash(f"{rule_id} belongs to a kill switch: undo the switch instead of toggling its rules.")
        return redirect(url_for("web.rules", ns=ns))
    svc = backend().rules
    _rev, rule = svc.get_rule(ns, rule_id)
    target = request.form.get("enabled")
    enabled = target == "on" if target in ("on", "off") else not rule["enabled"]
    if enabled == rule["enabled"]:
        flash(f"No changes: {rule_id} is already {'enabled' if enabled else 'disabled'} (revision {_rev}).")
        return redirect(url_for("web.rules", ns=ns))
    changed = svc.prepare({**rule, "enabled": enabled}, current_user.username)
    try:
        result = svc.rebased(ns, rule_id, _rev_field(form.expected_rev.data),
                             lambda exp: svc.store.put_rule(ns, changed, exp, current_user.username))
    except ConflictError as exc:
        WRITES.labels("conflict").inc()
        return _conflict(ns, rule_id, changed, exc, reapply=(
            url_for("web.toggle_rule", ns=ns, rule_id=rule_id), [("enabled", "on" if enabled else "off")]))
    flash(f"{rule_id} {'enabled' if changed['enabled'] else 'disabled'} (revision {result.revision}).")
    return redirect(url_for("web.rules", ns=ns))


@bp.route("/ns/<ns>/simulate", methods=["GET", "POST"])
@web_role("viewer")
def simulate(ns: str):
    """Simulate a request against the current rules and show the decision."""
    backend().rules.require_namespace(ns)
    form = forms.SimulateForm()
    decision, rev, errors, at = None, None, [], None
    if form.validate_on_submit():
        req = {"host": form.host.data or "", "path": form.path.data or "/", "method": form.method.data,
               "ip": form.ip.data or "", "headers": forms._pairs(form.headers.data, ":"),
               "cookies": forms._pairs(form.cookies.data, "="), "args": forms._pairs(form.args.data, "=")}
        at, time_errors = forms.simulate_time(form)
        req, problems = parse_request({**req, "now": at})
        problems = {**problems, **time_errors}
        errors = forms.attach_errors(form, {k.removeprefix("request."): v for k, v in problems.items()})
        if not problems:
            rev, result = backend().rules.simulate(ns, req)
            decision = result.to_dict()
    status = 400 if request.method == "POST" and decision is None else 200
    return render_template("simulate.html", ns=ns, form=form, decision=decision, rev=rev, errors=errors,
                           at=at if decision else None, matched=web_rules.matched_rule(ns, decision, at)), status


def _diff(before: str, after: str) -> list[tuple[str, str]]:
    """Return (css class, line) pairs of a unified diff."""
    out = []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), "before", "after", lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        out.append(("diff-add" if line.startswith("+") else "diff-del" if line.startswith("-") else "", line))
    return out


FLEET_RULES_SHOWN = 200  # rows of the fleet page's traffic table (a namespace may hold 20,000 rules)
FLEET_IDLE_SHOWN = 50  # idle rule ids named in its alarm


@bp.get("/ns/<ns>/fleet")
@web_role("viewer")
def fleet(ns: str):
    """Which gateways run which revision; laggards and silent gateways flagged."""
    data = backend().rules.fleet(ns, float(current_app.config["FLEET_SILENT_SECONDS"]),
                                 idle_after=float(current_app.config["IDLE_RULE_SECONDS"]))
    ex = data["exposure"]
    if len(ex["rules"]) > FLEET_RULES_SHOWN:  # the busiest rules and the idle ones first (the API has them all)
        ranked = sorted(ex["rules"].items(), key=lambda kv: (not kv[1]["idle"], -kv[1]["per_minute"], kv[0]))
        data["exposure"] = {**ex, "rules": dict(sorted(ranked[:FLEET_RULES_SHOWN])), "rules_total": len(ex["rules"])}
    return render_template("fleet.html", ns=ns, fleet=data, idle_shown=FLEET_IDLE_SHOWN)
