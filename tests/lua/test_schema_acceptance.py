"""Every rule the Python validator emits is accepted by the Lua schema and decided alike (hypothesis)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rulegate.schema import encode_rule, validate_rule
from tests.strategies import rule_inputs

from .decide_harness import DecideHarness, RawRequest, python_decisions


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecideHarness]:
    """An nginx checking and deciding batches with the Lua modules."""
    with DecideHarness(tmp_path_factory.mktemp("accept")) as h:
        yield h


def requests_for(rules: list[dict], data: st.DataObject) -> list[RawRequest]:
    """Requests aimed at the rules' routes, carrying their keys and policy inputs with drawn values."""
    out = []
    values = st.one_of(st.sampled_from(["1", "42", "007", "9007199254740991", "", "on", "10.1.2.3"]),
                       st.text(max_size=6))
    for rule in rules:
        host = rule["route"]["host"].replace("*.", "x.").replace("*", "any.example")
        methods = rule["route"].get("methods") or ["GET"]
        names = [rule.get("key", {}).get("name")] + [p.get("name") for p in rule.get("policies", [])]
        headers = [(n.encode(), data.draw(values).encode(errors="surrogateescape")) for n in names if n]
        out.append(RawRequest(host.encode(), rule["route"]["path"].encode() + b"x", data.draw(st.sampled_from(methods)),
                              data.draw(st.sampled_from([b"10.1.2.3", b"2001:db8::1", b"", b"bad"])),
                              data.draw(st.integers(0, 2**40)), headers,
                              data.draw(st.text(min_size=1, max_size=8)).encode(errors="surrogateescape")))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule_inputs(), min_size=1, max_size=6, unique_by=lambda r: r["id"]), st.data())
def test_lua_accepts_and_agrees_on_every_valid_rule_set(harness: DecideHarness, rules, data) -> None:
    """No canonical rule is refused by lua/rulegate/schema.lua, and the router decides as the evaluator."""
    canon = [validate_rule(r) for r in rules]
    errors, fast = harness.check_both([encode_rule(r) for r in canon])
    assert errors == [None] * len(canon)
    # the one-pass check is sure of every rule but those with a ramp, a breaker, a scope or a static response's own
    # headers (rulegate/schema_fast.lua)
    unsure = [r for r, sure in zip(canon, fast) if not sure and _one_pass_covers(r)]
    assert not unsure, unsure[:3]


def _one_pass_covers(rule: dict) -> bool:
    """True for a canonical rule rulegate/schema_fast.lua must be sure of."""
    return (not any("ramp" in p for p in rule.get("policies", ())) and "breaker" not in rule and "scope" not in rule
            and not rule.get("action", {}).get("headers"))
    requests = requests_for(canon, data)
    assert harness.batch(canon, 7, requests) == python_decisions(canon, 7, requests)


def test_old_forms_nginx_refuses_are_accepted_once_canonicalized(harness: DecideHarness) -> None:
    """Rules an older ruleadmin stored in a non-canonical form (bare address, netmask) are refused by the Lua
    schema, and accepted in the form `ruleadmin canonicalize` rewrites them to (ruleadmin/canonicalize.py)."""
    import msgpack

    from ruleadmin.canonicalize import non_canonical
    from rulegate.schema import encode_rule

    old = [{"id": f"r{i}", "kind": "split", "route": {"host": "shop.example.com", "path": "/"},
            "key": {"source": "header", "name": "x-uid"}, "default": "stable",
            "policies": [{"type": "ip_cidr", "cidrs": [cidr], "upstream": "canary"}]}
           for i, cidr in enumerate(["10.1.2.3", "10.2.0.0/255.255.0.0", "10.3.0.0/016"])]
    assert all(harness.check(old)), "each old form is refused by nginx"
    rewritten = {rule_id: new for rule_id, _old, new in non_canonical({r["id"]: encode_rule(r) for r in old})}
    assert sorted(rewritten) == [r["id"] for r in old]
    assert harness.check([msgpack.unpackb(rewritten[r["id"]]) for r in old]) == [None] * len(old)


