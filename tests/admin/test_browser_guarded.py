"""Headless Chromium: deleting a rule and rolling back go through confirmation pages that show what changes."""
from __future__ import annotations

import pytest

from .conftest import PASSWORD, degrade_rule, split_rule
from .test_browser import page  # noqa: F401  (the headless Chromium page fixture)

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def _login(pg, base: str, user, target: str) -> None:
    pg.goto(f"{base}{target}")
    pg.fill("#username", user.username)
    pg.fill("#password", PASSWORD)
    pg.click("#login")
    pg.wait_for_url(f"{base}{target}")


def test_delete_asks_for_confirmation(page, servers, users, ns, backend):  # noqa: F811
    """The list's delete button opens a page showing the rule; only its confirm button deletes."""
    base = servers[0].url
    backend.rules.put_rule(ns, split_rule("web"), None, "alice")
    backend.rules.put_rule(ns, degrade_rule("shed"), 1, "alice")
    _login(page, base, users["editor"], f"/ns/{ns}/")
    page.click('button[aria-label="delete web"]')
    page.wait_for_url(f"{base}/ns/{ns}/rules/web/delete")
    fields = page.locator("#rule-fields").inner_text()
    assert "web" in fields and "split" in fields and "shop.example.com/" in fields and "alice" in fields
    assert backend.store.revision(ns) == 2
    page.click("#cancel-delete")
    page.wait_for_url(f"{base}/ns/{ns}/")
    assert backend.store.revision(ns) == 2
    page.click('button[aria-label="delete web"]')
    page.click("#confirm-delete")
    page.wait_for_url(f"{base}/ns/{ns}/")
    page.wait_for_selector("#rule-shed")
    assert page.locator("#rule-web").count() == 0
    rev, rules = backend.rules.list_rules(ns)
    assert rev == 3 and [r["id"] for r in rules] == ["shed"]


def test_rollback_shows_its_diff_before_confirming(page, servers, users, ns, backend):  # noqa: F811
    """The history's rollback link opens a preview of every rule it changes; confirming commits it."""
    base = servers[0].url
    backend.rules.put_rule(ns, split_rule("web"), None, "alice")
    backend.rules.put_rule(ns, degrade_rule("shed"), 1, "alice")
    backend.rules.put_rule(ns, split_rule("web", 100), 2, "bob")
    _login(page, base, users["editor"], f"/ns/{ns}/history")
    assert page.locator("#rev-3 a.rollback").count() == 0
    page.click("#rev-1 a.rollback")
    page.wait_for_url(f"{base}/ns/{ns}/rollback/1")
    assert "removed" in page.locator("#change-shed").inner_text()
    assert "changed" in page.locator("#change-web").inner_text()
    assert backend.store.revision(ns) == 3
    page.click("#confirm-rollback")
    page.wait_for_selector("#rev-4")
    rev, rules = backend.rules.list_rules(ns)
    assert rev == 4 and [r["id"] for r in rules] == ["web"]
    assert rules[0]["policies"][0]["buckets"][0]["weight"] == 5000
