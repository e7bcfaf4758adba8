"""User administration by REST, web and CLI: password resets end sessions and tokens, nobody removes the last
enabled admin (atomically, even racing another instance), deletes are confirmed in the web UI, every change is
audited, and only admins may do any of it."""
from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import datetime

import pytest
import redis

from ruleadmin import create_app
from ruleadmin.accounts import Accounts, LastAdminError
from ruleadmin.cli import main

from .conftest import PASSWORD, server_env

pytestmark = pytest.mark.integration
NEW_PASSWORD = "a-brand-new-password"


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def _login(client, username: str, password: str = PASSWORD) -> int:
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": _csrf(page.data)}).status_code


def _token_works(client, token: str) -> bool:
    return client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.fixture()
def person(backend):
    """A fresh editor with a token: (username, token)."""
    name = "ua-" + uuid.uuid4().hex[:8]
    backend.accounts.create_user(name, "editor", PASSWORD)
    return name, backend.accounts.create_token(name, "mine")[1]


# ---- REST on the session cluster ----------------------------------------------------------------------
def test_reset_password_over_rest_ends_sessions_and_tokens(app, client, users, backend, person):
    """POST /users/{u}/password sets the password, ends the user's sessions, revokes its tokens, is audited."""
    name, token = person
    browser = app.test_client()
    assert _login(browser, name) == 302
    r = client.post(f"/api/v1/users/{name}/password", json={"password": NEW_PASSWORD}, headers=users["admin"].headers)
    assert r.status_code == 200 and r.get_json()["username"] == name
    assert browser.get("/").status_code == 302, "the session ended"
    assert not _token_works(client, token) and backend.accounts.list_tokens(name) == {}
    assert _login(app.test_client(), name) == 401
    assert _login(app.test_client(), name, NEW_PASSWORD) == 302
    events = [(e["event"], e["actor"], e["subject"]) for e in backend.accounts.recent_audit(20)]
    assert ("user.password_reset", users["admin"].username, name) in events


@pytest.mark.parametrize("body, status, field", [
    ({"password": "short"}, 400, "password"),
    ({"password": 12345678}, 400, "password"),
    ({}, 400, "password"),
    ({"password": NEW_PASSWORD, "role": "admin"}, 400, "role"),
])
def test_reset_password_rejects_bad_bodies(client, users, backend, person, body, status, field):
    """A bad body is a 400 naming the field, and the old password still works."""
    r = client.post(f"/api/v1/users/{person[0]}/password", json=body, headers=users["admin"].headers)
    assert r.status_code == status and field in r.get_json()["fields"], r.get_json()
    assert backend.accounts.authenticate(person[0], PASSWORD)[1] == "ok"


def test_reset_password_refuses_yourself_and_unknown_users(client, users):
    """Your own password is not reset by API (400, it would revoke the token in use); an unknown user is 404."""
    h = users["admin"].headers
    r = client.post(f"/api/v1/users/{users['admin'].username}/password", json={"password": NEW_PASSWORD}, headers=h)
    assert r.status_code == 400 and "username" in r.get_json()["fields"]
    assert _token_works(client, users["admin"].token)
    r = client.post("/api/v1/users/nobody-here/password", json={"password": NEW_PASSWORD}, headers=h)
    assert r.status_code == 404 and r.get_json()["fields"] == {"username": "does not exist"}


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/users"), ("post", "/api/v1/users/{u}/disable"), ("post", "/api/v1/users/{u}/enable"),
    ("delete", "/api/v1/users/{u}"), ("post", "/api/v1/users/{u}/password"),
])
def test_user_admin_needs_the_admin_role(client, users, backend, person, method, path):
    """Editors (and viewers) get 403 on every user-admin endpoint, and nothing changes."""
    for role in ("viewer", "editor"):
        r = getattr(client, method)(path.format(u=person[0]), json={"password": NEW_PASSWORD},
                                    headers=users[role].headers)
        assert r.status_code == 403 and r.get_json()["fields"] == {"Authorization": "needs the admin role"}
    assert backend.accounts.authenticate(person[0], PASSWORD)[1] == "ok" and _token_works(client, person[1])


def test_disabled_users_token_and_session_stop_then_list_shows_it(app, client, users, backend, person):
    """Disabling stops the user's token and session at once; GET /users shows disabled and an ISO update time."""
    name, token = person
    browser = app.test_client()
    assert _login(browser, name) == 302
    before = int(time.time())
    assert client.post(f"/api/v1/users/{name}/disable", headers=users["admin"].headers).status_code == 200
    assert not _token_works(client, token) and browser.get("/").status_code == 302
    listed = {u["username"]: u for u in client.get("/api/v1/users", headers=users["admin"].headers).get_json()["users"]}
    me = listed[name]
    assert me["disabled"] is True and me["updated_at"] >= before
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", me["updated_at_iso"])
    assert datetime.fromisoformat(me["updated_at_iso"].replace("Z", "+00:00")).timestamp() == me["updated_at"]


