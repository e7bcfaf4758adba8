"""The heartbeat's optional `exposure` map: decoded when present, absent or malformed leaves the rest readable."""
from __future__ import annotations

import msgpack

from rulegate.fleet import MAX_EXPOSURE_KEYS, Exposure, Heartbeat, decode_heartbeat

BASE = {"kind": "nginx", "revision": 3, "heartbeat_at": 100.0}


def test_old_heartbeats_decode_without_exposure():
    """A heartbeat from a gateway that does not count has exposure None."""
    assert decode_heartbeat(msgpack.packb(BASE)).exposure is None


def test_exposure_round_trips_and_reads_lua_empty_maps():
    """The agent's encoding round-trips; Lua's empty tables (packed as maps) read as no counts."""
    e = Exposure(since=10.0, window=5.0, counts=(("web", "v1", 30), ("", "@pass", 2)), other=1,
                 last_match={"web": 99.0})
    assert decode_heartbeat(Heartbeat("agent", 1, "g", 1.0, 100.0, 0.0, exposure=e).encode()).exposure == e
    lua = {**BASE, "exposure": {"since": 10, "window": 5, "counts": {}, "other": 0, "last_match": {}}}
    assert decode_heartbeat(msgpack.packb(lua)).exposure == Exposure(10.0, 5.0)
    assert e.per_minute(30) == 360.0 and Exposure(0.0, 0.0).per_minute(5) == 0.0


def test_malformed_exposure_keeps_the_heartbeat_and_caps_the_counts():
    """A bad exposure value drops only the exposure; more than MAX_EXPOSURE_KEYS counts fold into other."""
    bad = {**BASE, "exposure": {"since": 1, "window": 1, "counts": [["web", "v1"]]}}
    beat = decode_heartbeat(msgpack.packb(bad))
    assert beat.revision == 3 and beat.exposure is None
    many = [[f"r{i}", "u", 2 if i < MAX_EXPOSURE_KEYS else 1] for i in range(MAX_EXPOSURE_KEYS + 3)]
    big = decode_heartbeat(msgpack.packb({**BASE, "exposure": {"since": 1, "window": 1, "counts": many}})).exposure
    assert len(big.counts) == MAX_EXPOSURE_KEYS and big.other == 3
