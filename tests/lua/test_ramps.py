"""Ramps at their exact edges: for random ramps (down, in 1000 steps, over 366 days, ...) and clocks, the
request whose bucket is the effective share E minus one is in and the one at E is out, in nginx as in Python."""
from __future__ import annotations

import random
import zlib
from collections.abc import Iterator

import pytest

from rulegate.schema import MAX_RAMP_SPAN, MAX_RAMP_STEPS, ramp_share, validate_rule

from .decide_harness import DecideHarness, RawRequest, python_decisions

SALT = "r"


def keys_by_bucket() -> dict[int, str]:
    """A key for every bucket 0..9999 under SALT."""
    out: dict[int, str] = {}
    n = 0
    while len(out) < 10_000:
        out.setdefault(zlib.crc32(f"{SALT}:k{n}".encode()) % 10_000, f"k{n}")
        n += 1
    return out


def random_ramp(rnd: random.Random) -> dict:
    span = rnd.choice((1, 2, 3, 7, 3600, MAX_RAMP_SPAN, MAX_RAMP_SPAN - 1, rnd.randint(1, MAX_RAMP_SPAN)))
    start = rnd.choice((0, 1_800_000_000, 2**40 - span, rnd.randint(0, 2**40 - span)))
    ramp = {"start": start, "end": start + span, "from": rnd.choice((0, 10_000, rnd.randint(0, 10_000))),
            "to": rnd.choice((0, 10_000, rnd.randint(0, 10_000))), "mode": rnd.choice(("linear", "step"))}
    if ramp["mode"] == "step":
        ramp["steps"] = rnd.choice((1, 3, 7, MAX_RAMP_STEPS, rnd.randint(1, MAX_RAMP_STEPS)))
    return ramp


def clocks(rnd: random.Random, ramp: dict) -> list[float]:
    start, end = ramp["start"], ramp["end"]
    inside = [start + rnd.randrange(end - start) for _ in range(6)]
    return [start - 1, start, start + 0.5, end - 1, end - 0.001, end, *inside, inside[0] + 0.75]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecideHarness]:
    with DecideHarness(tmp_path_factory.mktemp("ramps")) as h:
        yield h


def test_effective_share_edges_agree(harness: DecideHarness) -> None:
    """300 random ramps x 14 clocks: bucket E-1 goes to the ramped upstream, bucket E on; Lua decides as Python."""
    rnd = random.Random(16)
    keys = keys_by_bucket()
    rules, requests, want = [], [], []
    for i in range(300):
        ramp = random_ramp(rnd)
        host = f"r{i}.example.com"
        rules.append(validate_rule({"id": f"r{i}", "kind": "split", "route": {"host": host, "path": "/"},
                                    "key": {"source": "header", "name": "x-k"}, "default": "stable",
                                    "policies": [{"type": "percent", "salt": SALT, "ramp": ramp,
                                                  "buckets": [{"upstream": "canary", "weight": 7}]}]}))
        for now in clocks(rnd, ramp):
            share = ramp_share(ramp, now)
            for bucket, upstream in ((share - 1, "canary"), (share, "stable")):
                if 0 <= bucket < 10_000:
                    requests.append(RawRequest(host.encode(), b"/", "GET", b"10.0.0.1", now,
                                               [(b"x-k", keys[bucket].encode())]))
                    want.append(upstream)
    python = python_decisions(rules, 3, requests)
    assert [d["upstream"] for d in python] == want
    assert harness.batch(rules, 3, requests) == python
    assert harness.error_lines() == []
