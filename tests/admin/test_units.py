"""Percent units: the API accepts "12.5%" on weights and degrade percent, stores integers; display helpers."""
from __future__ import annotations

import pytest

from ruleadmin.inputs import percent_strings

from .conftest import degrade_rule, split_rule

pytestmark = pytest.mark.integration


def test_percent_strings_convert_weights_and_degrade_percent():
    """Bucket weights become stored units; a degrade percent becomes its number; others pass unchanged."""
    data = {"percent": "12.5%", "policies": [{"buckets": [{"upstream": "a", "weight": "12.5%"},
                                                           {"upstream": "b", "weight": 300}]}, "x"]}
    out, errors = percent_strings(data)
    assert errors == {} and out["percent"] == 12.5
    assert out["policies"][0]["buckets"] == [{"upstream": "a", "weight": 1250}, {"upstream": "b", "weight": 300}]
    assert data["policies"][0]["buckets"][0]["weight"] == "12.5%"
    assert percent_strings({"percent": "50%"})[0]["percent"] == 50


def test_percent_strings_convert_ramp_shares():
    """A ramp's from/to take percent strings like weights; a bad one is named by its path."""
    data = {"policies": [{"type": "percent", "buckets": [{"upstream": "a", "weight": 1}],
                          "ramp": {"start": 1, "end": 2, "from": "1%", "to": "50%", "mode": "linear"}}]}
    out, errors = percent_strings(data)
    assert errors == {} and out["policies"][0]["ramp"] == {"start": 1, "end": 2, "from": 100, "to": 5000,
                                                          "mode": "linear"}
    data["policies"][0]["ramp"]["to"] = "150%"
    assert percent_strings(data)[1] == {"policies[0].ramp.to": "must be between 0% and 100%"}


def test_api_accepts_percent_string_and_answers_integers(client, users, ns, backend):
    """PUT with weight "12.5%" stores 1250 and the response carries the integer."""
    rule = split_rule("web")
    rule["policies"][0]["buckets"][0]["weight"] = "12.5%"
    r = client.put(f"/api/v1/namespaces/{ns}/rules/web", json=rule, headers=users["editor"].headers)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["rule"]["policies"][0]["buckets"][0]["weight"] == 1250
    assert backend.rules.get_rule(ns, "web")[1]["policies"][0]["buckets"][0]["weight"] == 1250
    shed = {**degrade_rule("shed"), "percent": "0.5%"}
    r = client.put(f"/api/v1/namespaces/{ns}/rules/shed", json=shed, headers=users["editor"].headers)
    assert r.status_code == 201 and r.get_json()["rule"]["percent"] == 0.5


@pytest.mark.parametrize("weight,message", [("12.345%", "two decimals"), ("101%", "between 0% and 100%"),
                                            ("lots", "percentage")])
def test_api_bad_percent_string_names_the_field(client, users, ns, weight, message, watch):
    """A bad percent string is a 400 naming policies[0].buckets[1].weight; nothing is written."""
    rule = split_rule("web")
    rule["policies"][0]["buckets"].append({"upstream": "beta", "weight": weight})
    before = watch.before()
    r = client.put(f"/api/v1/namespaces/{ns}/rules/web", json=rule, headers=users["editor"].headers)
    assert r.status_code == 400
    assert message in r.get_json()["fields"]["policies[0].buckets[1].weight"]
    assert watch.unchanged_since(before)
