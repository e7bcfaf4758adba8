"""Web UI for the guarded and historical views: history pages, diffs between revisions, rollback with a
preview, delete and empty-namespace confirmations. Routes live on the `web` blueprint (ruleadmin.web)."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from rulegate.history import oldest_restorable
from rulegate.schema import is_valid_id

from . import forms
from .auth import web_role
from .extensions import backend
from .inputs import MAX_REVISION, ascii_int
from .metrics import WRITES
from .rules import ROLLBACK_TO_ZERO, ConflictError, HistoryUnavailableError, ValidationError
from .web import _conflict, _diff, _rev_field, _valid, bp, shown

HISTORY_PAGE = 25
CHANGES_SHOWN = 20  # changes diffed per entry; the rest are counted, with a link to the revision's diff
DIFF_SHOWN = 200  # rules diffed on the diff page (two revisions of a 20,000-rule namespace may differ in all)


def _error(status: int, message: str):
    return render_template("error.html", status=status, message=message), status


def _with_diffs(rules: list[dict]) -> list[dict]:
    """Add a unified diff ('diff': [(css class, line)]) to every {"before", "after"} change."""
    for c in rules:
        c["diff"] = _diff(shown(c["before"]), shown(c["after"]))
    return rules


@bp.get("/ns/<ns>/history")
@web_role("viewer")
def history(ns: str):
    """History, newest first, 25 entries a page (?before= older, ?after= newer), filterable by rule (?rule=)."""
    svc = backend().rules
    svc.require_namespace(ns)
    before = ascii_int(request.args.get("before"), 1, MAX_REVISION)
    after = ascii_int(request.args.get("after"), 0, MAX_REVISION) if before is None else None
    rule_id = (request.args.get("rule") or "").strip()
    if rule_id and not is_valid_id(rule_id):
        return render_template("history.html", ns=ns, entries=[], rev=svc.store.revision(ns), page=None,
                               rule=rule_id, rule_error="must match [a-z0-9][a-z0-9_.-]{0,63}",
                               restorable=0), 400
    page = svc.history_page(ns, before=before, after=after, limit=HISTORY_PAGE, rule_id=rule_id or None,
                            changes=CHANGES_SHOWN)
    for e in page["entries"]:
        _with_diffs(e["changes"])
    rev = svc.store.revision(ns)
    restorable = max(oldest_restorable(svc.store, ns), 1)
    return render_template("history.html", ns=ns, entries=page["entries"], rev=rev, page=page, rule=rule_id,
                           rule_error=None, restorable=restorable)


@bp.get("/ns/<ns>/diff")
@web_role("viewer")
def diff(ns: str):
    """The rule-by-rule difference between two revisions (?from=&to=, `to` defaults to the current one)."""
    svc = backend().rules
    svc.require_namespace(ns)
    raw_from, raw_to = request.args.get("from", ""), request.args.get("to", "")
    rev = svc.store.revision(ns)
    if not raw_from:
        return render_template("diff.html", ns=ns, rev=rev, result=None, raw_from="", raw_to=raw_to, error=None)
    from_rev, to_rev = ascii_int(raw_from), ascii_int(raw_to) if raw_to else None
    problem = ("from" if from_rev is None else "to" if raw_to and to_rev is None else None)
    if problem:
        return render_template("diff.html", ns=ns, rev=rev, result=None, raw_from=raw_from, raw_to=raw_to,
                               error=f"{problem} must be a revision number 0-{MAX_REVISION}"), 400
    try:
        result = svc.diff(ns, from_rev, to_rev, limit=DIFF_SHOWN)
    except HistoryUnavailableError as exc:
        return render_template("diff.html", ns=ns, rev=rev, result=None, raw_from=raw_from, raw_to=raw_to,
                               error=str(exc)), 404
    _with_diffs(result["rules"])
    return render_template("diff.html", ns=ns, rev=result["revision"], result=result, raw_from=raw_from,
                           raw_to=raw_to, error=None)


@bp.route(f"/ns/<ns>/rollback/<int(max={MAX_REVISION}):to_rev>", methods=["GET", "POST"])
@web_role("editor")
def rollback(ns: str, to_rev: int):
    """Preview (GET: the rule-by-rule diff it applies) and perform (POST, confirmed) a rollback to to_rev."""
    svc = backend().rules
    svc.require_namespace(ns)
    if to_rev < 1:
        return _error(400, f"Cannot roll back to revision 0 (to_rev {ROLLBACK_TO_ZERO.replace('{ns}', ns)}).")
    form = forms.ConfirmForm()
    if request.method == "POST":
        _valid(form)
        try:
            result, changed = svc.rollback(ns, to_rev, _rev_field(form.expected_rev.data), current_user.username)
        except ConflictError as exc:
            WRITES.labels("conflict").inc()
            flash(f"The namespace changed meanwhile (now at revision {exc.current}); review and confirm again.")
            return redirect(url_for("web.rollback", ns=ns, to_rev=to_rev))
        except HistoryUnavailableError as exc:
            return _error(404, f"Cannot roll back: {exc}")
        except ValidationError as exc:
            return _error(400, "; ".join(f"{k} {v}" for k, v in exc.errors.items()))
        if result.unchanged:
            flash(f"No changes: the rule set already equals revision {to_rev} (still revision {result.revision}).")
        else:
            WRITES.labels("ok" if result.replicated else "unreplicated").inc()
            flash(f"Rolled back to revision {to_rev}: {changed} rule(s) changed, now revision {result.revision}.")
        return redirect(url_for("web.history", ns=ns))
    try:
        preview = svc.diff(ns, None, to_rev, limit=DIFF_SHOWN)
    except HistoryUnavailableError as exc:
        return _error(404, f"Cannot roll back to revision {to_rev}: {exc}")
    _with_diffs(preview["rules"])
    form.expected_rev.data = str(preview["revision"])
    return render_template("rollback.html", ns=ns, to_rev=to_rev, rev=preview["revision"], preview=preview,
                           form=form)


@bp.get("/ns/<ns>/rules/<rule_id>/delete")
@web_role("editor")
def confirm_delete(ns: str, rule_id: str):
    """The confirmation page of a delete: the rule that would be removed, and the confirm button."""
    rev, rule = backend().rules.get_rule(ns, rule_id)
    form = forms.ConfirmForm(formdata=None, expected_rev=str(rev))
    return render_template("confirm_delete.html", ns=ns, rule=rule, rev=rev, form=form, text=shown(rule))


@bp.post("/ns/<ns>/rules/<rule_id>/delete")
@web_role("editor")
def delete_rule(ns: str, rule_id: str):
    """Delete a rule, confirmed on its confirmation page, at the revision that page showed (anything else is
    sent to the confirmation page)."""
    form = _valid(forms.ConfirmForm())
    seen = _rev_field(form.expected_rev.data)
    if request.form.get("confirmed") != "yes":
        return redirect(url_for("web.confirm_delete", ns=ns, rule_id=rule_id), 303)
    svc = backend().rules
    try:
        result = svc.rebased(ns, rule_id, seen,
                             lambda exp: svc.delete_rule(ns, rule_id, exp, current_user.username))
    except ConflictError as exc:
        WRITES.labels("conflict").inc()
        return _conflict(ns, rule_id, None, exc, reapply=(url_for("web.delete_rule", ns=ns, rule_id=rule_id),
                                                            [("confirmed", "yes")]))
    WRITES.labels("ok" if result.replicated else "unreplicated").inc()
    flash(f"Deleted {rule_id} (revision {result.revision}).")
    return redirect(url_for("web.rules", ns=ns))


@bp.route("/ns/<ns>/empty", methods=["GET", "POST"])
@web_role("admin")
def empty_namespace(ns: str):
    """Admin: confirm (GET: every rule that would be removed) and empty (POST) the namespace in one revision."""
    svc = backend().rules
    form = forms.ConfirmForm()
    if request.method == "POST":
        _valid(form)
        try:
            result, removed = svc.empty_namespace(ns, _rev_field(form.expected_rev.data), current_user.username)
        except ConflictError as exc:
            WRITES.labels("conflict").inc()
            flash(f"The namespace changed meanwhile (now at revision {exc.current}); review and confirm again.")
            return redirect(url_for("web.empty_namespace", ns=ns))
        if result.unchanged:
            flash(f"No changes: {ns} holds no rules (revision {result.revision}).")
        else:
            WRITES.labels("ok" if result.replicated else "unreplicated").inc()
            backend().accounts.audit("namespace.emptied", current_user.username, ns,
                                     f"{removed} rule(s) removed, revision {result.revision}")
            flash(f"Emptied {ns}: {removed} rule(s) removed, now revision {result.revision}.")
        return redirect(url_for("web.rules", ns=ns))
    rev, rules = svc.list_rules(ns)
    form.expected_rev.data = str(rev)
    return render_template("empty.html", ns=ns, rev=rev, rules=rules, form=form)

