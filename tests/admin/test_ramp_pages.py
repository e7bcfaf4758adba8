"""Web UI for ramps and scheduled split rules: the split form sets a ramp (shares in percent, times in UTC) and
a window and reads them back; the rule page draws the ramp's timeline with the share now; simulate takes a time."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from rulegate.evaluator import bucket_of

from .conftest import csrf_of, split_rule

pytestmark = pytest.mark.integration

JAN1 = 1798761600  # 2027-01-01T00:00:00Z
DAY = 86_400


class _FormValues(HTMLParser):
    """The values a browser would submit for the form with id rule-form (inputs, textareas, selected options)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self._in_form = a.get("id") == "rule-form"
        if not self._in_form:
            return
        if tag == "input" and a.get("name") and a.get("type") not in ("checkbox", "submit"):
            self.values[a["name"]] = a.get("value") or ""
        elif tag == "input" and a.get("type") == "checkbox" and "checked" in a:
            self.values[a["name"]] = a.get("value") or "y"
        elif tag == "textarea":
            self._textarea = a["name"]
            self.values[a["name"]] = ""
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data.removeprefix("\r\n").removeprefix("\n") if not self.values[self._textarea] else data


def form_values(html: bytes) -> dict[str, str]:
    parser = _FormValues()
    parser.feed(html.decode())
    return parser.values


RAMP_FORM = {"id": "ramped", "host": "a.example", "path": "/", "key_source": "header", "key_name": "x-uid",
             "default": "stable", "policies-0-type": "percent", "policies-0-buckets": "a 50%\nb 50%",
             "policies-0-ramp_mode": "step", "policies-0-ramp_from": "1%", "policies-0-ramp_to": "20.5%",
             "policies-0-ramp_start": "2027-01-01T00:00", "policies-0-ramp_end": "2027-01-05T00:00:30",
             "policies-0-ramp_steps": "5", "window_start": "2026-12-31T00:00", "window_end": "2027-02-01T00:00",
             "action": "save"}


