"""Benchmark: decide() rate for 10 / 1,000 / 10,000 rules vs a plain dict lookup by host.

Run: python bench/decide.py [--requests 200000]. Prints a table; never asserts on time.
"""
from __future__ import annotations

import argparse
import platform
import random
import time

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import validate_rule

PATHS = ["/", "/api", "/api/v1", "/static", "/checkout", "/search", "/feed", "/user", "/cart", "/help"]


def build_rules(count: int) -> list[dict]:
    """Return `count` valid rules: splits with uid/percent policies, every 10th a degrade rule."""
    hosts = max(1, count // len(PATHS))
    rules = []
    for i in range(count):
        host, path = f"h{i % hosts}.example.com", PATHS[(i // hosts) % len(PATHS)]
        if i % 10 == 9:
            rules.append({"id": f"d{i}", "kind": "degrade", "route": {"host": host, "path": path},
                          "action": {"type": "reject", "retry_after": 5}, "percent": 5,
                          "key": {"source": "header", "name": "x-uid"}})
            continue
        rules.append({"id": f"s{i}", "kind": "split", "route": {"host": host, "path": path},
                      "key": {"source": "header", "name": "x-uid"},
                      "policies": [{"type": "uid_suffix", "suffixes": ["7"], "upstream": "grey"},
                                   {"type": "percent", "buckets": [{"upstream": "canary", "weight": 1000}]}],
                      "default": "stable"})
    return [validate_rule(r) for r in rules]


def make_requests(count: int, rules: list[dict], rnd: random.Random) -> list[Request]:
    hosts = sorted({r["route"]["host"] for r in rules})
    return [Request(rnd.choice(hosts), rnd.choice(PATHS) + "/item", ip="203.0.113.7",
                    headers={"x-uid": str(rnd.randrange(10**9))}) for _ in range(count)]


def rate(fn, items, repeat: int = 3) -> float:
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        best = max(best, len(items) / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    rnd = random.Random(1)
    print(f"# decide() benchmark — {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, one thread\n")
    print("| rules | decisions/s | µs/decision | baseline dict lookups/s | ratio to baseline |")
    print("|---:|---:|---:|---:|---:|")
    for count in (10, 1_000, 10_000):
        rules = build_rules(count)
        rs = RuleSet(rules, 1)
        reqs = make_requests(args.requests, rules, rnd)
        by_host = {r["route"]["host"]: r.get("default", "x") for r in rules}
        baseline = rate(lambda q: by_host.get(q.host), reqs)
        got = rate(lambda q: decide(rs, q), reqs)
        print(f"| {count:,} | {got:,.0f} | {1e6 / got:.2f} | {baseline:,.0f} | {baseline / got:.1f}x slower |")


if __name__ == "__main__":
    main()
