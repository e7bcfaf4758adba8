"""The ruleadmin command line without Redis: bad input is one line naming the argument and exit status 2 (never a
traceback); every command's help has a description, and every option says its default or that it is required."""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ruleadmin.cli import _parser, main

ROOT = Path(__file__).resolve().parents[2]


def _ruleadmin(*args: str, env: dict[str, str] | None = None, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RULEADMIN_")}
    return subprocess.run([sys.executable, "-m", "ruleadmin.cli", *args], env={**environ, **(env or {})}, cwd=ROOT,
                          stdin=stdin, capture_output=True, text=True, timeout=60)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, named", [
    (["create-namespace", "--name", "Bad Name!"], "argument --name: 'Bad Name!' is not a valid namespace name"),
    (["create-namespace", "Bad Name!"], "argument NAME: 'Bad Name!' is not a valid namespace name"),
    (["create-user", "--username", "Bob!", "--role", "admin"], "argument --username: 'Bob!' is not a valid"),
    (["create-user", "--username", "bob", "--role", "root"], "argument --role: invalid choice: 'root'"),
    (["users", "disable", "Bob Smith"], "argument USERNAME: 'Bob Smith' is not a valid username"),
    (["users", "frobnicate"], "argument ACTION: invalid choice: 'frobnicate'"),
    (["create-token", "--username", "bob", "--expires-in", "soon"], "argument --expires-in: 'soon' is not a duration"),
    (["serve", "--workers", "0"], "argument --workers: '0' must be above 0"),
    (["serve", "--worker-connections", "many"], "argument --worker-connections: 'many' is not a whole number"),
])
def test_bad_arguments_exit_2_naming_the_argument(capsys, argv, named):
    """Bad values exit 2 with one line on stderr naming the argument."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and named in err and len(err.strip().splitlines()) == 1, err


def test_create_namespace_name_given_once(capsys):
    """create-namespace takes NAME or --name, not neither, not two different ones."""
    for argv, text in ((["create-namespace"], "required: NAME (or --name)"),
                       (["create-namespace", "a", "--name", "b"], "give the namespace once")):
        assert main(argv) == 2
        assert text in capsys.readouterr().err


def test_create_namespace_bad_name_is_no_traceback():
    """`ruleadmin create-namespace --name 'Bad Name!'` (a traceback before) exits 2 naming --name."""
    r = _ruleadmin("create-namespace", "--name", "Bad Name!")
    assert r.returncode == 2 and "--name" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("argv", [["create-user", "--username", "bob", "--role", "viewer"],
                                  ["users", "reset-password", "bob"]])
def test_password_without_terminal_or_source_exits_2(argv):
    """Without a terminal, --password-stdin or $RULEADMIN_USER_PASSWORD the command says how to give one
    (it used to die in getpass with an EOFError traceback)."""
    r = _ruleadmin(*argv, env={"RULEADMIN_REDIS_NODES": f"127.0.0.1:{_closed_port()}"})
    assert r.returncode == 2, r.stderr
    assert "--password-stdin" in r.stderr and "RULEADMIN_USER_PASSWORD" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_redis_unreachable_is_one_line_exit_1():
    """A Redis nobody listens on is exit 1 with a message naming RULEADMIN_REDIS_NODES."""
    port = _closed_port()
    for mode in ("auto", "single"):
        r = _ruleadmin("users", "list", env={"RULEADMIN_REDIS_NODES": f"127.0.0.1:{port}",
                                             "RULEADMIN_REDIS_MODE": mode})
        assert r.returncode == 1, (mode, r.stderr)
        assert "RULEADMIN_REDIS_NODES" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("name, value, text", [
    ("RULEADMIN_WAIT_REPLICAS", "-1", "RULEADMIN_WAIT_REPLICAS must be an integer >= 0"),
    ("RULEADMIN_REDIS_NODES", "nowhere", "bad Redis node address 'nowhere'; expected host:port (check the RULEADMIN_"),
])
def test_bad_setting_is_exit_2_naming_it(monkeypatch, capsys, name, value, text):
    """An unusable RULEADMIN_* setting is exit 2 with one line naming it."""
    for key in [k for k in os.environ if k.startswith("RULEADMIN_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(name, value)
    assert main(["users", "list"]) == 2
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1, err


def _commands(parser: argparse.ArgumentParser, path: str = "ruleadmin"):
    """Yield (name, parser) for the parser and every subcommand, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}")


def test_every_command_and_option_is_described():
    """Every command has a description; every option a help text with its default or 'required', serve's
    options their variable; the epilog lists the Redis variables and the exit statuses."""
    seen = 0
    for name, parser in _commands(_parser()):
        assert parser.description, name
        assert "RULEADMIN_REDIS_NODES" in parser.format_help() and "exit status" in parser.format_help(), name
        for action in parser._actions:
            if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
                continue
            seen += 1
            assert action.help, (name, action.dest)
            if action.option_strings and not isinstance(action, argparse._StoreTrueAction):
                assert "default" in action.help or "required" in action.help, (name, action.dest, action.help)
            if name == "ruleadmin serve":
                assert "env RULEADMIN_" in action.help, action.dest
    assert seen > 20
    serve = dict(_commands(_parser()))["ruleadmin serve"].format_help()
    assert "SECONDS" in serve and "RULEADMIN_WORKER_TIMEOUT" in serve


def test_serve_runs_gunicorn_without_the_shared_control_socket(monkeypatch):
    """Every gunicorn >= 24 on a host opens ~/.gunicorn/gunicorn.ctl unless told not to: two admins (or the test
    suite's many) would fight over it. serve() execs gunicorn with --no-control-socket when it knows the flag."""
    import ruleadmin.cli as cli

    seen: list[list[str]] = []
    monkeypatch.setenv("RULEADMIN_SECRET_KEY", "x" * 32)
    monkeypatch.setattr(cli.os, "execv", lambda _exe, argv: seen.append(argv))
    cli.serve(argparse.Namespace(workers=1, worker_connections=10, bind="127.0.0.1:1", timeout=5, access_log=None))
    assert "--no-control-socket" in seen[0] and seen[0][-1] == "ruleadmin.wsgi:app"
