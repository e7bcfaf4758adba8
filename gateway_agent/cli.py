"""`gateway-agent serve ...`: run the sidecar. gevent patches the stdlib before redis is imported.

Exit status: 0 stopped by SIGTERM/SIGINT; 1 could not listen (address in use); 2 bad usage or input
(argparse convention, an unreadable password file included): the message names the flag or variable at fault."""
from __future__ import annotations

import argparse
import logging
import sys

from rulegate.cliargs import EnvArgumentParser, host_port, host_ports, identifier, positive

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SERVE_EPILOG = """Every option but --upstreams can also be given by the environment variable named in its help (the flag
wins); --upstreams defaults to $RULEGATE_UPSTREAMS. Redis being down or refusing the credentials does not
stop the sidecar: it serves its snapshot (if any) and reports the cause on GET /healthz and in its log.
exit status: 0 stopped by SIGTERM/SIGINT, 1 could not listen (address in use), 2 bad usage or input"""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the gateway-agent command."""
    parser = EnvArgumentParser(prog="gateway-agent", description="rulegate gateway agent: keeps one namespace's "
                               "rules in memory and answers routing decisions (see docs/agent.md)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the sidecar HTTP decision server", epilog=SERVE_EPILOG,
                           description="Run the sidecar: sync the namespace's rules from Redis and answer "
                                       "POST /v1/decide, GET /v1/rules, /healthz and /metrics over HTTP.")
    env = serve.add_env_argument
    env("--redis-nodes", "RULEGATE_REDIS_NODES", required=True, type=host_ports, metavar="HOST:PORT[,...]",
        help="Redis startup nodes, comma-separated")
    env("--namespace", "RULEGATE_NAMESPACE", required=True, type=identifier("namespace"), metavar="NAME",
        help="the namespace whose rules this gateway applies")
    env("--listen", "RULEGATE_LISTEN", default="127.0.0.1:9901", type=host_port, metavar="HOST:PORT",
        help="address the HTTP server listens on")
    env("--snapshot", "RULEGATE_SNAPSHOT", metavar="PATH",
        help="file of the last-known-good rules, served at start before Redis answers")
    env("--refresh-interval", "RULEGATE_REFRESH_INTERVAL", type=positive(float), default=1.0, metavar="SECONDS",
        help="seconds between revision checks when no change notification arrives")
    env("--checkpoint-delay", "RULEGATE_CHECKPOINT_DELAY", type=positive(float), default=1.0, metavar="SECONDS",
        help="after rule changes (deltas), rewrite the snapshot this long after the last one")
    env("--checkpoint-max", "RULEGATE_CHECKPOINT_MAX", type=positive(float), default=10.0, metavar="SECONDS",
        help="... or this long into a burst of changes (a full reload rewrites it at once)")
    env("--max-stale", "RULEGATE_MAX_STALE", type=positive(float), default=30.0, metavar="SECONDS",
        help="seconds without a confirmed revision after which /healthz says stale")
    env("--heartbeat-interval", "RULEGATE_HEARTBEAT_INTERVAL", type=positive(float), default=5.0,
        metavar="SECONDS", help="seconds between fleet heartbeats")
    env("--gateway-id", "RULEGATE_GATEWAY_ID", metavar="ID",
        shown="agent-<hostname>-<pid>", help="this gateway's id in the fleet")
    serve.add_argument("--upstreams", help="comma-separated upstream names this gateway can route to, reported in "
                       "its heartbeat (default: $RULEGATE_UPSTREAMS)")
    env("--read-replica", "RULEGATE_READ_REPLICA", switch=True,
        help="send revision checks to a replica of the namespace's slot while it holds the latest revision "
             "(the master when it lags or fails; heartbeats and full reloads always go to the master)")
    env("--redis-username", "RULEGATE_REDIS_USERNAME", metavar="USER",
        shown="none: Redis's default user", help="Redis ACL user")
    env("--redis-password-file", "RULEGATE_REDIS_PASSWORD_FILE", metavar="PATH",
        help="file holding the Redis password (a password is never given on the command line)")
    env("--tls", "RULEGATE_TLS", switch=True, help="connect to Redis over TLS")
    env("--tls-ca-cert", "RULEGATE_TLS_CA_CERT", metavar="PATH",
        shown="the system's", help="CA bundle to verify Redis with")
    env("--tls-cert", "RULEGATE_TLS_CERT", metavar="PATH", help="client certificate for Redis")
    env("--tls-key", "RULEGATE_TLS_KEY", metavar="PATH", help="key of the client certificate")
    env("--max-body", "RULEGATE_MAX_BODY", type=positive(int), default=65536, metavar="BYTES",
        help="largest decide body in bytes, 413 above")
    env("--idle-timeout", "RULEGATE_IDLE_TIMEOUT", type=positive(float), default=30.0, metavar="SECONDS",
        help="seconds a connection may wait for its next request")
    env("--request-timeout", "RULEGATE_REQUEST_TIMEOUT", type=positive(float), default=10.0, metavar="SECONDS",
        help="seconds to receive a whole request, 408 after")
    env("--max-connections", "RULEGATE_MAX_CONNECTIONS", type=positive(int), default=1000, metavar="N",
        help="concurrent HTTP connections")
    env("--log-level", "RULEGATE_LOG_LEVEL", type=_log_level, default="INFO", metavar="LEVEL",
        help="log level: " + ", ".join(LOG_LEVELS))
    return parser


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def _password(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--redis-password-file {path!r}: {getattr(exc, 'strerror', None) or exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from gevent import monkey
    monkey.patch_all()

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rulegate.connection import parse_node

    from .client import RuleClient
    from .sidecar import ServerLimits, serve

    try:
        host, port = parse_node(args.listen)
        given = {"max_body": args.max_body, "idle_timeout": args.idle_timeout,
                 "request_timeout": args.request_timeout, "max_connections": args.max_connections}
        limits = ServerLimits(**given)
        client = RuleClient(args.redis_nodes, args.namespace, refresh_interval=args.refresh_interval,
                            max_stale=args.max_stale, snapshot_path=args.snapshot,
                            checkpoint_delay=args.checkpoint_delay, checkpoint_max=args.checkpoint_max,
                            heartbeat_interval=args.heartbeat_interval, gateway_id=args.gateway_id,
                            upstreams=args.upstreams, read_replica=args.read_replica,
                            username=args.redis_username, password=_password(args.redis_password_file),
                            ssl=args.tls, ssl_ca_certs=args.tls_ca_cert, ssl_certfile=args.tls_cert,
                            ssl_keyfile=args.tls_key)
    except (ValueError, OSError) as exc:
        print(f"gateway-agent serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        serve(client, host, port, limits=limits)
    except OSError as exc:  # e.g. the address is in use
        client.stop()
        print(f"gateway-agent serve: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
