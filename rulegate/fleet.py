"""Fleet heartbeats: every gateway writes the revision it applied into HASH {rg:<ns>}:fleet.

Field = gateway id; value = msgpack map {"kind": "agent"|"nginx", "revision": int,
"generation": str, "applied_at": float, "heartbeat_at": float, "staleness": float,
"last_error": str, "digest": str (rulegate/digest.py of the applied content), "in_sync": bool (the
gateway's content digest equals the store's at its last check), "stale": bool, "refused_revision": int
(0 = none; a store revision the gateway could not apply), "refused_reason": str, "upstreams": [str] (the
upstream names this gateway can route to: nginx from the include's configuration, the agent from its
configuration; empty = not reported)}. The agent writes it,
nginx writes the same format, the admin reads it; fields missing from older gateways get defaults.
"""
from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from .errors import CorruptDataError
from .keyspace import Keys

FIELDS = ("kind", "revision", "generation", "applied_at", "heartbeat_at", "staleness", "last_error", "digest",
          "in_sync", "stale", "refused_revision", "refused_reason", "upstreams")
MAX_UPSTREAMS = 512  # names kept from one heartbeat (a gateway's configuration, not traffic)


@dataclass(frozen=True)
class Heartbeat:
    """One gateway's report of what it runs."""

    kind: str
    revision: int
    generation: str
    applied_at: float
    heartbeat_at: float
    staleness: float
    last_error: str = ""
    digest: str = ""
    in_sync: bool | None = None
    stale: bool = False
    refused_revision: int = 0
    refused_reason: str = ""
    upstreams: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """Return the msgpack bytes stored in the fleet hash."""
        return msgpack.packb(asdict(self), use_bin_type=True)


def default_gateway_id() -> str:
    """Return "agent-<hostname>-<pid>"."""
    return f"agent-{socket.gethostname()}-{os.getpid()}"


def decode_heartbeat(raw: bytes, where: str = "heartbeat") -> Heartbeat:
    """Return the Heartbeat in raw; raise CorruptDataError when it is not one."""
    try:
        data: Any = msgpack.unpackb(raw, raw=False)
        if not isinstance(data, dict):
            raise TypeError("not a map")
        return Heartbeat(kind=str(data["kind"]), revision=int(data["revision"]),
                         generation=str(data.get("generation", "")),
                         applied_at=float(data.get("applied_at", 0.0)),
                         heartbeat_at=float(data["heartbeat_at"]),
                         staleness=float(data.get("staleness", 0.0)),
                         last_error=str(data.get("last_error") or ""),
                         digest=str(data.get("digest") or ""),
                         in_sync=None if data.get("in_sync") is None else bool(data["in_sync"]),
                         stale=bool(data.get("stale", False)),
                         refused_revision=int(data.get("refused_revision") or 0),
                         refused_reason=str(data.get("refused_reason") or ""),
                         upstreams=_upstreams(data.get("upstreams")))
    except (KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
        raise CorruptDataError(f"{where}: undecodable ({exc.__class__.__name__})") from None


def _upstreams(value: Any) -> tuple[str, ...]:
    """Return the reported upstream names: strings only, sorted, at most MAX_UPSTREAMS (an empty map from Lua's
    cjson/msgpack for an empty list counts as none)."""
    if value is None or value == {}:
        return ()
    if not isinstance(value, (list, tuple)):
        raise TypeError("upstreams is not a list")
    return tuple(sorted({str(name) for name in value if isinstance(name, str)}))[:MAX_UPSTREAMS]


def read_fleet(client, namespace: str) -> dict[str, Heartbeat | None]:
    """Return gateway id -> Heartbeat (None for an undecodable value); raises redis errors."""
    raw = client.hgetall(Keys(namespace).fleet)
    out: dict[str, Heartbeat | None] = {}
    for key, value in raw.items():
        gateway = key.decode() if isinstance(key, bytes) else key
        try:
            out[gateway] = decode_heartbeat(value, f"fleet entry {gateway!r}")
        except CorruptDataError:
            out[gateway] = None
    return dict(sorted(out.items()))
