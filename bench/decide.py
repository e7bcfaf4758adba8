"""Benchmark: what a decision costs in Python for 10 / 1,000 / 10,000 rules, building the request included.

Run: python bench/decide.py [--requests 100000] [--distinct 2000] [--rounds 3]. Prints one table; never
asserts on time.

Per rule count, over the same random requests (a header key, no cookies or query; --distinct of them,
cycled: a server builds each request just before deciding it, so its input is in the CPU cache —
100,000 distinct environs of ~1 KB would time cache misses instead):
- baseline: a plain dict lookup by host (what any per-request Python work costs at least);
- decide(): the decision alone, the Request built beforehand;
- from_dict + decide(): `Request.from_dict` of a JSON-shaped dict, then decide();
- from_environ + decide(): `Request.from_environ` of a WSGI environ (as gevent's pywsgi builds it), then decide().
The rules and inputs are frozen out of the cyclic GC (gc.freeze(), as the agent does after a load).
Each figure is the best of --rounds interleaved runs (the machine's other load disturbs all alike),
printed in µs and as a ratio to the baseline of the same run.

For counts that the machine's load cannot disturb, `--only NAME --calls N` runs one column at 1,000
rules for N calls and prints nothing; under `valgrind --tool=cachegrind`, (I refs at N - at 0) / N is
the instructions per request (bench/REPORT.md has the loop).
"""
from __future__ import annotations

import argparse
import gc
import platform
import random
import time
from typing import Any, Callable

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


def make_dicts(count: int, rules: list[dict], rnd: random.Random) -> list[dict[str, Any]]:
    """Return JSON-shaped requests (the sidecar's and from_dict's input) aimed at the rules' hosts."""
    hosts = sorted({r["route"]["host"] for r in rules})
    return [{"host": rnd.choice(hosts), "path": rnd.choice(PATHS) + "/item", "method": "GET", "ip": "203.0.113.7",
             "headers": {"x-uid": str(rnd.randrange(10**9))}} for _ in range(count)]


def environ_of(data: dict[str, Any]) -> dict[str, Any]:
    """Return the WSGI environ gevent's pywsgi builds for the request (with a few usual headers)."""
    return {"REQUEST_METHOD": data["method"], "SCRIPT_NAME": "", "PATH_INFO": data["path"], "QUERY_STRING": "",
            "SERVER_NAME": "gw", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": data["ip"],
            "REMOTE_PORT": "50000", "HTTP_HOST": data["host"], "HTTP_USER_AGENT": "bench/1.0", "HTTP_ACCEPT": "*/*",
            "HTTP_X_UID": data["headers"]["x-uid"], "wsgi.url_scheme": "http"}


def seconds_per_call(fn: Callable[[Any], Any], items: list) -> float:
    t0 = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t0) / len(items)


def runs_for(rs: RuleSet, rules: list[dict], pool: list[dict[str, Any]], repeat: int) -> dict[str, tuple]:
    """Return name -> (function, items) of the four columns over `pool` cycled `repeat` times."""
    by_host = {r["route"]["host"]: r.get("default", "x") for r in rules}
    return {
        "baseline": (lambda d: by_host.get(d["host"]), pool * repeat),
        "decide": (lambda q: decide(rs, q), [Request.from_dict(d) for d in pool] * repeat),
        "dict": (lambda d: decide(rs, Request.from_dict(d)), pool * repeat),
        "environ": (lambda e: decide(rs, Request.from_environ(e)), [environ_of(d) for d in pool] * repeat),
    }


def count_only(name: str, calls: int) -> None:
    """Run one column at 1,000 rules: one warm-up call per distinct request, then `calls` calls."""
    rules = build_rules(1_000)
    rs = RuleSet(rules, 1)
    fn, items = runs_for(rs, rules, make_dicts(1_000, rules, random.Random(1)), 1)[name]
    for item in items:
        fn(item)
    for i in range(calls):
        fn(items[i % len(items)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["baseline", "decide", "dict", "environ"])
    parser.add_argument("--calls", type=int, default=0)
    args = parser.parse_args()
    if args.only:
        return count_only(args.only, args.calls)
    rnd = random.Random(1)
    print(f"# decide() benchmark — {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, one thread; µs per request (ratio to the baseline dict lookup)\n")
    print("| rules | baseline dict lookup | decide() | from_dict + decide() | from_environ + decide() |")
    print("|---:|---:|---:|---:|---:|")
    for count in (10, 1_000, 10_000):
        rules = build_rules(count)
        rs = RuleSet(rules, 1)
        runs = runs_for(rs, rules, make_dicts(args.distinct, rules, rnd), max(1, args.requests // args.distinct))
        gc.collect()
        gc.freeze()  # as the agent does after a load: the cyclic GC does not rescan the rules and inputs
        best = {name: float("inf") for name in runs}
        for _ in range(args.rounds):
            for name, (fn, items) in runs.items():
                best[name] = min(best[name], seconds_per_call(fn, items))
        gc.unfreeze()
        base = best["baseline"]
        cells = [f"{best[n] * 1e6:.2f} ({best[n] / base:.0f}x)" for n in ("decide", "dict", "environ")]
        print(f"| {count:,} | {base * 1e6:.2f} (1x) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
