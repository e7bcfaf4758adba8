"""`ruleadmin` command line: serve (gunicorn + gevent workers), users, tokens and namespaces.

Exit status: 0 done; 1 the command could not be done (Redis unreachable or refusing the credentials, no such
user or token, the last enabled admin); 2 bad usage or input (argparse convention): the one-line message on
stderr names the argument, setting or environment variable at fault. Never a traceback.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import secrets
import sys

from rulegate.cliargs import EnvArgumentParser, identifier, positive
from rulegate.connection import REDIS_ERRORS
from rulegate.errors import RulegateError, StoreError, ValidationError

from .config import ConfigError

PASSWORD_ENV = "RULEADMIN_USER_PASSWORD"
WORKER_CLASS = "ruleadmin.gunicorn_worker.GeventWorker"  # gunicorn's gevent worker, settings read as attributes
ROLE_CHOICES = ("viewer", "editor", "admin")
ENV_EPILOG = """\
environment (the Redis connection and every other setting, see docs/api.md):
  RULEADMIN_REDIS_NODES         host:port[,host:port...] (default: 127.0.0.1:7000)
  RULEADMIN_REDIS_MODE          cluster, single or auto (default: auto)
  RULEADMIN_REDIS_USERNAME      Redis ACL user, e.g. rg-admin (default: none)
  RULEADMIN_REDIS_PASSWORD      its password (default: none)
  RULEADMIN_REDIS_SSL           true for TLS; RULEADMIN_REDIS_SSL_CA_CERTS, _CERTFILE, _KEYFILE: PEM paths
  RULEADMIN_REDIS_SOCKET_TIMEOUT  seconds (default: 1.0)
