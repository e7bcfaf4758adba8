"""Unbound extensions (attached in create_app) and the per-process Redis backend."""
from __future__ import annotations

import threading

from cachetools import TTLCache
from flask import Flask, current_app
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from rulegate.connection import connect
from rulegate.store import RuleStore

from . import config as config_mod
from .accounts import Accounts
from .rules import RuleService
from .throttle import ThrottleConfig

login_manager = LoginManager()
csrf = CSRFProtect()


class Backend:
    """Owns the process's one Redis Cluster client and the services built on it (created lazily)."""

    def __init__(self, app: Flask):
        self._config = app.config
        self._lock = threading.Lock()
        self._store: RuleStore | None = None
        self._rules: RuleService | None = None
        self._accounts: Accounts | None = None
        ttl = float(app.config.get("UPSTREAMS_CACHE_SECONDS", 0) or 0)
        # namespace -> its known upstreams (api_upstreams.known): every rule write reads them
        self.upstreams_cache: TTLCache | None = TTLCache(maxsize=4096, ttl=ttl) if ttl > 0 else None

    def _ensure(self) -> None:
        if self._store is not None:  # built already (every request after the first): no lock taken
            return
        with self._lock:
            if self._store is not None:
                return
            cfg = self._config
            client = connect(config_mod.redis_config(cfg))
            self._store = RuleStore(client, wait_replicas=int(cfg["WAIT_REPLICAS"]),
                                    wait_timeout_ms=int(cfg["WAIT_TIMEOUT_MS"]),
                                    max_rules=int(cfg["NAMESPACE_MAX_RULES"]),
                                    max_bytes=int(cfg["NAMESPACE_MAX_BYTES"]))
            self._rules = RuleService(self._store, listing_rules=int(cfg["LISTING_CACHE_RULES"]))
            self._accounts = Accounts(client, throttle=ThrottleConfig.from_config(cfg),
                                      auth_cache_seconds=float(cfg["AUTH_CACHE_SECONDS"]))

    @property
    def store(self) -> RuleStore:
        self._ensure()
        return self._store

    @property
    def rules(self) -> RuleService:
        self._ensure()
        return self._rules

    @property
    def accounts(self) -> Accounts:
        self._ensure()
        return self._accounts

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._store = self._rules = self._accounts = None


def backend() -> Backend:
    """Return the current app's Backend."""
    return current_app._get_current_object().extensions["ruleadmin"]  # (not an attribute through the proxy)
