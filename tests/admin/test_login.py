"""Logging in: same-origin redirects only, and a throttle per (account, address) that nobody can turn against a user."""
from __future__ import annotations

import logging
import re
import uuid

import pytest

from ruleadmin.metrics import REGISTRY
from ruleadmin.throttle import ExponentialBackoff, LoginThrottle, ThrottleConfig, Throttled

from .conftest import PASSWORD

pytestmark = pytest.mark.integration


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def _login(client, username: str, password: str = PASSWORD, address: str = "127.0.0.1", query: str = ""):
    env = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=env)
    return client.post(f"/login{query}", data={"username": username, "password": password,
                                                "csrf_token": _csrf(page.data)}, environ_base=env)


@pytest.fixture()
def user(backend) -> str:
    """A fresh viewer (password PASSWORD)."""
    name = "lg-" + uuid.uuid4().hex[:8]
    backend.accounts.create_user(name, "viewer", PASSWORD)
    return name


def _address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example", "/\\/evil.example",
    "http:/evil.example", "javascript:alert(1)", "/\t/evil.example",
    "/\r\nSet-Cookie: x=y", "/x\x00", "evil.example", " //evil.example", "/\x7f/x", "",
])
def test_login_never_redirects_off_site(client, user, target):
    """A crafted `next` (other host, scheme, //, backslash, CR/LF, control characters) falls back to the index."""
    from urllib.parse import quote
    r = _login(client, user, address=_address(), query=f"?next={quote(target, safe='')}")
    assert r.status_code == 302 and r.location == "/", r.location


@pytest.mark.parametrize("target", ["/ns/prod/", "/ns/prod/history?before=3", "/admin/users"])
def test_login_redirects_to_same_site_paths(client, user, target):
    """A path on this site is where the login goes next."""
    from urllib.parse import quote
    r = _login(client, user, address=_address(), query=f"?next={quote(target, safe='')}")
    assert r.status_code == 302 and r.location == target


def test_logout_redirect_is_same_site_only(client, user):
    """Logout goes to the login page unless `next` is a path on this site."""
    addr = _address()
    _login(client, user, address=addr)
    page = client.get("/", environ_base={"REMOTE_ADDR": addr})
    r = client.post("/logout?next=//evil.example", data={"csrf_token": _csrf(page.data)},
                    environ_base={"REMOTE_ADDR": addr})
    assert r.status_code == 302 and r.location == "/login"


def test_backoff_doubles_after_the_free_failures_up_to_the_cap():
    """The wait is 0 for the first free failures, then base, 2*base, 4*base... capped."""
    backoff = ExponentialBackoff(free=5, base=1, cap=900)
    assert [backoff.compute(n) for n in range(1, 9)] == [0, 0, 0, 0, 1, 2, 4, 8]
    assert backoff.compute(15) == 900 and backoff.compute(10**6) == 900


def test_attacker_cannot_lock_a_user_out(client, backend, user, monkeypatch):
    """While one address hammers an account with wrong passwords (and gets 429s), the right password from
    another address logs in at once."""
    monkeypatch.setattr(backend.accounts, "throttle", LoginThrottle(
        backend.store.client, ThrottleConfig(backoff_base_seconds=30)))
    attacker = _address()
    codes = [_login(client, user, "wrong-password", attacker).status_code for _ in range(12)]
    assert codes[:5] == [401] * 5 and 429 in codes[5:]
    r = _login(client, user, PASSWORD, attacker)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, "the attacker's address is throttled"
    fresh = client.application.test_client()
    assert _login(fresh, user, PASSWORD, _address()).status_code == 302, "the user is not locked out"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_failures_are_counted_logged_and_throttles_measured(client, backend, user, caplog, monkeypatch):
    """A failed login increments the metric and logs a warning; a throttled one is counted by scope."""
    monkeypatch.setattr(backend.accounts, "throttle", LoginThrottle(
        backend.store.client, ThrottleConfig(backoff_base_seconds=30)))
    failed = _sample("ruleadmin_logins_total", outcome="failed")
    throttled = _sample("ruleadmin_login_throttled_total", scope="account+address")
    addr = _address()
    with caplog.at_level(logging.WARNING, logger="ruleadmin"):
        for _ in range(6):
            _login(client, user, "wrong-password", addr)
    assert _sample("ruleadmin_logins_total", outcome="failed") - failed == 5
    assert _sample("ruleadmin_login_throttled_total", scope="account+address") - throttled == 1
    assert any("login failed" in r.message and user in r.message and addr in r.message for r in caplog.records)
    assert any("login throttled" in r.message for r in caplog.records)


def test_an_address_failing_on_many_accounts_is_throttled(backend):
    """Past the per-address cap every account is refused from that address, and only from it."""
    throttle = LoginThrottle(backend.store.client, ThrottleConfig(max_failures_per_address=3))
    addr = _address()
    for i in range(3):
        throttle.failed(f"spray-{i}", addr)
    with pytest.raises(Throttled) as exc:
        throttle.check("someone-else", addr)
    assert exc.value.scope == "address"
    throttle.check("someone-else", _address())


def test_global_cap_spares_clean_addresses(backend):
    """Over the global failure cap, addresses with failures wait; an address without failures still may try."""
    client = backend.store.client
    throttle = LoginThrottle(client, ThrottleConfig(global_max_failures=1))
    client.delete("rg:login:fail:all")
    try:
        noisy = _address()
        throttle.failed("victim", noisy)
        with pytest.raises(Throttled) as exc:
            throttle.check("other", noisy)
        assert exc.value.scope == "global"
        throttle.check("victim", _address())
    finally:
        client.delete("rg:login:fail:all")


def test_success_resets_the_pair(backend, user):
    """A correct password forgets that pair's failures: the backoff starts over."""
    throttle = LoginThrottle(backend.store.client, ThrottleConfig(free_failures=2))
    addr = _address()
    throttle.failed(user, addr)
    throttle.succeeded(user, addr)
    assert throttle.failed(user, addr) == (1, 0)


def test_disabled_user_cannot_log_in(client, backend, user):
    """A disabled account's correct password is refused with 403 and counted, not throttled."""
    backend.accounts.set_disabled(user, True, "test")
    r = _login(client, user, PASSWORD, _address())
    assert r.status_code == 403 and b"disabled" in r.data


def test_throttle_settings_come_from_the_config(admin_config):
    """RULEADMIN_LOGIN_BACKOFF_* and RULEADMIN_LOGIN_GLOBAL_MAX_FAILURES reach the throttle."""
    from ruleadmin import create_app

    app = create_app({**admin_config, "LOGIN_BACKOFF_BASE_SECONDS": 7, "LOGIN_BACKOFF_MAX_SECONDS": 70,
                      "LOGIN_GLOBAL_MAX_FAILURES": 12, "LOGIN_MAX_FAILURES": 3})
    try:
        cfg = app.extensions["ruleadmin"].accounts.throttle.config
        assert (cfg.backoff_base_seconds, cfg.backoff_max_seconds, cfg.global_max_failures, cfg.free_failures) \
            == (7, 70, 12, 3)
    finally:
        app.extensions["ruleadmin"].close()