exit status: 0 done, 1 could not be done (Redis unreachable or refusing the credentials, no such user or
token, the last enabled admin), 2 bad usage or input"""
PASSWORD_HELP = (f"read the password from the first line of stdin (else ${PASSWORD_ENV}, else a prompt on "
                 "a terminal; without any of them the command stops with status 2)")


def _parser() -> EnvArgumentParser:
    p = EnvArgumentParser(prog="ruleadmin", epilog=ENV_EPILOG,
                          description="rulegate admin: run the web UI and REST API, manage users, API tokens "
                                      "and namespaces. Settings come from RULEADMIN_* environment variables.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, description: str = "") -> EnvArgumentParser:
        return sub.add_parser(name, help=text, description=description or text[0].upper() + text[1:] + ".",
                              epilog=ENV_EPILOG)

    _serve_parser(command("serve", "run the admin (web UI and REST API) under gunicorn with gevent workers",
                          "Run the admin under gunicorn with gevent workers; needs RULEADMIN_SECRET_KEY "
                          "(the same on every instance)."))
    u = command("create-user", "create a user, or change an existing user's role and/or password",
                "Create a user, or change an existing user's role and/or password; a change ends the user's "
                "sessions and revokes its tokens. An empty password keeps an existing user's.")
    u.add_argument("--username", required=True, type=identifier("username"), help="the user's name (required)")
    u.add_argument("--role", required=True, choices=ROLE_CHOICES, help="viewer, editor or admin (required)")
    u.add_argument("--password-stdin", action="store_true", help=PASSWORD_HELP)
    _users_parser(command("users", "list, disable, enable, delete users and reset their passwords"))
    for verb, text in (("disable", "disable a user: ends its sessions, revokes its tokens"),
                       ("enable", "enable a disabled user"), ("delete", "delete a user and its tokens")):
        command(f"{verb}-user", f"{text} (same as `users {verb}`)").add_argument(
            "--username", required=True, type=identifier("username"), help="the user (required)")
    command("list-users", "print every user as JSON lines (times as UNIX seconds; see `users list`)")
    _token_parsers(command)
    n = command("create-namespace", "create a namespace (nothing happens when it exists)")
    n.add_argument("name", nargs="?", type=identifier("namespace name"), metavar="NAME",
                   help="the namespace (required, as NAME or --name)")
    n.add_argument("--name", dest="name_flag", type=identifier("namespace name"), metavar="NAME",
                   help="the namespace (required, as NAME or --name)")
    _kill_switch_parser(command("kill-switch", "engage, undo or list kill switches (docs/api.md \"Kill switches\")"))
    w = command("guard-watcher", "judge the guards of moving ramps on the fleet's outcomes and halt failing ramps",
                "Judge every moving ramp's guard on the outcomes the gateways report and halt a ramp whose canary "
                "regresses (docs/rules.md \"Guards\"). Runs until SIGTERM/SIGINT; several may run (a Redis lease "
                "lets one judge at a time).")
    w.add_argument("--interval", type=_seconds, default=1.0, metavar="SECONDS",
                   help="seconds between rounds (default 1; at most the gateways' heartbeat interval)")
    w.add_argument("--namespace", action="append", type=identifier("namespace name"), metavar="NAME",
                   help="watch only this namespace (repeatable; default: every namespace)")
    w.add_argument("--once", action="store_true", help="run one round, print its halts as JSON lines, exit")
    c = command("canonicalize", "re-save rules an older ruleadmin stored in a form nginx refuses",
                "Find rules whose stored bytes differ from what this ruleadmin would store for them (an older "
                "ruleadmin's forms, which nginx refuses: docs/rules.md \"Canonical forms\") and save each again as "
                "a commit conditioned on the bytes read (a rule changed meanwhile is left alone). Prints one JSON "
                "line per such rule; exits 1 when a rule does not validate at all (it cannot be rewritten).")
    c.add_argument("--namespace", action="append", type=identifier("namespace name"), metavar="NAME",
                   help="only this namespace (repeatable; default: every namespace)")
    c.add_argument("--dry-run", action="store_true", help="only report what would be rewritten")
    return p


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.05 <= value <= 60:
        raise argparse.ArgumentTypeError("must be between 0.05 and 60 seconds")
    return value


def _serve_parser(s: EnvArgumentParser) -> None:
    s.add_env_argument("--bind", "RULEADMIN_BIND", default="127.0.0.1:8081", metavar="ADDRESS",
                       help="address to listen on: HOST:PORT, or unix:PATH (gunicorn --bind)")
    s.add_env_argument("--workers", "RULEADMIN_WORKERS", type=positive(int), default=2, metavar="N",
                       help="worker processes")
    s.add_env_argument("--worker-connections", "RULEADMIN_WORKER_CONNECTIONS", type=positive(int), default=200,
                       metavar="N", help="concurrent connections per worker")
    s.add_env_argument("--timeout", "RULEADMIN_WORKER_TIMEOUT", type=positive(int), default=30, metavar="SECONDS",
                       help="seconds a worker may be silent before gunicorn restarts it")
    s.add_env_argument("--access-log", "RULEADMIN_ACCESS_LOG", metavar="FILE", shown="off",
                       help="access log file, or '-' for stdout")


def _users_parser(g: EnvArgumentParser) -> None:
    acts = g.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> EnvArgumentParser:
        a = acts.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".", epilog=ENV_EPILOG)
        if name != "list":
            a.add_argument("username", type=identifier("username"), metavar="USERNAME", help="the user")
        return a

    lst = action("list", "print every user: name, role, disabled, last update (ISO 8601 UTC)")
    lst.add_argument("--json", action="store_true", help="JSON lines instead of a table (default: a table)")
    action("disable", "disable a user: its sessions end, its tokens are revoked, its logins are refused; "
                      "not the last enabled admin")
    action("enable", "enable a disabled user (it logs in anew and needs new tokens)")
    action("delete", "delete a user and its tokens; not the last enabled admin")
    action("reset-password", "set a new password: the user's sessions end and its tokens are revoked").add_argument(
        "--password-stdin", action="store_true", help=PASSWORD_HELP)


def _token_parsers(command) -> None:
    t = command("create-token", "create an API token and print it once (its id goes to stderr)")
    t.add_argument("--username", required=True, type=identifier("username"), help="the token's user (required)")
    t.add_argument("--name", default="", help="a label (default: empty)")
    t.add_argument("--role", choices=ROLE_CHOICES, help="at most the user's role (default: the user's)")
    t.add_argument("--namespaces", help="comma-separated namespaces the token may reach (default: all)")
    t.add_argument("--expires-in", type=duration, metavar="DURATION",
                   help="lifetime: seconds, or 90m, 12h, 30d (default and maximum: "
                        "RULEADMIN_TOKEN_MAX_LIFETIME_SECONDS, 365 days unless set)")
    lt = command("list-tokens", "print tokens (never their secrets) as JSON lines")
    lt.add_argument("--username", type=identifier("username"), help="only this user's (default: every user's)")
    r = command("revoke-token", "revoke an API token by id")
    r.add_argument("--id", required=True, help="the token id: 16 hex digits, as list-tokens shows (required)")


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
    argv = [sys.executable, "-m", "gunicorn", "--worker-class", WORKER_CLASS, "--workers", str(args.workers),
            "--worker-connections", str(args.worker_connections), "--bind", args.bind,
            "--timeout", str(args.timeout), "--graceful-timeout", "10", "--forwarded-allow-ips", "127.0.0.1"]
    if args.access_log:
        argv += ["--access-logfile", args.access_log]
    os.execv(sys.executable, argv + _no_control_socket() + ["ruleadmin.wsgi:app"])


def _no_control_socket() -> list[str]:
    """gunicorn >= 24 opens a control socket at one fixed path (~/.gunicorn/gunicorn.ctl) that every instance on
    the host would share; ruleadmin does not use it."""
    from gunicorn.config import KNOWN_SETTINGS
    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


class UsageError(Exception):
    """Bad input found after parsing (exit status 2); the message names the argument."""


class NotFound(Exception):
    """The named user or token does not exist (exit status 1)."""


def _read_password(from_stdin: bool) -> str:
    """Return the password from stdin, $RULEADMIN_USER_PASSWORD or a terminal prompt; raise UsageError."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise UsageError(f"no terminal to ask for the password: pipe it with --password-stdin or set {PASSWORD_ENV}")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passwords differ")
    return first


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status (0 done, 1 could not be done, 2 bad usage or input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    prog = " ".join(filter(None, ["ruleadmin", args.command, getattr(args, "action", None)]))
    try:
        return _main(args)
    except (UsageError, ConfigError, ValidationError) as exc:
        return _fail(prog, str(exc), 2)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return _fail(prog, "interrupted", 130)
    except (StoreError, *REDIS_ERRORS) as exc:
        return _fail(prog, _redis_problem(exc), 1)
    except (NotFound, RulegateError) as exc:
        return _fail(prog, str(exc), 1)
    except ValueError as exc:  # AccountError (a ValueError) and its LastAdminError; else a bad setting
        from .accounts import AccountError, LastAdminError
        if not isinstance(exc, AccountError):
            return _fail(prog, f"{exc} (check the RULEADMIN_* settings)", 2)
        return _fail(prog, _account_problem(exc), 1 if isinstance(exc, LastAdminError) else 2)


def _fail(prog: str, message: str, status: int) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


# the argument an AccountError's field came from (username and password messages name them already)
_ARGUMENT_OF_FIELD = {"role": "--role", "namespaces": "--namespaces", "expires_in": "--expires-in", "name": "--name"}


def _account_problem(exc: ValueError) -> str:
    argument = _ARGUMENT_OF_FIELD.get(getattr(exc, "field", ""))
    return f"{argument}: {exc}" if argument else str(exc)


def _redis_problem(exc: Exception) -> str:
    text = str(exc) or exc.__class__.__name__
    if "Authentication" in text or "WRONGPASS" in text or "NOAUTH" in text:
        return (f"Redis refused the credentials ({text}); check RULEADMIN_REDIS_USERNAME and "
                "RULEADMIN_REDIS_PASSWORD")
    if "NoPermission" in text or "NOPERM" in text:
        return f"Redis refused a command to this ACL user ({text}); see docs/security.md for rg-admin's grants"
    return (f"cannot use Redis ({text}); check RULEADMIN_REDIS_NODES "
            f"({os.environ.get('RULEADMIN_REDIS_NODES', 'unset: 127.0.0.1:7000')}) and RULEADMIN_REDIS_MODE")


def _main(args: argparse.Namespace) -> int:
    if args.command == "serve":
        serve(args)
        return 0
    password = None
    if args.command == "create-user" or getattr(args, "action", None) == "reset-password":
        password = _read_password(args.password_stdin)  # before connecting: bad input fails fast
    if args.command == "create-namespace":
        names = {n for n in (args.name, args.name_flag) if n}
        if len(names) != 1:
            raise UsageError("give the namespace once, as NAME or --name" if names else
                             "the following arguments are required: NAME (or --name)")
        args.name = names.pop()
    from . import create_app
    from .extensions import backend
    # management commands use no sessions: a throwaway key is enough when none is configured
    app = create_app({"SECRET_KEY": secrets.token_hex(16)})
    app.config.pop(PASSWORD_ENV.removeprefix("RULEADMIN_"), None)
    try:
        with app.app_context():
            return _run(args, app, backend(), _actor(), password)
    finally:
        app.extensions["ruleadmin"].close()


def _run(args: argparse.Namespace, app, b, actor: str, password: str | None) -> int:
    """Run one management command with the app's backend; return the exit status."""
    cmd, acc = args.command, b.accounts
    if cmd == "users":
        return _users(args, acc, actor, password)
    if cmd == "create-user":
        acc.create_user(args.username, args.role, password, actor)
        print(f"user {args.username} ({args.role}) saved")
    elif cmd in ("disable-user", "enable-user", "delete-user"):
        return _change_user(acc, args.username, cmd.removesuffix("-user"), actor)
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
            raise NotFound(f"no token with id {args.id}")
        print(f"token {args.id} revoked")
    elif cmd == "guard-watcher":
        return _guard_watcher(args, b)
    elif cmd == "canonicalize":
        return _canonicalize(args, b, actor)
    elif cmd == "kill-switch":
        return _kill_switch(args, app, b, actor)
    elif cmd == "create-namespace":
        created = b.rules.create_namespace(args.name)
        if created:
            acc.audit("namespace.created", actor, args.name)
        print(f"namespace {args.name} {'created' if created else 'already exists'}")
    return 0


def _canonicalize(args: argparse.Namespace, b, actor: str) -> int:
    """Run `ruleadmin canonicalize`: one JSON line per rule not stored canonically, a summary on stderr."""
    from .canonicalize import canonicalize
    namespaces = args.namespace or b.store.namespaces()
    counts: dict[str, int] = {}
    rewritten: dict[str, int] = {}
    try:
        for finding in canonicalize(b.store, namespaces, actor, dry_run=args.dry_run):
            counts[finding.status] = counts.get(finding.status, 0) + 1
            if finding.status == "rewritten":
                rewritten[finding.namespace] = rewritten.get(finding.namespace, 0) + 1
            print(json.dumps(finding.as_dict()), flush=True)
    finally:  # the rules' own history names each commit (op canonicalize); the audit stream the run
        for ns, n in rewritten.items():
            b.accounts.audit("namespace.canonicalized", actor, ns, f"{n} rule(s) rewritten")
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "every rule is canonical"
    print(f"{len(namespaces)} namespace(s): {summary}", file=sys.stderr)
    return 1 if counts.get("invalid") else 0


def _guard_watcher(args: argparse.Namespace, b) -> int:
    """Run `ruleadmin guard-watcher`: rounds until a stop signal (or one round with --once)."""
    import signal
    import threading

    from .guards import GuardWatcher
    watcher = GuardWatcher(b.store, interval=args.interval, namespaces=args.namespace)
    if args.once:
        for halt in watcher.run_once():
            print(json.dumps(halt.__dict__))
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"guard watcher {watcher.watcher_id}: every {args.interval:g}s", file=sys.stderr, flush=True)
    watcher.run(stop)
    return 0