def _with_upstream(where: str, name: object) -> dict:
    """A valid rule with `name` put where an upstream name goes."""
    if where == "action":
        return {"id": "d", "kind": "degrade", "route": {"host": "shop.example.com", "path": "/"},
                "action": {"type": "upstream", "upstream": name}}
    policy: dict = {"type": "uid_suffix", "suffixes": ["1"], "upstream": "canary"}
    if where == "bucket":
        policy = {"type": "percent", "buckets": [{"upstream": name, "weight": 500}]}
    elif where == "policy":
        policy["upstream"] = name
    return {"id": "s", "kind": "split", "route": {"host": "shop.example.com", "path": "/"},
            "key": {"source": "header", "name": "x-uid"}, "policies": [policy],
            "default": name if where == "default" else "stable"}


BAD_UPSTREAMS = ["", "a b", "evil.example/path", "up!", "x" * 129, "caf\u00e9", "a\tb", 7]
GOOD_UPSTREAMS = ["stable", "a.b:c-d_E9", "x" * 128]


@pytest.mark.parametrize("where", ["default", "policy", "bucket", "action"])
def test_upstream_names_python_refuses_nginx_refuses(harness: DecideHarness, where: str) -> None:
    """An upstream name outside 1-128 of `A-Z a-z 0-9 _ . : -` (docs/rules.md) is refused by the Python validator
    and by lua/rulegate/schema.lua alike (a foreign write of one was applied by nginx, refused by the agent: a
    name with "/" would change what nginx proxies to); every name in it is accepted by both."""
    from rulegate.errors import ValidationError

    for name in BAD_UPSTREAMS:
        with pytest.raises(ValidationError):
            validate_rule(_with_upstream(where, name))
    verdicts = harness.check([_with_upstream(where, name) for name in BAD_UPSTREAMS])
    assert all(verdicts), dict(zip(map(repr, BAD_UPSTREAMS), verdicts))
    good = [validate_rule(_with_upstream(where, name)) for name in GOOD_UPSTREAMS]
    assert harness.check(good) == [None] * len(good)


_BASES = [
    {"id": "s", "kind": "split", "route": {"host": "shop.example.com", "path": "/api", "methods": ["GET"]},
     "key": {"source": "cookie", "name": "uid"}, "default": "stable", "description": "d", "updated_by": "me",
     "policies": [{"type": "uid_suffix", "suffixes": ["1"], "upstream": "canary"},
                  {"type": "header", "name": "x-beta", "values": ["on"], "upstream": "beta"},
                  {"type": "arg", "name": "grp", "values": ["a"], "upstream": "beta"},
                  {"type": "percent", "buckets": [{"upstream": "canary", "weight": 100}], "salt": "s1"}]},
    {"id": "d", "kind": "degrade", "route": {"host": "shop.example.com", "path": "/x"}, "salt": "t",
     "key": {"source": "arg", "name": "k"},
     "action": {"type": "static", "status": 503, "body": "b", "content_type": "text/plain", "headers": {"x-a": "v"}}},
    {"id": "r", "kind": "degrade", "route": {"host": "shop.example.com", "path": "/y"},
     "action": {"type": "redirect", "location": "https://e.example/z", "status": 302}},
]
_STRINGS = ["", " ", "a b", "a\x00b", "a\nb", "a\rb", "caf\u00e9", "\u00e9" * 64, "\u00e9" * 65, "x" * 32, "x" * 33,
            "x" * 64, "x" * 65, "x" * 128, "x" * 129, "x" * 1024, "x" * 1025, "x" * 2049, "a/b", "a;b", "A", "a_b",
            "a.b", "a?b", "a#b", "\t", " a", "a\t", "/p", "http://h/p", "ftp://h"]


def _string_fields(obj: Any) -> Iterator[tuple]:
    for at, value in _nodes(obj):
        if isinstance(value, str) and at[-1] not in ("id", "kind", "type", "source"):
            yield at


