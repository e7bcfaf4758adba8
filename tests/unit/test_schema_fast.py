"""The canonical fast path (rulegate/schema_fast.py) gives exactly what the full validator gives, or steps aside."""
from __future__ import annotations

import copy
import json
import struct
from typing import Any, Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rulegate.errors import CorruptDataError
from rulegate.schema import MAX_UID, decode_rule, encode_rule, validate_rule
from rulegate.evaluator import place_rule, place_stored
from rulegate.ramps import has_guard
from rulegate.schema_fast import canonical_rule, decode_canonical, stored_guarded, stored_rule
from rulegate.schema_fast import decode_rule as fast_decode_rule
from tests.conftest import VECTORS
from tests.strategies import json_values, rule_inputs


def exact(value: Any) -> bytes:
    """Return msgpack bytes keeping key order: equal only for equal values, types and key orders."""
    return msgpack.packb(value, use_bin_type=True)


def fast_agrees(data: Any) -> bool:
    """Assert the fast check takes data only when validate_rule returns it unchanged; return whether it took it."""
    before = copy.deepcopy(data)
    got = canonical_rule(data)
    assert repr(data) == repr(before)  # the check never changes what it is given
    if got is None:
        return False
    assert got is data
    assert exact(validate_rule(data)) == exact(data)
    return True


def decode_agrees(raw: bytes) -> None:
    """Assert the fast decode returns exactly the full decode's rule, or raises its error with its message."""
    try:
        want = decode_rule(raw, where="r")
    except CorruptDataError as exc:
        with pytest.raises(CorruptDataError) as got:
            fast_decode_rule(raw, where="r")
        assert str(got.value) == str(exc)
    else:
        assert exact(fast_decode_rule(raw, where="r")) == exact(want)


def packable(value: Any) -> bytes | None:
    """Return value as msgpack, or None when msgpack cannot hold it (lone surrogates, integers past 64 bits)."""
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (UnicodeEncodeError, OverflowError, ValueError):
        return None


