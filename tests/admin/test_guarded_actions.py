"""REST guards against accidents: rollback needs If-Match and a real revision, emptying a namespace is an
explicit admin action, diffs between revisions, history cursors and rule filters, no-op saves."""
from __future__ import annotations

import pytest

from rulegate.keyspace import Keys

from .conftest import degrade_rule, split_rule

pytestmark = pytest.mark.integration


def _put(client, user, ns, rule, etag=None):
    headers = dict(user.headers)
    if etag is not None:
        headers["If-Match"] = etag
    return client.put(f"/api/v1/namespaces/{ns}/rules/{rule['id']}", json=rule, headers=headers)


def _rollback(client, user, ns, to_rev, etag=None):
    headers = dict(user.headers)
    if etag is not None:
        headers["If-Match"] = etag
    return client.post(f"/api/v1/namespaces/{ns}/rollback", json={"to_rev": to_rev}, headers=headers)


@pytest.fixture()
def three(client, users, ns) -> str:
    """A namespace at revision 3: web (5000) created, shed created, web changed to 100."""
    ed = users["editor"]
    assert _put(client, ed, ns, split_rule("web")).status_code == 201
    assert _put(client, ed, ns, degrade_rule("shed"), '"1"').status_code == 200
    assert _put(client, ed, ns, split_rule("web", 100), '"2"').status_code == 200
    return ns


def test_rollback_without_if_match_is_428_and_writes_nothing(client, users, three, backend):
    """A rollback without If-Match is refused like a PUT's (428, naming If-Match)."""
    r = _rollback(client, users["editor"], three, 1)
    assert r.status_code == 428 and "If-Match" in r.get_json()["fields"], r.get_json()
    assert backend.store.revision(three) == 3


def test_rollback_to_zero_is_400_naming_to_rev(client, users, three, backend):
    """Revision 0 (the empty namespace) is not a rollback target, even with the right If-Match."""
    r = _rollback(client, users["editor"], three, 0, '"3"')
    assert r.status_code == 400 and "to_rev" in r.get_json()["fields"], r.get_json()
    assert "empty" in r.get_json()["fields"]["to_rev"]
    assert backend.store.revision(three) == 3 and len(backend.rules.list_rules(three)[1]) == 2


def test_rollback_to_a_revision_that_does_not_exist_is_404(client, users, three, backend):
    """A revision beyond the current one is a 404 naming to_rev."""
    r = _rollback(client, users["editor"], three, 7, '"3"')
    assert r.status_code == 404 and "does not exist" in r.get_json()["fields"]["to_rev"], r.get_json()
    assert backend.store.revision(three) == 3


def test_rollback_beyond_the_retained_log_is_404(client, users, three, backend):
    """When the log no longer reaches the target the rollback is a 404 that says so."""
    backend.store.client.xtrim(Keys(three).log, minid="3-0", approximate=False)
    r = _rollback(client, users["editor"], three, 1, '"3"')
    assert r.status_code == 404 and "no longer reaches" in r.get_json()["fields"]["to_rev"], r.get_json()
    assert backend.store.revision(three) == 3


def test_rollback_with_if_match_restores(client, users, three):
    """With If-Match the rollback restores the older rule set as a new revision."""
    r = _rollback(client, users["editor"], three, 1, '"3"')
    assert r.status_code == 200 and r.get_json()["revision"] == 4 and r.get_json()["unchanged"] is False
    assert r.get_json()["changed_rules"] == 2
    assert _rollback(client, users["editor"], three, 1, '"3"').status_code == 412


def test_rollback_to_the_current_rule_set_commits_nothing(client, users, three, backend):
    """Rolling back to a rule set equal to the current one answers 200, unchanged, the current revision."""
    r = _rollback(client, users["editor"], three, 3, '"3"')
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["unchanged"] is True and body["revision"] == 3 and body["changed_rules"] == 0
    assert r.headers["ETag"] == '"3"' and backend.store.revision(three) == 3


