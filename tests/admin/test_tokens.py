"""API tokens: expiry, a role no higher than the creator's, namespace scope, listing, revoking, last use."""
from __future__ import annotations

import re
import time
import uuid

import pytest

from ruleadmin.accounts import Accounts
from ruleadmin.tokens import USED_KEY, token_hash

from .conftest import PASSWORD, split_rule

pytestmark = pytest.mark.integration


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def editor(backend) -> str:
    """A fresh editor."""
    name = "tk-" + uuid.uuid4().hex[:8]
    backend.accounts.create_user(name, "editor", PASSWORD)
    return name


def _create(client, creator_token: str, **body):
    return client.post("/api/v1/tokens", json=body, headers=_h(creator_token))


def test_token_expires(client, backend, editor):
    """A token stops working once its expiry has passed (and says so in the list)."""
    past = Accounts(backend.accounts.client, auth_cache_seconds=0, clock=lambda: time.time() - 120)
    token_id, token = past.create_token(editor, "short", expires_in=60)
    r = client.get("/api/v1/whoami", headers=_h(token))
    assert r.status_code == 401 and "expired" in r.get_json()["error"]
    assert backend.accounts.list_tokens(editor)[token_id]["expired"] is True
    _id, fresh = backend.accounts.create_token(editor, "fresh", expires_in=3600)
    body = client.get("/api/v1/whoami", headers=_h(fresh)).get_json()
    assert 3500 < body["expires_at"] - time.time() <= 3600


def test_tokens_expire_by_default_at_the_maximum_lifetime(client, app, backend, editor, users):
    """Without expires_in a token lives TOKEN_MAX_LIFETIME_SECONDS; a longer expires_in is a field error."""
    limit = app.config["TOKEN_MAX_LIFETIME_SECONDS"]
    r = _create(client, users["admin"].token, username=editor)
    record = backend.accounts.list_tokens(editor)[r.get_json()["id"]]
    assert record["expires_at"] - record["created_at"] == limit
    r = _create(client, users["admin"].token, username=editor, expires_in=limit + 1)
    assert r.status_code == 400 and "expires_in" in r.get_json()["fields"]


def test_role_is_capped_by_user_and_creator(client, backend, editor, users):
    """A token's role never exceeds its user's role nor the creating token's role."""
    admin = users["admin"].token
    assert _create(client, admin, username=editor, role="admin").get_json()["fields"] == {
        "role": "role must not exceed editor"}
    viewer_token = _create(client, admin, username=editor, role="viewer").get_json()["token"]
    assert client.get("/api/v1/whoami", headers=_h(viewer_token)).get_json()["role"] == "viewer"
    r = _create(client, viewer_token, role="editor")
    assert r.status_code == 400 and "role" in r.get_json()["fields"]
    own = _create(client, viewer_token, name="ci").get_json()["token"]
    assert client.get("/api/v1/whoami", headers=_h(own)).get_json()["role"] == "viewer"


def test_only_unscoped_admins_create_tokens_for_others(client, editor, users):
    """An editor creates tokens for itself only; creating one for someone else is refused."""
    own = _create(client, users["admin"].token, username=editor).get_json()["token"]
    r = _create(client, own, username=users["viewer"].username)
    assert r.status_code == 400 and "username" in r.get_json()["fields"]


