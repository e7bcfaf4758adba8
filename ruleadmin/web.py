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

from . import forms
from .auth import web_role
from .extensions import backend
from .inputs import MAX_REVISION, ascii_int
from .metrics import WRITES
from .rules import (
    AlreadyExistsError,
    ConflictError,
    HistoryUnavailableError,
    NamespaceMissing,
    NotFoundError,
    NothingToDo,
    ValidationError,
)
from .simulation import parse_request

bp = Blueprint("web", __name__)


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
    """Rule list with search and enabled toggles."""
    rev, all_rules = backend().rules.list_rules(ns)
    q = (request.args.get("q") or "").strip().lower()[:200]
    shown = [r for r in all_rules if not q or q in " ".join(
        (r["id"], r["kind"], r["route"]["host"], r["route"]["path"], r.get("description", ""))).lower()]
    fleet = backend().rules.fleet(ns, float(current_app.config["FLEET_SILENT_SECONDS"]))
    return render_template("rules.html", ns=ns, rev=rev, rules=shown, q=q, total=len(all_rules),
                           confirm=forms.ConfirmForm(expected_rev=str(rev)), fleet=fleet)


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
    return render_template("rule_form.html", ns=ns, kind=kind, form=form, rule_id=rule_id,
                           form_errors=errors or []), status


def _save(ns: str, kind: str, form, rule_id: str | None):
    """Validate and write a submitted rule form; return a response (form with errors, conflict page, redirect)."""
    action = request.form.get("action", "save")
    if kind == "split" and action != "save":
        return _render_form(ns, kind, _edit_policies(form, action), rule_id)
    if not form.validate_on_submit():
        return _render_form(ns, kind, form, rule_id, status=400)
    rule, parse_errors = (forms.split_rule_from if kind == "split" else forms.degrade_rule_from)(form)
    if rule_id is not None:
        rule["id"] = rule_id
    svc = backend().rules
    try:
        prepared = svc.prepare(rule, current_user.username)
        if parse_errors:
            raise ValidationError({})
        if rule_id is None:
            result = svc.store.put_rule(ns, prepared, None, current_user.username, create_only=True)
        else:
            seen = _rev_field(form.expected_rev.data)
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
        return _conflict(ns, rule_id, rule, exc)
    WRITES.labels("ok" if result.replicated else "unreplicated").inc()
    note = "" if result.replicated else " (not yet confirmed by a replica)"
    flash(f"Saved {rule['id']} as revision {result.revision}{note}.")
    return redirect(url_for("web.rules", ns=ns))


def _conflict(ns: str, rule_id: str, yours: dict, exc: ConflictError):
    """Render the conflict page: your version, the current one, and who changed it meanwhile."""
    svc = backend().rules
    try:
        rev, theirs = svc.get_rule(ns, rule_id)
    except NotFoundError:
        rev, theirs = exc.current, None
    changes = svc.changes_to(ns, rule_id, exc.expected) if exc.expected is not None else []
    return render_template("conflict.html", ns=ns, rule_id=rule_id, rev=rev, seen=exc.expected,
                           yours=forms.pretty(yours), theirs=forms.pretty(theirs), changes=changes,
                           diff=_diff(forms.pretty(theirs), forms.pretty(yours))), 409


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
    """Flip a rule's enabled flag at the revision the list showed."""
    form = _valid(forms.ConfirmForm())
    svc = backend().rules
    _rev, rule = svc.get_rule(ns, rule_id)
    changed = svc.prepare({**rule, "enabled": not rule["enabled"]}, current_user.username)
    try:
        result = svc.rebased(ns, rule_id, _rev_field(form.expected_rev.data),
                             lambda exp: svc.store.put_rule(ns, changed, exp, current_user.username))
    except ConflictError as exc:
        return _conflict(ns, rule_id, changed, exc)
    flash(f"{rule_id} {'enabled' if changed['enabled'] else 'disabled'} (revision {result.revision}).")
    return redirect(url_for("web.rules", ns=ns))


