"""`ruleadmin` command line: serve (gunicorn + gevent workers), create-user, create-token, revoke-token."""
from __future__ import annotations

import argparse
import getpass
import os
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
    t = sub.add_parser("create-token", help="create an API token and print it once")
    t.add_argument("--username", required=True)
    t.add_argument("--name", default="")
    r = sub.add_parser("revoke-token", help="revoke an API token by id")
    r.add_argument("--id", required=True)
    n = sub.add_parser("create-namespace", help="create a namespace")
    n.add_argument("--name", required=True)
    return p


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
            b = backend()
            actor = f"cli:{getpass.getuser()}"
            if args.command == "create-user":
                b.accounts.create_user(args.username, args.role, _read_password(args.password_stdin), actor)
                print(f"user {args.username} ({args.role}) saved")
            elif args.command == "create-token":
                token_id, token = b.accounts.create_token(args.username, args.name, actor)
                print(f"token id {token_id} for {args.username} (shown once):", file=sys.stderr)
                print(token)
            elif args.command == "revoke-token":
                if not b.accounts.revoke_token(args.id, actor):
                    print(f"no token with id {args.id}", file=sys.stderr)
                    return 1
                print(f"token {args.id} revoked")
            elif args.command == "create-namespace":
                created = b.rules.create_namespace(args.name)
                if created:
                    b.accounts.audit("namespace.created", actor, args.name)
                print(f"namespace {args.name} {'created' if created else 'already exists'}")
    except (AccountError, ConfigError, StoreError, ValueError) as exc:
        print(f"ruleadmin: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
