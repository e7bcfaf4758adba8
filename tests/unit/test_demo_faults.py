"""rulegate-dev's demo clients without a running demo: `fault`/`scenario` arguments, the endpoints file, finding the
running demo, the fault backend's configuration and the ramp schedule the ramp scenario prints."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rulegate_dev.cli import build_parser, main
from rulegate_dev.errors import LauncherError
from rulegate_dev.faults import FaultError, backend_servers, fault_request
from rulegate_dev.ports import free_port
from rulegate_dev.runstate import DemoState, open_run_dir, running_demo
from rulegate_dev.scenarios import _next_change
from rulegate_dev.system import ENDPOINTS_FILE, DemoEndpoints

ENDPOINTS = DemoEndpoints("demo", 8080, 9901, (8081, 8082), 10001, {"stable": 10002, "canary": 10003,
                                                                     "flaky": 10004}, "rgt_secret")


@pytest.mark.parametrize("argv", [["fault", "on", "--ms", "5"], ["fault", "slow", "--ms", "0"],
                                  ["fault", "slow", "--ms", "60001"], ["fault", "broken"], ["scenario", "nope"]])
def test_bad_fault_and_scenario_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    """--ms only with slow and within 1-60000, a known mode, a known scenario: anything else is a usage error."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_scenario_names_include_all() -> None:
    """`scenario` takes each scenario and `all`."""
    args = build_parser().parse_args(["scenario", "kill-switch", "--pid", "7"])
    assert (args.name, args.pid) == ("kill-switch", 7)
    assert build_parser().parse_args(["scenario", "all"]).name == "all"


def test_endpoints_round_trip_in_a_0600_file(tmp_path: Path) -> None:
    """The endpoints (with the API token) are saved 0600 and read back equal."""
    path = ENDPOINTS.save(tmp_path)
    assert path.name == ENDPOINTS_FILE and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DemoEndpoints.load(tmp_path) == ENDPOINTS


def test_endpoints_of_a_starting_demo(tmp_path: Path) -> None:
    """Before the demo saved its endpoints, loading them says the demo is still starting."""
    with pytest.raises(LauncherError, match="still starting"):
        DemoEndpoints.load(tmp_path)
    (tmp_path / ENDPOINTS_FILE).write_text('{"namespace": "demo"}')
    with pytest.raises(LauncherError, match="cannot read the demo's endpoints"):
        DemoEndpoints.load(tmp_path)


def test_running_demo_needs_exactly_one_or_a_pid(tmp_path: Path) -> None:
    """No demo: an error naming the run dir; two demos: an error asking for --pid; --pid picks one."""
    run_dir = open_run_dir(tmp_path / "run")
    with pytest.raises(LauncherError, match="no running demo recorded in"):
        running_demo(run_dir)
    first = DemoState.create(run_dir, tmp_path / "a", temporary=False)  # this process stands for a launcher
    second = DemoState(run_dir / "demo-other.json", first.launcher, str(tmp_path / "b"), False)
    second.save()
    with pytest.raises(LauncherError, match="2 demos are running.*--pid"):
        running_demo(run_dir)
    second.forget()
    assert running_demo(run_dir, os.getpid()).data_dir == str(tmp_path / "a")
    with pytest.raises(LauncherError, match=f"no running demo of pid {os.getpid() + 1}"):
        running_demo(run_dir, os.getpid() + 1)


def test_scenario_without_a_demo_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`scenario` and `fault` with no demo in the run dir say so and exit 2."""
    assert main(["scenario", "ramp", "--run-dir", str(tmp_path / "run")]) == 2
    assert main(["fault", "on", "--run-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.count("no running demo recorded in") == 2


def test_fault_control_unreachable() -> None:
    """A fault switch to a port nobody listens on fails with FaultError naming the port."""
    port = free_port()
    with pytest.raises(FaultError, match=f"cannot reach the fault control on 127.0.0.1:{port}"):
        fault_request(port, "on")


def test_backend_servers_listen_on_the_given_ports() -> None:
    """stable and canary answer their names, flaky and the control server listen on theirs (launcher syntax)."""
    conf = backend_servers({"stable": 10002, "canary": 10003, "flaky": 10004}, 10001)
    for port in (10001, 10002, 10003, 10004):
        assert f"listen 127.0.0.1:{port};" in conf
    assert 'return 200 "stable\\n"' in conf and 'return 200 "canary\\n"' in conf
    assert "lua_shared_dict rulegate_demo_fault" in conf
    rendered = conf.format()  # the launcher fills in {port}/{prefix}/{repo}: no other field may be left
    assert "{{" not in rendered and "location = /fault {" in rendered


def test_next_change_of_a_step_ramp() -> None:
    """The ramp scenario's "next change" is the first second of the next step, None once the ramp is done."""
    ramp = {"start": 1000, "end": 1600, "from": 0, "to": 10000, "mode": "step", "steps": 10}
    assert _next_change(ramp, 999) == 1060  # before start E = from = the first step's share
    assert _next_change(ramp, 1000) == 1060
    assert _next_change(ramp, 1599.5) == 1600
    assert _next_change(ramp, 1600) is None


def test_next_change_of_a_linear_ramp_of_a_year() -> None:
    """A linear ramp changes every span/d seconds; a year-long ramp is searched, not walked."""
    ramp = {"start": 0, "end": 366 * 86_400, "from": 0, "to": 10000, "mode": "linear"}
    assert _next_change(ramp, 0) == 3163  # E = 10000 * t // 31622400 reaches 1 at t = 3162.24 -> 3163
    assert _next_change(ramp, 3163) == 6325
    down = {"start": 100, "end": 200, "from": 10000, "to": 0, "mode": "linear"}
    assert _next_change(down, 100) == 101 and _next_change(down, 50) == 101
