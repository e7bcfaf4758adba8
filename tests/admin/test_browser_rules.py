"""Headless Chromium on a real gunicorn instance: percent round-trip, unknown upstream refused then confirmed,
a viewer reading a rule, paging through the rule list, and the script that fits the form to the chosen type."""
from __future__ import annotations

import time

import pytest

from rulegate.fleet import Heartbeat
from rulegate.keyspace import Keys
from rulegate.schema import encode_rule, validate_rule

from .conftest import PASSWORD, split_rule
from .test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for this module's tests."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser, servers):
    """A page in a fresh browser context (no cookies shared between tests)."""
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    ctx.close()


def _login(pg, base: str, user, target: str) -> None:
    pg.goto(f"{base}{target}")
    pg.fill("#username", user.username)
    pg.fill("#password", PASSWORD)
    pg.click("#login")
    pg.wait_for_url(f"{base}{target}")


def _new_split(pg, default: str, buckets: str) -> None:
    pg.click("#new-split")
    pg.fill("#id", "web")
    pg.fill("#host", "shop.example.com")
    pg.select_option("#key_source", "header")
    pg.fill("#key_name", "x-uid")
    pg.fill("#default", default)
    pg.fill("#policies-0-buckets", buckets)
    pg.click("#save")


def test_percent_round_trip(page, servers, users, ns, backend):
    """12.5% typed in the form is stored as 1250 and shown as 12.5% in the list, the edit form and the rule page."""
    base = servers[0].url
    _login(page, base, users["editor"], f"/ns/{ns}/")
    _new_split(page, "stable", "canary 12.5%")
    page.wait_for_selector("#rule-web")
    assert backend.rules.get_rule(ns, "web")[1]["policies"][0]["buckets"] == [{"upstream": "canary", "weight": 1250}]
    assert page.locator("#rule-web .targets").inner_text() == "canary 12.5%; else stable"
    page.goto(f"{base}/ns/{ns}/rules/web/edit")
    assert page.input_value("#policies-0-buckets") == "canary 12.5%"
    page.goto(f"{base}/ns/{ns}/rules/web/")
    assert "12.5% of users → canary" in page.locator("#rule-summary").inner_text()


def test_unknown_upstream_refused_then_confirmed(page, servers, users, ns, backend):
    """A name no live gateway reports is refused next to its field; ticking the confirm box saves it."""
    now = time.time()
    backend.store.client.hset(Keys(ns).fleet, "gw-1", Heartbeat("nginx", 0, "", now, now, 0.0,
                                                                upstreams=("canary", "stable")).encode())
    base = servers[0].url
    _login(page, base, users["editor"], f"/ns/{ns}/")
    _new_split(page, "stabel", "canary 5%")
    assert "'stabel' is not known" in page.locator('.error[data-field="default"]').inner_text()
    assert page.locator("#unknown-upstreams").is_visible() and backend.store.revision(ns) == 0
    page.check("#force")
    page.click("#save")
    page.wait_for_selector("#rule-web")
    assert backend.rules.get_rule(ns, "web")[1]["default"] == "stabel"


def test_viewer_reads_a_rule(page, servers, users, ns, backend):
    """A viewer opens the list, follows a rule's link and reads it; there is no Edit link."""
    backend.rules.put_rule(ns, split_rule("web", weight=2500), None, "alice")
    base = servers[0].url
    _login(page, base, users["viewer"], f"/ns/{ns}/")
    page.click("#rule-web a.rule-link")
    page.wait_for_selector("#rule-summary")
    assert "25% of users → canary" in page.locator("#rule-summary").inner_text()
    assert page.locator("#edit-rule").count() == 0 and page.locator("#rev-1").count() == 1
    assert page.input_value("#host") == "shop.example.com"


def test_paging_through_the_rule_list(page, servers, users, ns, backend):
    """120 rules: 50, 50 and 20 rows on three pages reached by the next link."""
    rules = [validate_rule({**split_rule(f"r{i:03d}"), "updated_by": "seed", "updated_at": 1}) for i in range(120)]
    backend.store.commit(ns, [(r["id"], encode_rule(r)) for r in rules], None, "seed", op="put")
    base = servers[0].url
    _login(page, base, users["viewer"], f"/ns/{ns}/")
    counts = [page.locator("tr[id^=rule-]").count()]
    for _ in range(2):
        page.click("#next-page")
        page.wait_for_load_state()
        counts.append(page.locator("tr[id^=rule-]").count())
    assert counts == [50, 50, 20] and page.locator("#next-page").count() == 0
    assert page.locator("tr[id^=rule-]").first.get_attribute("id") == "rule-r100"


def test_choosing_a_type_shows_its_fields_instantly(page, servers, users, ns):
    """The static script hides and shows fields on change (no postback): header shows name/upstream, not shares."""
    base = servers[0].url
    _login(page, base, users["editor"], f"/ns/{ns}/rules/new?kind=split")
    assert page.locator("#policies-0-buckets").is_visible() and not page.locator("#policies-0-upstream").is_visible()
    assert not page.locator("button.refresh").first.is_visible()
    page.select_option("#policies-0-type", "header")
    assert page.locator("#policies-0-upstream").is_visible() and page.locator("#policies-0-name").is_visible()
    assert not page.locator("#policies-0-buckets").is_visible()
