"""What a running Python agent holds for a rule set, against the raw msgpack bytes; prints a table.

    python bench/agent_memory.py [--rules 1000,10000,20000] [--tree PATH]

Per size, in a fresh child process (so no string or object of an earlier size is shared), with
tracemalloc, the rules of bench/reload.py (`make_rule`: one uid_suffix split per route), loaded the way
`Syncer._full_reload` loads them: `CompileCache.load`, the RuleSet (`Loaded.ruleset`, else
`RuleSet.from_compiled`), `Applied` (and the cache told what the agent holds, when the tree has
`CompileCache.hold`), then a second full reload of the
same bytes read again (new bytes objects, a new revision: a new generation id or a reconnect), after
which the first set is dropped. Columns:
- raw msgpack: the sum of the encoded rules' lengths (the baseline);
- raw dict: what the agent's raw dict (`Applied.raw`: id -> bytes) holds;
- applied set: what the `Applied` holds besides its raw dict (the compiled RuleSet, its placement);
- cache: what the agent's `CompileCache` holds on top of the applied set;
- agent total: raw dict + applied set + cache, after the second reload, and its ratio to raw msgpack
  (the target: <= 4x);
- decided once: what one request per rule adds to that, traffic-dependent: the routes the requests
  compile (a load leaves its rules pending, each route's first request compiles them: docs/design.md,
  "Pending rules in the Python agent"; a tree that compiles at load has nothing to add here) and the
  decisions re-stamped with the new revision (a rule compiled at an earlier one; cached in the set until
  the next revision: at most one copy per Decision of a rule), then the set's route cache (at most 20,000
  entries whatever the rule count);
- every route decided: the agent total plus the first of those (every rule compiled, the route cache
  left out), and its ratio to raw msgpack.
Numbers are for comparison, not assertions (tracemalloc counts Python allocations; RSS is higher).
`--tree` imports rulegate and gateway_agent from another worktree (a before/after on one script).
"""
from __future__ import annotations

import argparse
import gc
import inspect
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def tree_load(cache: Any, raw: dict, **kw: Any) -> Any:
    """cache.load(raw, **kw), also for a --tree whose CompileCache.load still takes the revision read."""
    if "revision" in inspect.signature(cache.load).parameters:
        return cache.load(raw, 7, **kw)
    return cache.load(raw, **kw)


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def make_rule(i: int) -> dict:  # bench/reload.py's rules (not imported: --tree may be a tree without them)
    from rulegate.schema import validate_rule
    return validate_rule({
        "id": f"r{i:05d}", "kind": "split",
        "route": {"host": f"svc{i % 100}.example.com", "path": f"/api/v{i // 100}"},
        "key": {"source": "header", "name": "x-uid"},
        "policies": [{"type": "uid_suffix", "suffixes": ["1", "7"], "upstream": "canary"}],
        "default": "stable"})


def measure(count: int) -> dict[str, int]:
    """Return the byte counts of one size (see the module docstring), measured in this process."""
    from gateway_agent.compiled import CompileCache
    from gateway_agent.sync import Applied
    from rulegate.evaluator import Request, RuleSet, decide
    from rulegate.schema import encode_rule

    encoded = [(f"r{i:05d}", encode_rule(make_rule(i))) for i in range(count)]
    requests = [Request(host=f"svc{i % 100}.example.com", path=f"/api/v{i // 100}/x", headers={"x-uid": "1"})
                for i in range(count)]
    tracemalloc.start()
    start = _traced()
    cache = CompileCache()

    def full_reload(revision: int) -> Applied:
        # what a read gives: new id strings and bytes objects (bytes(b) would be b itself)
        raw = {rule_id.encode().decode(): bytes(bytearray(value)) for rule_id, value in encoded}
        loaded = tree_load(cache, raw, where="bench")
        raw = getattr(loaded, "raw", raw)  # the map to hold, when the tree's Loaded gives one
        ruleset = (loaded.ruleset(revision, "bench") if hasattr(loaded, "ruleset")  # what Syncer._full_reload runs
                   else RuleSet.from_compiled(loaded.rules, revision, "bench"))
        applied = Applied(ruleset, raw, revision, "bench", "redis", 0.0, loaded.digest, loaded.guarded)
        hold = getattr(cache, "hold", None)
        if hold is not None:  # what Syncer._install tells the cache
            hold(applied.raw, applied.ruleset, applied.guarded, applied.digest)
        return applied

    applied = full_reload(1)
    applied = full_reload(2)  # the first set is dropped here, as the agent drops it
    total = _traced() - start
    cache = None
    without_cache = _traced() - start
    raw_dict = dict(applied.raw)  # a second dict over the same strings and bytes: what the dict itself costs
    dict_only = _traced() - start - without_cache
    del raw_dict
    before = _traced()
    for req in requests:
        decide(applied.ruleset, req)
    decided = _traced() - before
    applied.ruleset.route_cache.clear()
    stamped = _traced() - before
    tracemalloc.stop()
    assert len(applied.ruleset) == count
    raw = sum(len(v) for v in applied.raw.values())
    strings = sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in applied.raw.items())  # the compiled set shares the ids
    return {"rules": count, "raw": raw, "raw_dict": dict_only + strings, "cache": total - without_cache,
            "applied": without_cache - dict_only - strings, "total": total, "stamped": stamped,
            "route_cache": decided - stamped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="1000,10000,20000", help="comma-separated rule counts")
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]), help="worktree to import")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        sys.path.insert(0, args.tree)
        print(json.dumps(measure(args.one)))
        return
    print("| rules | raw msgpack (baseline) | raw dict | applied set | cache | agent total | ratio to raw "
          "| decided once: routes compiled, decisions re-stamped | decided once: route cache "
          "| every route decided | its ratio to raw |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in [int(x) for x in args.rules.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", str(count), "--tree", args.tree], check=True,
                             capture_output=True, text=True).stdout
        m = json.loads(out)
        print(f"| {count:,} | {m['raw'] / MIB:.2f} MiB | {m['raw_dict'] / MIB:.2f} MiB | {m['applied'] / MIB:.2f} MiB "
              f"| {m['cache'] / MIB:.2f} MiB | {m['total'] / MIB:.2f} MiB | {m['total'] / m['raw']:.2f}x "
              f"| +{m['stamped'] / MIB:.2f} MiB | +{m['route_cache'] / MIB:.2f} MiB "
              f"| {(m['total'] + m['stamped']) / MIB:.2f} MiB | {(m['total'] + m['stamped']) / m['raw']:.2f}x |")


if __name__ == "__main__":
    main()