# ---- web UI -------------------------------------------------------------------------------------------
def test_web_delete_asks_to_confirm(app, users, backend, person):
    """The users page links to a confirmation page; a POST without the confirmation deletes nothing."""
    admin = app.test_client()
    assert _login(admin, users["admin"].username) == 302
    page = admin.get("/admin/users")
    confirm_url = f"/admin/users/{person[0]}/delete"
    assert f'href="{confirm_url}"'.encode() in page.data
    r = admin.post(confirm_url, data={"csrf_token": _csrf(page.data)})
    assert r.status_code == 302 and r.location.endswith(confirm_url)
    assert backend.accounts.get_user(person[0]) is not None
    confirm = admin.get(confirm_url)
    assert confirm.status_code == 200 and b'id="confirm-delete"' in confirm.data and b"1 API token" in confirm.data
    r = admin.post(confirm_url, data={"csrf_token": _csrf(confirm.data), "confirmed": "yes"})
    assert r.status_code == 302 and backend.accounts.get_user(person[0]) is None
    assert admin.get(f"/admin/users/{users['admin'].username}/delete").status_code == 400, "not yourself"


# ---- the last enabled admin: a Redis of its own (the session cluster holds many admins) ------------------
@pytest.fixture(scope="module")
def solo_redis():
    """(port, password): a password-protected single Redis server for this module."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    password = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--requirepass", password, "--dir", workdir],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port, password=password)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            client.close()
            yield port, password
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture()
def solo(solo_redis, admin_config):
    """(config, raw client) for an empty single Redis: each test starts without users."""
    port, password = solo_redis
    client = redis.Redis(port=port, password=password)
    client.flushall()
    yield {**admin_config, "REDIS_NODES": f"127.0.0.1:{port}", "REDIS_MODE": "single", "REDIS_PASSWORD": password,
           "AUTH_CACHE_SECONDS": 3600}, client
    client.close()


def test_last_enabled_admin_cannot_be_disabled_deleted_or_demoted(solo):
    """With one enabled admin, disable/delete/demote it raise LastAdminError and write nothing; a disabled
    second admin does not count; once another admin is enabled, it works."""
    acc = Accounts(solo[1])
    acc.create_user("root", "admin", PASSWORD)
    acc.create_user("spare", "admin", PASSWORD)
    acc.set_disabled("spare", True, "test")
    before = solo[1].hgetall("rg:users")
    for change in (lambda: acc.set_disabled("root", True, "test"), lambda: acc.delete_user("root", "test"),
                   lambda: acc.create_user("root", "editor", None, "test")):
        with pytest.raises(LastAdminError, match="last enabled admin"):
            change()
    assert solo[1].hgetall("rg:users") == before
    acc.set_disabled("spare", False, "test")
    assert acc.create_user("root", "editor", None, "test").role == "editor"
    with pytest.raises(LastAdminError):
        acc.delete_user("spare", "test")


def test_racing_admins_cannot_remove_each_other(solo):
    """Admin a (still cached as enabled on this instance) cannot delete or disable b after another instance
    disabled a: 409 naming the last enabled admin."""
    app = create_app(solo[0])
    try:
        acc, client = app.extensions["ruleadmin"].accounts, app.test_client()
        for method, path in (("delete", "/api/v1/users/b"), ("post", "/api/v1/users/b/disable")):
            solo[1].flushall()
            for name in ("a", "b"):
                acc.create_user(name, "admin", PASSWORD)
            token = acc.create_token("a", "ci")[1]
            assert _token_works(client, token)  # now cached for AUTH_CACHE_SECONDS on this instance
            Accounts(solo[1]).set_disabled("a", True, "b")  # another instance
            r = getattr(client, method)(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 409 and r.get_json()["fields"] == {"username": "the last enabled admin"}
            assert Accounts(solo[1]).get_user("b") is not None
    finally:
        app.extensions["ruleadmin"].close()


def test_cli_refuses_the_last_admin_and_bad_credentials(solo, monkeypatch, capsys):
    """`ruleadmin users disable|delete` of the last enabled admin exits 1 saying why; a wrong Redis password
    exits 1 naming the credential settings."""
    for key, value in server_env(solo[0]).items():
        if key.startswith("RULEADMIN_"):
            monkeypatch.setenv(key, value)
    Accounts(solo[1]).create_user("root", "admin", PASSWORD)
    for verb in ("disable", "delete"):
        assert main(["users", verb, "root"]) == 1
        assert "'root': it is the last enabled admin" in capsys.readouterr().err
    monkeypatch.setenv("RULEADMIN_REDIS_PASSWORD", "wrong")
    assert main(["users", "list"]) == 1
    err = capsys.readouterr().err
    assert "Redis refused the credentials" in err and "RULEADMIN_REDIS_PASSWORD" in err
    assert len(err.strip().splitlines()) == 1


def test_web_form_cannot_demote_the_last_admin(solo):
    """Saving the last enabled admin as editor on the users page is a 409 naming why; the role stays."""
    app = create_app(solo[0])
    try:
        Accounts(solo[1]).create_user("root", "admin", PASSWORD)
        browser = app.test_client()
        assert _login(browser, "root") == 302
        page = browser.get("/admin/users")
        r = browser.post("/admin/users", data={"csrf_token": _csrf(page.data), "username": "root", "role": "editor",
                                               "password": ""})
        assert r.status_code == 409 and b"last enabled admin" in r.data
        assert Accounts(solo[1]).get_user("root").role == "admin"
    finally:
        app.extensions["ruleadmin"].close()


def test_sessions_of_a_deleted_user_do_not_come_back_with_a_new_user_of_that_name(app, backend, person):
    """Deleting a user ends its sessions for good: a new user with the same name and password is not logged in
    by the old cookie."""
    browser = app.test_client()
    assert _login(browser, person[0]) == 302
    backend.accounts.delete_user(person[0], "test")
    backend.accounts.create_user(person[0], "editor", PASSWORD)
    assert browser.get("/").status_code == 302