def test_every_string_field_python_refuses_nginx_refuses(harness: DecideHarness) -> None:
    """For every string field of a split, a static and a redirect rule, and strings around each limit (empty,
    spaces, NUL, CR/LF, non-ASCII, lengths by 1 around 32/64/128/1024/2048, disallowed characters): a value the
    Python validator refuses is refused by lua/rulegate/schema.lua too (a foreign write nginx would apply and the
    agent refuse), and a value it keeps as is, nginx accepts."""
    import copy

    from rulegate.errors import ValidationError

    cases, expect = [], []
    for base in (validate_rule(copy.deepcopy(b)) for b in _BASES):
        for at in _string_fields(base):
            for value in _STRINGS:
                rule = copy.deepcopy(base)
                parent = rule
                for part in at[:-1]:
                    parent = parent[part]
                parent[at[-1]] = value
                try:
                    verdict = "kept" if validate_rule(copy.deepcopy(rule)) == rule else "changed"
                except ValidationError:
                    verdict = "refused"
                if verdict != "changed":  # a value the validator rewrites (a case, a default) is not stored as is
                    cases.append((at, value, rule))
                    expect.append(verdict)
    got = harness.check([rule for _, _, rule in cases])
    wrong = [(at, value[:12], want, lua) for (at, value, _), want, lua in zip(cases, expect, got)
             if (want == "refused") != (lua is not None)]
    assert wrong == [], wrong[:20]
    assert expect.count("refused") > 200 and expect.count("kept") > 200


def test_stored_bytes_python_cannot_read_as_text_nginx_refuses(harness: DecideHarness) -> None:
    """A stored rule whose strings are not all str of valid UTF-8 (a bin value, a bad byte, an overlong form, a
    surrogate, in a value or a key), or over 96 KiB, is refused by rulegate/schema.py decode_rule and by nginx
    alike; valid non-ASCII text (2-, 3- and 4-byte forms) is accepted by both."""
    import msgpack

    from rulegate.errors import CorruptDataError
    from rulegate.schema import decode_rule, encode_rule

    base = validate_rule({"id": "s", "kind": "split", "route": {"host": "shop.example.com", "path": "/"},
                          "key": {"source": "header", "name": "x-uid"}, "default": "stable",
                          "policies": [{"type": "header", "name": "x-beta", "values": ["on"], "upstream": "b"}]})
    good = encode_rule(base)
    marker = msgpack.packb("on")  # the policy value's encoding, replaced by each case's bytes

    def with_value(encoded: bytes) -> bytes:
        assert good.count(marker) == 1
        return good.replace(marker, encoded)

    raws = {
        "bin": with_value(msgpack.packb(b"on", use_bin_type=True)),
        "bad byte": with_value(b"\xa2o\xff"),
        "overlong": with_value(b"\xa2\xc0\xaf"),
        "surrogate": with_value(b"\xa3\xed\xa0\x80"),
        "above U+10FFFF": with_value(b"\xa4\xf4\x90\x80\x80"),
        "cut sequence": with_value(b"\xa2o\xe2"),
        "bad key": good.replace(msgpack.packb("description"), b"\xab\xff" + b"escription", 1),
        "ext": with_value(msgpack.packb(msgpack.ExtType(1, b"x"))),
        "over 96 KiB": encode_rule({**base, "description": "x" * 1000}).replace(
            msgpack.packb("x" * 1000), msgpack.packb("é" * 50_000)),
        "2-byte": with_value(msgpack.packb("caf\u00e9")),
        "3-byte": with_value(msgpack.packb("\u20ac\ufffd")),
        "4-byte": with_value(msgpack.packb("\U0001f600\U0010ffff")),
    }
    python = {}
    for name, raw in raws.items():
        try:
            decode_rule(raw)
            python[name] = "accepted"
        except CorruptDataError:
            python[name] = "refused"
    lua = dict(zip(raws, harness.check_raw(list(raws.values()))))
    assert {n: "refused" if v else "accepted" for n, v in lua.items()} == python
    assert [n for n, v in python.items() if v == "accepted"] == ["2-byte", "3-byte", "4-byte"]


_NUMBERS = [-1, 0, 1, 2, 0.5, 1.5, 2.0, -0.0, 0.125, 12.345, 99, 100, 100.5, 101, 1000, 1001, 9999, 10000, 10001,
            65536, 2**31, 2**32, 2**53, 2**53 + 1, 2**63 - 1, -2**63, 1e300, float("inf"), float("nan")]
_OTHERS = [None, True, False, "", "1", [], {}, [1], {"a": 1}]


