"""Headless Chromium (system browser, Playwright) drives the UI of a real gunicorn instance."""
from __future__ import annotations

import pytest

from .conftest import PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def page(servers):
    """A fresh headless Chromium page."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = browser.new_context()
            pg = ctx.new_page()
            pg.set_default_timeout(10_000)
            yield pg
        finally:
            browser.close()


def test_operator_journey(page, servers, users, ns, backend):
    """Log in, create split and degrade rules, see a bad-weight error, simulate, roll back, log out."""
    base = servers[0].url
    page.goto(f"{base}/ns/{ns}/")
    assert "/login" in page.url
    page.fill("#username", users["editor"].username)
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{base}/ns/{ns}/")

    page.click("#new-split")
    page.fill("#id", "web")
    page.fill("#host", "shop.example.com")
    page.fill("#path", "/")
    page.select_option("#key_source", "header")
    page.fill("#key_name", "x-uid")
    page.fill("#default", "stable")
    page.select_option("#policies-0-type", "percent")
    page.fill("#policies-0-buckets", "canary 0")
    page.click("#save")
    error = page.locator('.error[data-field="policies-0-buckets"]')
    assert "the share must be more than 0%" in error.inner_text()
    assert backend.store.revision(ns) == 0
    page.fill("#policies-0-buckets", "canary 100%")
    page.click("#save")
    page.wait_for_selector("#rule-web")
    assert backend.store.revision(ns) == 1

    page.click("#new-degrade")
    page.fill("#id", "shed")
    page.fill("#host", "shop.example.com")
    page.fill("#path", "/checkout")
    page.select_option("#action_type", "reject")
    page.fill("#status", "503")
    page.fill("#retry_after", "30")
    page.click("#save")
    page.wait_for_selector("#rule-shed")
    assert backend.store.revision(ns) == 2

    page.click("#nav-simulate")
    page.fill("#host", "shop.example.com")
    page.fill("#path", "/checkout/pay")
    page.click("#simulate")
    decision = page.locator("#decision").inner_text()
    assert '"rule_id": "shed"' in decision and '"status": 503' in decision

    page.click("#nav-history")
    page.click("#rev-1 a.rollback")
    page.click("#confirm-rollback")
    page.wait_for_selector("#rev-3")
    rev, rules = backend.rules.list_rules(ns)
    assert rev == 3 and [r["id"] for r in rules] == ["web"]

    page.click("#logout")
    page.wait_for_url(f"{base}/login")
    page.goto(f"{base}/ns/{ns}/")
    assert "/login" in page.url
