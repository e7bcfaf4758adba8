"""`rulegate-dev`: local cluster launcher and demo for developers and operators trying rulegate."""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import textwrap
from pathlib import Path

from .cluster import LauncherError, LocalCluster, load_state
from .faults import MAX_SLOW_MS
from .ports import BUS_OFFSET
from .runstate import RUN_DIR_ENV, default_run_dir

DEFAULT_DIR = Path(tempfile.gettempdir()) / "rulegate-cluster"
MAX_BASE_PORT = 65535 - BUS_OFFSET - 5
SCENARIO_NAMES = ("ramp", "breaker", "guard", "kill-switch")

EPILOG = f"""\
environment:
  {RUN_DIR_ENV}  where `demo` records the pids it started, for `rulegate-dev stop`
                    (default: <tmp>/rulegate-dev-<uid>, now {default_run_dir()}; 0700, must be yours)
  TMPDIR            where the demo's temporary data dir (rulegate-demo-*) and the default dirs live

Ports picked by the launchers lie outside the kernel's ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range), so no outgoing connection can take one before it is bound.
Exit status: 0 ok, 1 the demo failed to start or its check (or a scenario's expectation) failed, 2 bad
arguments or a launcher error (e.g. no running demo for `fault`/`scenario`), or a scenario not in this build.
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, 100)


def _port(text: str, highest: int = 65535) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= highest:
        raise argparse.ArgumentTypeError(f"port must be 1-{highest}, got {port}")
    return port


def _base_port(text: str) -> int:
    return _port(text, MAX_BASE_PORT)


def _port_pair(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two ports as A,B, got {text!r}")
    first, second = _port(parts[0].strip()), _port(parts[1].strip())
    if first == second:
        raise argparse.ArgumentTypeError(f"the two ports must differ, got {text!r}")
    return first, second


def _milliseconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of milliseconds: {text!r}") from None
    if not 100 <= value <= 600_000:
        raise argparse.ArgumentTypeError(f"must be 100-600000 ms, got {value}")
    return value


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


def _add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", metavar="DIR", default=None,
                        help=f"where demos record their pids (default: ${RUN_DIR_ENV}, else <tmp>/rulegate-dev-<uid>)")


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    cl = sub.add_parser(
        "cluster", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        help="start/stop/inspect a detached local 6-node Redis Cluster",
        description=_wrap("Start (up), stop (down) or inspect (status) a local Redis Cluster of 3 masters and 3 "
                          "replicas on 127.0.0.1, without ACL users. `up` returns once the cluster is ready and "
                          "leaves the nodes running; their pids are recorded in DATA_DIR/cluster.json, which `down` "
                          "and `status` read."))
    cl.add_argument("action", choices=["up", "down", "status"], help="up: start and wait until ready; "
                    "down: stop the recorded nodes; status: print each node's role (exit 1 when not ready)")
    cl.add_argument("--data-dir", metavar="DIR", default=str(DEFAULT_DIR),
                    help=f"node data, configs and cluster.json (default: {DEFAULT_DIR})")
    cl.add_argument("--base-port", metavar="PORT", type=_base_port, default=7000,
                    help=f"first of 6 TCP ports; cluster bus ports are +{BUS_OFFSET} (default: 7000)")
    cl.add_argument("--node-timeout", metavar="MS", type=_milliseconds, default=2000,
                    help="cluster-node-timeout in milliseconds, 100-600000 (default: 2000)")


def _add_demo(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    demo = sub.add_parser(
        "demo", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        help="run the whole system on loopback until Ctrl-C / SIGTERM / `rulegate-dev stop`",
        description=_wrap("Start, on 127.0.0.1, a 6-node Redis Cluster with ACL users, two ruleadmin instances, a "
                    "gateway-agent and nginx with the Lua modules; seed an admin user, an API token and sample rules; "
                    "print the URLs and, once, every credential it created. On SIGINT, SIGTERM or SIGHUP, and when "
                    "start-up fails half-way, it stops every process it started and removes its temporary data dir. "
                    "`demo stop` (same as `rulegate-dev stop`) stops the demos recorded in the run dir from another "
                    "shell."))
    demo.add_argument("action", nargs="?", choices=["run", "stop"], default="run",
                      help="run (default) or stop the running demos")
    demo.add_argument("--check", action="store_true",
                      help="send traffic, assert the 10%% split, the degrade rules and a live change, then stop "
                           "and exit (0 = all good); picks free ports instead of the usual ones")
    demo.add_argument("--data-dir", metavar="DIR", default=None,
                      help="keep state, logs and secrets here, 0700, kept after stop (default: a new temporary "
                           "dir <tmp>/rulegate-demo-*, removed on stop)")
    demo.add_argument("--base-port", metavar="PORT", type=_base_port, default=None,
                      help=f"first of the cluster's 6 ports; bus ports +{BUS_OFFSET} (default: 7000 when free, "
                           "else picked)")
    demo.add_argument("--admin-ports", metavar="A,B", type=_port_pair, default=None,
                      help="the two ruleadmin instances' ports (default: 8081,8082 when free, else picked)")
    demo.add_argument("--agent-port", metavar="PORT", type=_port, default=None,
                      help="the gateway-agent's port (default: 9901 when free, else picked)")
    demo.add_argument("--nginx-port", metavar="PORT", type=_port, default=None,
                      help="nginx's port (default: 8080 when free, else picked)")
    _add_run_dir(demo)
    return demo


def _add_demo_client(parser: argparse.ArgumentParser) -> None:
    _add_run_dir(parser)
    parser.add_argument("--pid", metavar="PID", type=int, default=None,
                        help="the launcher pid of the demo to use when several are running")


def _slow_ms(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of milliseconds: {text!r}") from None
    if not 1 <= value <= MAX_SLOW_MS:
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_SLOW_MS} ms, got {value}")
    return value


def _add_fault(sub: argparse._SubParsersAction) -> None:
    fault = sub.add_parser(
        "fault", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        help="switch the running demo's `flaky` backend: failing (on), healthy (off) or slow",
        description=_wrap("Switch the `flaky` backend of the running demo (the upstream of shop.localhost/pay and "
                          "/search): `on` answers 500 to every request, `slow` answers after --ms milliseconds, "
                          "`off` answers 200 \"flaky\" again; `status` prints the current mode. All nginx workers "
                          "see the change at once."))
    fault.add_argument("mode", choices=["on", "off", "slow", "status"], help="the fault to switch to (or status)")
    fault.add_argument("--ms", type=_slow_ms, default=None, metavar="N",
                       help=f"with slow: the delay of every answer in milliseconds, 1-{MAX_SLOW_MS} (default 1000)")
    _add_demo_client(fault)


def _add_scenario(sub: argparse._SubParsersAction) -> None:
    sc = sub.add_parser(
        "scenario", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        help="run a progressive-delivery scenario against the running demo (ramp, breaker, guard, kill-switch, all)",
        description=_wrap("Drive traffic through the running demo's nginx and agent and print, step by step, what an "
                          "operator would watch: ramp (the /beta split measured against the ramp's share now), breaker "
                          "(an injected failure of `flaky` opens the /pay breaker, it probes and closes again), guard "
                          "(the guard watcher halts the failing /search canary), kill-switch (every route answers the "
                          "preset, undo restores the exact content). Exit 0 when what it shows happened, 1 with the "
                          "failed expectation, 2 when the feature is not in this build or no demo runs."))
    sc.add_argument("name", choices=[*SCENARIO_NAMES, "all"], help="the scenario (all: each in turn)")
    sc.add_argument("--follow", action="store_true",
                    help="ramp: measure again after every change of the ramp's share until it is done (Ctrl-C stops)")
    _add_demo_client(sc)


def build_parser() -> argparse.ArgumentParser:
    """Return the `rulegate-dev` argument parser (its `demo` subparser as its `demo_parser` attribute)."""
    parser = argparse.ArgumentParser(prog="rulegate-dev", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (JSON lines on stderr)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{cluster,demo,stop,fault,scenario}")
    _add_cluster(sub)
    parser.demo_parser = _add_demo(sub)  # type: ignore[attr-defined]
    _add_fault(sub)
    _add_scenario(sub)
    stop = sub.add_parser("stop", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                          help="stop the demos recorded in the run dir (from any shell)",
                          description=_wrap("Stop every demo recorded in the run dir: SIGTERM its launcher "
                                            "(which stops what it started), then stop by pid whatever recorded "
                                            "process is left — only while it is still the recorded process (same "
                                            "start time and executable) — and remove the demo's temporary data dir. "
                                            "Exit 0 also when none is running."))
    _add_run_dir(stop)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "fault" and args.ms is not None and args.mode != "slow":
        parser.error("fault: --ms goes with slow only")
    if args.command == "demo" and args.action == "stop":
        given = [opt for opt, value in (("--check", args.check), ("--data-dir", args.data_dir),
                                        ("--base-port", args.base_port), ("--admin-ports", args.admin_ports),
                                        ("--agent-port", args.agent_port), ("--nginx-port", args.nginx_port))
                 if value not in (None, False)]
        if given:
            parser.demo_parser.error(f"demo stop takes only --run-dir, not {', '.join(given)}")
    return args


def _demo_client_command(args: argparse.Namespace) -> int:
    """Run `fault` or `scenario` against the running demo; return the exit status."""
    from .demo_client import DemoClient
    from .faults import FaultError, describe
    demo = DemoClient.find(args.run_dir, args.pid)
    if args.command == "scenario":
        from .scenarios import run_scenarios
        return run_scenarios(list(SCENARIO_NAMES) if args.name == "all" else [args.name], demo, follow=args.follow)
    try:
        if args.mode == "status":
            state = demo.fault()
        else:
            state = demo.fault(args.mode, (args.ms or 1000) if args.mode == "slow" else None)
    except FaultError as exc:
        print(f"rulegate-dev fault: {exc}", file=sys.stderr)
        return 1
    print(f"fault {state['mode']}: {describe(state)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `rulegate-dev`; return the exit status (argparse exits 2 itself on bad arguments)."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='{"level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    from .demo import run_demo, stop_all
    try:
        if args.command == "cluster":
            return {"up": _cluster_up, "down": _cluster_down, "status": _cluster_status}[args.action](args)
        if args.command in ("fault", "scenario"):
            return _demo_client_command(args)
        if args.command == "stop" or args.action == "stop":
            return stop_all(args.run_dir)
        return run_demo(args)
    except LauncherError as exc:
        print(f"rulegate-dev: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rulegate-dev: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
