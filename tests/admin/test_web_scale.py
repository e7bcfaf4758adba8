"""Web pages of a large namespace: work bounded by what a page shows, not by the namespace's size (an import is one
revision changing hundreds of rules; a namespace may hold 20,000)."""
from __future__ import annotations

import re

import pytest

from ruleadmin import rules as rules_module
from ruleadmin import web
from ruleadmin.web_history import CHANGES_SHOWN
from rulegate.schema import encode_rule, validate_rule

from .conftest import split_rule

pytestmark = pytest.mark.integration


def import_rules(backend, ns: str, n: int) -> int:
    """Write n rules in one revision (an import) and return it."""
    rules = [validate_rule({**split_rule(f"r{i:03d}"), "route": {"host": f"h{i}.example.com", "path": "/"}})
             for i in range(n)]
    return backend.store.commit(ns, [(r["id"], encode_rule(r)) for r in rules], None, "t", op="import").revision


@pytest.fixture()
def decodes(monkeypatch):
    """Count the rules the history views decode."""
    calls: list[bytes] = []
    real = rules_module._decode

    def counting(raw):
        calls.append(raw)
        return real(raw)

    monkeypatch.setattr(rules_module, "_decode", counting)
    return calls


def test_history_page_diffs_at_most_a_few_changes_of_an_import(editor, ns, backend, decodes):
    """An import of 60 rules shows CHANGES_SHOWN diffs and a link to the revision's whole diff; only those are
    decoded. Filtered by a rule, only its change is shown and decoded."""
    rev = import_rules(backend, ns, 60)
    page = editor.get(f"/ns/{ns}/history").data
    assert page.count(b"<details open>") == CHANGES_SHOWN
    assert f"… and {60 - CHANGES_SHOWN} more change(s) in this revision".encode() in page
    assert f"from={rev - 1}&amp;to={rev}".encode() in page
    assert len(decodes) <= 2 * CHANGES_SHOWN
    decodes.clear()
    page = editor.get(f"/ns/{ns}/history?rule=r042").data
    assert page.count(b"<details open>") == 1 and b"r042: created" in page and b"more change(s)" not in page
    assert len(decodes) <= 2


def test_rule_page_decodes_only_its_own_changes(editor, ns, backend, decodes):
    """The rule page's history decodes that rule's change of each revision, not the other rules of an import."""
    import_rules(backend, ns, 80)
    backend.store.put_rule(ns, validate_rule({**split_rule("r007", 100),
                                              "route": {"host": "h7.example.com", "path": "/"}}), None, "t")
    page = editor.get(f"/ns/{ns}/rules/r007/")
    assert page.status_code == 200 and page.data.count(b'<section class="entry" id="rev-') == 2
    assert b"<p>created</p>" in page.data and b"<p>changed</p>" in page.data
    assert len(decodes) <= 4  # two revisions touched r007: its before and after in each


def test_fleet_page_lists_a_bounded_number_of_rules(editor, ns, backend, monkeypatch):
    """With more rules than FLEET_RULES_SHOWN the traffic table shows that many and says how many there are."""
    monkeypatch.setattr(web, "FLEET_RULES_SHOWN", 25)
    import_rules(backend, ns, 40)
    page = editor.get(f"/ns/{ns}/fleet").data
    assert len(re.findall(rb'<tr id="exposure-r\d\d\d"', page)) == 25
    assert b"25 of 40 rules below" in page
    api = backend.rules.fleet(ns, 60.0)
    assert len(api["exposure"]["rules"]) == 40  # the API still has every rule


def test_diff_page_diffs_a_bounded_number_of_rules(editor, ns, backend, monkeypatch, decodes):
    """Two revisions differing in more rules than DIFF_SHOWN: the page diffs that many (by id) and says how many
    differ; the API still returns every difference, with the same total."""
    from ruleadmin import web_history

    monkeypatch.setattr(web_history, "DIFF_SHOWN", 15)
    rev = import_rules(backend, ns, 40)
    page = editor.get(f"/ns/{ns}/diff?from=0&to={rev}").data
    assert len(re.findall(rb'<section id="change-r\d\d\d" class="change-added">', page)) == 15
    assert b"The first 15 of 40 differing rules" in page and b'id="change-r014"' in page
    assert len(decodes) <= 2 * 15
    api = backend.rules.diff(ns, 0, rev)
    assert api["total"] == 40 and len(api["rules"]) == 40


def test_rollback_preview_diffs_a_bounded_number_of_rules(editor, ns, backend, monkeypatch):
    """A rollback that changes more rules than DIFF_SHOWN previews that many and names the total it applies."""
    from ruleadmin import web_history

    monkeypatch.setattr(web_history, "DIFF_SHOWN", 5)
    first = backend.store.put_rule(ns, validate_rule(split_rule("a")), None, "t").revision
    import_rules(backend, ns, 12)
    page = editor.get(f"/ns/{ns}/rollback/{first}").data
    assert len(re.findall(rb'<tr id="change-r\d\d\d" class="change-removed">', page)) == 5
    assert b"the first 5 of 12 by id, shown; all 12 are applied" in page and b"Yes, roll back (12 rule(s))" in page
