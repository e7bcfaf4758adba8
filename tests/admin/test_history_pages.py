"""Web UI guards and history pages through the Flask test client: delete and empty-namespace confirmations,
rollback previews, diffs, paged and filtered history, the conflict page's reapply, no-op saves, ISO times."""
from __future__ import annotations

import html
import re
import time

import pytest

from rulegate.fleet import Heartbeat
from rulegate.keyspace import Keys

from .conftest import PASSWORD, degrade_rule, split_rule

pytestmark = pytest.mark.integration
ISO = rb'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"'
RAW_TS = re.compile(rb"\b1[7-9]\d{8}\b")  # a UNIX time in seconds (2023-2033)


def _csrf(page: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1).decode()


def _login(client, user) -> None:
    page = client.get("/login")
    r = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": _csrf(page.data)})
    assert r.status_code == 302


@pytest.fixture()
def editor(client, users):
    """A test client logged in as the editor."""
    _login(client, users["editor"])
    return client


@pytest.fixture()
def admin(app, users):
    """A test client logged in as the admin."""
    c = app.test_client()
    _login(c, users["admin"])
    return c


@pytest.fixture()
def three(backend, ns) -> str:
    """A namespace at revision 3: web (5000) created, shed created, web changed to 100."""
    backend.rules.put_rule(ns, split_rule("web"), None, "alice")
    backend.rules.put_rule(ns, degrade_rule("shed"), 1, "alice")
    backend.rules.put_rule(ns, split_rule("web", 100), 2, "bob")
    return ns


def test_delete_goes_through_a_confirmation_page(editor, three, backend):
    """The list's delete button only leads to the confirmation page (which shows the rule); the rule is deleted
    by that page's confirm button (with CSRF), not by the list's POST."""
    listing = editor.get(f"/ns/{three}/")
    r = editor.post(f"/ns/{three}/rules/web/delete", data={"csrf_token": _csrf(listing.data), "expected_rev": "3"})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/ns/{three}/rules/web/delete")
    assert backend.store.revision(three) == 3
    page = editor.get(f"/ns/{three}/rules/web/delete")
    assert page.status_code == 200 and b'id="confirm-delete"' in page.data
    assert b"shop.example.com/" in page.data and b"split" in page.data and b"bob" in page.data
    assert b"&#34;weight&#34;: 100" in page.data and re.search(ISO, page.data)
    assert b'name="confirmed" value="yes"' in page.data and b'name="expected_rev" type="hidden" value="3"' in page.data
    no_csrf = editor.post(f"/ns/{three}/rules/web/delete", data={"expected_rev": "3", "confirmed": "yes"})
    assert no_csrf.status_code == 400 and backend.store.revision(three) == 3
    done = editor.post(f"/ns/{three}/rules/web/delete",
                       data={"csrf_token": _csrf(page.data), "expected_rev": "3", "confirmed": "yes"})
    assert done.status_code == 302 and backend.store.revision(three) == 4
    assert [r["id"] for r in backend.rules.list_rules(three)[1]] == ["shed"]
    assert editor.get(f"/ns/{three}/rules/web/delete").status_code == 404


def test_rollback_page_previews_the_diff(editor, three, backend):
    """The rollback page lists what it changes rule by rule and asks to confirm; confirming applies it."""
    page = editor.get(f"/ns/{three}/rollback/1")
    assert page.status_code == 200 and b'id="confirm-rollback"' in page.data
    assert b'id="change-shed" class="change-removed"' in page.data
    assert b'id="change-web" class="change-changed"' in page.data
    assert b"diff-del" in page.data and b"diff-add" in page.data
    r = editor.post(f"/ns/{three}/rollback/1", data={"csrf_token": _csrf(page.data), "expected_rev": "3"})
    assert r.status_code == 302 and backend.store.revision(three) == 4
    rev, rules = backend.rules.list_rules(three)
    assert [x["id"] for x in rules] == ["web"] and rules[0]["policies"][0]["buckets"][0]["weight"] == 5000


def test_rollback_refuses_revision_zero_missing_and_trimmed(editor, three, backend):
    """/rollback/0 is a 400, a revision beyond the current one or outside the log a 404 (no confirm button);
    rolling back to the current rule set says there is nothing to do and commits nothing."""
    zero = editor.get(f"/ns/{three}/rollback/0")
    assert zero.status_code == 400 and b"confirm-rollback" not in zero.data and b"to_rev" in zero.data
    assert editor.post(f"/ns/{three}/rollback/0", data={"expected_rev": "3"}).status_code == 400
    missing = editor.get(f"/ns/{three}/rollback/9")
    assert missing.status_code == 404 and b"does not exist" in missing.data
    same = editor.get(f"/ns/{three}/rollback/3")
    assert same.status_code == 200 and b'id="no-changes"' in same.data and b"confirm-rollback" not in same.data
    r = editor.post(f"/ns/{three}/rollback/3", data={"csrf_token": _csrf(same.data), "expected_rev": "3"},
                    follow_redirects=True)
    assert b"No changes" in r.data and backend.store.revision(three) == 3
    backend.store.client.xtrim(Keys(three).log, minid="3-0", approximate=False)
    trimmed = editor.get(f"/ns/{three}/rollback/1")
    assert trimmed.status_code == 404 and b"no longer reaches" in trimmed.data
    hist = editor.get(f"/ns/{three}/history")
    assert b'id="rev-3"' in hist.data and b'class="rollback"' not in hist.data