def _kill_switch_parser(k: EnvArgumentParser) -> None:
    acts = k.add_subparsers(dest="action", required=True, metavar="ACTION")
    texts = {"engage": "degrade the whole namespace (or, with --host, one route) to the preset response or the "
                       "one given; prints the switch as JSON",
             "undo": "remove exactly the switch's rules in one revision; prints whether the content equals the "
                     "content before it (exact) and which rules differ",
             "list": "print the namespace's kill switches as JSON lines"}
    for name, text in texts.items():
        a = acts.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".", epilog=ENV_EPILOG)
        a.add_argument("--namespace", required=True, type=identifier("namespace name"), help="the namespace (required)")
        if name == "undo":
            a.add_argument("--id", required=True, help="the kill switch id, as engage and list print (required)")
        if name == "engage":
            a.add_argument("--host", help="degrade only this route's host (default: the whole namespace)")
            a.add_argument("--path", help="the route's path prefix, with --host (default: /)")
            a.add_argument("--status", type=int, help="a static response with this status (default preset: 503)")
            a.add_argument("--body", help="the static response's body (with --status; default: empty)")
            a.add_argument("--upstream", help="send to this fallback upstream instead of answering (default: answer)")
            a.add_argument("--force", action="store_true",
                           help="use --upstream even when no gateway of the namespace reports it and it is not "
                                "declared (default: refuse)")


