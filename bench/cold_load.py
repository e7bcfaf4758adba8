"""What the agent's sync thread runs between a full read and the install, for rules it holds none of.

    python bench/cold_load.py [--rules 2000] [--stop-before-load] [--load-only] [--held] [--repeat 1] [--tree PATH]
                              [--gc]

Builds the rules of bench/reload.py (one uid_suffix split per route, 100 hosts x N/100 paths) as
stored bytes, then runs `CompileCache().load()` (decode + validate + digest + guard flags, each rule placed:
compiled since 2026-12-01 by its route's first request, docs/design.md "Pending rules") and
`RuleSet.from_compiled()` with the reload's Slicer, and prints the thread CPU per rule. Then it sends one
request per rule (each route's first request, which compiles what the load left pending; a tree that
compiles at load pays only the routing there) and prints their CPU: the part of the work a load no longer pays.
For deterministic numbers run it under `valgrind --tool=cachegrind --cache-sim=no` twice, with and
without `--stop-before-load`: (I refs of the load run - I refs of the other) / rules is the cost per rule (add
`--load-only` to both to leave the requests out: the load and the set build alone).
`--held` measures a load of bytes the cache already holds instead (a first load runs before: compare it with
`--held --stop-before-load`). `--tree` imports rulegate and gateway_agent from another worktree (a before/after
on one script). Each load runs with the cyclic GC held off, as the sync thread runs it (`rulegate.gc_hold.
collector_held`: off during the load, then `gc.freeze()`); `--gc` leaves it on (collections of everything built
so far then add to the load).
The script ends with os._exit: the interpreter's teardown (a last full collection, freeing every rule) is no
part of a load, and would count under cachegrind. No Redis needed.
"""
from __future__ import annotations

import argparse
import gc
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any


def tree_load(cache: Any, raw: dict, **kw: Any) -> Any:
    """cache.load(raw, **kw), also for a --tree whose CompileCache.load still takes the revision read."""
    if "revision" in inspect.signature(cache.load).parameters:
        return cache.load(raw, 7, **kw)
    return cache.load(raw, **kw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=2000)
    parser.add_argument("--stop-before-load", action="store_true", help="build the bytes only (the baseline)")
    parser.add_argument("--load-only", action="store_true", help="no requests after the load")
    parser.add_argument("--held", action="store_true", help="load bytes the cache already holds")
    parser.add_argument("--repeat", type=int, default=1, help="loads to time (each with an empty cache)")
    parser.add_argument("--gc", action="store_true", help="leave the cyclic GC on during the loads")
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]), help="worktree to import")
    args = parser.parse_args()
    sys.path.insert(0, args.tree)

    from gateway_agent.compiled import CompileCache
    from rulegate.evaluator import Request, RuleSet, decide
    from rulegate.namespace import Slicer
    from rulegate.schema import encode_rule, validate_rule

    def make_rule(i: int) -> dict:  # bench/reload.py's rules
        return validate_rule({
            "id": f"r{i:05d}", "kind": "split",
            "route": {"host": f"svc{i % 100}.example.com", "path": f"/api/v{i // 100}"},
            "key": {"source": "header", "name": "x-uid"},
            "policies": [{"type": "uid_suffix", "suffixes": ["1", "7"], "upstream": "canary"}],
            "default": "stable"})

    raw = {f"r{i:05d}": encode_rule(make_rule(i)) for i in range(args.rules)}
    cache = CompileCache()
    if args.held:
        tree_load(cache, raw, where="bench")
    if args.stop_before_load:
        return 0
    requests = [Request(host=f"svc{i % 100}.example.com", path=f"/api/v{i // 100}/x", headers={"x-uid": "1"})
                for i in range(args.rules)]
    best = first = None
    for _ in range(args.repeat):
        if not args.held:
            cache = CompileCache()
        if not args.gc:
            gc.disable()
        t = time.thread_time()
        pause = Slicer()
        loaded = tree_load(cache, raw, where="bench", pause=pause)
        rs = RuleSet.from_compiled(loaded.rules, 7, "g", pause=pause)
        spent = time.thread_time() - t
        if not args.gc:
            gc.freeze()  # as the sync thread does: no collection traverses the rules just built
        gc.enable()
        best = spent if best is None else min(best, spent)
        if args.load_only:
            continue
        t = time.thread_time()
        for req in requests:  # one request per rule: each route's first one compiles what the load left pending
            decide(rs, req)
        warm = time.thread_time() - t
        first = warm if first is None else min(first, warm)
    print(f"{args.rules} rules, {'all held' if args.held else 'nothing held'}: {best * 1000:.1f} ms thread CPU "
          f"(best of {args.repeat}), {best / args.rules * 1e6:.1f} µs per rule")
    if args.load_only:
        return 0
    print(f"then one request per rule, the first of each route (compiling its rules when the load left them "
          f"pending): {first * 1000:.1f} ms in all (best of {args.repeat}), "
          f"{first / args.rules * 1e6:.2f} µs a request")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no teardown (see the docstring)
