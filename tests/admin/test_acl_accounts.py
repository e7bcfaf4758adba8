"""Account features under the least-privilege Redis user: ruleadmin as rg-admin logs in (throttle), changes
users (the session-version script), creates, uses, lists and revokes tokens, and pages the audit trail."""
from __future__ import annotations

import re

import pytest

from ruleadmin import create_app
from rulegate_dev.acl import ADMIN_USER

from .conftest import PASSWORD

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def acl_app(acl_cluster, admin_config):
    """An app connected as rg-admin to a cluster that runs the rulegate ACL users (default user off)."""
    cluster, users = acl_cluster
    app = create_app({**admin_config, "REDIS_NODES": ",".join(cluster.startup_nodes), "REDIS_USERNAME": ADMIN_USER,
                      "REDIS_PASSWORD": users.admin_password})
    yield app
    app.extensions["ruleadmin"].close()


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def test_accounts_work_as_rg_admin(acl_app):
    """Every account operation uses only commands and keys the rg-admin ACL allows."""
    acc = acl_app.extensions["ruleadmin"].accounts
    acc.create_user("alice", "admin", PASSWORD)
    acc.create_user("bob", "editor", PASSWORD)
    client = acl_app.test_client()
    page = client.get("/login")
    assert client.post("/login", data={"username": "bob", "password": "wrong-password",
                                       "csrf_token": _csrf(page.data)}).status_code == 401
    assert client.post("/login", data={"username": "alice", "password": PASSWORD,
                                       "csrf_token": _csrf(page.data)}).status_code == 302
    _id, token = acc.create_token("alice", "ci")
    h = {"Authorization": f"Bearer {token}"}
    r = client.post("/api/v1/tokens", json={"username": "bob", "role": "viewer", "namespaces": ["prod"],
                                            "expires_in": 3600}, headers=h)
    assert r.status_code == 201, r.get_json()
    assert client.get("/api/v1/tokens", headers=h).status_code == 200
    assert client.delete(f"/api/v1/tokens/{r.get_json()['id']}", headers=h).status_code == 200
    assert client.post("/api/v1/users/bob/disable", headers=h).status_code == 200
    assert client.post("/api/v1/users/bob/enable", headers=h).status_code == 200
    assert client.get("/api/v1/audit?limit=5", headers=h).status_code == 200
    assert client.post("/logout", data={"csrf_token": _csrf(client.get("/").data)}).status_code == 302
    assert client.delete("/api/v1/users/bob", headers=h).status_code == 200
