"""parse_request's msgspec path gives what the json path gives: the same Request or the same error."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_agent.sidecar import BadRequest, _decode_body, _parse_json, parse_request
from rulegate.request import Request


def snapshot(req: Request) -> tuple:
    """Return every field of req, orders and number types included (Request.__eq__ takes 1 == 1.0)."""
    return (req.host, req.path, req.method, req.ip, type(req.headers), list(req.headers.items()),
            list(req.cookies.items()), list(req.args.items()), type(req.now), repr(req.now), req.request_id)


def outcome(parse, body: bytes) -> tuple:
    try:
        return "ok", snapshot(parse(body))
    except BadRequest as exc:
        return "bad", str(exc)


surrogates = st.integers(0xD800, 0xDFFF).map(chr)
any_text = st.text(st.characters() | surrogates, max_size=8) | st.text(max_size=8)  # often no lone surrogate
KNOWN = ["host", "path", "method", "ip", "request_id", "headers", "cookies", "args", "now"]
names = st.sampled_from(KNOWN * 3 + ["x", "Host", ""])
str_maps = st.dictionaries(any_text, any_text, max_size=3)
numbers = st.one_of(st.integers(), st.integers(-10**301, 10**301), st.floats(), st.booleans(), st.none())
str_pairs = st.lists(st.lists(any_text, min_size=2, max_size=2), max_size=3)
values = st.one_of(any_text, str_maps, str_pairs, numbers, st.lists(numbers | any_text, min_size=1, max_size=3),
                   st.dictionaries(any_text, numbers, max_size=2))
FITTING = {"host": st.sampled_from(["a.example.com", "B.example.com.:80", "[::1]:8080"]) | any_text.filter(bool),
           "headers": str_maps | str_pairs | st.none(), "cookies": str_maps | st.none(), "args": str_maps | st.none(),
           "now": numbers, "path": st.sampled_from(["/", "/p?q=1&r=%41", "/?v"]) | any_text,
           "method": st.sampled_from(["GET", "post", ""]) | any_text}
spaces = st.sampled_from(["", " ", "\n\t", "\r\n  "])


@st.composite
def bodies(draw) -> bytes:
    """Return a JSON object's text with duplicate keys, odd spacing and escapes, often damaged."""
    pairs = [(name, draw(FITTING.get(name, any_text) if draw(st.booleans()) or draw(st.booleans()) else values))
             for name in draw(st.lists(names, max_size=6))]  # a value of the field's type 3 times in 4
    if draw(st.booleans()) or draw(st.booleans()):
        pairs.insert(0, ("host", draw(st.sampled_from(["a.example.com", "A.Example.COM.:80", "b"]))))
    ascii_only = draw(st.booleans())
    sp = draw(spaces)
    items = [sp + json.dumps(k, ensure_ascii=ascii_only) + sp + ":" + sp
             + json.dumps(v, ensure_ascii=ascii_only, allow_nan=True) for k, v in pairs]
    text = draw(spaces) + "{" + ",".join(items) + sp + "}" + draw(spaces)
    body = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 6 + ["bom", "utf16", "cut", "byte", "insert", "number"]))
    if damage == "bom":
        body = b"\xef\xbb\xbf" + body
    elif damage == "utf16":
        body = text.encode("utf-16", "surrogatepass")
    elif damage in ("cut", "byte", "insert") and body:
        at = draw(st.integers(0, len(body) - 1))
        byte = bytes([draw(st.integers(0, 255))])
        body = body[:at] + (b"" if damage == "cut" else byte) + body[at + (damage != "insert"):]
    elif damage == "number":
        body = body.replace(b"}", b', "now": ' + draw(st.sampled_from(
            [b"1E400", b"-1e-400", b"1.0", b"-0", b"-0.0", b"1" + b"0" * 300, b"-1" + b"0" * 299, b"NaN",
             b"-Infinity", b"0.1e1", b"01", b"1.", b"2.4703282292062328e-324", b"1" * 40 + b".5e-30"])) + b"}", 1)
    return body


@settings(max_examples=150, deadline=None)
@given(bodies())
def test_msgspec_path_equals_json_path(body: bytes) -> None:
    """Any body, damaged or not: parse_request gives the json path's Request or its exact error."""
    assert outcome(parse_request, body) == outcome(_parse_json, body)


good = st.fixed_dictionaries({"host": st.text(min_size=1, max_size=8)}, optional={
    "path": st.text(max_size=8), "method": st.text(max_size=5), "ip": st.text(max_size=8),
    "request_id": st.text(max_size=8),
    "headers": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
                         st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=3)),
    "cookies": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    "args": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    "now": st.one_of(st.none(), st.integers(-10**30, 10**30), st.floats(allow_nan=False, allow_infinity=False))})


@settings(max_examples=50, deadline=None)
@given(good, st.booleans())
def test_well_formed_bodies_take_the_msgspec_path(data: dict, ascii_only: bool) -> None:
    """A well-formed body without lone surrogates is decoded by msgspec (json.loads never runs for it)."""
    body = json.dumps(data, ensure_ascii=ascii_only).encode()
    fields = _decode_body(body)
    assert {k: getattr(fields, k) for k in data} == {k: v if k != "headers" or type(v) is not list
                                                     else [tuple(p) for p in v] for k, v in data.items()}
    assert outcome(parse_request, body) == outcome(_parse_json, body)


@pytest.mark.parametrize("body", [b'{"host": "a", "host": 1}', b'{"host": 1, "host": "a"}',
                                  b'{"host": "a", "headers": {"x": "1", "y": "2", "x": "3"}}',
                                  b'{"host": "\\ud800"}', b'{"ho\\u0073t": "a"}', b'{"host": "\xed\xa0\x80"}', b'{"host": "a", "now": 1e400}',
                                  b'{"host": "a", "now": 1' + b"0" * 300 + b"}", b'\xef\xbb\xbf{"host": "a"}',
                                  '{"host": "a"}'.encode("utf-16"), b'{"host": "a", "now": true}'])
def test_json_semantics_kept(body: bytes) -> None:
    """Duplicate keys (last wins), lone surrogates, the integer bound, BOMs, UTF-16: as json.loads reads them."""
    assert outcome(parse_request, body) == outcome(_parse_json, body)
