"""TCP ports on 127.0.0.1 for every launcher (cluster, nginx, ruleadmin, agent), picked in one place.

Ports are picked outside the kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``):
the kernel gives those to outgoing connections, so a port picked there can be taken by some client
between the moment it is found free and the moment the server binds it. Single ports come from
``SINGLE_PORTS`` (and above the ephemeral range), cluster bases from ``CLUSTER_BASES`` with their bus
ports at ``+BUS_OFFSET``; a port handed out once by this process is not handed out again.
"""
from __future__ import annotations

import random
import socket
import threading
from functools import lru_cache
from pathlib import Path

from .errors import LauncherError

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)  # Linux's default
SINGLE_PORTS = range(10000, 20000)
CLUSTER_BASES = range(20000, 30000)
BUS_OFFSET = 10000

_random = random.Random()  # seeded from os.urandom: each process starts elsewhere
_lock = threading.Lock()
_handed_out: set[int] = set()


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """Return the kernel's ephemeral port range (low, high), inclusive; Linux's default when unreadable."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return low, high


def is_ephemeral(port: int, span: tuple[int, int] | None = None) -> bool:
    """Return True when port lies in the ephemeral range (the kernel's, or span)."""
    low, high = span or ephemeral_range()
    return low <= port <= high


def port_is_free(port: int) -> bool:
    """Return True when nothing listens on 127.0.0.1:port and we can bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def single_port_candidates(span: tuple[int, int] | None = None) -> list[int]:
    """Return the ports free_port() may pick: SINGLE_PORTS and the ports above the ephemeral range,
    minus the ephemeral range and the cluster band (bases and bus ports)."""
    return list(_singles(span or ephemeral_range()))


@lru_cache(maxsize=4)
def _singles(span: tuple[int, int]) -> tuple[int, ...]:
    cluster_band = range(CLUSTER_BASES.start, CLUSTER_BASES.stop + BUS_OFFSET)
    ports = [*SINGLE_PORTS, *range(span[1] + 1, 65536)]
    return tuple(p for p in ports if not is_ephemeral(p, span) and p not in cluster_band)


def free_port() -> int:
    """Return a port on 127.0.0.1, outside the ephemeral range, free a moment ago and not handed out
    before by this process; raise LauncherError when there is none."""
    span = ephemeral_range()
    candidates = single_port_candidates(span)
    start = _random.randrange(len(candidates)) if candidates else 0
    candidates = candidates[start:] + candidates[:start]
    with _lock:
        for port in candidates:
            if port not in _handed_out and port_is_free(port):
                _handed_out.add(port)
                return port
    raise LauncherError(f"no free port on 127.0.0.1 outside the ephemeral range {span[0]}-{span[1]} "
                        f"({EPHEMERAL_RANGE_FILE})")


def find_free_base(count: int, offset: int = BUS_OFFSET) -> int:
    """Return a base port where `count` ports and their bus ports (+offset) are free and outside the
    ephemeral range (a restarted node never finds its port taken by a client connection); raise
    LauncherError when there is none."""
    span = ephemeral_range()

    def ports(base: int) -> list[int]:
        return [base + k + o for k in range(count) for o in (0, offset)]

    bases = [b for b in CLUSTER_BASES if all(p <= 65535 and not is_ephemeral(p, span) for p in ports(b))]
    _random.shuffle(bases)
    with _lock:
        for base in bases:
            wanted = ports(base)
            if not _handed_out.intersection(wanted) and all(port_is_free(p) for p in wanted):
                _handed_out.update(wanted)
                return base
    raise LauncherError(f"no free range of {count} ports (and bus ports +{offset}) on 127.0.0.1 outside the "
                        f"ephemeral range {span[0]}-{span[1]} ({EPHEMERAL_RANGE_FILE})")
