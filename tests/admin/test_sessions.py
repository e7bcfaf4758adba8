"""Sessions end: logout, password and role changes, disabling and deleting a user end every session (and the
changes its tokens); idle and absolute lifetimes; other instances follow within the auth cache TTL."""
from __future__ import annotations

import re
import uuid

import pytest

from ruleadmin import auth
from ruleadmin.accounts import Accounts

from .conftest import PASSWORD

pytestmark = pytest.mark.integration
COOKIE = "ruleadmin_session"


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def _login(client, username: str, password: str = PASSWORD):
    page = client.get("/login")
    r = client.post("/login", data={"username": username, "password": password, "csrf_token": _csrf(page.data)})
    assert r.status_code == 302, r.data
    return client


def _copy_session(app, client):
    """Return a new client holding a copy of client's session cookie (as a thief would)."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, client.get_cookie(COOKIE).value)
    return thief


def _logged_in(client) -> bool:
    return client.get("/").status_code == 200


@pytest.fixture()
def person(backend):
    """A fresh editor with a token: (username, token)."""
    name = "ss-" + uuid.uuid4().hex[:8]
    backend.accounts.create_user(name, "editor", PASSWORD)
    _id, token = backend.accounts.create_token(name, "mine")
    return name, token


def _token_works(client, token: str) -> bool:
    return client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_copied_cookie_dies_with_logout(app, client, person):
    """A session cookie copied before logout no longer works after it."""
    _login(client, person[0])
    thief = _copy_session(app, client)
    assert _logged_in(thief)
    client.post("/logout", data={"csrf_token": _csrf(client.get("/").data)})
    assert not _logged_in(thief) and not _logged_in(client)
    assert _token_works(client, person[1]), "logging out of the UI leaves API tokens alone"


def test_copied_cookie_from_another_address_is_dropped(app, client, person):
    """A session cookie replayed from another client address is not accepted (Flask-Login "strong")."""
    _login(client, person[0])
    thief = _copy_session(app, client)
    assert thief.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 302
    assert _logged_in(client)


def test_logout_ends_the_users_other_sessions(app, person):
    """Logging out in one browser ends the user's sessions in every browser."""
    first, second = _login(app.test_client(), person[0]), _login(app.test_client(), person[0])
    first.post("/logout", data={"csrf_token": _csrf(first.get("/").data)})
    assert not _logged_in(second)
    assert _logged_in(_login(app.test_client(), person[0])), "a new login works at once"


@pytest.mark.parametrize("change", ["password", "role"])
def test_password_or_role_change_ends_sessions_and_tokens(app, client, backend, person, change):
    """Changing a user's password or role ends its sessions and revokes its tokens."""
    _login(client, person[0])
    if change == "password":
        backend.accounts.create_user(person[0], "editor", "a-brand-new-password")
    else:
        backend.accounts.create_user(person[0], "viewer", None)
    assert not _logged_in(client) and not _token_works(client, person[1])
    assert backend.accounts.list_tokens(person[0]) == {}


def test_saving_a_user_unchanged_keeps_its_sessions(client, backend, person):
    """Saving the same role without a password changes nothing, so sessions and tokens stay."""
    _login(client, person[0])
    backend.accounts.create_user(person[0], "editor", "")
    assert _logged_in(client) and _token_works(client, person[1])


def test_admin_disables_enables_and_deletes_over_rest(app, client, users, backend, person):
    """POST /users/{u}/disable ends sessions and tokens and refuses logins; enable restores login; DELETE removes."""
    h, name = users["admin"].headers, person[0]
    _login(client, name)
    r = client.post(f"/api/v1/users/{name}/disable", headers=h)
    assert r.status_code == 200 and r.get_json() == {"username": name, "disabled": True}
    assert not _logged_in(client) and not _token_works(client, person[1])
    listed = {u["username"]: u for u in client.get("/api/v1/users", headers=h).get_json()["users"]}
    assert listed[name]["disabled"] is True
    page = client.get("/login")
    r = client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": _csrf(page.data)})
    assert r.status_code == 403
    assert client.post(f"/api/v1/users/{name}/enable", headers=h).status_code == 200
    _login(client, name)
    assert client.delete(f"/api/v1/users/{name}", headers=h).status_code == 200
    assert not _logged_in(client) and backend.accounts.get_user(name) is None
    assert client.delete(f"/api/v1/users/{name}", headers=h).get_json()["fields"] == {"username": "does not exist"}


