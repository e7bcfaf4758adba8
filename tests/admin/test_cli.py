"""The ruleadmin CLI against the real cluster: users, tokens (scope, role, expiry), serve checks."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from .conftest import ROOT, server_env

pytestmark = pytest.mark.integration


def _run(env, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "ruleadmin.cli", *args], input=stdin, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_create_user_and_token_then_revoke(admin_config, backend):
    """create-user reads the password from stdin; create-token prints a working token; revoke-token kills it."""
    env = server_env(admin_config)
    name = "cli-" + uuid.uuid4().hex[:6]
    r = _run(env, "create-user", "--username", name, "--role", "editor", "--password-stdin", stdin="a-long-password\n")
    assert r.returncode == 0, r.stderr
    user, outcome = backend.accounts.authenticate(name, "a-long-password")
    assert outcome == "ok" and user.role == "editor"
    r = _run(env, "create-token", "--username", name)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert backend.accounts.user_for_token(token).username == name
    token_id = r.stderr.split("token id ")[1].split()[0]
    assert _run(env, "revoke-token", "--id", token_id).returncode == 0
    backend.accounts.forget_cached()  # another process revoked it: this instance would see it within the TTL
    assert backend.accounts.user_for_token(token) is None


def test_create_user_rejects_bad_input(admin_config):
    """A short password or bad role exits non-zero with a message."""
    env = server_env(admin_config)
    r = _run(env, "create-user", "--username", "x" + uuid.uuid4().hex[:5], "--role", "editor", "--password-stdin",
             stdin="short\n")
    assert r.returncode == 1 and "at least 8" in r.stderr


def test_serve_refuses_without_secret_key(admin_config):
    """`ruleadmin serve` exits with a clear message when RULEADMIN_SECRET_KEY is missing."""
    env = server_env(admin_config)
    del env["RULEADMIN_SECRET_KEY"]
    r = _run(env, "serve", "--bind", "127.0.0.1:0")
    assert r.returncode == 2 and "RULEADMIN_SECRET_KEY is not set" in r.stderr


def test_disable_enable_delete_and_list_users(admin_config, backend):
    """disable-user ends access (tokens revoked), enable-user restores login, delete-user removes the user."""
    env = server_env(admin_config)
    name = "cli-" + uuid.uuid4().hex[:6]
    backend.accounts.create_user(name, "viewer", "a-long-password")
    _token_id, token = backend.accounts.create_token(name, "ci")
    assert _run(env, "disable-user", "--username", name).returncode == 0
    backend.accounts.forget_cached()
    assert backend.accounts.user_for_token(token) is None and backend.accounts.list_tokens(name) == {}
    assert backend.accounts.authenticate(name, "a-long-password") == (None, "disabled")
    listed = [json.loads(line) for line in _run(env, "list-users").stdout.splitlines()]
    assert {"username": name, "role": "viewer", "disabled": True} in [
        {k: u[k] for k in ("username", "role", "disabled")} for u in listed]
    assert _run(env, "enable-user", "--username", name).returncode == 0
    backend.accounts.forget_cached()
    assert backend.accounts.authenticate(name, "a-long-password")[1] == "ok"
    assert _run(env, "delete-user", "--username", name).returncode == 0
    backend.accounts.forget_cached()
    assert backend.accounts.get_user(name) is None
    r = _run(env, "disable-user", "--username", name)
    assert r.returncode == 1 and "no user" in r.stderr


def test_create_token_with_role_scope_and_expiry_then_list(admin_config, backend):
    """create-token --role --namespaces --expires-in makes a capped, scoped, expiring token; list-tokens shows it."""
    env = server_env(admin_config)
    name = "cli-" + uuid.uuid4().hex[:6]
    backend.accounts.create_user(name, "editor", "a-long-password")
    r = _run(env, "create-token", "--username", name, "--role", "viewer", "--namespaces", "prod,stage",
             "--expires-in", "2h")
    assert r.returncode == 0, r.stderr
    user = backend.accounts.user_for_token(r.stdout.strip())
    assert user.role == "viewer" and user.namespaces == {"prod", "stage"}
    records = [json.loads(line) for line in _run(env, "list-tokens", "--username", name).stdout.splitlines()]
    assert len(records) == 1 and records[0]["namespaces"] == ["prod", "stage"] and records[0]["role"] == "viewer"
    assert 7100 < records[0]["expires_at"] - records[0]["created_at"] <= 7200
    r = _run(env, "create-token", "--username", name, "--role", "admin")
    assert r.returncode == 1 and "must not exceed editor" in r.stderr
    assert _run(env, "create-token", "--username", name, "--expires-in", "soon").returncode == 2
