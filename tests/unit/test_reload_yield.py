"""The sidecar's reload yields until gevent's loop is idle (gateway_agent/sync.py `until_idle`): whatever is ready
when a slice ends runs whole before the next slice, however many loop turns it needs."""
from __future__ import annotations

import gevent
import gevent.socket

from gateway_agent import sync

STEPS = 6


def test_one_yield_lets_a_request_of_several_loop_turns_finish(monkeypatch):
    """A chain of STEPS greenlets, each waiting on its socket and then writing the next one's, is done after the
    reload's first yield (a 10 µs sleep let the reload's timer run first: one step per slice)."""
    monkeypatch.setattr(sync, "IDLE_WAIT_MAX", 60.0)  # the bound is no part of this (a descheduled process)
    pairs = [gevent.socket.socketpair() for _ in range(STEPS + 1)]
    done: list[int] = []

    def relay(i: int) -> None:
        pairs[i + 1][0].sendall(pairs[i][1].recv(1))
        done.append(i)

    relays = [gevent.spawn(relay, i) for i in range(STEPS)]
    gevent.idle()  # every relay waits on its socket
    seen: list[int] = []

    def load() -> None:
        pairs[0][0].sendall(b"x")  # a request arrives during a slice
        sync.until_idle()  # the end of that slice
        seen.append(len(done))

    gevent.spawn(load).join()
    gevent.joinall(relays)
    for a, b in pairs:
        a.close()
        b.close()
    assert seen == [STEPS]


def test_a_loop_never_idle_still_lets_the_reload_go_on(monkeypatch):
    """With a greenlet always ready, the yield ends after IDLE_WAIT_MAX (one slice per IDLE_WAIT_MAX at worst)."""
    monkeypatch.setattr(sync, "IDLE_WAIT_MAX", 0.005)
    turns: list[None] = []
    stop: list[None] = []

    def busy() -> None:
        while not stop:
            turns.append(None)
            gevent.sleep(0)

    worker = gevent.spawn(busy)
    gevent.sleep(0)
    sync.until_idle()
    stop.append(None)
    worker.join()
    assert len(turns) > 1  # it ran during the yield, and the yield ended
