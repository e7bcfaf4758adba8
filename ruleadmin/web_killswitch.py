"""Web UI of kill switches: the engage confirmation form, the undo confirmation, and the banner every namespace
page shows while a switch is engaged (base.html includes _killswitch_banner.html). Logic: ruleadmin.killswitch."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from rulegate.errors import LimitError, RuleConflictError, ValidationError

from . import forms, killswitch
from .api_upstreams import known
from .auth import web_role
from .extensions import backend
from .rules import NamespaceMissing
from .upstreams import unknown_upstreams

bp = Blueprint("killswitch", __name__)
# the form field showing an error of a request field (others are listed above the form)
FORM_FIELDS = {"scope": "scope", "route.host": "host", "route.path": "path", "route": "host", "action.status": "status",
               "action.body": "body", "action.upstream": "upstream"}


@bp.app_context_processor
def _banner():
    return {"kill_switches_of": switches_of}


def switches_of(ns: str) -> list[dict]:
    """Return the kill switches of ns for the banner ([] when the namespace does not exist)."""
    try:
        return killswitch.list_switches(backend().rules, ns)
    except NamespaceMissing:
        return []


def request_from(form: forms.KillSwitchForm) -> dict:
    """Return the kill switch request (killswitch.parse_request's input) a submitted form describes."""
    data: dict = {"scope": form.scope.data}
    if form.scope.data == "route":
        data["route"] = {"host": (form.host.data or "").strip(), "path": (form.path.data or "").strip()}
    if form.response.data == "static":
        data["action"] = {"type": "static", "status": 503 if form.status.data is None else form.status.data,
                          "body": form.body.data or ""}
    elif form.response.data == "upstream":
        data["action"] = {"type": "upstream", "upstream": (form.upstream.data or "").strip()}
    return data


def _page(ns: str, form, errors: list[str] | None = None, status: int = 200):
    """Render the engage form; a namespace switch is one rule whatever the namespace holds, so no rule is read."""
    preset = killswitch.preset_from_config(current_app.config.get("KILL_SWITCH_PRESET"))
    return render_template("killswitch.html", ns=ns, form=form, preset=forms.pretty(preset),
                           form_errors=errors or []), status


def _attach(form, errors: dict[str, str]) -> list[str]:
    unplaced = []
    for path, message in errors.items():
        name = FORM_FIELDS.get(path)
        if name is None:
            unplaced.append(f"{path}: {message}")
        else:
            getattr(form, name).errors = list(getattr(form, name).errors) + [message]
    return unplaced


@bp.route("/ns/<ns>/kill-switch", methods=["GET", "POST"])
@web_role("editor")
def engage(ns: str):
    """Confirm (GET: the form, saying what each scope covers) and engage (POST) a kill switch."""
    backend().rules.require_namespace(ns)
    form = forms.KillSwitchForm()
    if request.method == "GET":
        return _page(ns, form)
    if not form.validate_on_submit():
        return _page(ns, form, status=400)
    preset = killswitch.preset_from_config(current_app.config.get("KILL_SWITCH_PRESET"))
    try:
        scope, route, action = killswitch.parse_request(request_from(form), preset)
        problems = {} if form.force.data else unknown_upstreams(
            {"kind": "degrade", "route": route or {"host": "*", "path": "/"}, "action": action}, known(ns))
        if problems:
            raise ValidationError({k: v.replace("save with force", "tick the box below") for k, v in problems.items()})
        done = killswitch.engage(backend().rules, ns, scope, route, action, current_user.username)
    except ValidationError as exc:
        return _page(ns, form, _attach(form, exc.errors), 400)
    except LimitError as exc:
        return _page(ns, form, [str(exc)], 400)
    record = done.record
    backend().accounts.audit("killswitch.engaged", current_user.username, ns, killswitch.audit_detail(done))
    flash(f"Kill switch {record['id']} engaged: {len(record['rule_ids'])} rule(s), revision {record['revision']}.")
    for text in killswitch.engaged_body(done)["warnings"]:
        flash(f"Warning: {text}.")
    return redirect(url_for("web.rules", ns=ns))


@bp.route("/ns/<ns>/kill-switch/<switch_id>/undo", methods=["GET", "POST"])
@web_role("editor")
def undo(ns: str, switch_id: str):
    """Confirm (GET: the switch and the rules it removes) and undo (POST) a kill switch."""
    backend().rules.require_namespace(ns)
    found = next((s for s in switches_of(ns) if s["id"] == switch_id), None)
    if found is None:
        return render_template("error.html", status=404, message=f"No kill switch {switch_id} in {ns}."), 404
    form = forms.ConfirmForm()
    if request.method == "GET":
        return render_template("killswitch_undo.html", ns=ns, switch=found, form=form)
    if not form.validate_on_submit():
        abort(400, "Invalid form (CSRF).")
    try:
        done = killswitch.undo(backend().rules, ns, switch_id, current_user.username)
    except RuleConflictError as exc:
        flash(f"Kill rule {exc.rule_id} changed meanwhile; review and confirm again.")
        return redirect(url_for("web.killswitch.undo", ns=ns, switch_id=switch_id))
    backend().accounts.audit("killswitch.undone", current_user.username, ns, killswitch.audit_detail(done))
    flash(undo_message(done))
    return redirect(url_for("web.rules", ns=ns))


def undo_message(done: killswitch.Undone) -> str:
    """Return the one-line outcome of an undo for people."""
    head = f"Kill switch {done.switch_id} undone ({len(done.removed)} rule(s) removed, revision {done.revision}): "
    if done.exact:
        return head + f"the rules equal the content before it (revision {done.revision_before}, same digest)."
    if done.exact is None or done.differences is None:
        return head + f"not checked against the content before it: {done.note}."
    listed = ", ".join(f"{d['id']} ({d['change']})" for d in done.differences[:20])
    return head + (f"not exact: {len(done.differences)} rule(s) differ from revision {done.revision_before} "
                   f"(changes made meanwhile, kept): {listed}.")
