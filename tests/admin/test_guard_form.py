"""A ramp's guard (API-only) in the web UI: the split form keeps each policy's stored guard, moves it with its policy
and drops it with its ramp; a guard error is shown next to the ramp; the rule page shows the guard in one line."""
from __future__ import annotations

import re

import pytest

from .test_ramp_pages import form_values

pytestmark = pytest.mark.integration

T0 = 1_800_000_000
GUARD = {"control": "stable", "min_requests": 200, "window": 120, "max_error_increase": 0.02, "max_p95_ratio": 1.5,
         "on_breach": "freeze"}
RAMP = {"start": T0, "end": T0 + 86_400, "from": 500, "to": 5000, "mode": "linear"}


@pytest.fixture()
def guarded(ns, backend) -> str:
    """A split rule stored through the API: policy 1 ramps with a guard, policy 2 is a header match, policy 3 ramps
    without one."""
    backend.rules.put_rule(ns, {
        "id": "guarded", "kind": "split", "route": {"host": "shop.example.com", "path": "/"},
        "key": {"source": "header", "name": "x-uid"}, "default": "stable",
        "policies": [{"type": "percent", "buckets": [{"upstream": "canary", "weight": 1}],
                      "ramp": {**RAMP, "guard": GUARD}},
                     {"type": "header", "name": "x-beta", "values": ["1"], "upstream": "beta"},
                     {"type": "percent", "buckets": [{"upstream": "canary", "weight": 1}], "ramp": RAMP}]},
        None, "api")
    return "guarded"


def test_saving_the_form_keeps_the_guard_on_its_policy(editor, ns, backend, guarded):
    """Edit the description and move policy 1 down: the guard moves with its policy, the others get none."""
    values = form_values(editor.get(f"/ns/{ns}/rules/{guarded}/edit").data)
    moved = editor.post(f"/ns/{ns}/rules/{guarded}/edit", data={**values, "action": "down-0"})
    assert moved.status_code == 200
    values = form_values(moved.data)
    r = editor.post(f"/ns/{ns}/rules/{guarded}/edit", data={**values, "description": "in the form", "action": "save"})
    assert r.status_code == 302, r.data
    _rev, rule = backend.rules.get_rule(ns, guarded)
    assert rule["description"] == "in the form"
    assert [p["type"] for p in rule["policies"]] == ["header", "percent", "percent"]
    assert rule["policies"][1]["ramp"] == {**RAMP, "guard": GUARD}
    assert rule["policies"][2]["ramp"] == RAMP


def test_clearing_the_ramp_drops_its_guard(editor, ns, backend, guarded):
    values = form_values(editor.get(f"/ns/{ns}/rules/{guarded}/edit").data)
    r = editor.post(f"/ns/{ns}/rules/{guarded}/edit", data={**values, "policies-0-ramp_mode": "", "action": "save"})
    assert r.status_code == 302, r.data
    assert "ramp" not in backend.rules.get_rule(ns, guarded)[1]["policies"][0]


def test_a_bucket_on_the_guards_control_is_refused_next_to_the_ramp(editor, ns, backend, guarded):
    """Adding the control upstream as a bucket breaks the kept guard: the error is shown at the policy's ramp."""
    values = form_values(editor.get(f"/ns/{ns}/rules/{guarded}/edit").data)
    r = editor.post(f"/ns/{ns}/rules/{guarded}/edit",
                    data={**values, "policies-0-buckets": "canary 0.01%\nstable 1%", "action": "save"})
    assert r.status_code == 400
    assert re.search(rb'data-field="policies-0-ramp_mode"[^>]*>the ramp&#39;s guard \(kept from the API; edit it '
                     rb'there\): control must not be one of this policy&#39;s bucket upstreams', r.data), r.data
    assert backend.rules.get_rule(ns, guarded)[1]["policies"][0]["buckets"] == [{"upstream": "canary", "weight": 1}]


def test_the_rule_page_shows_the_guard_in_one_line(editor, ns, guarded):
    page = editor.get(f"/ns/{ns}/rules/{guarded}/").data.decode()
    line = re.search(r'<p class="ramp-guard" id="ramp-1-guard">(.*?)</p>', page).group(1)
    assert line == ("Guard: against stable over 120 s (at least 200 requests a side), freezes the share when the "
                    "error rate is more than 2 points above stable's or p95 latency is more than 1.5 × "
                    "stable's.")
    assert 'id="ramp-3-guard"' not in page
