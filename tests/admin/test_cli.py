"""The ruleadmin CLI against the real cluster: create-user, create-token, revoke-token, serve checks."""
from __future__ import annotations

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
    assert backend.accounts.authenticate(name, "a-long-password", "127.0.0.9").role == "editor"
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
