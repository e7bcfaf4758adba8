"""Long differential fuzz: the Python evaluator against the Lua router, counting disagreements.

The same generator as tests/lua/test_differential.py (tests/differential.py), at scale:
CASES seeded cases in batches through an nginx running the Lua modules (rules as stored msgpack,
requests as raw bytes), and HTTP_CASES as raw HTTP requests through the documented include to a
gateway synced from a throwaway Redis Cluster. Prints the counts and the first disagreements.

Environment: CASES=100000 HTTP_CASES=10000 PER_SET=200 SEED=0
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.schema import encode_rule  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from tests.differential import UPSTREAMS, fuzz_set, http_disagreement  # noqa: E402
from tests.lua.conftest import Gateway  # noqa: E402
from tests.lua.decide_harness import DecideHarness, HttpClient, python_decisions  # noqa: E402

CASES = int(os.environ.get("CASES", "100000"))
HTTP_CASES = int(os.environ.get("HTTP_CASES", "10000"))
PER_SET = int(os.environ.get("PER_SET", "200"))
SEED = int(os.environ.get("SEED", "0"))
SHOW = 5


def batches(tmp: Path) -> tuple[int, list]:
    """Return (cases, disagreements) of the batch part."""
    cases, bad = 0, []
    with DecideHarness(tmp / "harness") as harness:
        seed = SEED
        while cases < CASES:
            fs = fuzz_set(seed, min(PER_SET, CASES - cases), http=False)
            lua = harness.batch(fs.rules, seed, fs.requests)
            py = python_decisions(fs.rules, seed, fs.requests)
            cases += len(py)
            bad += [(seed, fs.requests[i], py[i], lua[i]) for i in range(len(py)) if py[i] != lua[i]]
            seed += 1
        errors = harness.error_lines()
    if errors:
        print(f"nginx error log: {errors[:3]}")
    return cases, bad


def over_http(tmp: Path) -> tuple[int, list]:
    """Return (cases, disagreements) of the HTTP part (a cluster, a namespace, a gateway)."""
    cluster = LocalCluster(tmp / "cluster")
    cluster.start()
    store = RuleStore.from_config(RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster"))
    gw = Gateway({"namespace": "fuzz", "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 0.2,
                  "ip_header": "X-Test-Ip", "now_header": "X-Test-Now", "request_id_header": "X-Test-Request-Id", "response_headers": "vars"},
                 upstreams=UPSTREAMS, prefix=tmp / "gateway")
    cases, bad, held, rev = 0, [], set(), None
    try:
        gw.start()
        client = HttpClient(gw.port)
        seed = SEED + 1_000_000
        while cases < HTTP_CASES:
            fs = fuzz_set(seed, min(PER_SET, HTTP_CASES - cases), http=True)
            ids = {r["id"] for r in fs.rules}
            changes = [(r["id"], encode_rule(r)) for r in fs.rules] + [(i, b"") for i in held - ids]
            rev = store.commit("fuzz", changes, rev, "bench", op="put").revision
            held = ids
            gw.wait_revision(rev)
            for req, want in zip(fs.requests, python_decisions(fs.rules, rev, fs.requests)):
                cases += 1
                why = http_disagreement(want, client.send(req), req.method)
                if why:
                    bad.append((seed, req, want, why))
            seed += 1
        client.close()
        errors = gw.error_lines()
        if errors:
            print(f"gateway error log: {errors[:3]}")
    finally:
        gw.stop()
        store.close()
        cluster.stop()
    return cases, bad


def report(name: str, cases: int, bad: list, seconds: float) -> None:
    print(f"{name:6} {cases:>8,} cases  {len(bad):>4} disagreements  ({seconds:.1f} s)")
    for item in bad[:SHOW]:
        print(f"    seed {item[0]}: {item[1]}\n      python: {item[2]}\n      lua:    {item[3]}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rulegate-diff-") as tmp:
        t0 = time.monotonic()
        cases, bad = batches(Path(tmp))
        report("batch", cases, bad, time.monotonic() - t0)
        t1 = time.monotonic()
        http_cases, http_bad = over_http(Path(tmp)) if HTTP_CASES else (0, [])
        report("http", http_cases, http_bad, time.monotonic() - t1)
    total = len(bad) + len(http_bad)
    print(f"total  {cases + http_cases:>8,} cases  {total:>4} disagreements")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
