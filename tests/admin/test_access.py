"""Access control: anonymous, roles, CSRF, token revocation, startup checks."""
from __future__ import annotations

import re
import uuid

import pytest

from ruleadmin import create_app
from ruleadmin.accounts import Accounts
from ruleadmin.config import ConfigError

from .conftest import PASSWORD, split_rule

pytestmark = pytest.mark.integration


def _login(client, username, password=PASSWORD):
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def test_anonymous_api_is_401(client, ns):
    """Every API call without a token is 401 with a JSON error."""
    r = client.get(f"/api/v1/namespaces/{ns}/rules")
    assert r.status_code == 401 and r.get_json()["error"] and "Bearer" in r.headers["WWW-Authenticate"]


def test_anonymous_web_redirects_to_login(client, ns):
    """Web pages redirect anonymous users to the login page."""
    r = client.get(f"/ns/{ns}/")
    assert r.status_code == 302 and r.location.startswith("/login")


def test_viewer_cannot_write(client, users, ns):
    """A viewer token reads but gets 403 on PUT, DELETE and rollback."""
    h = users["viewer"].headers
    assert client.get(f"/api/v1/namespaces/{ns}/rules", headers=h).status_code == 200
    assert client.put(f"/api/v1/namespaces/{ns}/rules/web", json=split_rule("web"), headers=h).status_code == 403
    assert client.post(f"/api/v1/namespaces/{ns}/rollback", json={"to_rev": 0}, headers=h).status_code == 403


def test_only_admin_creates_namespaces(client, users):
    """Editors cannot create namespaces; admins can."""
    name = "n" + uuid.uuid4().hex[:8]
    assert client.post("/api/v1/namespaces", json={"name": name}, headers=users["editor"].headers).status_code == 403
    assert client.post("/api/v1/namespaces", json={"name": name}, headers=users["admin"].headers).status_code == 201


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_revocation_elsewhere_takes_effect_within_the_auth_cache_ttl(backend, users):
    """Another instance keeps a revoked token's cached user for at most AUTH_CACHE_SECONDS, then refuses it."""
    clock = FakeClock()
    other = Accounts(backend.accounts.client, auth_cache_seconds=5.0, timer=clock)
    token_id, token = backend.accounts.create_token(users["viewer"].username, "cached-elsewhere")
    assert other.user_for_token(token).username == users["viewer"].username
    assert backend.accounts.revoke_token(token_id)
    clock.now += 4.9
    assert other.user_for_token(token) is not None, "served from the cache inside the TTL"
    clock.now += 0.2
    assert other.user_for_token(token) is None, "revocation seen once the TTL has passed"


def test_auth_cache_can_be_disabled(backend, users):
    """With AUTH_CACHE_SECONDS=0 every lookup reads Redis, so a revocation elsewhere is seen at once."""
    other = Accounts(backend.accounts.client, auth_cache_seconds=0)
    token_id, token = backend.accounts.create_token(users["viewer"].username, "uncached")
    assert other.user_for_token(token) is not None
    backend.accounts.revoke_token(token_id)
    assert other.user_for_token(token) is None


def test_revoked_token_is_refused(client, backend, users):
    """A token revoked through an instance stops working on that instance immediately (its auth cache is cleared)."""
    token_id, token = backend.accounts.create_token(users["editor"].username, "short-lived")
    h = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/whoami", headers=h).status_code == 200
    r = client.delete(f"/api/v1/tokens/{token_id}", headers=users["admin"].headers)
    assert r.status_code == 200
    r = client.get("/api/v1/whoami", headers=h)
    assert r.status_code == 401 and "revoked" in r.get_json()["error"]


def test_garbage_tokens_are_refused(client):
    """Unknown and malformed bearer tokens get 401."""
    for value in ("Bearer rgt_nope", "Bearer ", "Basic abc", "Bearer " + "x" * 5000):
        assert client.get("/api/v1/whoami", headers={"Authorization": value}).status_code == 401


def test_form_post_without_csrf_is_refused(client, users, ns):
    """A logged-in form POST without the CSRF token is refused and writes nothing."""
    assert _login(client, users["editor"].username).status_code == 302
    r = client.post(f"/ns/{ns}/rules/new?kind=degrade", data={"id": "x", "host": "a.example.com", "path": "/"})
    assert r.status_code == 400 and b"CSRF" in r.data


def test_login_without_csrf_is_refused(client, users):
    """Even the login form needs its CSRF token."""
    r = client.post("/login", data={"username": users["viewer"].username, "password": PASSWORD})
    assert r.status_code == 400


def test_viewer_session_cannot_open_edit_forms(client, users, ns):
    """A viewer's session gets 403 on the create form."""
    _login(client, users["viewer"].username)
    assert client.get(f"/ns/{ns}/rules/new?kind=split").status_code == 403


def test_logout_ends_the_session(client, users):
    """After logging out, pages redirect to login again."""
    _login(client, users["viewer"].username)
    assert client.get("/").status_code == 200
    page = client.get("/").data
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1).decode()
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_session_cookie_flags_by_default(admin_config, users):
    """With the default config the session cookie is Secure, HttpOnly and SameSite=Lax."""
    app = create_app({**admin_config, "SESSION_COOKIE_SECURE": True})
    c = app.test_client()
    r = _login(c, users["viewer"].username)
    cookie = [v for k, v in r.headers.items() if k == "Set-Cookie" and "ruleadmin_session" in v][0]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    app.extensions["ruleadmin"].close()


def test_refuses_to_start_without_secret_key(monkeypatch):
    """Outside debug mode, no secret key means no app, with a message naming the variable."""
    monkeypatch.delenv("RULEADMIN_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="RULEADMIN_SECRET_KEY"):
        create_app({"REDIS_NODES": "127.0.0.1:1"})


def test_admin_pages_manage_users_tokens_and_audit(client, users, backend):
    """Admins create a user and a token in the web UI, revoke it, and see the audit trail; editors get 403."""
    _login(client, users["editor"].username)
    assert client.get("/admin/users").status_code == 403
    admin = _relogin(client, users["admin"].username)
    page = admin.get("/admin/users")
    name = "new-" + uuid.uuid4().hex[:6]
    r = admin.post("/admin/users", data={"csrf_token": _csrf(page.data), "username": name, "role": "viewer",
                                         "password": "another-long-one"})
    assert r.status_code == 302 and backend.accounts.get_user(name).role == "viewer"
    r = admin.post("/admin/tokens", data={"csrf_token": _csrf(page.data), "username": name, "name": "ci"})
    token = re.search(rb'id="new-token">([^<]+)<', r.data).group(1).decode()
    assert client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    token_id = next(k for k, v in backend.accounts.list_tokens(name).items())
    r = admin.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": _csrf(page.data)})
    assert r.status_code == 302
    assert client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    events = [(e["event"], e["actor"]) for e in backend.accounts.recent_audit(20)]
    for event in ("user.saved", "token.created", "token.revoked"):
        assert (event, users["admin"].username) in events


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def _relogin(client, username):
    """Log the given client out (fresh session) and in as username."""
    page = client.get("/")
    if b'id="logout"' in page.data:
        client.post("/logout", data={"csrf_token": _csrf(page.data)})
    assert _login(client, username).status_code == 302
    return client
