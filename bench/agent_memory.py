"""What an applied rule set costs the Python agent in memory, against the raw msgpack bytes; prints a table.

    python bench/agent_memory.py [--rules 1000,10000,20000]

Per size, in a fresh child process (so no string or object of an earlier size is shared), with
tracemalloc, the rules of bench/reload.py (`make_rule`: one uid_suffix split per route):
- raw msgpack: the sum of the encoded rules' lengths (the baseline), and what the agent's raw dict
  (`Applied.raw`: id -> bytes) holds;
- decoded rules: what `decode_rules` of the whole set allocates (a full reload holds it while it
  compiles; RuleClient.rules builds it per call);
- compiled: what `RuleSet(...)` allocates on top of the decoded rules;
- held by the applied set: what is still allocated once an `Applied` (raw dict + RuleSet) is built
  the way `Syncer._full_reload` builds it and everything else is dropped; as a ratio to the raw
  msgpack bytes, with and without the raw dict itself.
Numbers are for comparison, not assertions (tracemalloc counts Python allocations; RSS is higher).
"""
from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.reload import make_rule  # noqa: E402
from gateway_agent.sync import Applied  # noqa: E402
from rulegate.evaluator import RuleSet  # noqa: E402
from rulegate.namespace import decode_rules  # noqa: E402
from rulegate.schema import encode_rule  # noqa: E402

MIB = 1024 * 1024


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def measure(count: int) -> dict[str, int]:
    """Return the byte counts of one size (see the module docstring), measured in this process."""
    tracemalloc.start()
    start = _traced()
    raw = {f"r{i:05d}": encode_rule(make_rule(i)) for i in range(count)}
    after_raw = _traced()
    rules = decode_rules("bench", raw)
    after_decode = _traced()
    ruleset = RuleSet(rules.values(), 1, "bench")
    after_compile = _traced()
    del rules
    applied = Applied(ruleset, raw, 1, "bench", "redis", 0.0)
    del ruleset, raw
    held = _traced() - start
    tracemalloc.stop()
    assert len(applied.ruleset) == count
    return {"rules": count, "raw": sum(len(v) for v in applied.raw.values()), "raw_dict": after_raw - start,
            "decoded": after_decode - after_raw, "compiled": after_compile - after_decode, "held": held}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="1000,10000,20000", help="comma-separated rule counts")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    print("| rules | raw msgpack (baseline) | raw dict held | decoded rules | compiled RuleSet "
          "| held by the applied set | ratio to raw | ratio without the raw dict |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in [int(x) for x in args.rules.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", str(count)], check=True, capture_output=True,
                             text=True).stdout
        m = json.loads(out)
        print(f"| {count:,} | {m['raw'] / MIB:.2f} MiB | {m['raw_dict'] / MIB:.2f} MiB | {m['decoded'] / MIB:.2f} MiB "
              f"| {m['compiled'] / MIB:.2f} MiB | {m['held'] / MIB:.2f} MiB | {m['held'] / m['raw']:.1f}x "
              f"| {(m['held'] - m['raw_dict']) / m['raw']:.1f}x |")


if __name__ == "__main__":
    main()