@bp.post("/ns/<ns>/rules/<rule_id>/delete")
@web_role("editor")
def delete_rule(ns: str, rule_id: str):
    """Delete a rule at the revision the page showed."""
    form = _valid(forms.ConfirmForm())
    svc = backend().rules
    try:
        result = svc.rebased(ns, rule_id, _rev_field(form.expected_rev.data),
                             lambda exp: svc.delete_rule(ns, rule_id, exp, current_user.username))
    except ConflictError as exc:
        return _conflict(ns, rule_id, None, exc)
    flash(f"Deleted {rule_id} (revision {result.revision}).")
    return redirect(url_for("web.rules", ns=ns))


@bp.route("/ns/<ns>/simulate", methods=["GET", "POST"])
@web_role("viewer")
def simulate(ns: str):
    """Simulate a request against the current rules and show the decision."""
    backend().rules.require_namespace(ns)
    form = forms.SimulateForm()
    decision, rev, errors = None, None, []
    if form.validate_on_submit():
        req = {"host": form.host.data or "", "path": form.path.data or "/", "method": form.method.data,
               "ip": form.ip.data or "", "headers": forms._pairs(form.headers.data, ":"),
               "cookies": forms._pairs(form.cookies.data, "="), "args": forms._pairs(form.args.data, "=")}
        req, problems = parse_request(req)
        errors = forms.attach_errors(form, {k.removeprefix("request."): v for k, v in problems.items()})
        if not problems:
            rev, result = backend().rules.simulate(ns, req)
            decision = result.to_dict()
    status = 400 if request.method == "POST" and decision is None else 200
    return render_template("simulate.html", ns=ns, form=form, decision=decision, rev=rev, errors=errors), status


def _diff(before: str, after: str) -> list[tuple[str, str]]:
    """Return (css class, line) pairs of a unified diff."""
    out = []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), "before", "after", lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        out.append(("diff-add" if line.startswith("+") else "diff-del" if line.startswith("-") else "", line))
    return out


@bp.get("/ns/<ns>/fleet")
@web_role("viewer")
def fleet(ns: str):
    """Which gateways run which revision; laggards and silent gateways flagged."""
    data = backend().rules.fleet(ns, float(current_app.config["FLEET_SILENT_SECONDS"]))
    return render_template("fleet.html", ns=ns, fleet=data)


@bp.get("/ns/<ns>/history")
@web_role("viewer")
def history(ns: str):
    """History with per-rule diffs and rollback links (?before= pages back)."""
    before = ascii_int(request.args.get("before"), 1, MAX_REVISION)
    entries = backend().rules.history(ns, None, before, 25)
    for e in entries:
        for c in e["changes"]:
            c["diff"] = _diff(forms.pretty(c["before"]), forms.pretty(c["after"]))
    return render_template("history.html", ns=ns, entries=entries, rev=backend().store.revision(ns))


@bp.route(f"/ns/<ns>/rollback/<int(max={MAX_REVISION}):to_rev>", methods=["GET", "POST"])
@web_role("editor")
def rollback(ns: str, to_rev: int):
    """Confirm (GET) and perform (POST) a rollback to to_rev as a new revision."""
    svc = backend().rules
    form = forms.ConfirmForm()
    if request.method == "POST":
        _valid(form)
        try:
            result, changed = svc.rollback(ns, to_rev, _rev_field(form.expected_rev.data), current_user.username)
        except ConflictError as exc:
            flash(f"The namespace changed meanwhile (now at revision {exc.current}); review and confirm again.")
            return redirect(url_for("web.rollback", ns=ns, to_rev=to_rev))
        except (HistoryUnavailableError, NothingToDo) as exc:
            return render_template("error.html", status=400, message=str(exc)), 400
        flash(f"Rolled back to revision {to_rev}: {changed} rule(s) changed, now revision {result.revision}.")
        return redirect(url_for("web.history", ns=ns))
    svc.require_namespace(ns)
    rev = svc.store.revision(ns)
    entries = [e for e in svc.history(ns, to_rev, None, 500) if e["revision"] > to_rev]
    form.expected_rev.data = str(rev)
    return render_template("rollback.html", ns=ns, to_rev=to_rev, rev=rev, entries=entries, form=form)
