"""A namespace's store rebuilt under the gateways (tests and benches): a new generation, same or new rules;
and how many whole-hash reads the cluster served (did a gateway read the rules again?)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rulegate.digest import content_digest
from rulegate.keyspace import Keys


def rebuild_store(client: Any, namespace: str, generation: str, changed: Mapping[str, bytes] | None = None) -> str:
    """Give `namespace` a new generation, as a store restored from a backup would, and return its digest.

    `client` is a redis-py cluster client. With `changed` (id -> stored bytes) those rules get the new bytes and
    the meta hash the digest of the new content: a gateway must read the rules again (a full reload). Without,
    the content and its digest stay: a gateway keeps the rules it holds under the new generation.
    """
    keys = Keys(namespace)
    if changed:
        client.hset(keys.rules, mapping=dict(changed))
        digest = content_digest({k.decode(): v for k, v in client.hgetall(keys.rules).items()})
        client.hset(keys.meta, mapping={"digest": digest, "gen": generation})
        return digest
    client.hset(keys.meta, "gen", generation)
    value = client.hget(keys.meta, "digest")
    return value.decode() if value else ""


def rule_reads(client: Any) -> int:
    """HSCAN and HGETALL calls served so far by every node of the cluster of `client` (INFO commandstats)."""
    total = 0
    for stats in client.info("commandstats", target_nodes=client.ALL_NODES).values():
        for name in ("cmdstat_hscan", "cmdstat_hgetall"):
            total += stats.get(name, {}).get("calls", 0)
    return total
