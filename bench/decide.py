"""Benchmark: what a decision costs in Python for 10 / 1,000 / 10,000 rules, building the request included.

Run: python bench/decide.py [--requests 100000] [--rounds 3]. Prints one table; never asserts on time.

Per rule count, over the same random requests (a header key, no cookies or query):
- baseline: a plain dict lookup by host (what any per-request Python work costs at least);
- decide(): the decision alone, the Request built beforehand;
- from_dict + decide(): `Request.from_dict` of a JSON-shaped dict, then decide();
- from_environ + decide(): `Request.from_environ` of a WSGI environ (as gevent's pywsgi builds it), then decide().
Each figure is the best of --rounds interleaved runs (the machine's other load disturbs all alike),
printed in µs and as a ratio to the baseline of the same run.
"""
from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rnd = random.Random(1)
    print(f"# decide() benchmark — {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, one thread; µs per request (ratio to the baseline dict lookup)\n")
    print("| rules | baseline dict lookup | decide() | from_dict + decide() | from_environ + decide() |")
    print("|---:|---:|---:|---:|---:|")
    for count in (10, 1_000, 10_000):
        rules = build_rules(count)
        rs = RuleSet(rules, 1)
        dicts = make_dicts(args.requests, rules, rnd)
        environs = [environ_of(d) for d in dicts]
        reqs = [Request.from_dict(d) for d in dicts]
        by_host = {r["route"]["host"]: r.get("default", "x") for r in rules}
        runs: dict[str, tuple[Callable[[Any], Any], list]] = {
            "baseline": (lambda d: by_host.get(d["host"]), dicts),
            "decide": (lambda q: decide(rs, q), reqs),
            "dict": (lambda d: decide(rs, Request.from_dict(d)), dicts),
            "environ": (lambda e: decide(rs, Request.from_environ(e)), environs),
        }
        best = {name: float("inf") for name in runs}
        for _ in range(args.rounds):
            for name, (fn, items) in runs.items():
                best[name] = min(best[name], seconds_per_call(fn, items))
        base = best["baseline"]
        cells = [f"{best[n] * 1e6:.2f} ({best[n] / base:.0f}x)" for n in ("decide", "dict", "environ")]
        print(f"| {count:,} | {base * 1e6:.2f} (1x) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