def test_history_offers_rollback_only_where_possible(editor, three, backend):
    """Rollback links appear for older revisions the log can restore, never for the current one."""
    backend.rules.put_rule(three, split_rule("web", 200), 3, "carol")
    backend.store.client.xtrim(Keys(three).log, minid="3-0", approximate=False)
    hist = editor.get(f"/ns/{three}/history")
    links = re.findall(rb'href="/ns/[^/]+/rollback/(\d+)"', hist.data)
    assert links == [b"3"]
    assert re.search(ISO, hist.data) and not RAW_TS.search(hist.data)


def test_history_pages_and_rule_filter(editor, ns, backend):
    """25 entries a page with older/newer links; ?rule= keeps one rule's changes."""
    backend.rules.put_rule(ns, split_rule("a"), None, "x")
    backend.rules.put_rule(ns, split_rule("b"), 1, "x")
    for rev in range(3, 31):  # 3..30: a on odd, b on even revisions
        backend.rules.put_rule(ns, split_rule("a" if rev % 2 else "b", rev), rev - 1, "x")
    first = editor.get(f"/ns/{ns}/history")
    revs = [int(x) for x in re.findall(rb'<section class="entry" id="rev-(\d+)"', first.data)]
    assert revs == list(range(30, 5, -1)) and b'id="newer"' not in first.data
    older_url = html.unescape(re.search(rb'href="([^"]+)" id="older"', first.data).group(1).decode())
    second = editor.get(older_url)
    assert [int(x) for x in re.findall(rb'id="rev-(\d+)"', second.data)] == [5, 4, 3, 2, 1]
    assert b'id="older"' not in second.data
    newer_url = html.unescape(re.search(rb'href="([^"]+)" id="newer"', second.data).group(1).decode())
    back = editor.get(newer_url)
    assert [int(x) for x in re.findall(rb'id="rev-(\d+)"', back.data)] == list(range(30, 5, -1))
    only_b = editor.get(f"/ns/{ns}/history?rule=b")
    revs_b = [int(x) for x in re.findall(rb'id="rev-(\d+)"', only_b.data)]
    assert revs_b == list(range(30, 3, -2)) + [2]
    assert b"<summary>a:" not in only_b.data
    assert editor.get(f"/ns/{ns}/history?rule=Bad%20Id").status_code == 400


def test_diff_page(editor, three, backend):
    """The diff page shows each rule added/removed/changed between two revisions; bad or lost revisions say so."""
    r = editor.get(f"/ns/{three}/diff?from=1&to=3")
    assert r.status_code == 200
    assert b'id="change-shed" class="change-added"' in r.data and b'id="change-web" class="change-changed"' in r.data
    assert b"diff-add" in r.data
    assert editor.get(f"/ns/{three}/diff?from=3").status_code == 200
    assert b'id="no-diff"' in editor.get(f"/ns/{three}/diff?from=3").data
    bad = editor.get(f"/ns/{three}/diff?from=x")
    assert bad.status_code == 400 and b"from must be a revision number" in bad.data
    missing = editor.get(f"/ns/{three}/diff?from=1&to=8")
    assert missing.status_code == 404 and b"revision 8 does not exist" in missing.data


def test_empty_namespace_is_admin_only_and_confirmed(editor, admin, three, backend):
    """Editors get 403 and see no button; the admin's confirmation page lists every rule; confirming empties
    the namespace in one audited revision."""
    assert editor.get(f"/ns/{three}/empty").status_code == 403
    assert b'id="empty-namespace"' not in editor.get(f"/ns/{three}/history").data
    assert b'id="empty-namespace"' in admin.get(f"/ns/{three}/history").data
    page = admin.get(f"/ns/{three}/empty")
    assert page.status_code == 200 and b'id="confirm-empty"' in page.data
    assert b"<td>web</td>" in page.data and b"<td>shed</td>" in page.data
    own = _csrf(editor.get(f"/ns/{three}/history").data)
    assert editor.post(f"/ns/{three}/empty", data={"csrf_token": own, "expected_rev": "3"}).status_code == 403
    assert admin.post(f"/ns/{three}/empty", data={"expected_rev": "3"}).status_code == 400
    assert backend.store.revision(three) == 3
    r = admin.post(f"/ns/{three}/empty", data={"csrf_token": _csrf(page.data), "expected_rev": "3"})
    assert r.status_code == 302 and backend.rules.list_rules(three) == (4, [])
    events = [e for e in backend.accounts.recent_audit(50) if e["event"] == "namespace.emptied"]
    assert events and events[0]["subject"] == three
    assert b'id="no-changes"' in admin.get(f"/ns/{three}/empty").data