def _shape(obj: Any) -> Any:
    if isinstance(obj, dict):
        return tuple(sorted((k, _shape(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return tuple(sorted({_shape(v) for v in obj}))
    return type(obj).__name__


def _nodes(obj: Any, at: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if at:
        yield at, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, (*at, i))


def _mutants(base: dict) -> Iterator[tuple[tuple, dict]]:
    """Each field of base replaced by numbers around every limit and values of every other type, each object with an
    unknown field and without each of its fields, each list empty, doubled and 40 times as long."""
    import copy

    def changed(at: tuple, fn) -> dict:
        rule = copy.deepcopy(base)
        parent = rule
        for part in at[:-1]:
            parent = parent[part]
        fn(parent, at[-1])
        return rule

    for at, node in [((), base), *_nodes(base)]:
        if at and at[-1] != "id":
            probes = _NUMBERS + _OTHERS if not isinstance(node, str) else _NUMBERS[:4] + _OTHERS
            if isinstance(node, list):
                probes = probes + [node * 2, node * 40, []]
            for value in probes:
                yield (*at, repr(value)[:16]), changed(at, lambda p, k, v=value: p.__setitem__(k, v))
        if isinstance(node, dict):
            target = (*at, None)  # the object itself: its fields
            for name in node:
                if name != "id":
                    yield (*at, f"-{name}"), changed(target, lambda p, k, n=name: (p if k is None else p[k]).pop(n))
            yield (*at, "+unknown"), changed(target, lambda p, k: (p if k is None else p[k]).__setitem__("zz", 1))


def _first_error(raw: bytes) -> str | None:
    """The path of the first error Python's validator reports for stored bytes (None: not a decode of a map)."""
    import msgpack

    from rulegate.errors import ValidationError

    try:
        validate_rule(msgpack.unpackb(raw, raw=False, strict_map_key=True))
    except ValidationError as exc:
        return next(iter(exc.errors), None) or "<root>"
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    return None


def test_every_field_of_every_shape_python_refuses_nginx_refuses(harness: DecideHarness) -> None:
    """For a rule of every shape the vectors hold (and the string probe's bases), every field replaced by numbers
    around each limit (floats that are whole, -0.0, NaN, 2^53 + 1, 2^63 - 1), null, booleans, strings, empty and
    wrong containers; every object given an unknown field and stripped of each field; every list emptied, doubled,
    lengthened: the stored bytes Python's decode_rule refuses, nginx refuses (rule_check.check_stored, as a gateway
    reads a stored rule), and those it keeps as they are, nginx accepts. Before 2026-12-01 nginx applied 1,429 of
    these that Python refuses: unknown fields, null values (Lua drops the key), whole floats in integer fields, an
    empty map as the policies, windows and updated_at outside their range, repeated methods."""
    import msgpack

    from rulegate.errors import CorruptDataError
    from rulegate.schema import decode_rule
    from tests.unit.test_applied_memory import vector_rules

    bases: dict = {}
    for rule in [*vector_rules().values(), *(validate_rule(b) for b in _BASES)]:
        bases.setdefault(_shape(rule), rule)
    raws, expect, labels, fields = [], [], [], []
    for base in bases.values():
        for label, rule in _mutants(base):
            raw = msgpack.packb(rule, use_bin_type=True)
            field = None
            try:
                verdict = "kept" if decode_rule(raw) == rule else "changed"
            except CorruptDataError:
                verdict = "refused"
                field = _first_error(raw)
            if verdict != "changed":  # a value the validator rewrites is not what ruleadmin stores
                raws.append(raw)
                expect.append(verdict)
                labels.append(label)
                fields.append(field)
    got = harness.check_raw(raws)
    wrong = [(label, want, lua) for label, want, lua in zip(labels, expect, got)
             if (want == "refused") != (lua is not None)]
    assert wrong == [], wrong[:20]
    assert len(bases) >= 30 and expect.count("refused") > 15_000 and expect.count("kept") > 1_000
    # nginx names the field Python names (its first error's) whenever its schema check is what refuses the rule;
    # what that check cannot see (a null value, which Lua reads as no field; a whole float in an integer field; an
    # empty map for a list) is refused by the stored-form check, in its own words naming the key
    named = [(label, field, lua) for label, field, lua in zip(labels, fields, got)
             if field is not None and lua is not None and lua.endswith(" is invalid")]
    misnamed = [n for n in named if n[2] != f"{n[1]} is invalid"]
    assert misnamed == [], misnamed[:20]
    assert len(named) > 12_000


def test_percent_vectors(harness: DecideHarness) -> None:
    """tests/vectors/degrade.json "percents" (Python runs the same file): nginx accepts each stored percent Python
    keeps, and refuses each one it refuses naming the field (before 2026-12-02 it applied 12.345 and 0.125)."""
    import json

    from tests.conftest import VECTORS

    percents = json.loads((VECTORS / "degrade.json").read_text())["percents"]
    accepted = [validate_rule({**percents["rule"], "percent": c["percent"]}) for c in percents["accepted"]]
    refused = [{**validate_rule(percents["rule"]), "percent": c["percent"]} for c in percents["refused"]]
    assert harness.check(accepted) == [None] * len(accepted)
    assert harness.check(refused) == [f"{next(iter(c['errors']))} is invalid" for c in percents["refused"]]


# A split with every field a split may have and a policy of every type but a ramp (rulegate/schema_fast.lua is
# sure of no ramp): the base of the one-pass check's probes below.
_RICH_SPLIT: dict[str, Any] = {
    "id": "rich-1.a_b", "kind": "split", "description": "line one\nline two", "enabled": True,
    "updated_at": 1_700_000_000, "updated_by": "ops@example.com",
    "route": {"host": "*.shop.example.com", "path": "/api/v1", "methods": ["GET", "POST"]},
    "key": {"source": "header", "name": "X-Uid"}, "default": "stable", "window": {"start": 10, "end": 2**40},
    "policies": [
        {"type": "uid_range", "ranges": [[0, 99], [2**53 - 1, 2**53 - 1]], "upstream": "canary"},
        {"type": "uid_suffix", "suffixes": ["1", "07"], "upstream": "grey:8080"},
        {"type": "ip_cidr", "cidrs": ["10.0.0.0/8", "2001:db8::/32"], "upstream": "internal"},
        {"type": "header", "name": "x-env", "values": ["blue", "", "é"], "upstream": "blue"},
        {"type": "cookie", "name": "ab_group", "values": ["b"], "upstream": "b"},
        {"type": "arg", "name": "v", "values": ["2"], "upstream": "v2"},
        {"type": "percent", "buckets": [{"upstream": "p1", "weight": 9999}, {"upstream": "p2", "weight": 1}],
         "salt": "s"},
    ],
}


def _replaced(rule: dict, path: tuple, value: Any) -> dict:
    """A deep copy of rule with the field at path (keys and list indexes) set to value (_DROP: removed)."""
    import copy

    out = copy.deepcopy(rule)
    at = out
    for step in path[:-1]:
        at = at[step]
    if value is _DROP:
        del at[path[-1]]
    else:
        at[path[-1]] = value
    return out


_DROP = object()
_P = "policies"
# (path, value): each makes the rich split one Python refuses; the one-pass check must not be sure of any of them
_SPLIT_REFUSALS: list[tuple[tuple, Any]] = [
    *((("id",), v) for v in ["", "A1", "_a", "-a", "a" * 65, "a b", "a/b", "é"]),
    *((("route", "host"), v) for v in ["", ".a.com", "-a.com", "a.com-", "a..com", "*.", "a" * 254, "a_b.com",
                                      "*.*.a.com", "a.com:80", "*a.com"]),
    *((("route", "path"), v) for v in ["", "a", "/a b", "/a?b", "/a#b", "/" + "a" * 512, "/é"]),
    *((("route", "methods"), v) for v in [[], ["GET", "GET"], ["get"], ["GET", "HEAD", "POST", "PUT", "PATCH",
                                                                        "DELETE", "OPTIONS", "TRACE"], ["TRACE"]]),
    (("route", "extra"), "x"), (("route", "host"), _DROP), (("route", "path"), _DROP),
    *((("key",), v) for v in [{"source": "ip", "name": "x"}, {"source": "header"}, {"source": "header", "name": "x_y"},
                              {"source": "cookie", "name": "a b"}, {"source": "request"}, {"source": "query"},
                              {"source": "header", "name": "x" * 129}, {"source": "arg", "name": ""}, {},
                              {"source": "header", "name": "x", "extra": 1}]),
    *((("window",), v) for v in [{}, {"start": 2**40 + 1}, {"end": 2**40 + 1}, {"start": 5, "end": 5},
                                 {"start": 6, "end": 5}, {"start": -1}, {"start": 1, "extra": 2}]),
    *((("updated_at",), v) for v in [2**40 + 1, 2**53 + 5, -1]),
    *((("updated_by",), v) for v in ["x" * 129, "a\nb", "a\rb", "a\0b", 5]),
    *((("description",), v) for v in ["x" * 1025, "a\0b", 7]),
    (("enabled",), 1), (("kind",), "degrade"), (("extra",), 1),
    *((("default",), v) for v in ["", "a b", "x" * 129, "a/b", 5]),
    *(((field,), _DROP) for field in ["id", "kind", "route", "key", "policies", "default"]),
    ((_P,), [{"type": "uid_suffix", "suffixes": ["1"], "upstream": "u"}] * 33),
    *(((_P, 0, "ranges"), v) for v in [[[5, 1]], [[0, 2**53]], [[1]], [], [[1, 2, 3]], [[-1, 2]]]),
    *(((_P, 1, "suffixes"), v) for v in [["x" * 33], [], [""], ["a b"], ["1"] * 257]),
    *(((_P, 2, "cidrs"), v) for v in [["10.0.0.1/8"], ["bad"], ["10.0.0.0/33"], [], ["10.0.0.0/8/8"]]),
    *(((_P, 3, "name"), v) for v in ["x_y", "", "a b", "x" * 129]),
    *(((_P, 3, "values"), v) for v in [["a\nb"], ["x" * 1025], [], ["a\0b"]]),
    *(((_P, 4, "name"), v) for v in ["a b", "", "a;b"]),
    *(((_P, 6, "buckets"), v) for v in [[{"upstream": "p", "weight": 0}], [{"upstream": "p", "weight": 10001}],
                                       [{"upstream": "p", "weight": 6000}, {"upstream": "q", "weight": 5000}], [],
                                       [{"upstream": "p"}], [{"upstream": "p", "weight": 1, "x": 1}],
                                       [{"upstream": "a b", "weight": 1}]]),
    ((_P, 6, "salt"), "x" * 65), ((_P, 6, "upstream"), "u"), ((_P, 0, "upstream"), _DROP),
    ((_P, 0, "type"), "uid_ranges"), ((_P, 1, "cidrs"), ["10.0.0.0/8"]), ((_P, 5, "values"), _DROP),
]


_DEGRADE: dict[str, Any] = {
    "id": "deg-1", "kind": "degrade", "description": "shed", "enabled": True, "updated_at": 5, "updated_by": "ops",
    "route": {"host": "shop.example.com", "path": "/api", "methods": ["GET"]}, "percent": 12.5,
    "key": {"source": "request"}, "salt": "s1", "window": {"end": 99},
}
_ACTIONS: list[dict[str, Any]] = [
    {"type": "static", "status": 200, "content_type": "text/html; charset=utf-8", "body": "<p>later</p>\n"},
    {"type": "static", "status": 204}, {"type": "static", "status": 503, "body": ""},
    {"type": "redirect", "location": "https://www.example.com/x?y=1", "status": 308},
    {"type": "redirect", "location": "/elsewhere"}, {"type": "upstream", "upstream": "fallback-1"},
    {"type": "reject"}, {"type": "reject", "status": 429, "retry_after": 86400},
]
# (path, value) on _DEGRADE with its first action: each a rule Python refuses
_DEGRADE_REFUSALS: list[tuple[tuple, Any]] = [
    *((("percent",), v) for v in [100.5, -1, 12.345, 101, 0.125, float("inf"), float("nan"), "5"]),
    *((("key",), v) for v in [{"source": "request", "name": "x"}, {"source": "query"}, {}]),
    (("salt",), "x" * 65), (("salt",), "a\nb"), (("policies",), []), (("default",), "x"), (("scope",), "all"),
    *((("action", "status"), v) for v in [199, 600, "200", 200.5]),
    *((("action", "content_type"), v) for v in ["", " text/html", "text/html ", "a\nb", "x" * 129]),
    *((("action", "body"), v) for v in ["x" * 65537, "a\0b", 5]),
    (("action", "type"), "respond"), (("action", "location"), "/x"), (("action", "upstream"), "u"),
    (("action", "retry_after"), 5), (("action", "extra"), 1), (("action",), {}), (("action",), "static"),
    (("action",), {"type": "static", "status": 204, "content_type": "text/plain"}),
    (("action",), {"type": "static", "status": 304, "body": "x"}),
    (("action",), {"type": "static", "status": 200, "headers": {"content-length": "5"}}),
    (("action",), {"type": "redirect", "location": "ftp://x.example.com/"}),
    (("action",), {"type": "redirect", "location": "/a b"}),
    (("action",), {"type": "redirect", "location": "/x", "status": 302, "extra": 1}),
    (("action",), {"type": "redirect", "location": "/x", "status": 300}),
    (("action",), {"type": "redirect", "location": "/" + "x" * 2048}),
    (("action",), {"type": "redirect"}), (("action",), {"type": "upstream", "upstream": "a b"}),
    (("action",), {"type": "upstream"}), (("action",), {"type": "reject", "status": 399}),
    (("action",), {"type": "reject", "retry_after": 86401}), (("action",), {"type": "reject", "retry_after": -1}),
    *(((field,), _DROP) for field in ["id", "kind", "route", "action"]),
]


def test_the_one_pass_check_is_sure_only_of_rules_nginx_accepts(harness: DecideHarness) -> None:
    """rulegate/schema_fast.lua (the pool's check of a full load, without decoding) is sure of a rich split of every
    policy type, degrade rules of every action type and their variants, and of none of ~190 canonical-order
    spellings of those with one field wrong, each refused by Python and by nginx's full check (the harness fails
    on a rule it is sure of that the full check refuses; the acceptance tests above hold it to every generated rule
    and ~16,000 mutants)."""
    import msgpack

    from rulegate.errors import CorruptDataError
    from rulegate.schema import _sorted, decode_rule

    goods = [_RICH_SPLIT, _replaced(_RICH_SPLIT, ("key",), {"source": "ip"}),
             _replaced(_RICH_SPLIT, ("key",), {"source": "cookie", "name": "sid"}),
             _replaced(_RICH_SPLIT, ("window",), {"start": 5}), _replaced(_RICH_SPLIT, ("route", "methods"), _DROP),
             _replaced(_RICH_SPLIT, (_P,), []), _replaced(_RICH_SPLIT, ("enabled",), False)]
    raws = [encode_rule(validate_rule(r)) for r in goods]
    assert all(decode_rule(raw) for raw in raws)
    degrade = {**_DEGRADE, "action": _ACTIONS[0]}
    goods = [{**_DEGRADE, "action": action} for action in _ACTIONS] + [
        _replaced(degrade, ("percent",), 100), _replaced(degrade, ("percent",), 0.01),
        _replaced(degrade, ("key",), {"source": "cookie", "name": "sid"})]
    raws += [encode_rule(validate_rule(r)) for r in goods]
    errors, fast = harness.check_both(raws)
    assert errors == [None] * len(raws) and fast == [True] * len(raws)

    for base, refusals in ((_RICH_SPLIT, _SPLIT_REFUSALS), (degrade, _DEGRADE_REFUSALS)):
        bad = [msgpack.packb(_sorted(_replaced(base, path, value)), use_bin_type=True) for path, value in refusals]
        for raw in bad:
            with pytest.raises(CorruptDataError):
                decode_rule(raw)
        errors, fast = harness.check_both(bad)
        assert [(p, e) for (p, _v), e in zip(refusals, errors) if e is None] == []
        assert not any(fast)

    # keys repeated in one map (no dict spells them: the bytes by hand): a key counted twice must not stand in for
    # one that is missing
    def fixmap(*pairs: tuple[str, Any]) -> bytes:
        return bytes([0x80 + len(pairs)]) + b"".join(msgpack.packb(k) + (v if isinstance(v, bytes) else
                                                                        msgpack.packb(v)) for k, v in pairs)

    rule = _sorted(validate_rule(_RICH_SPLIT))
    policies, key = msgpack.packb(rule["policies"]), msgpack.packb(rule["key"])
    no_path = fixmap(*[("host", "a.example.com")] * 4)
    repeated = [
        fixmap(("default", "stable"), ("default", "stable"), ("default", "stable"), ("key", key),
               ("kind", "split"), ("policies", policies), ("route", msgpack.packb(rule["route"]))),  # no id
        fixmap(("default", "stable"), ("id", "rich-1.a_b"), ("key", key), ("kind", "split"),
               ("policies", policies), ("route", no_path)),  # a route without its path
    ]
    errors, fast = harness.check_both(repeated)
    assert None not in errors and not any(fast)
    for raw in repeated:
        with pytest.raises(CorruptDataError):
            decode_rule(raw)
