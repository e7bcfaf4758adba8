"""The heartbeat's optional `outcomes` and `breakers` maps: omitted when empty, decoded when present, malformed ones
leave the rest of the heartbeat readable."""
from __future__ import annotations

import msgpack

from rulegate.fleet import MAX_BREAKER_RULES, Heartbeat, decode_heartbeat
from rulegate.outcomes import N_LATENCY, OutcomeCounts, Outcomes

BASE = {"kind": "nginx", "revision": 3, "heartbeat_at": 100.0}
COUNTS = OutcomeCounts((0, 0, 7, 0, 0, 2), (5, 4) + (0,) * (N_LATENCY - 2))


def test_outcomes_and_breakers_round_trip():
    """The agent's encoding of both fields decodes to what it encoded."""
    o = Outcomes(50.5, {("web", "canary"): COUNTS, ("", "@pass"): OutcomeCounts()})
    breakers = {"shed": {"closed": 0, "open": 1, "half_open": 0}}
    beat = decode_heartbeat(Heartbeat("agent", 1, "g", 1.0, 100.0, 0.0, outcomes=o, breakers=breakers).encode())
    assert beat.outcomes == o and beat.breakers == breakers


def test_empty_fields_are_left_out_of_the_wire():
    """No outcome counted and no breaker: the heartbeat carries neither key (older readers see nothing new)."""
    raw = msgpack.unpackb(Heartbeat("agent", 1, "g", 1.0, 100.0, 0.0, outcomes=Outcomes(1.0, {})).encode())
    assert "outcomes" not in raw and "breakers" not in raw
    beat = decode_heartbeat(msgpack.packb(BASE))
    assert beat.outcomes is None and beat.breakers == {}


def test_lua_shapes_decode():
    """nginx packs counts as arrays of numbers (doubles included) and may omit a state: missing states are 0."""
    lua = {**BASE, "outcomes": {"since": 7.25, "counts": [["web", "v2", [0, 0, 7.0, 0, 0, 2], list(COUNTS.latency)]]},
           "breakers": {"shed": {"open": 2.0, "closed": 1}}}
    beat = decode_heartbeat(msgpack.packb(lua))
    assert beat.outcomes == Outcomes(7.25, {("web", "v2"): COUNTS})
    assert beat.breakers == {"shed": {"closed": 1, "open": 2, "half_open": 0}}


def test_malformed_fields_keep_the_heartbeat():
    """A bad outcomes map reads as None, bad breaker entries are dropped; the revision is still there."""
    bad = {**BASE, "outcomes": {"counts": [["web", "v2", [1, 2], []]]},
           "breakers": {"a": "open", "b": {"open": -1}, "c": {"open": "x"}, "ok": {"half_open": 1}}}
    beat = decode_heartbeat(msgpack.packb(bad))
    assert beat.revision == 3 and beat.outcomes is None
    assert beat.breakers == {"ok": {"closed": 0, "open": 0, "half_open": 1}}
    assert decode_heartbeat(msgpack.packb({**BASE, "breakers": ["x"]})).breakers == {}
    many = {f"r{i:05d}": {"closed": 1} for i in range(MAX_BREAKER_RULES + 5)}
    assert len(decode_heartbeat(msgpack.packb({**BASE, "breakers": many})).breakers) == MAX_BREAKER_RULES
