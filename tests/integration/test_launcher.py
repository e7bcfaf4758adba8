"""The launchers: cluster readiness, clear errors, ports outside the ephemeral range, processes acted on by pid
only while they are still the recorded ones, and the `rulegate-dev` command line."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rulegate.keyspace import Keys
from rulegate_dev.cli import main
from rulegate_dev.cluster import LauncherError, LocalCluster, find_free_base
from rulegate_dev.nginx import free_port as nginx_free_port
from rulegate_dev.ports import ephemeral_range, free_port, is_ephemeral, single_port_candidates
from rulegate_dev.processes import ProcessRecord, stop_records
from rulegate_dev.runstate import DemoState, open_run_dir

pytestmark = pytest.mark.integration


def test_ready_cluster_has_three_masters_with_a_synced_replica_each(cluster):
    """After start(), every master has exactly one replica whose link is up."""
    masters = [n for n in cluster.live_nodes() if cluster.role_of(n) == "master"]
    assert len(masters) == 3
    for master in masters:
        assert len(cluster.replicas_of(master)) == 1
    assert cluster.slot_owner(Keys("prod").slot) in masters


def test_taken_port_is_a_clear_error(tmp_path):
    """A port in use makes start() fail naming the port, before any process starts."""
    base = find_free_base(6)
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 2))
        s.listen()
        c = LocalCluster(tmp_path, base)
        with pytest.raises(LauncherError, match=f"port {base + 2} .* is taken"):
            c.start()
        assert all(n.pid is None for n in c.nodes)


def test_missing_redis_server_is_a_clear_error(tmp_path, monkeypatch):
    """Without redis-server on PATH the launcher says how to install it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LauncherError, match="apt-get install -y redis-server"):
        LocalCluster(tmp_path).start()


def test_cli_up_status_down(tmp_path):
    """`rulegate-dev cluster up|status|down` manages a detached cluster recorded in the data dir."""
    base = find_free_base(6)
    assert main(["cluster", "up", "--data-dir", str(tmp_path), "--base-port", str(base)]) == 0
    try:
        assert main(["cluster", "status", "--data-dir", str(tmp_path)]) == 0
    finally:
        assert main(["cluster", "down", "--data-dir", str(tmp_path)]) == 0
    with pytest.raises(SystemExit):
        main(["cluster", "bogus"])


def test_picked_ports_lie_outside_the_ephemeral_range():
    """free_port() (also re-exported by the nginx launcher) and find_free_base() stay outside ip_local_port_range,
    bus ports included, and never hand out the same port twice."""
    singles = [free_port() for _ in range(50)] + [nginx_free_port() for _ in range(50)]
    assert len(set(singles)) == 100
    assert [p for p in singles if is_ephemeral(p)] == []
    base = find_free_base(6)
    assert [p for k in range(6) for p in (base + k, base + k + 10000) if is_ephemeral(p)] == []


def test_port_candidates_follow_the_kernel_range(tmp_path):
    """The candidates adapt to the range the kernel reports (read from the proc file), whatever it is."""
    (tmp_path / "range").write_text("10000\t60999\n")
    span = ephemeral_range(tmp_path / "range")
    assert span == (10000, 60999)
    assert min(single_port_candidates(span)) == 61000
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)


@pytest.fixture()
def sleeper():
    """A `sleep` process this test starts in its own process group (killed at the end if still running)."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_reused_pid_is_never_signalled(sleeper):
    """A record whose start time is not the running process's (the pid was reused) is left alone."""
    rec = ProcessRecord.capture("sleep", sleeper.pid)
    assert rec is not None and rec.group and rec.running()
    stale = ProcessRecord(rec.name, rec.pid, rec.start - 1, rec.exe, rec.group)
    assert not stale.running()
    assert stop_records([stale], timeout=1) == []
    assert sleeper.poll() is None


def test_stop_records_stops_the_recorded_group(sleeper):
    """A recorded group leader that is still ours is stopped with SIGTERM, its group with it."""
    rec = ProcessRecord.capture("sleep", sleeper.pid)
    assert stop_records([rec], timeout=10) == ["sleep"]
    assert sleeper.wait(10) == -signal.SIGTERM


