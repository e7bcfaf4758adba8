"""Evaluator properties: stickiness, bucket distribution, bucket function, no scan of all rules."""
from __future__ import annotations

import random
import zlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rulegate.evaluator import Request, RuleSet, bucket_of, decide, find_route
from rulegate.schema import validate_rule

WEIGHTS = {"a": 1000, "b": 2500, "c": 6500}
AB = validate_rule({"id": "ab", "kind": "split", "route": {"host": "x.example.com", "path": "/"},
                    "key": {"source": "header", "name": "x-uid"},
                    "policies": [{"type": "percent", "buckets": [{"upstream": u, "weight": w}
                                                                 for u, w in WEIGHTS.items()]}],
                    "default": "never"})
RS = RuleSet([AB], 1)


def test_bucket_is_ieee_crc32():
    """bucket = crc32(salt + ':' + key) % 10000, the same function as zlib.crc32 / ngx.crc32_long."""
    assert bucket_of("s", "k") == zlib.crc32(b"s:k") % 10000
    assert bucket_of("exp", "alice") == 3690


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_same_key_always_gets_same_upstream(uid):
    """Sticky: a key is decided identically every time and by a freshly compiled rule set."""
    req = Request("x.example.com", "/", headers={"x-uid": uid})
    first = decide(RS, req)
    assert first.action == "proxy" and first.upstream in WEIGHTS
    assert decide(RS, req) == first
    assert decide(RuleSet([AB], 1), req).upstream == first.upstream


def test_percent_buckets_split_100k_keys_within_one_percent():
    """100,000 random keys split within 1 percentage point of the configured weights."""
    rnd = random.Random(7)
    counts = Counter(decide(RS, Request("x.example.com", "/", headers={"x-uid": f"{rnd.getrandbits(64):x}"})).upstream
                     for _ in range(100_000))
    for upstream, weight in WEIGHTS.items():
        assert abs(counts[upstream] / 100_000 - weight / 10_000) < 0.01, counts


def test_route_lookup_does_not_scan_all_rules():
    """With 10,000 rules on one host, lookup probes only distinct prefix lengths (indexed)."""
    rules = [validate_rule({"id": f"r{i}", "kind": "split", "route": {"host": "h.example.com", "path": f"/p{i:05d}"},
                            "key": {"source": "ip"}, "policies": [], "default": f"u{i}"}) for i in range(10_000)]
    rs = RuleSet(rules, 1)
    index = rs.exact["h.example.com"]
    assert len(index.lengths) == 1
    assert find_route(rs, Request("h.example.com", "/p09999/x")) is not None
    assert decide(rs, Request("h.example.com", "/p04242")).upstream == "u4242"


EVERY_POLICY = [validate_rule(r) for r in (
    {"id": "all", "kind": "split", "route": {"host": "*", "path": "/"}, "key": {"source": "header", "name": "x-uid"},
     "policies": [{"type": "uid_range", "ranges": [[1, 2**53 - 1]], "upstream": "a"},
                  {"type": "uid_suffix", "suffixes": ["7"], "upstream": "b"},
                  {"type": "ip_cidr", "cidrs": ["10.0.0.0/8", "fe80::/10"], "upstream": "c"},
                  {"type": "header", "name": "x-flag", "values": ["on"], "upstream": "d"},
                  {"type": "cookie", "name": "beta", "values": ["on"], "upstream": "e"},
                  {"type": "arg", "name": "v", "values": ["x"], "upstream": "f"},
                  {"type": "percent", "buckets": [{"upstream": "g", "weight": 5000}]}], "default": "stable"},
    {"id": "shed", "kind": "degrade", "route": {"host": "*", "path": "/shed"}, "action": {"type": "reject"},
     "percent": 50, "key": {"source": "cookie", "name": "sid"}, "window": {"start": 1}},
)]
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
any_text = st.text(st.one_of(st.characters(), surrogates), max_size=10)


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({"host": any_text, "path": st.one_of(any_text, st.just("/shed?v=x")), "method": any_text,
                              "ip": any_text, "headers": st.lists(st.tuples(any_text, any_text), max_size=4),
                              "now": st.floats(allow_nan=False)}))
def test_decide_never_raises_on_request_content(data):
    """Any strings (lone surrogates, odd IPs, odd hosts) get a decision; nothing raises."""
    assert decide(RuleSet(EVERY_POLICY, 1), Request.from_dict(data)).action in ("proxy", "respond", "pass")


@pytest.mark.parametrize("text,raw", [("\udcff", b"\xff"), ("a\udcfe\udcffz", b"a\xfe\xffz"), ("\u00e9", b"\xc3\xa9"),
                                      ("\ud800", b"\xed\xa0\x80")])
def test_buckets_hash_the_bytes_a_string_stands_for(text, raw):
    """A key holding non-UTF-8 bytes (as lone surrogates) hashes like those bytes (nginx hashes bytes)."""
    assert bucket_of("s", text) == zlib.crc32(b"s:" + raw) % 10000


SHED = validate_rule({"id": "shed", "kind": "degrade", "route": {"host": "x.example.com", "path": "/"},
                      "action": {"type": "reject"}, "percent": 50})


def test_shed_without_a_key_sheds_a_share_of_each_clients_requests():
    """A degrade without `key` hashes a per-request id: one client (one IP) is shed about half the time, not all
    or nothing (the old default keyed on the client IP); a given request id is decided the same way every time."""
    rs = RuleSet([SHED], 1)
    shed = sum(decide(rs, Request("x.example.com", "/", ip="203.0.113.9")).action == "respond" for _ in range(4000))
    assert 0.4 < shed / 4000 < 0.6, shed
    by_id = Counter(decide(rs, Request("x.example.com", "/", ip="203.0.113.9", request_id=f"r{i}")).action
                    for i in range(4000))
    assert 0.45 < by_id["respond"] / 4000 < 0.55, by_id
    req = Request("x.example.com", "/", ip="203.0.113.9", request_id="r-fixed")
    assert len({decide(rs, req).action for _ in range(50)}) == 1
