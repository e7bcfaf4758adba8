"""Redis ACL users for least privilege: ops (launcher, replication), admin, one gateway user per namespace;
default off.

A gateway user reads only its namespace's keys, writes only its namespace's fleet hash and
subscribes only to its namespace's events channel, so the gateways of one namespace cannot
forge or erase another namespace's heartbeats. See docs/security.md ("Gateways").
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from rulegate.keyspace import Keys
from rulegate.schema import is_valid_id

OPS_USER = "rg-ops"
ADMIN_USER = "rg-admin"
GATEWAY_USER_PREFIX = "rg-gateway-"

_CLUSTER_READS = ("+cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid "
                  "+cluster|keyslot +asking +readonly +readwrite +info +command +ping +hello +auth +client|setname "
                  "+client|id +select")
ADMIN_RULES = ("~rg:* ~{rg:* resetchannels &{rg:* -@all "
               "+get +set +del +exists +expire +ttl +incr +incrby +hget +hmget +hgetall +hset +hsetnx +hdel +hlen "
               "+hexists +hkeys "
               "+sadd +srem +smembers +sismember +xadd +xrange +xrevrange +xlen +spublish "
               "+eval +evalsha +script|load +script|exists +wait +multi +exec +discard " + _CLUSTER_READS)
GATEWAY_COMMANDS = ("-@all +get +hget +hgetall +hscan +hlen +xrange +xrevrange +hset +hdel +ssubscribe +sunsubscribe "
                    + _CLUSTER_READS)


def gateway_user(namespace: str) -> str:
    """Return the Redis user name of namespace's gateways; raise ValueError for a bad namespace name."""
    if not is_valid_id(namespace):
        raise ValueError(f"bad namespace {namespace!r}: must match [a-z0-9][a-z0-9_.-]{{0,63}}")
    return GATEWAY_USER_PREFIX + namespace


def gateway_rules(namespace: str) -> str:
    """Return the ACL rules of namespace's gateway user: read its keys, write its fleet hash only."""
    gateway_user(namespace)  # validates the name: no glob characters can reach the patterns
    keys = Keys(namespace)
    return f"resetkeys %R~{keys.tag}:* %W~{keys.fleet} resetchannels &{keys.events} {GATEWAY_COMMANDS}"


def _password() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class AclUsers:
    """Passwords of the ops and admin users and of one gateway user per namespace; random by default."""

    ops_password: str = field(default_factory=_password, repr=False)
    admin_password: str = field(default_factory=_password, repr=False)
    gateway_passwords: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def for_namespaces(cls, *namespaces: str) -> "AclUsers":
        """Return users with a gateway user (random password) for each namespace."""
        for ns in namespaces:
            gateway_user(ns)
        return cls(gateway_passwords={ns: _password() for ns in namespaces})

    def gateway(self, namespace: str) -> tuple[str, str]:
        """Return (user, password) of namespace's gateway user; raise KeyError when there is none."""
        if namespace not in self.gateway_passwords:
            raise KeyError(f"no gateway user for namespace {namespace!r}")
        return gateway_user(namespace), self.gateway_passwords[namespace]

    def config_lines(self) -> dict[str, str]:
        """Return redis.conf directives (user lines cannot repeat a key, so they are joined)."""
        users = [
            "default off resetkeys -@all",
            f"{OPS_USER} on >{self.ops_password} ~* &* +@all",
            f"{ADMIN_USER} on >{self.admin_password} {ADMIN_RULES}",
        ]
        for ns, password in sorted(self.gateway_passwords.items()):
            users.append(f"{gateway_user(ns)} on >{password} {gateway_rules(ns)}")
        return {"masteruser": OPS_USER, "masterauth": self.ops_password, "__users__": "\n".join(users)}
