"""The agent's snapshot after deltas is a checkpoint: once changes settle, not once per change."""
from __future__ import annotations

import time

from rulegate.snapshot import read_snapshot

from .conftest import make_client, split_rule


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_burst_of_changes_is_written_once_it_settles(cluster, store, namespace, tmp_path):
    """A full load writes the file at once; 40 one-rule changes in a row are applied as deltas, and the file
    is rewritten after they settle (checkpoint_delay), a few times, not 40 times; it then holds the last one."""
    snap = tmp_path / "agent.snap"
    rev = store.put_rule(namespace, split_rule("r0", "v0"), None, "test").revision
    with make_client(cluster, namespace, snapshot_path=str(snap), refresh_interval=0.1,
                     checkpoint_delay=0.5, checkpoint_max=30) as client:
        stats = client.syncer.stats
        assert client.wait_for_revision(rev, 10.0)
        assert read_snapshot(snap).revision == rev and stats.snapshot_writes == 1  # the full load's, at once
        for i in range(40):
            rev = store.put_rule(namespace, split_rule(f"r{i % 5}", f"v{i}", path=f"/{i % 5}"), None,
                                 "test").revision
        assert client.wait_for_revision(rev, 10.0)
        # (the file is renamed into place before the write is counted: wait for both)
        _wait(lambda: read_snapshot(snap).revision == rev and stats.deltas_applied == 40 and stats.snapshot_writes >= 2)
        assert stats.full_reloads == 1
        # one checkpoint, or a few when this machine stalls the writer for checkpoint_delay between two puts
        assert 2 <= stats.snapshot_writes <= 10, stats.snapshot_writes
        assert stats.snapshot_pending == 0
        assert set(read_snapshot(snap).rules()) == {f"r{i}" for i in range(5)}
        assert read_snapshot(snap).rules()["r4"]["default"] == "v39"


def test_pending_changes_are_written_on_stop(cluster, store, namespace, tmp_path):
    """Deltas not yet checkpointed reach the file when the client stops (a clean shutdown loses nothing of
    what it served), stamped with when they were last confirmed current."""
    snap = tmp_path / "agent.snap"
    first = store.put_rule(namespace, split_rule("r0", "v0"), None, "test").revision
    with make_client(cluster, namespace, snapshot_path=str(snap), refresh_interval=0.1,
                     checkpoint_delay=60, checkpoint_max=60) as client:
        rev = store.put_rule(namespace, split_rule("r1", "v1", path="/1"), None, "test").revision
        assert client.wait_for_revision(rev, 10.0)
        time.sleep(0.3)  # a few sync cycles: the checkpoint is not due for 60 s
        assert read_snapshot(snap).revision == first and client.syncer.stats.snapshot_pending == 1
        client.syncer._confirm = lambda: None  # as if Redis stopped answering: nothing confirmed from now on
        time.sleep(0.3)  # a confirmation under way when patched has ended
        confirmed = client.syncer.confirmed_at
        time.sleep(2.2)
    held = read_snapshot(snap)
    assert held.revision == rev and set(held.rules()) == {"r0", "r1"}
    # stamped when the rules were last confirmed current, not when the file was written (2 s later)
    assert held.written_at == int(confirmed) and time.time() - held.written_at >= 2


def test_many_deltas_are_written_during_a_burst(cluster, store, namespace, tmp_path, monkeypatch):
    """CHECKPOINT_EVERY deltas write the file even while changes keep coming."""
    from gateway_agent import sync

    monkeypatch.setattr(sync, "CHECKPOINT_EVERY", 5)
    snap = tmp_path / "agent.snap"
    first = store.put_rule(namespace, split_rule("r0", "v0"), None, "test").revision
    with make_client(cluster, namespace, snapshot_path=str(snap), refresh_interval=0.1,
                     checkpoint_delay=60, checkpoint_max=60) as client:
        assert client.wait_for_revision(first, 10.0)
        for i in range(5):
            rev = store.put_rule(namespace, split_rule("r0", f"v{i + 1}"), None, "test").revision
            assert client.wait_for_revision(rev, 10.0)  # one delta at a time
        stats = client.syncer.stats
        _wait(lambda: stats.deltas_applied == 5 and stats.snapshot_writes == 2)  # counted just after the install
        assert stats.snapshot_pending == 0
        assert read_snapshot(snap).revision == rev