# the option a kill switch request field came from
_KILL_SWITCH_OPTIONS = {"route.host": "--host", "route.path": "--path", "route": "--host", "action.status": "--status",
                        "action.body": "--body", "action.upstream": "--upstream", "action": "--status"}


def _kill_switch_request(args: argparse.Namespace) -> dict:
    """Return the kill switch request the engage options describe; raise UsageError."""
    if args.upstream is not None and (args.status is not None or args.body is not None):
        raise UsageError("--upstream cannot be combined with --status or --body")
    if args.path is not None and args.host is None:
        raise UsageError("--path needs --host (a route is a host and a path)")
    data: dict = {"scope": "namespace"}
    if args.host is not None:
        data = {"scope": "route", "route": {"host": args.host, "path": "/" if args.path is None else args.path}}
    if args.upstream is not None:
        data["action"] = {"type": "upstream", "upstream": args.upstream}
    elif args.status is not None or args.body is not None:
        data["action"] = {"type": "static", "status": 503 if args.status is None else args.status,
                          "body": args.body or ""}
    return data


def _kill_switch(args: argparse.Namespace, app, b, actor: str) -> int:
    """Run `ruleadmin kill-switch <action>`; return the exit status."""
    from .rules import NamespaceMissing
    try:
        return _kill_switch_action(args, app, b, actor)
    except NamespaceMissing:
        raise NotFound(f"namespace {args.namespace} does not exist (create-namespace creates it)") from None


