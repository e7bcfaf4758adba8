"""Configuration defaults, the startup checks, and the Redis settings built from app.config."""
from __future__ import annotations

from typing import Any, Mapping

from rulegate.connection import RedisConfig
from rulegate.schema import MAX_RULES_PER_NAMESPACE
from rulegate.store import MAX_NAMESPACE_BYTES

from .killswitch import preset_from_config

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": None,
    "REDIS_NODES": "127.0.0.1:7000",
    "REDIS_MODE": "auto",
    "REDIS_USERNAME": None,
    "REDIS_PASSWORD": None,
    "REDIS_SSL": False,
    "REDIS_SSL_CA_CERTS": None,
    "REDIS_SSL_CERTFILE": None,
    "REDIS_SSL_KEYFILE": None,
    "REDIS_SOCKET_TIMEOUT": 1.0,
    "REDIS_MAX_CONNECTIONS": 32,
    "WAIT_REPLICAS": 1,
    "WAIT_TIMEOUT_MS": 500,
    # namespace size limits, enforced by the commit script: sized against nginx's `lua_shared_dict rulegate`
    # (64m in lua/conf/rulegate.conf), which holds a namespace's whole rule set as one payload (README)
    "NAMESPACE_MAX_RULES": MAX_RULES_PER_NAMESPACE,
    "NAMESPACE_MAX_BYTES": MAX_NAMESPACE_BYTES,
    # decoded rules kept per instance for listings, pages and simulation, over all namespaces (ruleadmin/listing.py)
    "LISTING_CACHE_RULES": 50_000,
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "MAX_FORM_MEMORY_SIZE": 256 * 1024,
    "LOGIN_MAX_FAILURES": 5,
    "LOGIN_MAX_FAILURES_PER_IP": 50,
    "LOGIN_WINDOW_SECONDS": 300,
    "LOGIN_BACKOFF_BASE_SECONDS": 1,
    "LOGIN_BACKOFF_MAX_SECONDS": 900,
    "LOGIN_GLOBAL_MAX_FAILURES": 1000,
    "AUTH_CACHE_SECONDS": 5.0,
    "SESSION_IDLE_SECONDS": 30 * 60,
    "SESSION_ABSOLUTE_SECONDS": 8 * 3600,
    "TOKEN_MAX_LIFETIME_SECONDS": 365 * 86400,
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_NAME": "ruleadmin_session",
    "REMEMBER_COOKIE_SECURE": True,
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "PERMANENT_SESSION_LIFETIME": 8 * 3600,
    "WTF_CSRF_TIME_LIMIT": 8 * 3600,
    "WTF_CSRF_SSL_STRICT": False,
    "HISTORY_MAX_LIMIT": 500,
    "FLEET_SILENT_SECONDS": 60,
    "UPSTREAMS_CACHE_SECONDS": 2.0,  # how long an instance reuses a namespace's known upstreams (0 = off)
    "IDLE_RULE_SECONDS": 3600,  # a rule no live gateway matched for this long (and older) is flagged idle
    "IDEMPOTENCY_TTL_SECONDS": 24 * 3600,
    "PROXY_FIX_X_FOR": 0,
    "PROXY_FIX_X_PROTO": 0,
    "KILL_SWITCH_PRESET": None,  # JSON degrade action a kill switch applies by default (None: static 503)
}


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says which setting to fix."""


def check(config: Mapping[str, Any], debug: bool) -> None:
    """Return None when the config is usable; raise ConfigError naming the missing setting."""
    if not config.get("SECRET_KEY") and not debug and not config.get("TESTING"):
        raise ConfigError("RULEADMIN_SECRET_KEY is not set: refusing to start outside debug mode. "
                          "Set it to a long random string shared by every ruleadmin instance, e.g. "
                          "RULEADMIN_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')")
    if not config.get("REDIS_NODES"):
        raise ConfigError("RULEADMIN_REDIS_NODES is empty; expected host:port[,host:port...]")
    for name, lowest in (("WAIT_REPLICAS", 0), ("SESSION_IDLE_SECONDS", 1), ("SESSION_ABSOLUTE_SECONDS", 1),
                         ("TOKEN_MAX_LIFETIME_SECONDS", 0), ("IDLE_RULE_SECONDS", 1), ("LISTING_CACHE_RULES", 0)):
        value = config.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            raise ConfigError(f"RULEADMIN_{name} must be an integer >= {lowest}")
    for name, lowest, highest in (("NAMESPACE_MAX_RULES", 1, MAX_RULES_PER_NAMESPACE),
                                  ("NAMESPACE_MAX_BYTES", 1024, 2**40)):
        value = config.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not lowest <= value <= highest:
            raise ConfigError(f"RULEADMIN_{name} must be an integer from {lowest} to {highest}")
    try:
        preset_from_config(config.get("KILL_SWITCH_PRESET"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def redis_config(config: Mapping[str, Any]) -> RedisConfig:
    """Return the RedisConfig described by the RULEADMIN_REDIS_* settings."""
    return RedisConfig.from_nodes(
        str(config["REDIS_NODES"]), mode=config["REDIS_MODE"], username=config["REDIS_USERNAME"],
        password=config["REDIS_PASSWORD"], ssl=bool(config["REDIS_SSL"]),
        ssl_ca_certs=config["REDIS_SSL_CA_CERTS"], ssl_certfile=config["REDIS_SSL_CERTFILE"],
        ssl_keyfile=config["REDIS_SSL_KEYFILE"], socket_timeout=float(config["REDIS_SOCKET_TIMEOUT"]),
        max_connections=int(config["REDIS_MAX_CONNECTIONS"]))
