"""Redis ACL users for least privilege: ops (launcher, replication), admin, gateway; default off.

The same rules are used by the launcher, the demo and docker/redis (see docs/security.md).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

OPS_USER = "rg-ops"
ADMIN_USER = "rg-admin"
GATEWAY_USER = "rg-gateway"

_CLUSTER_READS = ("+cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid "
                  "+cluster|keyslot +asking +readonly +readwrite +info +command +ping +hello +auth +client|setname "
                  "+client|id +select")
ADMIN_RULES = ("~rg:* ~{rg:* resetchannels &{rg:* -@all "
               "+get +set +del +exists +expire +ttl +incr +incrby +hget +hgetall +hset +hsetnx +hdel +hlen +hexists +hkeys "
               "+sadd +srem +smembers +sismember +xadd +xrange +xrevrange +xlen +spublish "
               "+eval +evalsha +script|load +script|exists +wait +multi +exec +discard " + _CLUSTER_READS)
GATEWAY_RULES = ("%R~{rg:* ~{rg:*}:fleet resetchannels &{rg:* -@all "
                 "+get +hget +hgetall +hlen +xrange +xrevrange +hset +hdel +ssubscribe +sunsubscribe "
                 + _CLUSTER_READS)


@dataclass(frozen=True)
class AclUsers:
    """Passwords of the three users; random by default."""

    ops_password: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    admin_password: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    gateway_password: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    def config_lines(self) -> dict[str, str]:
        """Return redis.conf directives (user lines cannot repeat a key, so they are joined)."""
        users = [
            "default off resetkeys -@all",
            f"{OPS_USER} on >{self.ops_password} ~* &* +@all",
            f"{ADMIN_USER} on >{self.admin_password} {ADMIN_RULES}",
            f"{GATEWAY_USER} on >{self.gateway_password} {GATEWAY_RULES}",
        ]
        return {"masteruser": OPS_USER, "masterauth": self.ops_password, "__users__": "\n".join(users)}