def _hidden_fields(form_html: bytes) -> dict:
    fields = {}
    for name, value in re.findall(rb'<input type="hidden" name="([^"]+)" value="([^"]*)"', form_html):
        fields.setdefault(html.unescape(name.decode()), []).append(html.unescape(value.decode()))
    for name, value in re.findall(rb'name="(csrf_token|expected_rev)" type="hidden" value="([^"]*)"', form_html):
        fields[name.decode()] = [value.decode()]
    return fields


def test_conflict_page_shows_the_other_change_and_reapplies(editor, ns, backend):
    """A stale edit shows who changed the rule, when, and how; 'apply my change' resubmits it at the current
    revision."""
    backend.rules.put_rule(ns, split_rule("web"), None, "alice")
    page = editor.get(f"/ns/{ns}/rules/web/edit")
    form = {"csrf_token": _csrf(page.data), "expected_rev": "1", "id": "web", "host": "shop.example.com",
            "path": "/", "enabled": "y", "key_source": "header", "key_name": "x-uid", "default": "stable",
            "policies-0-type": "percent", "policies-0-buckets": "canary 10%", "action": "save"}
    backend.rules.put_rule(ns, split_rule("web", 4200), 1, "mallory")
    r = editor.post(f"/ns/{ns}/rules/web/edit", data=form)
    assert r.status_code == 409 and b"mallory" in r.data and re.search(ISO, r.data) and not RAW_TS.search(r.data)
    meanwhile = re.search(rb'<pre id="meanwhile">(.*?)</pre>', r.data, re.S).group(1)
    assert b"5000" in meanwhile and b"4200" in meanwhile
    assert b'id="start-again"' in r.data
    reapply = re.search(rb'<form method="post" action="([^"]+)" id="reapply-form">(.*?)</form>', r.data, re.S)
    fields = _hidden_fields(reapply.group(2))
    assert fields["expected_rev"] == ["2"] and fields["policies-0-buckets"] == ["canary 10%"]
    assert backend.store.revision(ns) == 2
    done = editor.post(html.unescape(reapply.group(1).decode()), data=fields)
    assert done.status_code == 302, done.data
    rev, rule = backend.rules.get_rule(ns, "web")
    assert rev == 3 and rule["policies"][0]["buckets"][0]["weight"] == 1000


def test_toggle_conflict_reapplies_the_wanted_state(editor, ns, backend):
    """A stale toggle's reapply sets the state the operator wanted (not a second flip)."""
    backend.rules.put_rule(ns, split_rule("web"), None, "alice")
    listing = editor.get(f"/ns/{ns}/")
    backend.rules.put_rule(ns, split_rule("web", 4200), 1, "mallory")
    r = editor.post(f"/ns/{ns}/rules/web/toggle", data={"csrf_token": _csrf(listing.data), "expected_rev": "1"})
    assert r.status_code == 409
    reapply = re.search(rb'<form method="post" action="([^"]+)" id="reapply-form">(.*?)</form>', r.data, re.S)
    fields = _hidden_fields(reapply.group(2))
    assert fields["enabled"] == ["off"]
    assert editor.post(html.unescape(reapply.group(1).decode()), data=fields).status_code == 302
    assert backend.rules.get_rule(ns, "web")[1]["enabled"] is False and backend.store.revision(ns) == 3
    again = editor.post(html.unescape(reapply.group(1).decode()), data={**fields, "expected_rev": ["3"]},
                        follow_redirects=True)
    assert b"No changes" in again.data and backend.store.revision(ns) == 3


def test_saving_without_changes_creates_no_revision(editor, ns, backend):
    """Saving an edit form that changes nothing says so and commits nothing."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    form = {"csrf_token": _csrf(page.data), "id": "web", "host": "shop.example.com", "path": "/", "enabled": "y",
            "key_source": "header", "key_name": "x-uid", "default": "stable", "policies-0-type": "percent",
            "policies-0-buckets": "canary 10%", "action": "save"}
    assert editor.post(f"/ns/{ns}/rules/new?kind=split", data=form).status_code == 302
    assert backend.store.revision(ns) == 1
    r = editor.post(f"/ns/{ns}/rules/web/edit", data={**form, "expected_rev": "1"}, follow_redirects=True)
    assert r.status_code == 200 and b"No changes" in r.data
    assert backend.store.revision(ns) == 1


def test_fleet_and_conflict_times_are_iso(editor, ns, backend):
    """The fleet page shows heartbeats as ISO 8601 UTC with a relative time, not UNIX seconds."""
    now = time.time() - 180
    backend.store.client.hset(Keys(ns).fleet, "gw-t", Heartbeat("agent", 0, "", now, now, 0.0).encode())
    r = editor.get(f"/ns/{ns}/fleet")
    assert r.status_code == 200 and re.search(ISO, r.data) and re.search(rb"\(\d+ min ago\)", r.data)
    assert not RAW_TS.search(r.data)