def nodes(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Return the path of every node inside a JSON value (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += nodes(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += nodes(v, prefix + (i,))
    return out


def at(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


def mutate(canon: dict, data: st.DataObject, junk: Any) -> None:
    """Replace a node of canon with junk, or add, remove or reorder the fields of one of its objects."""
    how = data.draw(st.sampled_from(["replace", "add", "remove", "reverse"]))
    if how == "replace":
        path = data.draw(st.sampled_from(nodes(canon)[1:]))
        at(canon, path[:-1])[path[-1]] = junk
        return
    node = at(canon, data.draw(st.sampled_from([p for p in nodes(canon) if isinstance(at(canon, p), dict)])))
    if how == "add":
        node[data.draw(st.text(max_size=8))] = junk
    elif how == "remove" and node:
        del node[data.draw(st.sampled_from(sorted(node)))]
    else:
        items = list(node.items())[::-1]
        node.clear()
        node.update(items)


@settings(max_examples=80, deadline=None)
@given(rule_inputs(), st.data(), json_values)
def test_stored_rules_take_the_fast_path_and_changed_ones_agree(rule, data, junk):
    """A rule as ruleadmin stores it is taken by the fast check; as written (often not canonical), or stored and
    then changed anywhere (arbitrary JSON in a node, a field added or removed, keys out of order), the fast check
    never takes what the full validator refuses or changes, and decoding gives the same rule or the same error."""
    canon = validate_rule(rule)
    raw = encode_rule(canon)
    assert fast_agrees(msgpack.unpackb(raw, raw=False))
    decode_agrees(raw)
    fast_agrees(rule)
    decode_agrees(exact(rule))
    mutate(canon, data, junk)
    fast_agrees(canon)
    raw = packable(canon)
    if raw is not None:
        decode_agrees(raw)


def placed_alike(raw: bytes) -> None:
    """Assert a load's placement of the typed rule (place_stored, stored_guarded) is place_rule's and has_guard's of
    the decoded dict."""
    typed, rule = stored_rule(raw), decode_canonical(raw)
    assert typed is not None and rule is not None
    got, want = place_stored(typed, raw), place_rule(rule, raw, True)
    assert (got.rule_id, got.place, got.breaker) == (want.rule_id, want.place, want.breaker)
    assert type(got.item) is type(want.item)
    if want.item is not None:
        assert (got.item.rule_id, got.item.value, got.item.canonical) == (want.item.rule_id, raw, True)
    assert stored_guarded(typed) == has_guard(rule)


@settings(max_examples=60, deadline=None)
@given(rule_inputs())
def test_a_load_places_the_typed_rule_as_the_decoded_one(rule):
    placed_alike(encode_rule(validate_rule(rule)))


T0 = 1_800_000_000
GUARD = {"control": "stable", "max_error_increase": 0.05, "max_p95_ratio": 1.5, "min_requests": 100,
         "on_breach": "revert", "window": 60}
SPLIT = validate_rule({
    "id": "near.miss-1", "kind": "split", "route": {"host": "*.example.com", "path": "/api", "methods": ["GET", "POST"]},
    "key": {"source": "header", "name": "x-uid"}, "window": {"start": T0, "end": T0 + 60},
    "policies": [
        {"type": "uid_range", "ranges": [[0, 10], [20, MAX_UID]], "upstream": "range"},
        {"type": "uid_suffix", "suffixes": ["1", "7"], "upstream": "suffix"},
        {"type": "ip_cidr", "cidrs": ["10.0.0.0/8", "2001:db8::/32"], "upstream": "office"},
        {"type": "header", "name": "x-canary", "values": ["1", "yes"], "upstream": "canary"},
        {"type": "cookie", "name": "beta", "values": ["on"], "upstream": "beta"},
        {"type": "percent", "salt": "s1", "buckets": [{"upstream": "canary", "weight": 2500},
                                                      {"upstream": "canary-b", "weight": 100}],
         "ramp": {"start": T0, "end": T0 + 3600, "from": 0, "to": 5000, "mode": "step", "steps": 4,
                  "guard": GUARD}},
    ], "default": "stable", "description": "line one\nline two", "updated_by": "ops", "updated_at": T0})
STATIC = validate_rule({"id": "static", "kind": "degrade", "route": {"host": "a.example.com", "path": "/"},
                        "action": {"type": "static", "status": 503, "content_type": "text/html",
                                   "headers": {"Cache-Control": "no-store", "X-Reason": "down"}, "body": "down"},
                        "percent": 12.5, "key": {"source": "request"}, "salt": "s",
                        "breaker": {"window": 10, "min_requests": 20, "open_seconds": 30, "probes": 2,
                                    "error_ratio": 0.5, "slow_ms": 800, "slow_ratio": 0.25}})
BODILESS = validate_rule({"id": "gone", "kind": "degrade", "route": {"host": "*", "path": "/gone"},
                          "action": {"type": "static", "status": 204}})
REDIRECT = validate_rule({"id": "moved", "kind": "degrade", "route": {"host": "a.example.com", "path": "/old"},
                          "action": {"type": "redirect", "location": "https://b.example.com/new"},
                          "window": {"end": T0}})
REJECT = validate_rule({"id": "shed", "kind": "degrade", "route": {"host": "a.example.com", "path": "/"},
                        "action": {"type": "reject", "retry_after": 5}, "key": {"source": "ip"}})
BASES = {"split": SPLIT, "static": STATIC, "bodiless": BODILESS, "redirect": REDIRECT, "reject": REJECT}


def reverse(path: tuple) -> Callable[[dict], None]:
    """Return a mutation putting the keys of the dict at path in reverse order."""
    def apply(rule: dict) -> None:
        node = at(rule, path)
        items = list(node.items())[::-1]
        node.clear()
        node.update(items)
    apply.__name__ = f"reverse {'.'.join(map(str, path))}"
    return apply


def drop(path: tuple) -> Callable[[dict], None]:
    """Return a mutation removing the field at path."""
    def apply(rule: dict) -> None:
        at(rule, path[:-1]).pop(path[-1])
    apply.__name__ = f"drop {'.'.join(map(str, path))}"
    return apply


# (base, path or mutation, value): each is valid-but-not-canonical or invalid, and none may take the fast path
NEAR_MISSES = [
    ("split", reverse(()), None), ("split", ("extra",), 1), ("split", drop(("enabled",)), None),
    ("split", drop(("description",)), None), ("split", ("kind",), "degrade"), ("split", ("kind",), ["split"]),
    ("split", ("id",), "Upper"), ("split", ("id",), ""), ("split", ("enabled",), 1), ("split", ("updated_at",), True),
    ("split", ("updated_at",), -1), ("split", ("updated_at",), 2**40 + 1), ("split", ("updated_at",), 5.0),
    ("split", ("updated_by",), "a\nb"), ("split", ("updated_by",), "x" * 129), ("split", ("description",), "a\x00"),
    ("split", ("description",), "\ud800"), ("split", ("updated_by",), b"ops"),
    ("split", ("route", "host"), "Svc.example.com"), ("split", ("route", "host"), "svc.example.com."),
    ("split", ("route", "host"), "*."), ("split", ("route", "host"), "-a.example.com"),
    ("split", ("route", "host"), "a.example.com-"), ("split", ("route", "host"), "a..example.com"),
    ("split", ("route", "host"), ".a.example.com"), ("split", ("route", "host"), "*.*.example.com"),
    ("split", ("route", "host"), "b\u00fccher.example"), ("split", ("route", "host"), "a" * 254),
    ("split", ("route", "host"), ""), ("split", ("route", "host"), "a_b.example.com"),
    ("split", ("route", "path"), "api"), ("split", ("route", "path"), "/a b"), ("split", ("route", "path"), "/a?b"),
    ("split", ("route", "path"), "/" + "a" * 512), ("split", ("route", "methods"), ["GET", "GET"]),
    ("split", ("route", "methods"), ["get"]), ("split", ("route", "methods"), []),
    ("split", ("route", "methods"), [["GET"]]), ("split", reverse(("route",)), None),
    ("split", ("key", "name"), "X-Uid"), ("split", ("key", "name"), "x_uid"), ("split", ("key",), {"source": "request"}),
    ("split", ("key",), {"name": "a", "source": "ip"}), ("split", ("key",), {"name": "a b", "source": "cookie"}),
    ("split", ("key",), {"source": "arg"}), ("split", ("window",), {"end": T0, "start": T0}),
    ("split", ("window",), {}), ("split", ("window",), {"start": T0, "end": T0 + 1}),
    ("split", ("window", "start"), -1), ("split", ("default",), ""), ("split", ("default",), "a b"),
    ("split", ("policies",), [SPLIT["policies"][1]] * 33), ("split", ("policies", 0, "ranges"), [[5, 1]]),
    ("split", ("policies", 0, "ranges"), [[True, 2]]), ("split", ("policies", 0, "ranges"), [[0, MAX_UID + 1]]),
    ("split", ("policies", 0, "ranges"), [[1, 2, 3]]), ("split", ("policies", 0, "ranges"), []),
    ("split", ("policies", 0, "type"), "uid_suffix"), ("split", ("policies", 0, "type"), ["x"]),
    ("split", ("policies", 1, "suffixes"), ["a b"]), ("split", ("policies", 1, "suffixes"), [""]),
    ("split", ("policies", 1, "suffixes"), ["x" * 33]), ("split", reverse(("policies", 1)), None),
    ("split", ("policies", 2, "cidrs"), ["10.0.0.1/8"]), ("split", ("policies", 2, "cidrs"), ["10.0.0.0/255.0.0.0"]),
    ("split", ("policies", 2, "cidrs"), ["2001:DB8::/32"]), ("split", ("policies", 2, "cidrs"), ["10.0.0.0/08"]),
    ("split", ("policies", 2, "cidrs"), ["10.1.2.3"]), ("split", ("policies", 3, "name"), "X-Canary"),
    ("split", ("policies", 3, "values"), ["a\r"]), ("split", ("policies", 3, "values"), []),
    ("split", ("policies", 4, "name"), "a b"), ("split", ("policies", 4, "upstream"), "a/b"),
    ("split", ("policies", 5, "buckets", 0, "weight"), 0), ("split", ("policies", 5, "buckets", 0, "weight"), 10_001),
    ("split", ("policies", 5, "buckets", 0, "weight"), 9_950), ("split", ("policies", 5, "buckets", 0, "weight"), 25.0),
    ("split", reverse(("policies", 5, "buckets", 0)), None), ("split", ("policies", 5, "salt"), "a\n"),
    ("split", ("policies", 5, "ramp", "end"), T0), ("split", ("policies", 5, "ramp", "end"), T0 + 366 * 86_400 + 1),
    ("split", drop(("policies", 5, "ramp", "steps")), None), ("split", ("policies", 5, "ramp", "mode"), "linear"),
    ("split", ("policies", 5, "ramp", "mode"), "Step"), ("split", ("policies", 5, "ramp", "to"), 10_001),
    ("split", ("policies", 5, "ramp", "steps"), 0), ("split", ("policies", 5, "ramp", "from"), False),
    ("split", drop(("policies", 5, "ramp", "guard", "window")), None),
    ("split", drop(("policies", 5, "ramp", "guard", "on_breach")), None),
    ("split", drop(("policies", 5, "ramp", "guard", "min_requests")), None),
    ("split", ("policies", 5, "ramp", "guard", "max_error_increase"), 1.0),
    ("split", ("policies", 5, "ramp", "guard", "max_error_increase"), 0.00001),
    ("split", ("policies", 5, "ramp", "guard", "max_error_increase"), 0.05 + 1e-15),
    ("split", ("policies", 5, "ramp", "guard", "max_p95_ratio"), 0.5),
    ("split", ("policies", 5, "ramp", "guard", "max_p95_ratio"), float("nan")),
    ("split", ("policies", 5, "ramp", "guard", "control"), "canary-b"),
    ("split", ("policies", 5, "ramp", "guard", "on_breach"), "stop"),
    ("split", ("policies", 5, "ramp", "guard", "on_breach"), ["revert"]),
    ("split", ("policies", 5, "ramp", "guard", "window"), 5), ("split", reverse(("policies", 5, "ramp", "guard")), None),
    ("static", ("percent",), 50.0), ("static", ("percent",), 100.5), ("static", ("percent",), 0.125),
    ("static", ("percent",), -0.0), ("static", ("percent",), True), ("static", ("salt",), "x" * 65),
    ("static", ("key",), {"source": "header", "name": "X-A"}), ("static", ("action", "status"), 204),
    ("static", ("action", "content_type"), " text/html"), ("static", ("action", "content_type"), ""),
    ("static", ("action", "headers"), {"X-Reason": "down", "Cache-Control": "no-store"}),
    ("static", ("action", "headers"), {"Content-Length": "5"}), ("static", ("action", "headers"), {"A": "1", "a": "2"}),
    ("static", ("action", "headers"), {"X-A": "v "}), ("static", ("action", "headers"), {"X_A": "v"}),
    ("static", ("action", "body"), "\u20ac" * 30_000), ("static", ("action", "body"), "a\x00"),
    ("static", drop(("action", "content_type")), None), ("static", ("breaker", "error_ratio"), 1.5),
    ("static", ("breaker", "error_ratio"), True), ("static", ("breaker", "error_ratio"), float("nan")),
    ("static", drop(("breaker", "slow_ratio")), None), ("static", ("breaker", "probes"), 1001),
    ("bodiless", ("action", "body"), "x"), ("bodiless", ("action", "content_type"), "text/plain"),
    ("bodiless", reverse(("action",)), None), ("redirect", ("action", "status"), 200),
    ("redirect", ("action", "status"), 302.0), ("redirect", ("action", "location"), "ftp://a/"),
    ("redirect", ("action", "location"), "/a b"), ("redirect", drop(("action", "status")), None),
    ("reject", ("action", "status"), 600), ("reject", ("action", "retry_after"), -1),
    ("reject", drop(("action", "status")), None), ("reject", ("key",), {"source": "ip", "name": "x"}),
    ("reject", drop(("percent",)), None), ("reject", ("percent",), 100.0),
]


@pytest.mark.parametrize("base, change, value", NEAR_MISSES, ids=[f"{b}:{c if isinstance(c, tuple) else c.__name__}:"
                                                                  f"{v!r:.20}" for b, c, v in NEAR_MISSES])
def test_near_misses_of_stored_rules_go_to_the_full_validator(base, change, value):
    """A canonical rule changed in one field to something invalid or not canonical is never taken by the fast
    check, and decodes (or is refused) exactly as the full decode does."""
    rule = copy.deepcopy(BASES[base])
    assert fast_agrees(copy.deepcopy(rule))
    if callable(change):
        change(rule)
    else:
        at(rule, change[:-1])[change[-1]] = value
    assert canonical_rule(rule) is None
    raw = packable(rule)
    if raw is not None:
        decode_agrees(raw)


def vector_rules() -> list[dict]:
    """Return every rule of tests/vectors/ as written."""
    return [rule for path in sorted(VECTORS.glob("*.json")) for rule in json.loads(path.read_text())["rules"]]


@pytest.mark.parametrize("rule", vector_rules(), ids=lambda r: r["id"])
def test_vector_rules_agree(rule):
    """Each vector rule as written agrees; stored (canonical) it takes the fast path."""
    fast_agrees(rule)
    decode_agrees(exact(rule))
    raw = encode_rule(validate_rule(rule))
    assert fast_agrees(msgpack.unpackb(raw, raw=False))
    decode_agrees(raw)
    placed_alike(raw)


GUARDS = json.loads((VECTORS / "ramps.json").read_text())["guards"]


def with_guard(guard: Any) -> dict:
    rule = copy.deepcopy(GUARDS["rule"])
    rule["policies"][0]["ramp"]["guard"] = guard
    return rule


@pytest.mark.parametrize("case", GUARDS["accepted"] + GUARDS["refused"],
                         ids=[c["name"] for c in GUARDS["accepted"] + GUARDS["refused"]])
def test_guard_vectors_agree(case):
    """The guard schema vectors, stored as written and inside an otherwise canonical rule: the same result."""
    rule = with_guard(case["guard"])
    fast_agrees(rule)
    decode_agrees(exact(rule))
    canon = validate_rule(with_guard(GUARDS["accepted"][0]["guard"]))
    guard = case["guard"]
    canon["policies"][0]["ramp"]["guard"] = dict(sorted(guard.items())) if isinstance(guard, dict) else guard
    assert fast_agrees(canon) == (exact(case.get("canonical")) == exact(canon["policies"][0]["ramp"]["guard"]))
    decode_agrees(exact(canon))


def test_undecodable_and_oversized_bytes_keep_the_full_decode_errors():
    """Bytes that are not msgpack, too large, or not bytes fail with the full decode's message."""
    for raw in (b"\xc1", b"\x92\x01", exact(SPLIT) + b"\x00", b"\x00" * (96 * 1024 + 1), exact([SPLIT])):
        decode_agrees(raw)
    with pytest.raises(CorruptDataError) as got:
        fast_decode_rule("not bytes", where="r")  # type: ignore[arg-type]
    with pytest.raises(CorruptDataError) as want:
        decode_rule("not bytes", where="r")  # type: ignore[arg-type]
    assert str(got.value) == str(want.value)


# msgpack bytes spelled by hand, to hold the fast path's decoder (msgspec) to the full path's (msgpack): what
# packb never writes for a rule (a str as bin, a float as float32, an int in a wider encoding or as a float, a
# map key repeated or not a str, keys out of order, ext types and timestamps, 64-bit extremes, junk and trailing
# bytes) at any node of a stored rule, and arbitrary msgpack on its own.
_PACKER = msgpack.Packer(use_bin_type=True)


def _map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return _PACKER.pack_map_header(len(pairs)) + b"".join(k + v for k, v in pairs)


def _array(items: list[bytes]) -> bytes:
    return _PACKER.pack_array_header(len(items)) + b"".join(items)


def _wide_int(value: int) -> bytes:
    """value as uint64 (0xcf) or int64 (0xd3), where packb writes the shortest form."""
    return b"\xcf" + struct.pack(">Q", value) if value >= 0 else b"\xd3" + struct.pack(">q", value)


def _ext(code: int, data: bytes) -> bytes:
    """An ext 8 of any type (-1: a timestamp, valid only 4, 8 or 12 bytes long)."""
    return b"\xc7" + struct.pack(">Bb", len(data), code) + data


_P = msgpack.packb
ODD = [_ext(5, b"x"), _ext(-1, b"\x00\x00\x00\x01"), _ext(-1, b"\x01\x02\x03"), _P(b"x"), _P(None),
       _P(1.5, use_single_float=True), _wide_int(2**64 - 1), _wide_int(-(2**63)), _map([(_P(1), _P(1))]),
       _map([(_array([_P(1)]), _P(1))]), _map([(_P(b"k"), _P(1))]), _map([(_P(None), _P(1))]), _array([]),
       b"\xc1", b"\xd9", b"\x81"]  # the last three: an invalid byte, truncated str and map headers


def _pairs(value: dict) -> list[tuple[bytes, bytes]]:
    return [(_P(k), _P(v)) for k, v in value.items()]


def same_spellings(value: Any) -> list[bytes]:
    """Return value spelled in msgpack as packb never spells it (most read back the same, some do not)."""
    if isinstance(value, bool):
        return [_P(int(value))]
    if isinstance(value, int):
        return [_wide_int(value)] + ([_P(float(value)), _P(float(value), use_single_float=True)]
                                     if abs(value) < 2**64 else [])
    if isinstance(value, float):
        return [_P(value, use_single_float=True)] + ([_P(int(value))] if value.is_integer() else [])
    if isinstance(value, str):
        return [_P(value.encode())]
    if isinstance(value, list):
        return [_array([_P(v) for v in value] + [_P(None)])]
    pairs = _pairs(value)  # a key that is not a str, first, with the first value (a fit one), and last
    first = pairs[0][1] if pairs else _P(1)
    out = [_map(spelt) for key in (_P(1), _P(1.5), _array([]), _array([_P("a")]), _P(b"k"), _P(None), _P(True))
           for spelt in ([(key, first)] + pairs, pairs + [(key, _P(1))])]
    if pairs:  # a key repeated: the same value after, another value before; keys out of order
        out += [_map(pairs + [pairs[0]]), _map([(pairs[-1][0], _P("other"))] + pairs), _map(pairs[::-1])]
    return out


def spelled_at(value: Any, path: tuple, spelling: bytes) -> bytes:
    """Return value as msgpack with the node at path spelled `spelling`."""
    if not path:
        return spelling
    if isinstance(value, dict):
        return _map([(_P(k), spelled_at(v, path[1:], spelling) if k == path[0] else _P(v)) for k, v in value.items()])
    return _array([spelled_at(v, path[1:], spelling) if i == path[0] else _P(v) for i, v in enumerate(value)])


def strict(value: Any) -> Any:
    """Return value with the type of every node and the order of every map: equal only for the same objects."""
    if isinstance(value, dict):
        return ("dict", [(strict(k), strict(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [strict(v) for v in value])
    return (type(value).__name__, repr(value))


def _decodes(raw: bytes) -> bool:
    try:
        decode_rule(raw, where="r")
    except CorruptDataError:
        return False
    return True


def fast_decode_agrees(raw: bytes) -> bool:
    """Assert the fast decode returns a rule only when the full decode returns the same rule (same types, same
    key order) from the very bytes packb writes for it, and that decoding gives the same rule or error either way;
    return whether it took raw."""
    got = decode_canonical(raw)
    decode_agrees(raw)
    if got is None:
        return False
    assert strict(got) == strict(decode_rule(raw, where="r"))
    assert exact(got) == raw  # only the bytes ruleadmin writes for that rule
    return True


@pytest.mark.parametrize("base", BASES)
def test_every_node_respelled_decodes_as_the_full_decode_does(base):
    """Every node of each stored base rule, spelled in each odd way (or replaced by odd msgpack), and the rule with
    trailing bytes: the fast decode takes it only when the full decode gives the same rule, else steps aside."""
    canon = BASES[base]
    assert fast_decode_agrees(encode_rule(canon))
    placed_alike(encode_rule(canon))
    stored, same_rule = encode_rule(canon), 0
    for path in nodes(canon):
        node = at(canon, path)
        for spelling in ODD + same_spellings(node):
            raw = spelled_at(canon, path, spelling)
            taken = fast_decode_agrees(raw)
            if raw != stored and exact(fast_decode_rule(raw, where="r") if _decodes(raw) else None) == stored:
                assert not taken  # read back the same rule (a repeated key, a wide int, a float32 of a short
                same_rule += 1  # float...), yet not the bytes packb writes: the full path decodes it
    for tail in ODD:
        assert not fast_decode_agrees(stored + tail)
    assert same_rule


fragments = st.recursive(
    st.one_of(st.sampled_from(ODD), st.none().map(_P), st.booleans().map(_P), st.integers(-(2**63), 2**64 - 1).map(_P),
              st.integers(-(2**63), 2**64 - 1).map(_wide_int), st.floats().map(_P),
              st.floats(width=32).map(lambda f: _P(f, use_single_float=True)), st.text(max_size=8).map(_P),
              st.binary(max_size=8).map(_P), st.builds(_ext, st.integers(-128, 127), st.binary(max_size=12)),
              st.binary(min_size=1, max_size=3)),  # the last: junk, stray values
    lambda children: st.lists(children, max_size=3).map(_array)
    | st.lists(st.tuples(children, children), max_size=3).map(_map), max_leaves=8)


@settings(max_examples=30, deadline=None)
@given(rule_inputs(), st.data())
def test_respelled_stored_rules_decode_as_the_full_decode_does(rule, data):
    """Any stored rule with one node spelled in an odd way or replaced by any msgpack, or with trailing bytes."""
    canon = validate_rule(rule)
    path = data.draw(st.sampled_from(nodes(canon)))
    spelling = data.draw(st.one_of(st.sampled_from(same_spellings(at(canon, path))), fragments))
    raw = spelled_at(canon, path, spelling)
    if data.draw(st.integers(0, 9)) == 0:
        raw += data.draw(fragments)
    fast_decode_agrees(raw)


@settings(max_examples=50, deadline=None)
@given(st.one_of(fragments, st.binary(max_size=24)))
def test_arbitrary_msgpack_decodes_as_the_full_decode_does(raw):
    """Any msgpack (or any bytes) decodes, or fails, as the full decode does."""
    fast_decode_agrees(raw)
