"""Redis client construction: cluster or single node, timeouts, bounded retries, AUTH and TLS."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from .errors import StoreError


@dataclass(frozen=True, kw_only=True)
class RedisAuth:
    """Credentials and TLS for Redis connections: an ACL user (or only the default
    user's password) and, with ssl, the CA bundle and client certificate files."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def credentials(self) -> RedisAuth:
        """Return only the credential and TLS fields (of a config that extends this class)."""
        return RedisAuth(**{f.name: getattr(self, f.name) for f in fields(RedisAuth)})

    def auth_kwargs(self) -> dict:
        """Return redis-py's keyword arguments for these credentials (TLS files only with ssl)."""
        kwargs: dict = {"username": self.username, "password": self.password}
        if self.ssl:
            kwargs.update(ssl_ca_certs=self.ssl_ca_certs, ssl_certfile=self.ssl_certfile,
                          ssl_keyfile=self.ssl_keyfile)
        return kwargs


@dataclass(frozen=True)
class RedisConfig(RedisAuth):
    """How to reach Redis. `nodes` are "host:port" startup nodes; mode is cluster|single|auto."""

    nodes: tuple[str, ...] = ("127.0.0.1:7000",)
    mode: str = "auto"
    connect_timeout: float = 0.5
    socket_timeout: float = 1.0
    retries: int = 2
    backoff_base: float = 0.02
    backoff_cap: float = 0.5
    max_connections: int = 16

    @classmethod
    def from_nodes(cls, nodes: str | list[str] | tuple[str, ...], **kwargs) -> "RedisConfig":
        """Return a config from "h:p,h:p" or a list of "h:p"."""
        if isinstance(nodes, str):
            nodes = [n.strip() for n in nodes.split(",") if n.strip()]
        return cls(nodes=tuple(nodes), **kwargs)


def parse_node(address: str) -> tuple[str, int]:
    """Return (host, port) of "host:port"; raise ValueError naming the bad address."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad Redis node address {address!r}; expected host:port")
    return host, int(port)


def _common_kwargs(cfg: RedisConfig) -> dict:
    kwargs = dict(cfg.auth_kwargs(),
                  socket_timeout=cfg.socket_timeout, socket_connect_timeout=cfg.connect_timeout,
                  retry=Retry(ExponentialWithJitterBackoff(cap=cfg.backoff_cap, base=cfg.backoff_base),
                              cfg.retries),
                  health_check_interval=0, max_connections=cfg.max_connections)
    if cfg.ssl:
        kwargs["ssl"] = True
    return kwargs


def _is_cluster(cfg: RedisConfig) -> bool:
    if cfg.mode in ("cluster", "single"):
        return cfg.mode == "cluster"
    errors = []
    for address in cfg.nodes:
        host, port = parse_node(address)
        try:
            with redis.Redis(host=host, port=port, **_common_kwargs(cfg)) as probe:
                return str(probe.info("cluster").get("cluster_enabled", 0)) == "1"
        except REDIS_ERRORS as exc:
            errors.append(f"{address}: {exc.__class__.__name__}")
    if len(cfg.nodes) > 1:
        return True
    raise StoreError("no Redis node reachable (" + "; ".join(errors) + ")")


def connect(cfg: RedisConfig) -> redis.Redis | RedisCluster:
    """Return a Redis or RedisCluster client for cfg; raise StoreError when mode=auto finds no node."""
    if not cfg.nodes:
        raise ValueError("at least one Redis node is required")
    addresses = [parse_node(a) for a in cfg.nodes]
    if not _is_cluster(cfg):
        host, port = addresses[0]
        return redis.Redis(host=host, port=port, **_common_kwargs(cfg))
    kwargs = _common_kwargs(cfg)
    kwargs.pop("max_connections")
    try:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in addresses],
                            require_full_coverage=False, max_connections=cfg.max_connections,
                            dynamic_startup_nodes=True, **kwargs)
    except REDIS_ERRORS as exc:  # no startup node answered (down, TLS mismatch, bad credentials)
        detail = str(exc).splitlines()[0][:300] if str(exc) else exc.__class__.__name__
        raise StoreError(f"cannot reach the Redis Cluster at {', '.join(cfg.nodes)}: {detail}") from None


# redis-py raises RedisClusterException (not a RedisError) when no startup node is reachable
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, redis.exceptions.RedisClusterException)


def redis_call(fn, *args, **kwargs):
    """Return fn(*args, **kwargs); raise StoreError naming only the Redis error's class (no addresses)."""
    try:
        return fn(*args, **kwargs)
    except REDIS_ERRORS as exc:
        raise StoreError(f"redis: {exc.__class__.__name__}") from None
