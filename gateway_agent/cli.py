"""`gateway-agent serve ...`: run the sidecar. gevent patches the stdlib before redis is imported."""
from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the gateway-agent command."""
    parser = argparse.ArgumentParser(prog="gateway-agent", description="rulegate gateway agent")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the sidecar HTTP decision server")
    serve.add_argument("--redis-nodes", required=True, help="comma-separated host:port startup nodes")
    serve.add_argument("--namespace", required=True)
    serve.add_argument("--listen", default="127.0.0.1:9901", help="host:port to listen on")
    serve.add_argument("--snapshot", help="path of the last-known-good snapshot file")
    serve.add_argument("--refresh-interval", type=float, default=1.0)
    serve.add_argument("--max-stale", type=float, default=30.0)
    serve.add_argument("--heartbeat-interval", type=float, default=5.0)
    serve.add_argument("--gateway-id", help="fleet id (default agent-<hostname>-<pid>)")
    serve.add_argument("--upstreams", help="comma-separated upstream names this gateway can route to, reported in "
                       "its heartbeat (default: $RULEGATE_UPSTREAMS)")
    serve.add_argument("--redis-username")
    serve.add_argument("--redis-password-file", help="file holding the Redis password")
    serve.add_argument("--tls", action="store_true", help="connect to Redis over TLS")
    serve.add_argument("--tls-ca-cert")
    serve.add_argument("--tls-cert")
    serve.add_argument("--tls-key")
    serve.add_argument("--max-body", type=int, help="largest decide body in bytes, 413 above (64 KiB)")
    serve.add_argument("--idle-timeout", type=float, help="seconds a connection may wait for its next request (30)")
    serve.add_argument("--request-timeout", type=float, help="seconds to receive a whole request, 408 after (10)")
    serve.add_argument("--max-connections", type=int, help="concurrent connections (1000)")
    serve.add_argument("--log-level", default="INFO")
    return parser


def _password(path: str | None) -> str | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from gevent import monkey
    monkey.patch_all()

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rulegate.connection import parse_node

    from .client import RuleClient
    from .sidecar import ServerLimits, serve

    try:
        host, port = parse_node(args.listen)
        given = {"max_body": args.max_body, "idle_timeout": args.idle_timeout,
                 "request_timeout": args.request_timeout, "max_connections": args.max_connections}
        limits = ServerLimits(**{k: v for k, v in given.items() if v is not None})
        client = RuleClient(args.redis_nodes, args.namespace, refresh_interval=args.refresh_interval,
                            max_stale=args.max_stale, snapshot_path=args.snapshot,
                            heartbeat_interval=args.heartbeat_interval, gateway_id=args.gateway_id,
                            upstreams=args.upstreams,
                            username=args.redis_username, password=_password(args.redis_password_file),
                            ssl=args.tls, ssl_ca_certs=args.tls_ca_cert, ssl_certfile=args.tls_cert,
                            ssl_keyfile=args.tls_key)
    except (ValueError, OSError) as exc:
        print(f"gateway-agent: {exc}", file=sys.stderr)
        return 2
    serve(client, host, port, limits=limits)
    return 0
