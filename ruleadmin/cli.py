"""`ruleadmin` command line: serve (gunicorn + gevent workers), users, tokens and namespaces."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import secrets
import sys

from rulegate.errors import StoreError

from .config import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ruleadmin", description="rulegate admin (config from RULEADMIN_* env)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the admin under gunicorn with gevent workers")
    s.add_argument("--bind", default="127.0.0.1:8081")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--worker-connections", type=int, default=200)
    s.add_argument("--timeout", type=int, default=30)
    s.add_argument("--access-log", default=None, help="file or '-' for stdout (default: off)")
    u = sub.add_parser("create-user", help="create or update a user")
    u.add_argument("--username", required=True)
    u.add_argument("--role", required=True, choices=("viewer", "editor", "admin"))
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    for verb, text in (("disable", "disable a user: ends its sessions, revokes its tokens"),
                       ("enable", "enable a disabled user"), ("delete", "delete a user and its tokens")):
        sub.add_parser(f"{verb}-user", help=text).add_argument("--username", required=True)
    sub.add_parser("list-users", help="print every user as JSON lines")
    t = sub.add_parser("create-token", help="create an API token and print it once")
    t.add_argument("--username", required=True)
    t.add_argument("--name", default="")
    t.add_argument("--role", choices=("viewer", "editor", "admin"), help="at most the user's role (default)")
    t.add_argument("--namespaces", help="comma-separated namespaces the token may reach (default: all)")
    t.add_argument("--expires-in", type=duration, help="e.g. 3600, 90m, 12h, 30d (default and maximum: "
                                                      "RULEADMIN_TOKEN_MAX_LIFETIME_SECONDS)")
    lt = sub.add_parser("list-tokens", help="print tokens (never their secrets) as JSON lines")
    lt.add_argument("--username")
    r = sub.add_parser("revoke-token", help="revoke an API token by id")
    r.add_argument("--id", required=True)
    n = sub.add_parser("create-namespace", help="create a namespace")
    n.add_argument("--name", required=True)
    return p


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int:
    """Return seconds for '3600', '90m', '12h' or '30d'; raise argparse.ArgumentTypeError."""
    m = re.fullmatch(r"([0-9]{1,9})([smhd]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 90m, 12h or 30d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def serve(args: argparse.Namespace) -> None:
    """Check the config, then exec gunicorn (workers load the app after gevent monkey-patches)."""
    from . import create_app
    create_app()  # raises ConfigError (e.g. no RULEADMIN_SECRET_KEY) before any worker starts
    argv = [sys.executable, "-m", "gunicorn", "--worker-class", "gevent", "--workers", str(args.workers),
            "--worker-connections", str(args.worker_connections), "--bind", args.bind,
            "--timeout", str(args.timeout), "--graceful-timeout", "10", "--forwarded-allow-ips", "127.0.0.1"]
    if args.access_log:
        argv += ["--access-logfile", args.access_log]
    os.execv(sys.executable, argv + ["ruleadmin.wsgi:app"])


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        try:
            serve(args)
        except ConfigError as exc:
            print(f"ruleadmin: {exc}", file=sys.stderr)
            return 2
        return 0
    from . import create_app
    from .accounts import AccountError
    from .extensions import backend
    try:
        # management commands use no sessions: a throwaway key is enough when none is configured
        app = create_app({"SECRET_KEY": secrets.token_hex(16)})
        with app.app_context():
            return _run(args, app, backend(), f"cli:{getpass.getuser()}")
    except (AccountError, ConfigError, StoreError, ValueError) as exc:
        print(f"ruleadmin: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, app, b, actor: str) -> int:
    """Run one management command with the app's backend; return the exit status."""
    cmd, acc = args.command, b.accounts
    if cmd == "create-user":
        acc.create_user(args.username, args.role, _read_password(args.password_stdin), actor)
        print(f"user {args.username} ({args.role}) saved")
    elif cmd in ("disable-user", "enable-user", "delete-user"):
        verb = cmd.removesuffix("-user")
        done = acc.delete_user(args.username, actor) if verb == "delete" else acc.set_disabled(
            args.username, verb == "disable", actor)
        if not done:
            print(f"no user {args.username}", file=sys.stderr)
            return 1
        print(f"user {args.username} {verb}d")
    elif cmd == "list-users":
        for user in acc.list_users():
            print(json.dumps(user))
    elif cmd == "create-token":
        scope = [n.strip() for n in args.namespaces.split(",") if n.strip()] if args.namespaces else None
        token_id, token = acc.create_token(args.username, args.name, actor, role=args.role, namespaces=scope,
                                           expires_in=args.expires_in,
                                           max_lifetime=int(app.config["TOKEN_MAX_LIFETIME_SECONDS"]))
        print(f"token id {token_id} for {args.username} (shown once):", file=sys.stderr)
        print(token)
    elif cmd == "list-tokens":
        for record in acc.list_tokens(args.username).values():
            print(json.dumps(record))
    elif cmd == "revoke-token":
        if not acc.revoke_token(args.id, actor):
            print(f"no token with id {args.id}", file=sys.stderr)
            return 1
        print(f"token {args.id} revoked")
    elif cmd == "create-namespace":
        created = b.rules.create_namespace(args.name)
        if created:
            acc.audit("namespace.created", actor, args.name)
        print(f"namespace {args.name} {'created' if created else 'already exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