def test_put_without_changes_creates_no_revision(client, users, three, backend):
    """Saving the stored rule again (another user, so updated_by differs) answers unchanged, no revision."""
    r = _put(client, users["admin"], three, split_rule("web", 100), '"3"')
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["unchanged"] is True and body["revision"] == 3 and r.headers["ETag"] == '"3"'
    assert body["rule"]["updated_by"] == users["editor"].username
    assert backend.store.revision(three) == 3
    history = client.get(f"/api/v1/namespaces/{three}/history", headers=users["viewer"].headers).get_json()
    assert [e["revision"] for e in history["entries"]] == [3, 2, 1]
    assert _put(client, users["admin"], three, split_rule("web", 100), '"2"').status_code == 412
    changed = _put(client, users["admin"], three, split_rule("web", 101), '"3"')
    assert changed.status_code == 200 and changed.get_json()["unchanged"] is False
    assert changed.get_json()["revision"] == 4


def test_empty_namespace_is_an_audited_admin_action(client, users, three, backend):
    """Editors get 403; admins need If-Match; emptying removes every rule in one audited revision."""
    url = f"/api/v1/namespaces/{three}/empty"
    r = client.post(url, headers={**users["editor"].headers, "If-Match": '"3"'})
    assert r.status_code == 403 and backend.store.revision(three) == 3
    r = client.post(url, headers=users["admin"].headers)
    assert r.status_code == 428 and "If-Match" in r.get_json()["fields"]
    r = client.post(url, headers={**users["admin"].headers, "If-Match": '"2"'})
    assert r.status_code == 412 and backend.store.revision(three) == 3
    r = client.post(url, headers={**users["admin"].headers, "If-Match": '"3"'})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["removed_rules"] == 2 and r.get_json()["revision"] == 4
    assert backend.rules.list_rules(three) == (4, [])
    newest = backend.rules.history(three, None, None, 1)[0]
    assert newest["op"] == "empty" and newest["actor"] == users["admin"].username
    assert sorted(c["id"] for c in newest["changes"]) == ["shed", "web"]
    audit = [e for e in backend.accounts.recent_audit(50) if e["event"] == "namespace.emptied"]
    assert audit and audit[0]["subject"] == three and audit[0]["actor"] == users["admin"].username
    again = client.post(url, headers={**users["admin"].headers, "If-Match": '"4"'})
    assert again.status_code == 200 and again.get_json()["unchanged"] is True
    assert backend.store.revision(three) == 4
    restored = _rollback(client, users["editor"], three, 3, '"4"')
    assert restored.status_code == 200 and len(backend.rules.list_rules(three)[1]) == 2


def test_diff_between_two_revisions(client, users, three, backend):
    """The diff names each rule added, removed or changed between two revisions; to defaults to current."""
    h = users["viewer"].headers
    r = client.get(f"/api/v1/namespaces/{three}/diff?from=1&to=3", headers=h)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["from"] == 1 and body["to"] == 3 and body["revision"] == 3
    assert [(c["id"], c["change"]) for c in body["rules"]] == [("shed", "added"), ("web", "changed")]
    web = body["rules"][1]
    assert web["before"]["policies"][0]["buckets"][0]["weight"] == 5000
    assert web["after"]["policies"][0]["buckets"][0]["weight"] == 100
    back = client.get(f"/api/v1/namespaces/{three}/diff?from=3&to=1", headers=h).get_json()
    assert [(c["id"], c["change"]) for c in back["rules"]] == [("shed", "removed"), ("web", "changed")]
    current = client.get(f"/api/v1/namespaces/{three}/diff?from=2", headers=h).get_json()
    assert current["to"] == 3 and [c["id"] for c in current["rules"]] == ["web"]
    assert client.get(f"/api/v1/namespaces/{three}/diff?from=3", headers=h).get_json()["rules"] == []
    assert client.get(f"/api/v1/namespaces/{three}/diff?from=0&to=1", headers=h).get_json()["rules"][0]["change"] \
        == "added"
    missing = client.get(f"/api/v1/namespaces/{three}/diff?from=1&to=9", headers=h)
    assert missing.status_code == 404 and "to" in missing.get_json()["fields"]
    assert client.get(f"/api/v1/namespaces/{three}/diff", headers=h).get_json()["fields"].keys() == {"from"}
    backend.store.client.xtrim(Keys(three).log, minid="3-0", approximate=False)
    trimmed = client.get(f"/api/v1/namespaces/{three}/diff?from=1&to=3", headers=h)
    assert trimmed.status_code == 404 and "no longer reaches" in trimmed.get_json()["fields"]["from"]
    assert client.get(f"/api/v1/namespaces/{three}/diff?from=2", headers=h).status_code == 200