def test_split_form_sets_a_ramp_and_a_window_and_reads_them_back(editor, ns, backend):
    """Shares in percent and UTC times are stored as units and epoch seconds; the edit form shows the same text,
    and posting the edit form back unchanged stores the same rule."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data={**RAMP_FORM, "csrf_token": csrf_of(page.data)})
    assert r.status_code == 302, r.data
    stored = backend.rules.get_rule(ns, "ramped")[1]
    assert stored["policies"][0]["ramp"] == {"start": JAN1, "end": JAN1 + 4 * DAY + 30, "from": 100, "to": 2050,
                                             "mode": "step", "steps": 5}
    assert stored["window"] == {"start": JAN1 - DAY, "end": JAN1 + 31 * DAY}
    edit = editor.get(f"/ns/{ns}/rules/ramped/edit")
    values = form_values(edit.data)
    assert {k: values[k] for k in RAMP_FORM if k not in ("action", "id")} == {
        **{k: v for k, v in RAMP_FORM.items() if k not in ("action", "id")}, "policies-0-ramp_to": "20.5%",
        "policies-0-ramp_end": "2027-01-05T00:00:30"}
    r = editor.post(f"/ns/{ns}/rules/ramped/edit", data={**values, "action": "save"})
    assert r.status_code == 302
    again = backend.rules.get_rule(ns, "ramped")[1]
    assert {k: v for k, v in again.items() if k != "updated_at"} == {k: v for k, v in stored.items()
                                                                     if k != "updated_at"}


def test_a_linear_ramp_has_no_steps_and_clearing_the_ramp_removes_it(editor, ns, backend):
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    data = {**RAMP_FORM, "csrf_token": csrf_of(page.data), "policies-0-ramp_mode": "linear", "policies-0-ramp_steps": "",
            "window_start": "", "window_end": ""}
    assert editor.post(f"/ns/{ns}/rules/new?kind=split", data=data).status_code == 302
    stored = backend.rules.get_rule(ns, "ramped")[1]
    assert stored["policies"][0]["ramp"]["mode"] == "linear" and "steps" not in stored["policies"][0]["ramp"]
    assert "window" not in stored
    values = form_values(editor.get(f"/ns/{ns}/rules/ramped/edit").data)
    r = editor.post(f"/ns/{ns}/rules/ramped/edit", data={**values, "policies-0-ramp_mode": "", "action": "save"})
    assert r.status_code == 302
    assert "ramp" not in backend.rules.get_rule(ns, "ramped")[1]["policies"][0]


@pytest.mark.parametrize("changes,field,message", [
    ({"policies-0-ramp_end": "2026-12-31T00:00"}, "policies-0-ramp_end", "must be after the ramp start"),
    ({"policies-0-ramp_end": "2028-01-02T00:00:01"}, "policies-0-ramp_end",
     "must be at most 31622400 seconds (366 days) after the ramp start"),
    ({"policies-0-ramp_steps": ""}, "policies-0-ramp_steps", "is required for a ramp in steps"),
    ({"policies-0-ramp_from": "lots"}, "policies-0-ramp_from", "the share must be a percentage such as 12.5%"),
    ({"policies-0-ramp_to": "101%"}, "policies-0-ramp_to", "the share must be between 0% and 100%"),
    ({"policies-0-ramp_start": ""}, "policies-0-ramp_start", "is required"),
    ({"policies-0-ramp_start": "soon"}, "policies-0-ramp_start", "must look like 2026-01-31T18:00 (UTC)"),
    ({"window_end": "2026-01-01T00:00"}, "window_end", "must be after window.start"),
])
def test_bad_ramp_fields_are_refused_next_to_the_field(editor, ns, backend, changes, field, message):
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data={**RAMP_FORM, "csrf_token": csrf_of(page.data), **changes})
    assert r.status_code == 400
    assert re.search(rb'data-field="' + field.encode() + rb'"[^>]*>' + re.escape(message.encode()), r.data), \
        re.findall(rb'class="error"[^>]*>[^<]*', r.data)
    assert backend.store.revision(ns) == 0


def test_rule_page_draws_each_ramp_with_its_share_now(editor, ns, backend):
    """A finished ramp shows its final share, a ramp that has not started its first one; each has a timeline of
    its stages (stage shares from the formula) and a bar of the time passed."""
    rule = split_rule("ramps")
    rule["policies"] = [
        {"type": "percent", "buckets": [{"upstream": "a", "weight": 1}, {"upstream": "b", "weight": 3}],
         "ramp": {"start": JAN1 - 400 * DAY, "end": JAN1 - 399 * DAY, "from": 100, "to": 2000, "mode": "step",
                  "steps": 5}},
        {"type": "percent", "buckets": [{"upstream": "c", "weight": 1}],
         "ramp": {"start": 4_000_000_000, "end": 4_000_003_600, "from": 1250, "to": 0, "mode": "linear"}}]
    rule["window"] = {"start": JAN1 - 500 * DAY}
    backend.rules.put_rule(ns, rule, None, "x")
    text = editor.get(f"/ns/{ns}/rules/ramps/").data.decode()
    first = text[text.index('id="ramp-1"'):text.index('id="ramp-2"')]
    assert 'id="ramp-1-now">20%</strong> (finished) (a 5%, b 15%)' in first
    assert [s for s in re.findall(r"</time> ([\d.]+%)", first)] == ["1%", "4.8%", "8.6%", "12.4%", "16.2%", "20%"]
    assert first.count('class="ramp-past"') == 5 and first.count('class="ramp-now"') == 2  # the end + the share
    assert 'style="width:100.0%"' in first
    second = text[text.index('id="ramp-2"'):]
    assert 'id="ramp-2-now">12.5%</strong> (not started)' in second and 'style="width:0.0%"' in second
    assert [s for s in re.findall(r"</time> ([\d.]+%)", second)] == ["12.5%", "9.37%", "6.25%", "3.12%", "0%"]
    assert second.count('class="ramp-future"') == 5
    assert "Active from 2025-08-19T00:00:00Z (UTC); outside this window gateways skip the rule." in text
    assert "<script" not in text.split("<main>")[1]


def test_simulate_at_a_time_shows_the_effective_share(editor, ns, backend):
    """The simulate form takes a UTC time: the decision and the rule summary use the ramp's share at that time."""
    rule = split_rule("half")
    rule["policies"][0]["ramp"] = {"start": JAN1, "end": JAN1 + DAY, "from": 0, "to": 10_000, "mode": "linear"}
    backend.rules.put_rule(ns, rule, None, "x")
    page = editor.get(f"/ns/{ns}/rules/half/")
    assert 'id="now"' in page.data.decode()
    for uid in ("1", "2", "3", "4"):
        r = editor.post(f"/ns/{ns}/simulate", data={"csrf_token": csrf_of(page.data), "host": "shop.example.com",
                                                    "path": "/", "method": "GET", "headers": f"x-uid: {uid}",
                                                    "now": "2027-01-01T12:00:00"})
        assert r.status_code == 200
        text = r.data.decode()
        assert "at 2027-01-01T12:00:00Z</h2>" in text
        assert "ramped share, 50% at 2027-01-01T12:00:00Z: 50% of users → canary" in text
        want = "canary" if bucket_of("half", uid) < 5000 else "stable"
        assert f'"upstream": "{want}"' in text
    r = editor.post(f"/ns/{ns}/simulate", data={"csrf_token": csrf_of(page.data), "host": "shop.example.com",
                                                "path": "/", "method": "GET", "now": "noon"})
    assert r.status_code == 400 and re.search(rb'data-field="now"[^>]*>must look like', r.data)
