"""The ruleadmin CLI against the real cluster: users, tokens (scope, role, expiry), serve checks.
Commands run in-process through `main()` with the RULEADMIN_* environment (argument errors without Redis,
and the traceback checks in a subprocess, are in tests/unit/test_ruleadmin_cli.py)."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import uuid

import msgpack
import pytest

from ruleadmin.cli import main
from rulegate.schema import encode_rule, validate_rule

from .conftest import ROOT, server_env

pytestmark = pytest.mark.integration


@pytest.fixture()
def cli(monkeypatch, capsys, admin_config):
    """A function running `ruleadmin *args` in-process with the test config: returns (status, stdout, stderr)."""
    for key, value in server_env(admin_config).items():
        if key.startswith("RULEADMIN_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("RULEADMIN_USER_PASSWORD", raising=False)

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = main(list(args))
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def test_create_user_and_token_then_revoke(cli, backend):
    """create-user reads the password from stdin; create-token prints a working token; revoke-token kills it."""
    name = "cli-" + uuid.uuid4().hex[:6]
    status, _out, err = cli("create-user", "--username", name, "--role", "editor", "--password-stdin",
                            stdin="a-long-password\n")
    assert status == 0, err
    user, outcome = backend.accounts.authenticate(name, "a-long-password")
    assert outcome == "ok" and user.role == "editor"
    status, out, err = cli("create-token", "--username", name)
    assert status == 0, err
    token = out.strip()
    assert backend.accounts.user_for_token(token).username == name
    token_id = err.split("token id ")[1].split()[0]
    assert cli("revoke-token", "--id", token_id)[0] == 0
    backend.accounts.forget_cached()  # another app revoked it: this instance would see it within the TTL
    assert backend.accounts.user_for_token(token) is None
    status, _out, err = cli("revoke-token", "--id", token_id)
    assert status == 1 and f"no token with id {token_id}" in err


def test_create_user_rejects_bad_input(cli):
    """A short password is bad input: exit 2 with one line saying why."""
    status, _out, err = cli("create-user", "--username", "x" + uuid.uuid4().hex[:5], "--role", "editor",
                            "--password-stdin", stdin="short\n")
    assert status == 2 and "at least 8" in err and len(err.strip().splitlines()) == 1


def test_create_user_takes_the_password_from_the_environment(cli, backend, monkeypatch):
    """Without --password-stdin, RULEADMIN_USER_PASSWORD gives the password."""
    name = "cli-" + uuid.uuid4().hex[:6]
    monkeypatch.setenv("RULEADMIN_USER_PASSWORD", "from-the-environment")
    assert cli("create-user", "--username", name, "--role", "viewer")[0] == 0
    assert backend.accounts.authenticate(name, "from-the-environment")[1] == "ok"


def test_serve_refuses_without_secret_key(admin_config):
    """`ruleadmin serve` exits with a clear message when RULEADMIN_SECRET_KEY is missing."""
    env = server_env(admin_config)
    del env["RULEADMIN_SECRET_KEY"]
    r = subprocess.run([sys.executable, "-m", "ruleadmin.cli", "serve", "--bind", "127.0.0.1:0"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "RULEADMIN_SECRET_KEY is not set" in r.stderr


def test_disable_enable_delete_and_list_users(cli, backend):
    """disable-user ends access (tokens revoked), enable-user restores login, delete-user removes the user."""
    name = "cli-" + uuid.uuid4().hex[:6]
    backend.accounts.create_user(name, "viewer", "a-long-password")
    _token_id, token = backend.accounts.create_token(name, "ci")
    assert cli("disable-user", "--username", name)[0] == 0
    backend.accounts.forget_cached()
    assert backend.accounts.user_for_token(token) is None and backend.accounts.list_tokens(name) == {}
    assert backend.accounts.authenticate(name, "a-long-password") == (None, "disabled")
    listed = [json.loads(line) for line in cli("list-users")[1].splitlines()]
    assert {"username": name, "role": "viewer", "disabled": True} in [
        {k: u[k] for k in ("username", "role", "disabled")} for u in listed]
    assert cli("enable-user", "--username", name)[0] == 0
    backend.accounts.forget_cached()
    assert backend.accounts.authenticate(name, "a-long-password")[1] == "ok"
    assert cli("delete-user", "--username", name)[0] == 0
    backend.accounts.forget_cached()
    assert backend.accounts.get_user(name) is None
    status, _out, err = cli("disable-user", "--username", name)
    assert status == 1 and "no user" in err


def test_users_commands_list_disable_enable_reset_delete(cli, backend):
    """`users list` shows name, role, disabled and the ISO 8601 UTC update time; disable, enable,
    reset-password (ends sessions and tokens) and delete work by name and are audited."""
    name = "cli-" + uuid.uuid4().hex[:6]
    backend.accounts.create_user(name, "editor", "a-long-password")
    assert cli("users", "disable", name)[0] == 0
    status, out, _err = cli("users", "list")
    assert status == 0 and out.splitlines()[0].split() == ["USERNAME", "ROLE", "DISABLED", "UPDATED"]
    row = next(line for line in out.splitlines() if line.startswith(name + " "))
    assert re.fullmatch(rf"{name}\s+editor\s+yes\s+\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row), row
    listed = [json.loads(line) for line in cli("users", "list", "--json")[1].splitlines()]
    assert any(u["username"] == name and u["disabled"] and u["updated_at"].endswith("Z") for u in listed)
    assert cli("users", "enable", name)[0] == 0
    backend.accounts.forget_cached()
    version = backend.accounts.user_state(name).session_version
    _id, token = backend.accounts.create_token(name, "ci")
    status, _out, err = cli("users", "reset-password", name, "--password-stdin", stdin="another-long-password\n")
    assert status == 0, err
    backend.accounts.forget_cached()
    assert backend.accounts.user_for_token(token) is None and backend.accounts.session_user(name, version) is None
    assert backend.accounts.authenticate(name, "another-long-password")[1] == "ok"
    assert cli("users", "delete", name)[0] == 0
    backend.accounts.forget_cached()
    assert backend.accounts.user_state(name) is None
    events = {e["event"] for e in backend.accounts.recent_audit(50) if e["subject"] == name}
    assert {"user.disabled", "user.enabled", "user.password_reset", "user.deleted"} <= events
    status, _out, err = cli("users", "reset-password", name, "--password-stdin", stdin="another-long-password\n")
    assert status == 1 and f"no user {name}" in err


def test_create_token_with_role_scope_and_expiry_then_list(cli, backend):
    """create-token --role --namespaces --expires-in makes a capped, scoped, expiring token; list-tokens shows it."""
    name = "cli-" + uuid.uuid4().hex[:6]
    backend.accounts.create_user(name, "editor", "a-long-password")
    status, out, err = cli("create-token", "--username", name, "--role", "viewer", "--namespaces", "prod,stage",
                           "--expires-in", "2h")
    assert status == 0, err
    user = backend.accounts.user_for_token(out.strip())
    assert user.role == "viewer" and user.namespaces == {"prod", "stage"}
    records = [json.loads(line) for line in cli("list-tokens", "--username", name)[1].splitlines()]
    assert len(records) == 1 and records[0]["namespaces"] == ["prod", "stage"] and records[0]["role"] == "viewer"
    assert 7100 < records[0]["expires_at"] - records[0]["created_at"] <= 7200
    status, _out, err = cli("create-token", "--username", name, "--role", "admin")
    assert status == 2 and "--role: role must not exceed editor" in err
    with pytest.raises(SystemExit) as exc:
        cli("create-token", "--username", name, "--expires-in", "soon")
    assert exc.value.code == 2


def test_create_namespace_by_argument_or_flag(cli, backend):
    """create-namespace NAME and --name NAME both work; a second time says it exists."""
    name = "cli" + uuid.uuid4().hex[:8]
    assert cli("create-namespace", name) == (0, f"namespace {name} created\n", "")
    assert cli("create-namespace", "--name", name) == (0, f"namespace {name} already exists\n", "")


def old_cidr_rule(rule_id: str) -> dict:
    """An ip_cidr rule as an older ruleadmin stored it: a bare address and a netmask, not address/prefix."""
    return {"id": rule_id, "kind": "split", "route": {"host": "shop.example.com", "path": "/"},
            "key": {"source": "header", "name": "x-uid"}, "default": "stable",
            "policies": [{"type": "ip_cidr", "cidrs": ["10.1.2.3", "10.2.0.0/255.255.0.0"], "upstream": "canary"}]}


def store_as_written(backend, ns: str, rules: dict[str, bytes]) -> int:
    """Commit stored bytes exactly as given (what an older ruleadmin wrote); return the revision."""
    return backend.store.commit(ns, list(rules.items()), None, "old-admin", op="put").revision


def test_canonicalize_rewrites_old_forms_once_and_reports_what_it_cannot(cli, backend, ns):
    """--dry-run changes nothing; the run rewrites each non-canonical rule to this ruleadmin's bytes in one
    commit (op canonicalize), leaves canonical ones alone, reports an invalid rule and exits 1; a second run
    finds nothing left but the invalid rule."""
    canonical = encode_rule(validate_rule(old_cidr_rule("ok")))
    old = encode_rule(old_cidr_rule("old"))
    assert old != encode_rule(validate_rule(old_cidr_rule("old")))
    rev = store_as_written(backend, ns, {"a-broken": msgpack.packb({"id": "a-broken", "kind": "nope"}),
                                         "old": old, "ok": canonical})
    status, out, err = cli("canonicalize", "--namespace", ns, "--dry-run")
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 1 and [(x["rule_id"], x["status"]) for x in lines] == [("a-broken", "invalid"),
                                                                            ("old", "would rewrite")]
    assert "kind" in lines[0]["error"] and "1 invalid, 1 would rewrite" in err
    assert backend.store.revision(ns) == rev

    status, out, err = cli("canonicalize", "--namespace", ns)
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 1 and [(x["rule_id"], x["status"]) for x in lines] == [("a-broken", "invalid"),
                                                                            ("old", "rewritten")]
    assert lines[1]["revision"] == rev + 1 == backend.store.revision(ns)
    raw = backend.store.load_raw(ns).raw
    assert raw["old"] == encode_rule(validate_rule(old_cidr_rule("old"))) and raw["ok"] == canonical
    entry = backend.store.history(ns, None, 1)[0]
    assert entry.op == "canonicalize" and entry.actor.startswith("cli")

    status, out, _err = cli("canonicalize", "--namespace", ns)
    assert status == 1 and [json.loads(line)["rule_id"] for line in out.splitlines()] == ["a-broken"]
    assert backend.store.revision(ns) == rev + 1


def test_canonicalize_leaves_a_rule_edited_meanwhile_alone(backend, ns):
    """A rule changed between the read and the commit is reported and kept as edited; the others are rewritten."""
    from ruleadmin.canonicalize import canonicalize
    store_as_written(backend, ns, {"a-broken": b"\xc1", "edited": encode_rule(old_cidr_rule("edited")),
                                   "old": encode_rule(old_cidr_rule("old"))})
    run = canonicalize(backend.store, [ns], "test")
    assert next(run).status == "invalid"  # the read is done, the commit not yet
    edit = validate_rule({**old_cidr_rule("edited"), "default": "other"})
    backend.store.put_rule(ns, edit, None, "someone")
    assert [(f.rule_id, f.status) for f in run] == [("edited", "changed meanwhile"), ("old", "rewritten")]
    raw = backend.store.load_raw(ns).raw
    assert raw["edited"] == encode_rule(edit) and raw["old"] == encode_rule(validate_rule(old_cidr_rule("old")))
