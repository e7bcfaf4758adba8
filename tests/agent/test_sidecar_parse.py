"""The sidecar's fast paths (JSON straight to the C scanner, one-pass type checks) change no outcome."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_agent.sidecar import BadRequest, _check, _loads, _well_formed, parse_request

FIELDS = ["host", "path", "method", "ip", "request_id", "headers", "cookies", "args", "now", "other"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False),
                    st.text(max_size=5))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                      max_leaves=6)
bodies = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)


def outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except BadRequest as exc:
        return "bad", str(exc)


@settings(max_examples=100, deadline=None)
@given(data=bodies)
def test_well_formed_is_never_looser_than_the_checks(data):
    """Whatever the one-pass check accepts, the ordered checks accept too."""
    if _well_formed(data):
        _check(data)


@settings(max_examples=100, deadline=None)
@given(data=st.fixed_dictionaries({"host": st.text(min_size=1, max_size=5)},
                                  optional={"headers": st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
                                            "now": st.integers(0, 2**40), "path": st.text(max_size=5)}))
def test_good_bodies_take_the_fast_path(data):
    """Well-typed bodies pass the one-pass check (the ordered checks then never run)."""
    assert _well_formed(data)


@pytest.mark.parametrize("body", [b'{"host": "a"}', b' {"host": "a"} ', b'\xef\xbb\xbf{"host": "a"}',
                                  '{"host": "a"}'.encode("utf-16"), b'{"host": "a"} x', b'{"host": NaN}',
                                  b'{"host": "a", "now": 1' + b"0" * 400 + b"}", b'{"host": "\\ud800"}',
                                  b'{"host": "a"', b"", b"[1]", b'{"a": 1e999}', b"{}" + b" " * 3])
def test_loads_is_json_loads(body):
    """_loads gives json.loads's result or its exact error, fast path or not."""
    def reference(raw):
        from gateway_agent.sidecar import _bounded_int, _no_constant
        return json.loads(raw, parse_constant=_no_constant, parse_int=_bounded_int)
    try:
        want = ("ok", reference(body))
    except ValueError as exc:
        want = ("error", type(exc), str(exc))
    try:
        got = ("ok", _loads(body))
    except ValueError as exc:
        got = ("error", type(exc), str(exc))
    assert got == want


def test_parse_request_messages_keep_their_order():
    """A body with several problems is refused for the first one in the documented order."""
    assert outcome(parse_request, b'{"path": 1, "host": 2}') == ("bad", "host is required and must be a string")
    assert outcome(parse_request, b'{"now": "x", "zz": 1, "host": "a"}') == ("bad", "unknown field 'zz'")
    assert outcome(parse_request, b'{"cookies": [], "headers": 1, "host": "a"}')[1].startswith("headers must")
    assert outcome(parse_request, b'{"host": "a", "ip": null}') == ("bad", "ip must be a string")
    assert outcome(parse_request, b'{"host": "a", "now": true}') == ("bad", "now must be a finite number")
    ok = parse_request(b'{"host": "A.example.com:80", "headers": [["X-Uid", "7"]], "cookies": null, "now": 5}')
    assert (ok.host, dict(ok.headers), ok.now) == ("a.example.com", {"x-uid": "7"}, 5)
