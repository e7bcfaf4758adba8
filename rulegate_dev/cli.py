"""`rulegate-dev`: local cluster launcher and demo for developers and operators trying rulegate."""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from .cluster import LauncherError, LocalCluster, load_state

DEFAULT_DIR = Path(tempfile.gettempdir()) / "rulegate-cluster"


def _cluster_up(args: argparse.Namespace) -> int:
    cluster = LocalCluster(args.data_dir, args.base_port, node_timeout_ms=args.node_timeout)
    cluster.start()
    for node in cluster.nodes:
        node.proc = None  # detach: the nodes outlive this command; `down` stops them by pid
    print("cluster ready (cluster_state:ok, replicas in sync)")
    print("startup nodes: " + ",".join(cluster.startup_nodes))
    print(f"data dir: {args.data_dir}   stop with: rulegate-dev cluster down --data-dir {args.data_dir}")
    return 0


def _cluster_down(args: argparse.Namespace) -> int:
    cluster = load_state(args.data_dir)
    cluster.stop()
    (Path(args.data_dir) / "cluster.json").unlink(missing_ok=True)
    print("cluster stopped")
    return 0


def _cluster_status(args: argparse.Namespace) -> int:
    cluster = load_state(args.data_dir)
    problem = cluster._readiness_problem(())
    print(f"state: {'ok' if problem is None else problem}")
    for node in cluster.nodes:
        try:
            role = cluster.role_of(node)
        except Exception as exc:  # noqa: BLE001 - status must print every node, whatever fails
            role = f"down ({exc.__class__.__name__})"
        print(f"{node.address}  pid={node.pid}  {role}")
    return 0 if problem is None else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rulegate-dev", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    cl = sub.add_parser("cluster", help="start/stop/inspect a local 6-node Redis Cluster")
    cl.add_argument("action", choices=["up", "down", "status"])
    cl.add_argument("--data-dir", default=str(DEFAULT_DIR))
    cl.add_argument("--base-port", type=int, default=7000, help="first of 6 ports (cluster bus: +10000)")
    cl.add_argument("--node-timeout", type=int, default=2000, help="cluster-node-timeout in ms")
    demo = sub.add_parser("demo", help="run the whole system on loopback until Ctrl-C")
    demo.add_argument("--check", action="store_true", help="send traffic, assert the split, exit")
    demo.add_argument("--data-dir", default=None, help="where to keep state (default: a temp dir)")
    demo.add_argument("--base-port", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='{"level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    try:
        if args.command == "cluster":
            return {"up": _cluster_up, "down": _cluster_down, "status": _cluster_status}[args.action](args)
        from .demo import run_demo
        return run_demo(args)
    except LauncherError as exc:
        print(f"rulegate-dev: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
