"""Rule schema: field-path errors, limits, canonical msgpack round trip (hypothesis)."""
from __future__ import annotations

import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rulegate.errors import CorruptDataError, ValidationError
from rulegate.schema import MAX_POLICIES, decode_rule, encode_rule, validate_rule
from tests.conftest import VECTORS

ids = st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,20}\Z")
upstreams = st.from_regex(r"\A[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,20}\Z")
tokens = st.from_regex(r"\A[a-zA-Z0-9_-]{1,12}\Z")
header_names = st.from_regex(r"\A[a-zA-Z0-9-]{1,12}\Z")
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=30)
hosts = st.sampled_from(["a.example.com", "*.example.com", "*", "x-1.y.org"])
paths = st.sampled_from(["/", "/api", "/api/v1/", "/a-b_c"])
key = st.one_of(st.just({"source": "ip"}),
                st.builds(lambda n: {"source": "header", "name": n}, header_names),
                st.builds(lambda s, n: {"source": s, "name": n}, st.sampled_from(["cookie", "arg"]), tokens))


@st.composite
def policies(draw):
    kind = draw(st.sampled_from(["uid_range", "uid_suffix", "ip_cidr", "header", "cookie", "arg", "percent"]))
    if kind == "uid_range":
        lo = draw(st.integers(0, 10**12))
        return {"type": kind, "ranges": [[lo, lo + draw(st.integers(0, 10**6))]], "upstream": draw(upstreams)}
    if kind == "uid_suffix":
        return {"type": kind, "suffixes": draw(st.lists(tokens, min_size=1, max_size=3)), "upstream": draw(upstreams)}
    if kind == "ip_cidr":
        return {"type": kind, "cidrs": draw(st.lists(st.sampled_from(["10.0.0.0/8", "2001:db8::/32", "1.2.3.4/32"]),
                                                     min_size=1, max_size=3)), "upstream": draw(upstreams)}
    if kind == "percent":
        weights = draw(st.lists(st.integers(1, 2500), min_size=1, max_size=4))
        return {"type": kind, "buckets": [{"upstream": draw(upstreams), "weight": w} for w in weights]}
    return {"type": kind, "name": draw(header_names if kind == "header" else tokens),
            "values": draw(st.lists(texts, min_size=1, max_size=3)), "upstream": draw(upstreams)}


@st.composite
def split_rules(draw):
    return {"id": draw(ids), "kind": "split", "route": {"host": draw(hosts), "path": draw(paths)},
            "key": draw(key), "policies": draw(st.lists(policies(), max_size=5)), "default": draw(upstreams),
            "description": draw(texts), "enabled": draw(st.booleans())}


@st.composite
def degrade_rules(draw):
    action = draw(st.sampled_from([
        {"type": "static", "status": 503, "body": "down", "headers": {"Cache-Control": "no-store"}},
        {"type": "redirect", "location": "https://example.com/x", "status": 307},
        {"type": "upstream", "upstream": "fallback"},
        {"type": "reject", "retry_after": 5},
    ]))
    rule = {"id": draw(ids), "kind": "degrade", "route": {"host": draw(hosts), "path": draw(paths)},
            "action": action, "percent": draw(st.integers(0, 10000)) / 100}
    if draw(st.booleans()):
        start = draw(st.integers(0, 2**31))
        rule["window"] = {"start": start, "end": start + draw(st.integers(1, 10**6))}
    return rule


@settings(max_examples=150, deadline=None)  # tests/unit/test_schema_fast.py round-trips rule_inputs() too
@given(st.one_of(split_rules(), degrade_rules()))
def test_valid_rules_round_trip_through_msgpack(rule):
    """A valid rule validates, encodes deterministically and decodes to the same dict."""
    normal = validate_rule(rule)
    assert validate_rule(normal) == normal
    raw = encode_rule(normal)
    assert decode_rule(raw) == normal
    assert encode_rule(decode_rule(raw)) == raw
    assert validate_rule(normal) == normal


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(texts, children, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(split_rules(), degrade_rules()), st.sampled_from(
    ["id", "kind", "route", "key", "policies", "default", "action", "percent", "window", "extra"]), json_values)
def test_mutated_rules_never_raise_anything_but_validation_errors(rule, field, value):
    """Any mutation of a rule either validates or yields field-path errors, never another exception."""
    rule = dict(rule)
    rule[field] = value
    try:
        validate_rule(rule)
    except ValidationError as exc:
        assert exc.errors and all(isinstance(k, str) and k for k in exc.errors)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_never_crashes(value):
    """Arbitrary JSON is either a rule or a ValidationError."""
    try:
        validate_rule(value)
    except ValidationError as exc:
        assert exc.errors


def base_split(**kw) -> dict:
    rule = {"id": "r1", "kind": "split", "route": {"host": "a.example.com", "path": "/"},
            "key": {"source": "header", "name": "x-uid"}, "policies": [], "default": "stable"}
    rule.update(kw)
    return rule


