"""Schema properties (hypothesis): canonical output is a fixed point, and no JSON makes validation crash."""
from __future__ import annotations

import copy
import string
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from rulegate.errors import ValidationError
from rulegate.iputil import canonical_cidr
from rulegate.schema import decode_rule, encode_rule, encode_validated, validate_rule
from tests.strategies import json_values, rule_inputs

CANONICAL_HOST = set(string.ascii_lowercase + string.digits + "-.")


def only_validation_errors(value: Any) -> dict | None:
    """Validate value; return the rule, or None after a ValidationError naming fields (anything else fails)."""
    try:
        return validate_rule(value)
    except ValidationError as exc:
        assert exc.errors and all(isinstance(k, str) and k and isinstance(v, str) for k, v in exc.errors.items())
        return None


@settings(max_examples=200, deadline=None)
@given(rule_inputs())
def test_rules_as_written_validate_to_a_canonical_fixed_point(rule):
    """Every drawn rule validates; its canonical form re-validates to itself and survives msgpack."""
    original = copy.deepcopy(rule)
    canon = validate_rule(rule)
    assert rule == original
    assert validate_rule(canon) == canon
    assert decode_rule(encode_rule(canon)) == canon
    # what ruleadmin's write path relies on: a validated rule's keys are already in canonical order, and its
    # canonical bytes unpack (without validation) to the rule itself
    assert encode_validated(canon) == encode_rule(canon) == encode_validated(decode_rule(encode_rule(canon)))
    assert msgpack.unpackb(encode_rule(canon), raw=False) == canon
    host = canon["route"]["host"]
    assert host == "*" or set(host.removeprefix("*.")) <= CANONICAL_HOST and not host.endswith(".")
    for p in canon.get("policies", []):
        for cidr in p.get("cidrs", []):
            assert canonical_cidr(cidr) == cidr
    names = [canon["key"].get("name")] if canon.get("key", {}).get("source") == "header" else []
    names += [p["name"] for p in canon.get("policies", []) if p["type"] == "header"]
    assert all(n == n.lower() for n in names)


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Return the path of every node inside a JSON value (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, prefix + (i,))
    return out


@settings(max_examples=200, deadline=None)
@given(rule_inputs(), st.data(), json_values)
def test_any_json_anywhere_gives_field_errors_or_a_rule(rule, data, junk):
    """Replacing any node of a valid rule with arbitrary JSON yields a rule or field errors, nothing else."""
    path = data.draw(st.sampled_from(paths_of(rule)[1:]))
    node = rule
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = junk
    only_validation_errors(rule)


@settings(max_examples=100, deadline=None)
@given(rule_inputs(), st.data(), json_values)
def test_extra_and_missing_fields_give_field_errors(rule, data, junk):
    """An unknown field or a removed one anywhere is reported by path, never raised as KeyError."""
    containers = [p for p in paths_of(rule) if isinstance(_at(rule, p), dict)]
    path = data.draw(st.sampled_from(containers))
    node = _at(rule, path)
    if node and data.draw(st.booleans()):
        del node[data.draw(st.sampled_from(sorted(node)))]
    else:
        node[data.draw(st.text(max_size=8))] = junk
    only_validation_errors(rule)


def _at(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_json_document_gives_field_errors(value):
    """Any JSON document at all is a rule or field errors."""
    only_validation_errors(value)