def test_history_cursor_and_rule_filter(client, users, ns):
    """next_before pages back to the oldest entry; rule= keeps one rule's changes; next_since follows the feed."""
    ed, h = users["editor"], users["viewer"].headers
    _put(client, ed, ns, split_rule("a"))
    for i in range(2, 7):  # revisions 2..6 alternate between b and a
        rule = split_rule("b" if i % 2 == 0 else "a", 100 + i)
        assert _put(client, ed, ns, rule, None if i == 2 else f'"{i - 1}"').status_code in (200, 201)
    url = f"/api/v1/namespaces/{ns}/history"
    seen, before = [], None
    while True:
        page = client.get(url + f"?limit=2{'' if before is None else f'&before={before}'}", headers=h).get_json()
        seen += [e["revision"] for e in page["entries"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [6, 5, 4, 3, 2, 1]
    only_a = client.get(url + "?rule=a&limit=2", headers=h).get_json()
    assert [e["revision"] for e in only_a["entries"]] == [5, 3]
    rest = client.get(url + f"?rule=a&limit=2&before={only_a['next_before']}", headers=h).get_json()
    assert [e["revision"] for e in rest["entries"]] == [1] and rest["next_before"] is None
    feed = client.get(url + "?since=1&limit=3&rule=b", headers=h).get_json()
    assert [e["revision"] for e in feed["entries"]] == [2, 4, 6] and feed["next_since"] is None
    first = client.get(url + "?since=0&limit=2", headers=h).get_json()
    assert [e["revision"] for e in first["entries"]] == [1, 2] and first["next_since"] == 2
    assert client.get(url + "?rule=A%20B", headers=h).get_json()["fields"].keys() == {"rule"}
    assert "ts_iso" in first["entries"][0] and first["entries"][0]["ts_iso"].endswith("Z")


def test_filtered_history_scan_is_bounded_and_resumable(backend, ns):
    """A rule filter reads at most scan_max entries per page; the cursors continue where the scan stopped."""
    from rulegate import history

    backend.rules.put_rule(ns, split_rule("rare"), None, "x")
    backend.rules.put_rule(ns, split_rule("busy"), 1, "x")
    for rev in range(3, 12):  # 3..11 only change busy
        backend.rules.put_rule(ns, split_rule("busy", rev), rev - 1, "x")
    first = history.page(backend.store, ns, limit=5, rule_id="rare", scan_max=4)
    assert first.entries == [] and first.older == 8 and first.newer is None
    second = history.page(backend.store, ns, before=first.older, limit=5, rule_id="rare", scan_max=4)
    assert second.entries == [] and second.older == 4 and second.newer == 7
    last = history.page(backend.store, ns, before=second.older, limit=5, rule_id="rare", scan_max=4)
    assert [e.revision for e in last.entries] == [1] and last.older is None and last.newer == 3
    forward = history.page(backend.store, ns, after=0, limit=5, rule_id="busy", scan_max=3)
    assert [e.revision for e in forward.entries] == [3, 2] and forward.newer == 3 and forward.older is None
