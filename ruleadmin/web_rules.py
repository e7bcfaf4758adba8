"""Web pages around one rule: the read-only rule page, the paged rule list, the known-upstreams page, and the
rule form's rendering (fields that fit the chosen type, known upstream names, the force confirmation)."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from rulegate.errors import NotFoundError, ValidationError
from rulegate.schema import guarded_policies

from . import forms, rulelist
from .api_upstreams import declare, known
from .auth import web_role
from .describe import describe, ramps, targets
from .extensions import backend
from .upstreams import check_names, unknown_upstreams

bp = Blueprint("pages", __name__)
HISTORY_SCAN = 2000  # newest log entries searched for a rule's history
HISTORY_SHOWN = 20


def render_form(ns: str, kind: str, form, rule_id: str | None, errors: list[str] | None = None, status: int = 200):
    """Return the rule form page: only the chosen type's fields shown, known upstreams offered."""
    names = known(ns)
    return render_template("rule_form.html", ns=ns, kind=kind, form=form, rule_id=rule_id, form_errors=errors or [],
                           known=names, policy_fields=forms.policy_fields, action_fields=forms.ACTION_FIELDS,
                           policy_types=forms.POLICY_FIELD_TYPES, action_types=forms.ACTION_FIELD_TYPES,
                           offer_force=getattr(form, "offer_force", False) or bool(form.force.data)), status


def check_upstreams(ns: str, rule: dict, form) -> None:
    """Raise ValidationError naming each unknown upstream of a validated rule unless the form's force box is ticked
    (the form then offers that box)."""
    if form.force.data:
        return
    problems = unknown_upstreams(rule, known(ns))
    if problems:
        form.offer_force = True
        raise ValidationError({path: msg.replace("save with force", "tick 'Save anyway' below")
                               for path, msg in problems.items()})


def rules_page(ns: str):
    """Return the rule list page: filtered by route, kind, upstream and text; 50 rules a page."""
    rev, all_rules = backend().rules.list_rules(ns)
    flt, cursor, _limit, errors = rulelist.from_args(request.args)
    found = rulelist.page(all_rules, flt, cursor, rulelist.WEB_PAGE)
    fleet = fleet_of(ns, [r["id"] for r in found.rules])  # traffic of the rules shown only
    start = rulelist.offset_of(all_rules, flt, cursor)
    return render_template("rules.html", ns=ns, rev=rev, rules=found.rules, flt=flt, total=len(all_rules),
                           matched=found.matched, start=start, next_cursor=found.next_cursor, cursor=cursor,
                           filter_errors=errors, targets=targets, known=known(ns),
                           confirm=forms.ConfirmForm(expected_rev=str(rev)), fleet=fleet), 400 if errors else 200


def rule_history(ns: str, rule_id: str) -> list[dict]:
    """Return the newest log entries that touched rule_id (searching the newest HISTORY_SCAN entries), with only
    that rule's change decoded (an import's entry changes thousands of rules)."""
    return backend().rules.history_of_rule(ns, rule_id, HISTORY_SCAN, HISTORY_SHOWN)


def fleet_of(ns: str, rule_ids: list[str] | None = None) -> dict:
    """Return the namespace's fleet view (rules.RuleService.fleet) with the app's silent and idle thresholds (traffic
    of `rule_ids` only when given)."""
    return backend().rules.fleet(ns, float(current_app.config["FLEET_SILENT_SECONDS"]),
                                 idle_after=float(current_app.config["IDLE_RULE_SECONDS"]), rule_ids=rule_ids)


@bp.get("/ns/<ns>/rules/<rule_id>/")
@web_role("viewer")
def rule(ns: str, rule_id: str):
    """One rule in plain language with its history and a simulate box for its route (read-only for viewers)."""
    rev, found = backend().rules.get_rule(ns, rule_id)
    sim = forms.SimulateForm(formdata=None, data={"host": found["route"]["host"], "path": found["route"]["path"],
                                                  "method": (found["route"].get("methods") or ["GET"])[0]})
    fleet = fleet_of(ns, [rule_id])  # this rule's traffic only
    return render_template("rule.html", ns=ns, rev=rev, rule=found, lines=describe(found), pretty=forms.pretty(found),
                           ramps=ramps(found),
                           history=rule_history(ns, rule_id), sim=sim, exposure=fleet["exposure"],
                           outcomes=fleet["outcomes"], guard=fleet["guards"]["rules"].get(rule_id),
                           watcher=fleet["guards"]["watcher"], guarded=bool(guarded_policies(found)),
                           confirm=forms.ConfirmForm(expected_rev=str(rev)))


@bp.route("/ns/<ns>/upstreams", methods=["GET", "POST"])
@web_role("viewer")
def upstreams(ns: str):
    """Known upstreams: reported by live gateways and declared here (admins change the declared list)."""
    backend().rules.require_namespace(ns)
    form = forms.UpstreamsForm()
    status = 200
    if request.method == "POST":
        if not current_user.can("admin"):
            abort(403, "This needs the admin role.")
        if not form.validate_on_submit():
            abort(400, "Invalid form (CSRF).")
        names, errors = check_names(forms._items(form.names.data))
        if not errors:
            declare(ns, names)
            backend().accounts.audit("upstreams.declared", current_user.username, ns, ", ".join(names)[:500])
            flash(f"{len(names)} upstream name(s) declared for {ns}.")
            return redirect(url_for("web.pages.upstreams", ns=ns))
        form.names.errors = [f"line {int(k[10:-1]) + 1}: {v}" if k.startswith("upstreams[") else v
                             for k, v in errors.items()]
        status = 400
    names = known(ns)
    if request.method == "GET":
        form.names.data = "\n".join(names.declared)
    return render_template("upstreams.html", ns=ns, form=form, known=names), status


def matched_rule(ns: str, decision: dict | None, now: float | None = None) -> dict | None:
    """Return {id, lines} describing the rule a simulated decision came from (None when no rule matched)."""
    if not decision or not decision.get("rule_id"):
        return None
    try:
        _rev, found = backend().rules.get_rule(ns, decision["rule_id"])
    except NotFoundError:
        return None
    return {"id": found["id"], "lines": describe(found, now)}
