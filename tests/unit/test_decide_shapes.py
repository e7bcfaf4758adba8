"""The per-shape shortcuts of the request path decide what the generic code decides, on arbitrary input.

Generated split picks (rulegate/split_code.py) against the generic policy loop, a degrade's inline bucket
against `_key_value` + `_bucket`, and the builders' fast paths against the spec (`eager`) or their general path.
"""
from __future__ import annotations

import random
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from rulegate import rule_items, split_code
from rulegate.evaluator import compile_rule
from rulegate.request import Request
from rulegate.rule_items import _bucket, _Degrade, _key_value, _Split
from rulegate.schema import validate_rule
from tests.strategies import any_text, keys, policies, tokens, unicode_text, upstreams
from tests.unit.test_request_build import eager, fields

UIDS = ["7", "17", "0", "", "\u0661\u0662", "12345678901234567", "9007199254740993", "x7", "caf\u00e9", "\udcff7",
        "\ud800"]
IPS = ["10.1.2.3", "::1", "fe80::1", "203.0.113.7", "", "1.2.3", "\udcff", "10.0.0.1\u00e9"]


def requests_for(name: str, seed: int, values: list[str] = (), count: int = 16) -> list[Request]:
    """Requests that may carry `name` as a header, cookie and arg: odd values (lone surrogates, non-digits),
    random uids and `values`, each as it is, after digits and followed by one."""
    rnd = random.Random(seed)
    pool = UIDS + [v for value in values for v in (value, "12" + value, value + "9")]

    def some() -> dict[str, str]:
        return {name: rnd.choice(pool + [str(rnd.randrange(10**12))])} if rnd.random() < 0.8 else {}
    return [Request("h", "/", rnd.choice(["GET", "POST"]), rnd.choice(IPS), headers={**some(), "x-flag": "on"},
                    cookies=some(), args=some(), now=rnd.uniform(0, 2e9), request_id=rnd.choice(["", "r1", "\udcff"]))
            for _ in range(count)]


@st.composite
def split_rules(draw) -> dict:
    return validate_rule({"id": "s", "kind": "split", "route": {"host": "h", "path": "/"}, "key": draw(keys()),
                          "policies": draw(st.lists(policies(), min_size=1, max_size=6)), "default": draw(upstreams)})


@settings(max_examples=40, deadline=None)
@given(split_rules(), st.integers(0, 2**32))
def test_generated_pick_equals_the_generic_loop(rule, seed):
    """A split of up to MAX_CHECKS policies has a generated pick; it returns the generic loop's Decision object."""
    if len(rule_items._SHAPES) >= rule_items.MAX_SHAPES:  # other tests' random rules filled the cache: start again
        rule_items._SHAPES.clear()
    split = compile_rule(rule, 3).item
    assert (type(split) is not _Split) == (len(rule["policies"]) <= split_code.MAX_CHECKS)
    suffixes = [s for p in rule["policies"] if p["type"] == "uid_suffix" for s in p["suffixes"]]
    for req in requests_for(split.name or "x", seed, suffixes):
        assert split.pick(req) is _Split.pick(split, req)


def applies_before(degrade: _Degrade, req: Request, now: float) -> bool:
    """_Degrade.applies as it was: the key through _key_value, the bucket through _bucket."""
    if (degrade.start is not None and now < degrade.start) or (degrade.end is not None and now >= degrade.end):
        return False
    if degrade.edge >= 10_000 or degrade.edge <= 0:
        return degrade.edge >= 10_000
    key = _key_value(degrade.source, degrade.name, req)
    return _bucket(degrade.seed, key if key is not None else req.ip) < degrade.edge


@settings(max_examples=40, deadline=None)
@given(keys(degrade=True), st.one_of(st.integers(0, 100), st.integers(0, 10_000).map(lambda bp: bp / 100)),
       st.one_of(st.none(), unicode_text), st.integers(0, 2**32))
def test_degrade_bucket_inline_equals_key_value_and_bucket(key, percent, salt, seed):
    """A degrade's inline key read and bucket give what _key_value + _bucket give."""
    rule = {"id": "d", "kind": "degrade", "route": {"host": "h", "path": "/"}, "action": {"type": "reject"},
            "percent": percent, "key": key, "window": {"start": 10**9}}
    degrade = _Degrade(validate_rule(rule if salt is None else {**rule, "salt": salt}), 1)
    for req in requests_for(degrade.name or "x", seed):
        if degrade.source != "request" or req.request_id:  # no id: a random one per decision
            assert degrade.applies(req, req.now) is applies_before(degrade, req, req.now)


odd = st.one_of(st.none(), st.just(""), st.integers(-3, 3), any_text, st.sampled_from(["GET", "get", "/a?b=1", "?"]))
header_maps = st.one_of(
    st.dictionaries(st.one_of(any_text, tokens, st.sampled_from(["x-uid", "X-Uid", "cookie", "Cookie"]), st.integers()),
                    st.one_of(any_text, st.integers()), max_size=3),
    st.lists(st.tuples(st.sampled_from(["x-uid", "Cookie", "cookie", "a"]), any_text), max_size=3), st.none())
string_maps = st.one_of(st.none(), st.dictionaries(any_text, any_text, max_size=3))


@settings(max_examples=80, deadline=None)
@given(st.fixed_dictionaries({"host": st.one_of(any_text, st.sampled_from(["a.example.com", "A.B.", "[::1]:8"])),
                              "path": odd, "method": odd, "ip": odd, "headers": header_maps},
                             optional={"cookies": string_maps, "args": string_maps, "now": st.floats(0, 9),
                                       "request_id": odd}))
def test_from_dict_and_from_fields_equal_the_spec(data):
    """from_dict (fast path or not) and from_fields give the spec's fields, header names and values as str."""
    get = data.get
    for _ in range(2):  # cold, then with the host, method and header-name caches warm
        built = Request.from_dict(data)
        assert fields(built) == eager(data)
        assert {type(k) for k in built.headers} | {type(v) for v in built.headers.values()} <= {str}
        by_fields = Request.from_fields(get("host", ""), get("path"), get("method"), get("ip"), get("headers"),
                                        get("cookies"), get("args"), get("now"), get("request_id"))
        assert by_fields == built


native = st.text(st.characters(max_codepoint=0xFF), max_size=8)
mostly_ascii = st.one_of(st.sampled_from(["/", "/x", "/a/b"]), native)
queries = st.one_of(st.just(""), st.sampled_from(["a=1&b", "a=%C3%A9", "caf\u00c3\u00a9=\u00ff"]), native)


@settings(max_examples=80, deadline=None)
@given(st.fixed_dictionaries({"REQUEST_METHOD": st.sampled_from(["GET", "GET", "get", "PURGE", ""]),
                              "HTTP_HOST": st.one_of(st.sampled_from(["a.example.com", "A.Ex:80"]), native),
                              "SCRIPT_NAME": st.sampled_from(["", "", "/app"]), "PATH_INFO": mostly_ascii,
                              "QUERY_STRING": queries},
                             optional={"REMOTE_ADDR": native, "HTTP_X_UID": native, "HTTP_COOKIE": native,
                                       "RAW_URI": native}),
       st.one_of(st.none(), native))
def test_from_environ_fast_path_equals_the_general_path(environ, ip):
    """A dict environ (the fast path when it has the common shape) gives what a read-only copy of it gives."""
    for _ in range(2):
        fast = Request.from_environ(environ, ip=ip, request_id="r")
        general = Request.from_environ(MappingProxyType(environ), ip=ip, request_id="r")
        assert fields(fast) == fields(general)
