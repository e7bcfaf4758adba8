"""The sample rule set the demo seeds (namespace `demo`), and the seeding itself."""
from __future__ import annotations

import time

from rulegate.connection import RedisConfig
from rulegate.schema import validate_rule
from rulegate.store import RuleStore

NAMESPACE = "demo"

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
        for rule in SAMPLE_RULES:
            rule = validate_rule({**rule, "updated_by": "demo-seed", "updated_at": int(time.time())})
            store.put_rule(NAMESPACE, rule, store.revision(NAMESPACE), "demo-seed")
        return store.revision(NAMESPACE)
    finally:
        store.close()