def test_stop_cleans_up_after_a_dead_launcher(tmp_path, sleeper):
    """`rulegate-dev stop` stops the processes of a demo whose launcher died, removes its temp dir and state."""
    run_dir = open_run_dir(tmp_path / "run")
    data = tmp_path / "rulegate-demo-x"
    data.mkdir(mode=0o700)
    dead = subprocess.Popen(["true"])
    launcher = ProcessRecord.capture("launcher", os.getpid())
    state = DemoState(run_dir / "demo-1.json", ProcessRecord("launcher", dead.pid, 0, launcher.exe, False),
                      str(data), True)
    dead.wait()
    state.save()
    state.record("sleep", sleeper.pid)
    res = subprocess.run([sys.executable, "-m", "rulegate_dev", "stop", "--run-dir", str(run_dir)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "left behind: sleep" in res.stdout
    assert sleeper.wait(10) == -signal.SIGTERM
    assert not data.exists() and list(run_dir.iterdir()) == []


def test_stop_with_nothing_recorded_says_so(tmp_path, capsys):
    """`rulegate-dev stop` with an empty run dir exits 0 and says there was nothing to stop."""
    assert main(["stop", "--run-dir", str(tmp_path / "run")]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_run_dir_of_another_user_is_refused(tmp_path):
    """A run dir that is a symlink or belongs to someone else is refused with a message naming the variable."""
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(LauncherError, match="symlink.*RULEGATE_RUN_DIR"):
        open_run_dir(tmp_path / "link")
    if os.getuid() == 0:
        (tmp_path / "theirs").mkdir()
        os.chown(tmp_path / "theirs", 65534, 65534)
        with pytest.raises(LauncherError, match="belongs to uid 65534.*RULEGATE_RUN_DIR"):
            open_run_dir(tmp_path / "theirs")


@pytest.mark.parametrize("argv", [[], ["cluster"], ["demo"], ["stop"]])
def test_help_describes_defaults_and_environment(argv, capsys):
    """Every --help names the environment variable and the exit statuses; options show defaults and units."""
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "RULEGATE_RUN_DIR" in out and "Exit status" in out
    if argv == ["cluster"]:
        assert "milliseconds" in out and "(default: 2000)" in out and "(default: 7000)" in out
    if argv == ["demo"]:
        assert "(default: 8080 when free, else picked)" in out and "removed on stop" in out


@pytest.mark.parametrize("argv, message", [
    (["demo", "--agent-port", "70000"], "port must be 1-65535, got 70000"),
    (["demo", "--admin-ports", "8081"], "expected two ports as A,B"),
    (["demo", "--base-port", "60000"], "port must be 1-55530"),
    (["demo", "stop", "--check"], "demo stop takes only --run-dir, not --check"),
    (["cluster", "up", "--node-timeout", "soon"], "not a whole number of milliseconds"),
    (["cluster", "down", "--data-dir", "/nonexistent/rulegate"], "no cluster recorded in /nonexistent/rulegate"),
    (["demo", "--data-dir", "/dev/null"], "cannot use --data-dir /dev/null: File exists"),
])
def test_bad_input_is_a_clear_error_with_status_2(argv, message, tmp_path):
    """Bad arguments, a missing cluster or an unusable data dir print one clear line and exit 2, no traceback."""
    res = subprocess.run([sys.executable, "-m", "rulegate_dev", *argv], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "RULEGATE_RUN_DIR": str(tmp_path / "run")})
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def test_cluster_down_never_signals_a_pid_that_is_no_longer_its_node(tmp_path, sleeper):
    """A cluster.json whose pid now belongs to another process (reused pid) makes `down` leave that process alone."""
    state = {"base_port": 7000, "masters": 3, "acl": None,
             "nodes": [{"port": 7000 + i, "pid": sleeper.pid if i == 0 else None, "process": None} for i in range(6)]}
    (tmp_path / "cluster.json").write_text(json.dumps(state))
    assert main(["cluster", "down", "--data-dir", str(tmp_path)]) == 0
    assert sleeper.poll() is None
    assert not Path(tmp_path / "cluster.json").exists()