def test_user_admin_over_rest_needs_an_unscoped_admin(client, users, backend, person):
    """Editors get 403; an admin cannot disable or delete itself (400)."""
    assert client.post(f"/api/v1/users/{person[0]}/disable", headers=users["editor"].headers).status_code == 403
    r = client.post(f"/api/v1/users/{users['admin'].username}/disable", headers=users["admin"].headers)
    assert r.status_code == 400 and "username" in r.get_json()["fields"]


def test_admin_disables_in_the_web_ui(app, client, users, backend, person):
    """The users page disables and enables a user with CSRF-protected buttons."""
    victim = _login(app.test_client(), person[0])
    admin = _login(client, users["admin"].username)
    page = admin.get("/admin/users")
    assert f'/admin/users/{person[0]}/disable'.encode() in page.data
    r = admin.post(f"/admin/users/{person[0]}/disable", data={"csrf_token": _csrf(page.data)})
    assert r.status_code == 302 and not _logged_in(victim)
    assert b">disabled<" in admin.get("/admin/users").data
    assert admin.post(f"/admin/users/{person[0]}/enable", data={"csrf_token": _csrf(page.data)}).status_code == 302
    assert backend.accounts.get_user(person[0]) is not None


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def wall(monkeypatch) -> Clock:
    """The session-lifetime clock, under the test's control."""
    clock = Clock(auth.clock())
    monkeypatch.setattr(auth, "clock", clock)
    return clock


def test_idle_session_expires(app, client, person, wall):
    """A session unused for SESSION_IDLE_SECONDS ends; activity inside that time keeps it alive."""
    idle = app.config["SESSION_IDLE_SECONDS"]
    _login(client, person[0])
    for _ in range(3):
        wall.now += idle - 30
        assert _logged_in(client), "activity keeps the session"
    wall.now += idle + 1
    assert not _logged_in(client)


def test_absolute_session_lifetime(app, client, person, wall):
    """Even a busy session ends SESSION_ABSOLUTE_SECONDS after the login."""
    start, step = wall.now, app.config["SESSION_IDLE_SECONDS"] - 60
    _login(client, person[0])
    while wall.now + step - start <= app.config["SESSION_ABSOLUTE_SECONDS"]:
        wall.now += step
        assert _logged_in(client)
    wall.now += step
    assert not _logged_in(client)


def test_session_without_a_version_is_refused(app, client, person):
    """A session cookie from before session versions (user id without ':version') is not accepted."""
    _login(client, person[0])
    with client.session_transaction() as sess:
        sess["_user_id"] = person[0]
    assert not _logged_in(client)


def test_other_instances_follow_within_the_cache_ttl(backend, person):
    """Another instance keeps a cached session valid for at most AUTH_CACHE_SECONDS after a logout here."""
    clock = Clock(1000.0)
    other = Accounts(backend.accounts.client, auth_cache_seconds=5.0, timer=clock)
    version = backend.accounts.user_state(person[0]).session_version
    assert other.session_user(person[0], version) is not None
    backend.accounts.end_sessions(person[0], "test")
    clock.now += 4.9
    assert other.session_user(person[0], version) is not None, "served from the cache inside the TTL"
    clock.now += 0.2
    assert other.session_user(person[0], version) is None


def test_other_instances_accept_a_newer_session_at_once(backend, person):
    """A login after a logout elsewhere carries a newer version than another instance cached: it is accepted."""
    other = Accounts(backend.accounts.client, auth_cache_seconds=5.0, timer=Clock(1000.0))
    version = backend.accounts.user_state(person[0]).session_version
    assert other.session_user(person[0], version) is not None
    backend.accounts.end_sessions(person[0], "test")
    assert other.session_user(person[0], version + 1) is not None
    assert other.session_user(person[0], version) is None