@pytest.mark.parametrize("rule,path,message", [
    (base_split(policies=[{}, {}, {"type": "percent", "buckets": [{"upstream": "a", "weight": 0}]}]),
     "policies[2].buckets[0].weight", "must be > 0"),
    (base_split(policies=[{"type": "percent", "buckets": [{"upstream": "a", "weight": 6000},
                                                           {"upstream": "b", "weight": 6000}]}]),
     "policies[0].buckets", "at most 10000"),
    (base_split(id="Bad Id"), "id", "must match"),
    (base_split(colour="red"), "colour", "unknown field"),
    (base_split(route={"host": "a.example.com", "path": "nope"}), "route.path", "start with '/'"),
    (base_split(route={"host": "a..example.com", "path": "/"}), "route.host", "host name"),
    (base_split(route={"host": "stra\u00dfe.de", "path": "/"}), "route.host", "punycode"),
    (base_split(route={"host": "a.example.com", "path": "/caf\u00e9"}), "route.path", "printable ASCII"),
    (base_split(key={"source": "header", "name": "x_uid"}), "key.name", "nginx drops"),
    (base_split(policies=[{"type": "header", "name": "x.flag", "values": ["1"], "upstream": "a"}]),
     "policies[0].name", "nginx drops"),
    (base_split(policies=[{"type": "uid_range", "ranges": [[0, 2**53]], "upstream": "a"}]),
     "policies[0].ranges[0][1]", "between 0 and 9007199254740991"),
    (base_split(policies=[{"type": "uid_range", "ranges": [[0, 10.0]], "upstream": "a"}]),
     "policies[0].ranges[0][1]", "integer"),
    (base_split(policies=[{"type": "ip_cidr", "cidrs": ["fe80::1%eth0/128"], "upstream": "a"}]),
     "policies[0].cidrs[0]", "zone"),
    (base_split(policies=[{"type": "ip_cidr", "cidrs": ["10.0.0.0/255.0.255.0"], "upstream": "a"}]),
     "policies[0].cidrs[0]", "contiguous"),
    (base_split(policies=[{"type": "ip_cidr", "cidrs": ["010.0.0.0/8"], "upstream": "a"}]),
     "policies[0].cidrs[0]", "not an IPv4"),
    (base_split(policies=[{"type": ["percent"]}]), "policies[0].type", "must be one of"),
    (base_split(description="\ud800"), "description", "surrogates"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "static", "status": 204, "body": "x"}}, "action.body", "without a body"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "static", "status": 304, "content_type": "text/plain"}}, "action.content_type",
     "without a body"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "static", "status": 200, "headers": {"X-A": "1", "x-a": "2"}}}, "action.headers.x-a",
     "case-insensitive"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "static", "status": 200, "headers": {"X-A": ""}}}, "action.headers.X-A", "empty"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "static", "status": 200, "headers": {"X_A": "1"}}}, "action.headers.X_A", "not allowed"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "static", "status": 200, "headers": {"Content-Type": "text/html"}}},
     "action.headers.Content-Type", "content_type"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "static", "status": 200, "headers": {"X-A": " padded"}}}, "action.headers.X-A", "whitespace"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "redirect", "location": "/caf\u00e9"}}, "action.location", "printable ASCII"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "redirect", "location": "/x", "status": 301.0}}, "action.status", "integer"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": {"static": 1}}}, "action.type", "must be one of"),
    (base_split(key={"source": "header"}), "key.name", "is required"),
    (base_split(key={"source": "request"}), "key.source", "must be one of header, cookie, arg, ip"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"}, "action": {"type": "reject"},
      "key": {"source": "request", "name": "x"}}, "key.name", "not used with source 'request'"),
    (base_split(policies=[{"type": "uid_range", "ranges": [[5, 1]], "upstream": "a"}]), "policies[0].ranges[0]", "lo must be"),
    (base_split(policies=[{"type": "ip_cidr", "cidrs": ["10.0.0.1/8"], "upstream": "a"}]), "policies[0].cidrs[0]", "CIDR"),
    (base_split(policies=[{"type": "regex", "pattern": ".*"}]), "policies[0].type", "must be one of"),
    (base_split(policies=[{"type": "header", "name": "x", "values": ["a"], "upstream": "a"}] * (MAX_POLICIES + 1)),
     "policies", "at most"),
    (base_split(default="has space"), "default", "not allowed"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "static", "status": 200, "body": "x" * 70000}}, "action.body", "at most"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"}, "action": {"type": "reject"},
      "window": {"start": 10, "end": 5}}, "window.end", "after"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"}, "action": {"type": "reject"},
      "percent": 101}, "percent", "between 0 and 100"),
    ({"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
      "action": {"type": "redirect", "location": "https://x", "status": 200}}, "action.status", "one of"),
])
def test_invalid_rules_name_the_field(rule, path, message):
    """Each invalid rule reports the exact field path and a readable reason."""
    with pytest.raises(ValidationError) as info:
        validate_rule(rule)
    assert path in info.value.errors, info.value.errors
    assert message in info.value.errors[path]