def test_namespace_scope(client, backend, editor, users, ns):
    """A scoped token reaches only its namespaces: others are 403 naming the namespace, lists are filtered,
    global admin calls need an unscoped token, and tokens it creates stay inside its scope."""
    other = "t" + uuid.uuid4().hex[:12]
    backend.rules.create_namespace(other)
    token = _create(client, users["admin"].token, username=editor, namespaces=[ns]).get_json()["token"]
    assert client.put(f"/api/v1/namespaces/{ns}/rules/web", json=split_rule("web"), headers=_h(token)).status_code == 201
    r = client.get(f"/api/v1/namespaces/{other}/rules", headers=_h(token))
    assert r.status_code == 403 and r.get_json()["fields"] == {"namespace": "outside the token's namespaces"}
    names = [n["name"] for n in client.get("/api/v1/namespaces", headers=_h(token)).get_json()["namespaces"]]
    assert names == [ns]
    r = _create(client, token, namespaces=[ns, other])
    assert r.status_code == 400 and "namespaces" in r.get_json()["fields"]
    child = _create(client, token, role="viewer").get_json()["token"]
    assert client.get("/api/v1/whoami", headers=_h(child)).get_json()["namespaces"] == [ns]
    scoped_admin = _create(client, users["admin"].token, namespaces=[ns]).get_json()["token"]
    r = client.post("/api/v1/namespaces", json={"name": "t" + uuid.uuid4().hex[:12]}, headers=_h(scoped_admin))
    assert r.status_code == 403 and "Authorization" in r.get_json()["fields"]
    assert client.get("/api/v1/audit", headers=_h(scoped_admin)).status_code == 403


def test_list_and_revoke_over_rest(client, backend, editor, users):
    """Admins list every token, users their own; users revoke their own tokens only."""
    mine = _create(client, users["admin"].token, username=editor, name="mine").get_json()
    listed = client.get("/api/v1/tokens", headers=_h(mine["token"])).get_json()["tokens"]
    assert [t["id"] for t in listed] == [mine["id"]] and listed[0]["name"] == "mine"
    assert "token" not in listed[0] and listed[0]["created_by"] == users["admin"].username
    everyone = client.get("/api/v1/tokens", headers=users["admin"].headers).get_json()["tokens"]
    assert {mine["id"], users["viewer"].token_id} <= {t["id"] for t in everyone}
    r = client.delete(f"/api/v1/tokens/{users['viewer'].token_id}", headers=_h(mine["token"]))
    assert r.status_code == 403 and "token_id" in r.get_json()["fields"]
    assert client.delete(f"/api/v1/tokens/{mine['id']}", headers=_h(mine["token"])).status_code == 200
    assert client.get("/api/v1/whoami", headers=_h(mine["token"])).status_code == 401


def test_last_use_is_recorded_at_most_once_a_minute(client, backend, editor):
    """The first use stamps last_used_at; further uses within a minute do not write again."""
    token_id, token = backend.accounts.create_token(editor, "stamp")
    assert backend.accounts.list_tokens(editor)[token_id]["last_used_at"] is None
    assert client.get("/api/v1/whoami", headers=_h(token)).status_code == 200
    stamped = backend.accounts.list_tokens(editor)[token_id]["last_used_at"]
    assert abs(stamped - time.time()) < 5
    backend.store.client.hset(USED_KEY, token_hash(token), 1)
    for _ in range(3):
        client.get("/api/v1/whoami", headers=_h(token))
    assert backend.accounts.list_tokens(editor)[token_id]["last_used_at"] == 1


def test_tokens_in_the_web_ui(client, backend, editor, users):
    """The users page creates a scoped, expiring, lower-role token and shows role, scope, expiry and last use."""
    page = client.get("/login")
    csrf = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    client.post("/login", data={"username": users["admin"].username, "password": PASSWORD, "csrf_token": csrf})
    page = client.get("/admin/users")
    csrf = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    r = client.post("/admin/tokens", data={"csrf_token": csrf, "username": editor, "name": "ui", "role": "viewer",
                                           "namespaces": "prod, stage", "expires_days": "7"})
    token = re.search(rb'id="new-token">([^<]+)<', r.data).group(1).decode()
    user = backend.accounts.user_for_token(token)
    assert user.role == "viewer" and user.namespaces == {"prod", "stage"}
    assert 7 * 86400 - 60 < user.expires_at - time.time() <= 7 * 86400
    row = re.search(rf'<tr id="token-{user.token_id}">.*?</tr>'.encode(), client.get("/admin/users").data, re.S).group(0)
    assert b"prod, stage" in row and b"viewer" in row and b"UTC" in row
    r = client.post("/admin/tokens", data={"csrf_token": csrf, "username": editor, "role": "admin"})
    assert r.status_code == 400 and b"must not exceed editor" in r.data