def _kill_switch_action(args: argparse.Namespace, app, b, actor: str) -> int:
    from . import killswitch
    if args.action == "list":
        for switch in killswitch.list_switches(b.rules, args.namespace):
            print(json.dumps(switch))
        return 0
    if args.action == "undo":
        done = killswitch.undo(b.rules, args.namespace, args.id, actor)
        b.accounts.audit("killswitch.undone", actor, args.namespace, killswitch.audit_detail(done))
        print(json.dumps(killswitch.undone_body(done)))
        return 0
    preset = killswitch.preset_from_config(app.config.get("KILL_SWITCH_PRESET"))
    try:
        scope, route, action = killswitch.parse_request(_kill_switch_request(args), preset)
    except ValidationError as exc:
        raise UsageError("; ".join(f"{_KILL_SWITCH_OPTIONS.get(k, k)}: {v}" for k, v in exc.errors.items())) from None
    if not args.force:
        from .api_upstreams import known
        from .upstreams import unknown_upstreams
        problems = unknown_upstreams({"kind": "degrade", "action": action}, known(args.namespace))
        if problems:
            raise UsageError("--upstream: " + next(iter(problems.values())).replace("save with force", "add --force"))
    done = killswitch.engage(b.rules, args.namespace, scope, route, action, actor)
    b.accounts.audit("killswitch.engaged", actor, args.namespace, killswitch.audit_detail(done))
    body = killswitch.engaged_body(done)
    for text in body["warnings"]:
        print(f"warning: {text}", file=sys.stderr)
    print(json.dumps({**body, "revision": done.result.revision}))
    return 0


def _users(args: argparse.Namespace, acc, actor: str, password: str | None) -> int:
    """Run `ruleadmin users <action>`; return the exit status."""
    from .display import iso_utc
    if args.action == "list":
        users = acc.list_users()
        if args.json:
            for u in users:
                print(json.dumps({**u, "created_at": iso_utc(u["created_at"]) or None,
                                  "updated_at": iso_utc(u["updated_at"]) or None}))
            return 0
        rows = [("USERNAME", "ROLE", "DISABLED", "UPDATED")] + [
            (u["username"], u["role"], "yes" if u["disabled"] else "no", iso_utc(u["updated_at"]) or "-")
            for u in users]
        width = max(len(r[0]) for r in rows)
        for r in rows:
            print(f"{r[0]:<{width}}  {r[1]:<6}  {r[2]:<8}  {r[3]}")
        return 0
    if args.action == "reset-password":
        if not acc.reset_password(args.username, password or "", actor):
            raise NotFound(f"no user {args.username}")
        print(f"password of {args.username} reset; its sessions ended and its tokens were revoked")
        return 0
    return _change_user(acc, args.username, args.action, actor)


def _change_user(acc, username: str, verb: str, actor: str) -> int:
    done = acc.delete_user(username, actor) if verb == "delete" else acc.set_disabled(
        username, verb == "disable", actor)
    if not done:
        raise NotFound(f"no user {username}")
    print(f"user {username} {verb}d" + (": its sessions ended and its tokens were revoked"
                                        if verb != "enable" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
