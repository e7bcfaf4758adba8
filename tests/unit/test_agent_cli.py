"""The gateway-agent command line: bad input is one line naming the flag or variable and exit status 2 (never a
traceback), every option's help gives its default or says it is required and names its environment variable."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway_agent.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
BASE = ["serve", "--redis-nodes", "127.0.0.1:7000", "--namespace", "prod"]


def _agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RULEGATE_")}
    return subprocess.run([sys.executable, "-m", "gateway_agent", *args], env={**environ, **(env or {})}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _parse_error(capsys, argv: list[str], environ: dict[str, str] | None = None) -> str:
    """Parse argv (with only `environ` as the environment); return stderr after the expected exit 2."""
    parser = build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():
        sub.environ = environ or {}
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_listen_nonsense_names_listen():
    """`--listen nonsense` exits 2 with one line naming --listen (it used to blame a Redis node address)."""
    r = _agent(*BASE, "--listen", "nonsense")
    assert r.returncode == 2
    assert "--listen" in r.stderr and "'nonsense' is not host:port" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, named", [
    (["--namespace", "Bad Name!"], "--namespace"),
    (["--redis-nodes", "10.0.0.1"], "--redis-nodes"),
    (["--refresh-interval", "0"], "--refresh-interval"),
    (["--max-stale", "soon"], "--max-stale"),
    (["--max-body", "1.5"], "--max-body"),
    (["--max-connections", "-3"], "--max-connections"),
    (["--idle-timeout", "nan"], "--idle-timeout"),
    (["--log-level", "loud"], "--log-level"),
])
def test_bad_values_name_their_flag(capsys, args, named):
    """Each bad value is refused while parsing, with a message naming its flag."""
    err = _parse_error(capsys, BASE + args)
    assert f"argument {named}:" in err and len(err.strip().splitlines()) == 1


def test_log_level_is_checked_before_logging_starts():
    """A bad --log-level is a usage error, not a traceback from logging.basicConfig."""
    r = _agent(*BASE, "--log-level", "loud")
    assert r.returncode == 2 and "--log-level" in r.stderr and "Traceback" not in r.stderr


def test_environment_gives_options_and_bad_values_name_the_variable(capsys):
    """RULEGATE_* variables stand in for flags; a bad one is named; a flag wins over its variable."""
    parser = build_parser()
    env = {"RULEGATE_REDIS_NODES": "10.0.0.1:7000,10.0.0.2:7000", "RULEGATE_NAMESPACE": "prod",
           "RULEGATE_MAX_STALE": "12.5", "RULEGATE_TLS": "true", "RULEGATE_LISTEN": "0.0.0.0:9999"}
    parser._subparsers._group_actions[0].choices["serve"].environ = env
    args = parser.parse_args(["serve", "--listen", "127.0.0.1:9001"])
    assert (args.redis_nodes, args.namespace, args.max_stale, args.tls, args.listen) == (
        "10.0.0.1:7000,10.0.0.2:7000", "prod", 12.5, True, "127.0.0.1:9001")
    assert args.refresh_interval == 1.0 and args.max_body == 65536, "unset: the documented defaults"
    assert build_parser().parse_args(["serve", "--redis-nodes", "h:1", "--namespace", "n"]).tls is False
    err = _parse_error(capsys, ["serve", "--namespace", "prod"], {"RULEGATE_REDIS_NODES": "nowhere"})
    assert "RULEGATE_REDIS_NODES" in err and "'nowhere' is not host:port" in err
    err = _parse_error(capsys, ["serve", "--namespace", "prod"])
    assert "--redis-nodes (or environment variable RULEGATE_REDIS_NODES)" in err


def test_unreadable_password_file_is_a_usage_error(tmp_path):
    """A missing --redis-password-file exits 2 naming the flag and the file."""
    r = _agent(*BASE, "--redis-password-file", str(tmp_path / "missing"))
    assert r.returncode == 2 and "--redis-password-file" in r.stderr and "No such file" in r.stderr
    assert "Traceback" not in r.stderr


def test_listen_address_in_use_exits_1():
    """A taken listen address exits 1 with one message naming it, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _agent(*BASE, "--redis-nodes", "127.0.0.1:1", "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 1, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


def test_help_gives_units_defaults_and_variables():
    """serve --help: a description, and every option says its default (or required) and its variable."""
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    assert serve.description
    for action in serve._actions:
        if action.dest in ("help", "upstreams"):
            continue
        assert "env RULEGATE_" in action.help and ("default: " in action.help or "required" in action.help), \
            action.dest
    text = serve.format_help()
    for unit in ("SECONDS", "BYTES", "RULEGATE_UPSTREAMS", "exit status"):
        assert unit in text
