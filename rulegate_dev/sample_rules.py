"""The sample rule set the demo seeds (namespace `demo`), and the seeding itself."""
from __future__ import annotations

import time

from rulegate.connection import RedisConfig
from rulegate.schema import validate_rule
from rulegate.store import RuleStore

NAMESPACE = "demo"
RAMP_RULE, BREAKER_RULE, PAY_SPLIT_RULE = "shop-beta-ramp", "shop-pay-breaker", "shop-pay-split"
GUARD_RULE = "shop-search-guarded"
RAMP_SECONDS, RAMP_STEPS = 600, 10
BREAKER = {"window": 10, "min_requests": 20, "error_ratio": 0.5, "open_seconds": 5, "probes": 3}
FALLBACK_BODY = "payments are degraded\n"

SAMPLE_RULES: list[dict] = [
    {"id": "shop-canary", "kind": "split", "description": "10% sticky canary, grey uids 1000-1999, office IPs",
     "route": {"host": "shop.localhost", "path": "/"},
     "key": {"source": "header", "name": "X-Uid"},
     "policies": [
         {"type": "uid_range", "ranges": [[1000, 1999]], "upstream": "canary"},
         {"type": "header", "name": "X-Canary", "values": ["1"], "upstream": "canary"},
         {"type": "percent", "buckets": [{"upstream": "canary", "weight": 1000}]},
     ],
     "default": "stable"},
    {"id": "shop-checkout-maintenance", "kind": "degrade", "description": "checkout under maintenance",
     "route": {"host": "shop.localhost", "path": "/checkout"},
     "action": {"type": "static", "status": 503, "content_type": "text/plain; charset=utf-8",
                "headers": {"Retry-After": "120"}, "body": "checkout is under maintenance\n"}},
    {"id": "shop-old-redirect", "kind": "degrade", "route": {"host": "shop.localhost", "path": "/old"},
     "action": {"type": "redirect", "status": 301, "location": "/"}},
]


def guarded_ramp(now: int) -> dict:
    """Return the guarded ramp of /search from now: `flaky` 20% -> 100% over 30 minutes, halted (reverted to 0%)
    when its error rate exceeds `stable`'s by more than 20 points over 10 s with 20+ requests on each side."""
    return {"start": now, "end": now + 1800, "from": 2000, "to": 10000, "mode": "linear",
            "guard": {"control": "stable", "min_requests": 20, "window": 10, "max_error_increase": 0.2,
                      "on_breach": "revert"}}


def scenario_rules(now: int) -> list[dict]:
    """Return the rules of the demo scenarios (`rulegate-dev scenario`), each on its own route: a ramp on /beta
    starting at now, on /pay a breaker in front of the `flaky` backend, on /search a guarded canary of `flaky`."""
    return [
        {"id": RAMP_RULE, "kind": "split", "description": f"beta: canary ramped 0% -> 100% in {RAMP_STEPS} steps "
                                                          f"over {RAMP_SECONDS // 60} minutes from seeding",
         "route": {"host": "shop.localhost", "path": "/beta"},
         "key": {"source": "header", "name": "X-Uid"},
         "policies": [{"type": "percent", "buckets": [{"upstream": "canary", "weight": 10000}],
                       "ramp": {"start": now, "end": now + RAMP_SECONDS, "from": 0, "to": 10000, "mode": "step",
                                "steps": RAMP_STEPS}}],
         "default": "stable"},
        {"id": PAY_SPLIT_RULE, "kind": "split", "description": "payments are served by the flaky backend",
         "route": {"host": "shop.localhost", "path": "/pay"},
         "key": {"source": "header", "name": "X-Uid"}, "policies": [], "default": "flaky"},
        {"id": BREAKER_RULE, "kind": "degrade", "description": "breaker: a static answer while flaky fails",
         "route": {"host": "shop.localhost", "path": "/pay"}, "breaker": dict(BREAKER),
         "action": {"type": "static", "status": 503, "content_type": "text/plain; charset=utf-8",
                    "headers": {"Retry-After": str(BREAKER["open_seconds"])}, "body": FALLBACK_BODY}},
        {"id": GUARD_RULE, "kind": "split", "description": "a guarded canary of flaky, halted when it fails",
         "route": {"host": "shop.localhost", "path": "/search"},
         "key": {"source": "header", "name": "X-Uid"},
         "policies": [{"type": "percent", "buckets": [{"upstream": "flaky", "weight": 10000}],
                       "ramp": guarded_ramp(now)}],
         "default": "stable"},
    ]


SAMPLE_REQUESTS: list[dict] = [
    {"host": "shop.localhost", "path": "/", "headers": {"x-uid": "1500"}},
    {"host": "shop.localhost", "path": "/", "headers": {"x-uid": "42"}},
    {"host": "shop.localhost", "path": "/", "headers": {"x-canary": "1"}},
    {"host": "shop.localhost", "path": "/checkout/pay"},
    {"host": "shop.localhost", "path": "/old/page"},
    {"host": "other.localhost", "path": "/"},
]


def seed_rules(nodes: list[str], username: str | None = None, password: str | None = None) -> int:
    """Write the sample rules through the store (CAS, idempotent); return the revision."""
    store = RuleStore.from_config(RedisConfig.from_nodes(nodes, mode="cluster", username=username,
                                                         password=password))
    try:
        now = int(time.time())
        for rule in SAMPLE_RULES + scenario_rules(now):
            rule = validate_rule({**rule, "updated_by": "demo-seed", "updated_at": now})
            store.put_rule(NAMESPACE, rule, store.revision(NAMESPACE), "demo-seed")
        return store.revision(NAMESPACE)
    finally:
        store.close()
