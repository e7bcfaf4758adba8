"""ruleadmin.json_answer: a write's JSON answer is byte for byte what Flask's jsonify writes (msgspec where equal)."""
from __future__ import annotations

import math

import pytest
from flask import Flask, jsonify
from hypothesis import given, settings
from hypothesis import strategies as st

from ruleadmin.inputs import BoundedJSONProvider
from ruleadmin.json_answer import json_answer

from .conftest import degrade_rule

_app = Flask(__name__)
_app.json = BoundedJSONProvider(_app)
_debug = Flask("debug")
_debug.debug = True

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | _text
_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-05, 0.0001, 12.5, 1e16, 1e15 + 0.5, 5e-324, -0.0, 0.1, 1.5e-7, 99.99])
_keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)


def _json(leaves):
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
                        max_leaves=12)


def _same(app: Flask, body: dict, floats: bool) -> None:
    with app.test_request_context("/"):
        want, got = jsonify(body), json_answer(body, floats)
    assert got.get_data() == want.get_data()
    assert list(got.headers) == list(want.headers) and got.status_code == want.status_code


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys, _json(_scalars), max_size=6))
def test_a_body_without_floats_answers_as_jsonify_does(body):
    _same(_app, body, floats=False)
    _same(_debug, body, floats=False)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json(_scalars | _floats), max_size=6))
def test_a_body_that_may_hold_floats_answers_as_jsonify_does(body):
    _same(_app, body, floats=True)


@pytest.mark.parametrize("text", ["plain", "caf\u00e9", "a\x7fb", "tab\there", "bell\x07", "quote\"back\\slash",
                                  "\u2028", "\\u0041"])
def test_strings_jsonify_escapes_are_kept(text):
    _same(_app, {"rule": {"id": "r1", "description": text}, "etag": '"r-0e1"', "revision": 3}, floats=False)


@pytest.mark.parametrize("value", [1e-05, 1e16, 12.5, math.inf, 0.25])
def test_a_float_goes_to_jsonify(value):
    with _app.test_request_context("/"):
        assert json_answer({"percent": value}, floats=True).get_data() == jsonify({"percent": value}).get_data()



@pytest.mark.integration
@pytest.mark.parametrize("percent", [12.5, 0.01, 100, 33.33])
def test_a_put_answers_what_jsonify_writes(client, users, ns, percent):
    """The REST PUT's answer (a rule with a float percent or none) is jsonify's bytes of the same body."""
    rule = {**degrade_rule("deg"), "percent": percent, "description": "caf\u00e9 \u2014 1e16"}
    resp = client.put(f"/api/v1/namespaces/{ns}/rules/deg", json=rule, headers=users["editor"].headers)
    assert resp.status_code == 201, resp.get_data()
    with client.application.test_request_context("/"):
        want = jsonify(resp.get_json()).get_data()
    assert resp.get_data() == want
    plain = client.put(f"/api/v1/namespaces/{ns}/rules/plain", json={**degrade_rule("plain")},
                       headers=users["editor"].headers)
    with client.application.test_request_context("/"):
        assert plain.get_data() == jsonify(plain.get_json()).get_data()


def test_an_ascii_body_without_floats_is_encoded_without_jsonify(monkeypatch):
    """The point of json_answer: a rule write's usual answer does not go through Flask's provider."""
    import ruleadmin.json_answer as module

    monkeypatch.setattr(module, "jsonify", lambda body: pytest.fail("jsonify called"))
    body = {"rule": {"id": "r1", "kind": "split", "weight": 5000}, "etag": '"r-0e1"', "revision": 7,
            "replicated": True, "unchanged": False, "replicas_acked": 1, "replicas_wanted": 1}
    with _app.test_request_context("/"):
        data = json_answer(body, floats=False).get_data()
    with _app.test_request_context("/"):
        assert data == _app.json.response(body).get_data()
