"""Fixtures for the admin tests: an in-process app, users/tokens, and two real gunicorn instances."""
from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from ruleadmin import create_app
from ruleadmin.extensions import Backend
from rulegate_dev.nginx import free_port
from rulegate_dev.service import Service, ruleadmin_service

PASSWORD = "correct-horse-battery"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def admin_config(cluster) -> dict:
    """The config every test app and gunicorn instance uses (plain-HTTP cookies for loopback)."""
    return {"SECRET_KEY": "test-" + uuid.uuid4().hex, "REDIS_NODES": ",".join(cluster.startup_nodes),
            "REDIS_MODE": "cluster", "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False,
            "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 1000}


@pytest.fixture(scope="session")
def app(admin_config):
    """An in-process app on the session cluster."""
    application = create_app(admin_config)
    yield application
    application.extensions["ruleadmin"].close()


@pytest.fixture(scope="session")
def backend(app) -> Backend:
    """The app's Redis backend (store, rules, accounts)."""
    return app.extensions["ruleadmin"]


@dataclass(frozen=True)
class Principal:
    """A test user with its password and an API token."""

    username: str
    role: str
    token: str
    token_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def users(backend) -> dict[str, Principal]:
    """One user per role (viewer, editor, admin), each with a token; password is PASSWORD."""
    out = {}
    for role in ("viewer", "editor", "admin"):
        name = f"{role}-{uuid.uuid4().hex[:6]}"
        backend.accounts.create_user(name, role, PASSWORD)
        token_id, token = backend.accounts.create_token(name, "tests")
        out[role] = Principal(name, role, token, token_id)
    return out


def csrf_of(html: bytes) -> str:
    """Return the CSRF token of the first form in a page."""
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def logged_in(app, username: str):
    """Return a test client logged in through the login form as username (password PASSWORD)."""
    c = app.test_client()
    page = c.get("/login")
    r = c.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page.data)})
    assert r.status_code == 302
    return c


@pytest.fixture()
def editor(app, users):
    """A test client logged in (through the login form) as the editor."""
    return logged_in(app, users["editor"].username)


@pytest.fixture()
def client(app):
    """A Flask test client."""
    return app.test_client()


@pytest.fixture()
def ns(backend) -> str:
    """A fresh, created namespace."""
    name = "t" + uuid.uuid4().hex[:12]
    backend.rules.create_namespace(name)
    return name


def split_rule(rule_id: str, weight: int = 5000, upstream: str = "canary") -> dict:
    """Return a small valid split rule."""
    return {"id": rule_id, "kind": "split", "route": {"host": "shop.example.com", "path": "/"},
            "key": {"source": "header", "name": "x-uid"}, "default": "stable",
            "policies": [{"type": "percent", "buckets": [{"upstream": upstream, "weight": weight}]}]}


def degrade_rule(rule_id: str, status: int = 503) -> dict:
    """Return a small valid degrade rule."""
    return {"id": rule_id, "kind": "degrade", "route": {"host": "shop.example.com", "path": "/checkout"},
            "action": {"type": "reject", "status": status, "retry_after": 30}}


def server_env(admin_config: dict) -> dict[str, str]:
    """Return the environment for a ruleadmin process from the test config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RULEADMIN_")}
    for key, value in admin_config.items():
        env["RULEADMIN_" + key] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@pytest.fixture(scope="session")
def servers(admin_config, users, tmp_path_factory) -> list[Service]:
    """Two gunicorn instances (2 gevent workers each) on two ports, sharing only the cluster."""
    log_dir = tmp_path_factory.mktemp("gunicorn")
    env = server_env(admin_config)
    procs = []
    try:
        for i in range(2):
            port = free_port()
            procs.append(ruleadmin_service(f"ruleadmin #{i + 1}", port, env, log_dir / f"ruleadmin-{port}.log"))
            procs[-1].start()
        for p in procs:
            p.wait_healthy(timeout=20)
        yield procs
    finally:
        for p in procs:
            p.stop()


# Keys a refused request may legitimately write: the Idempotency-Key answer (a 4xx is replayed too),
# token last-use stamps, and the login throttle's counters.
VOLATILE = (b"rg:idem:", b"rg:tokens:used", b"rg:login:")
# Keys that expire on their own (the guard watcher's outcome summary and lease): never a request's doing.
EXPIRING = (b":outcomes", b":guards:lease")


_READ = {b"string": lambda p, k: p.get(k), b"hash": lambda p, k: p.hgetall(k), b"set": lambda p, k: p.smembers(k),
         b"list": lambda p, k: p.lrange(k, 0, -1), b"zset": lambda p, k: p.zrange(k, 0, -1, withscores=True),
         b"stream": lambda p, k: p.xrevrange(k, "+", "-", count=1)}


@pytest.fixture(scope="session")
def keyspace(backend):
    """A function returning {key: (type, content)} of every rg:* and {rg:* key except VOLATILE (and
    `also_skip`); streams are compared by their newest entry."""
    client = backend.store.client

    def snapshot(also_skip: tuple[bytes, ...] = ()) -> dict[bytes, tuple]:
        skip = VOLATILE + also_skip
        keys = sorted(k for node in client.get_primaries() for k in node.redis_connection.scan_iter(
            match="*rg:*", count=5000) if not k.startswith(skip) and not k.endswith(EXPIRING))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        types = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for key, kind in zip(keys, types):
            _READ.get(kind, lambda p, k: p.exists(k))(pipe, key)
        return {k: (t, v) for k, t, v in zip(keys, types, pipe.execute())}

    return snapshot


class KeyspaceWatch:
    """Checks that a refused request wrote nothing, with one snapshot per request: the snapshot after one
    request is the "before" of the next (call reset() after writing anything outside a checked request)."""

    def __init__(self, snapshot, also_skip: tuple[bytes, ...] = ()):
        self._snapshot = snapshot
        self._skip = also_skip
        self._last: dict | None = None

    def before(self) -> dict:
        """Return the keyspace as it is now."""
        if self._last is None:
            self._last = self._snapshot(self._skip)
        return self._last

    def unchanged_since(self, before: dict) -> bool:
        """Return whether the keyspace still equals `before`."""
        self._last = self._snapshot(self._skip)
        return self._last == before

    def reset(self) -> None:
        """Forget the last snapshot (something was written outside a checked request)."""
        self._last = None


@pytest.fixture()
def watch(keyspace) -> KeyspaceWatch:
    """A KeyspaceWatch over the keyspace fixture."""
    return KeyspaceWatch(keyspace)
