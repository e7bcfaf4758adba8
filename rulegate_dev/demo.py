"""The demo: a real cluster on loopback, sample rules written through the store, live decisions."""
from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from collections import Counter

from gateway_agent.connection import RedisConfig
from gateway_agent.evaluator import Request, RuleSet, decide
from gateway_agent.schema import validate_rule
from gateway_agent.store import RuleStore

from .cluster import LocalCluster
from .sample_rules import SAMPLE_REQUESTS, SAMPLE_RULES

NAMESPACE = "demo"


def seed(store: RuleStore) -> int:
    """Write the sample rules (idempotently) and return the namespace revision."""
    for rule in SAMPLE_RULES:
        rule = validate_rule({**rule, "updated_by": "demo", "updated_at": int(time.time())})
        rev = store.revision(NAMESPACE)
        store.put_rule(NAMESPACE, rule, rev, "demo-seed")
    return store.revision(NAMESPACE)


def check_split(rs: RuleSet, n: int = 20_000) -> float:
    """Return the canary share for n anonymous-ish uids (expected about 10%)."""
    counts = Counter(decide(rs, Request("shop.localhost", "/", headers={"x-uid": f"u{zlib.crc32(str(i).encode())}"})).upstream
                     for i in range(n))
    return counts["canary"] / n


def run_demo(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="rulegate-demo-")
    print(f"starting a 6-node Redis Cluster in {data_dir} ...", flush=True)
    with LocalCluster(data_dir, args.base_port) as cluster:
        print("cluster ready: " + ",".join(cluster.startup_nodes), flush=True)
        store = RuleStore.from_config(RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster"))
        rev = seed(store)
        state = store.load(NAMESPACE)
        rs = RuleSet(state.rules.values(), state.revision, state.generation)
        print(f"seeded {len(state.rules)} rules into namespace {NAMESPACE!r} at revision {rev}\n")
        for req in SAMPLE_REQUESTS:
            print(f"{req['host']}{req['path']}  {req.get('headers', {})}  ->  {decide(rs, Request.from_dict(req)).to_dict()}")
        share = check_split(rs)
        print(f"\ncanary share over 20,000 uids: {share:.1%} (configured 10% + grey range)")
        store.close()
        if args.check:
            ok = 0.09 <= share <= 0.11
            print("demo check: " + ("OK" if ok else "FAILED"))
            return 0 if ok else 1
        print("\nrunning; press Ctrl-C to stop everything")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping ...")
    return 0