def test_every_problem_is_reported_at_once():
    """Validation collects all problems, not just the first."""
    with pytest.raises(ValidationError) as info:
        validate_rule(base_split(id="", default="", colour=1))
    assert {"id", "default", "colour"} <= set(info.value.errors)


def test_garbage_bytes_are_corrupt_data():
    """Undecodable or invalid stored bytes raise CorruptDataError."""
    with pytest.raises(CorruptDataError):
        decode_rule(b"\xc1")
    with pytest.raises(CorruptDataError):
        decode_rule(msgpack.packb({"id": "x"}))


@pytest.mark.parametrize("field,written,stored", [
    (("route", "host"), "Shop.Example.COM.", "shop.example.com"),
    (("route", "host"), "*.B\u00fccher.de", "*.xn--bcher-kva.de"),
    (("key", "name"), "X-Uid", "x-uid"),
])
def test_canonical_forms_of_split_fields(field, written, stored):
    """Hosts and header names a rule reads are stored in their one canonical form."""
    rule = base_split()
    rule[field[0]] = {**rule[field[0]], field[1]: written}
    assert validate_rule(rule)[field[0]][field[1]] == stored


@pytest.mark.parametrize("written,stored", [
    ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),
    ("10.1.2.3", "10.1.2.3/32"),
    ("10.0.0.0/08", "10.0.0.0/8"),
    ("2001:DB8:0:0:0:0:0:0/32", "2001:db8::/32"),
    ("0:0:0:0:0:ffff:10.0.0.0/104", "::ffff:a00:0/104"),
    ("fe80:0:0:1:0:0:0:0/64", "fe80:0:0:1::/64"),
    ("::/0", "::/0"),
])
def test_cidrs_are_stored_canonical(written, stored):
    """A CIDR is stored as address/prefix in canonical text."""
    rule = base_split(policies=[{"type": "ip_cidr", "cidrs": [written], "upstream": "a"}])
    assert validate_rule(rule)["policies"][0]["cidrs"] == [stored]


def test_cidr_with_host_bits_names_the_network():
    """Host bits are refused, with the network the operator probably meant."""
    with pytest.raises(ValidationError) as info:
        validate_rule(base_split(policies=[{"type": "ip_cidr", "cidrs": ["10.0.0.1/8"], "upstream": "a"}]))
    assert "10.0.0.0/8" in info.value.errors["policies[0].cidrs[0]"]


@pytest.mark.parametrize("written,stored", [(50.0, 50), (12.5, 12.5), (0.07, 0.07), (100, 100)])
def test_percent_is_stored_canonical(written, stored):
    """A degrade percent is stored as an integer or the double nearest to basis points / 100."""
    rule = {"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"}, "action": {"type": "reject"},
            "percent": written}
    out = validate_rule(rule)["percent"]
    assert out == stored and type(out) is type(stored)


def test_bodiless_static_gets_no_content_type():
    """A static 204/205/304 is stored without content_type or body default of a content type."""
    rule = {"id": "d", "kind": "degrade", "route": {"host": "*", "path": "/"},
            "action": {"type": "static", "status": 204}}
    assert "content_type" not in validate_rule(rule)["action"]


def test_validation_does_not_change_its_input():
    """validate_rule canonicalizes a copy; the caller's dict is untouched."""
    rule = base_split(route={"host": "A.example.com", "path": "/"}, key={"source": "header", "name": "X-Uid"})
    validate_rule(rule)
    assert rule["route"]["host"] == "A.example.com" and rule["key"]["name"] == "X-Uid"


PERCENTS = json.loads((VECTORS / "degrade.json").read_text())["percents"]


@pytest.mark.parametrize("case", PERCENTS["accepted"], ids=[c["name"] for c in PERCENTS["accepted"]])
def test_percent_vectors_are_stored_canonical(case: dict) -> None:
    """tests/vectors/degrade.json "percents" (nginx runs the same file): the stored percent, int/float kind included."""
    rule = validate_rule({**PERCENTS["rule"], "percent": case["percent"]})
    assert msgpack.packb(rule["percent"]) == msgpack.packb(case["canonical"])
    assert decode_rule(encode_rule(rule)) == rule


@pytest.mark.parametrize("case", PERCENTS["refused"], ids=[c["name"] for c in PERCENTS["refused"]])
def test_percent_vectors_refused_name_the_field(case: dict) -> None:
    with pytest.raises(ValidationError) as exc:
        validate_rule({**PERCENTS["rule"], "percent": case["percent"]})
    assert exc.value.errors == case["errors"]
