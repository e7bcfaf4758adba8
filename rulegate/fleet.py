"""Fleet heartbeats: every gateway writes the revision it applied into HASH {rg:<ns>}:fleet.

Field = gateway id; value = msgpack map {"kind": "agent"|"nginx", "revision": int,
"generation": str, "applied_at": float, "heartbeat_at": float, "staleness": float,
"last_error": str, "digest": str (rulegate/digest.py of the applied content), "in_sync": bool (the
gateway's content digest equals the store's at its last check), "stale": bool, "refused_revision": int
(0 = none; a store revision the gateway could not apply), "refused_reason": str, "upstreams": [str] (the
upstream names this gateway can route to: nginx from the include's configuration, the agent from its
configuration; empty = not reported), "exposure": map (optional, see `Exposure`: decisions per rule and
upstream since the previous heartbeat, and each rule's last match time), "outcomes": map (optional,
rulegate/outcomes.py: cumulative outcome counts per rule and upstream; absent when nothing was counted),
"breakers": map (optional, rule id -> {"closed": n, "open": n, "half_open": n}: how many of the gateway's
breaker instances of that rule are in each state; one per RuleClient, one per nginx worker)}. The agent writes it,
nginx writes the same format, the admin reads it; fields missing from older gateways get defaults.
"""
from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import msgpack

from .errors import CorruptDataError
from .keyspace import Keys
from .outcomes import Outcomes, decode_outcomes

FIELDS = ("kind", "revision", "generation", "applied_at", "heartbeat_at", "staleness", "last_error", "digest",
          "in_sync", "stale", "refused_revision", "refused_reason", "upstreams", "exposure", "outcomes", "breakers")
MAX_UPSTREAMS = 512  # names kept from one heartbeat (a gateway's configuration, not traffic)
MAX_EXPOSURE_KEYS = 1000  # (rule, target) counts and last-match times kept in one heartbeat; the rest in `other`
PASS_TARGETS = ("@pass", "@respond", "@redirect")  # targets of decisions that name no upstream
BREAKER_STATES = ("closed", "open", "half_open")
MAX_BREAKER_RULES = 1000  # breaker rules kept from one heartbeat


@dataclass(frozen=True)
class Exposure:
    """A gateway's decisions by (rule id, target) in the `window` seconds before its heartbeat.

    The rule id is "" for `pass` (no rule matched); the target is the upstream of a `proxy` decision, else
    "@" + the action ("@pass", "@respond", "@redirect"). `counts` holds at most MAX_EXPOSURE_KEYS entries
    (the largest), `other` the decisions of the rest. `last_match` maps rule id -> the wall time the gateway
    last saw it decide (resolution: one counting interval), `since` is when the gateway started counting."""

    since: float
    window: float
    counts: tuple[tuple[str, str, int], ...] = ()
    other: int = 0
    last_match: dict[str, float] = field(default_factory=dict)

    def per_minute(self, n: int) -> float:
        """Return n decisions in this window as decisions per minute (0.0 for an empty window)."""
        return n * 60.0 / self.window if self.window > 0 else 0.0


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
    exposure: Exposure | None = None
    outcomes: Outcomes | None = None  # cumulative outcome counts (rulegate/outcomes.py)
    breakers: dict[str, dict[str, int]] = field(default_factory=dict)  # rule id -> state -> breaker instances

    def encode(self) -> bytes:
        """Return the msgpack bytes stored in the fleet hash (`outcomes` and `breakers` omitted when empty)."""
        data = asdict(replace(self, outcomes=None, breakers={}))
        del data["outcomes"], data["breakers"]
        if self.outcomes is not None and self.outcomes.counts:
            data["outcomes"] = self.outcomes.to_wire()
        if self.breakers:
            data["breakers"] = self.breakers
        return msgpack.packb(data, use_bin_type=True)


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
                         upstreams=_upstreams(data.get("upstreams")),
                         exposure=decode_exposure(data.get("exposure")),
                         outcomes=decode_outcomes(data.get("outcomes")),
                         breakers=decode_breakers(data.get("breakers")))
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


def decode_exposure(value: Any) -> Exposure | None:
    """Return the Exposure of a heartbeat's "exposure" map; None when absent (older gateways) or malformed
    (the rest of the heartbeat stays readable). Entries beyond MAX_EXPOSURE_KEYS count in `other`."""
    if not isinstance(value, dict):
        return None
    try:
        since, window = float(value.get("since") or 0.0), float(value.get("window") or 0.0)
        counts, other = [], int(value.get("other") or 0)
        raw_counts = value.get("counts") or ()
        for item in raw_counts if isinstance(raw_counts, (list, tuple)) else ():
            rule, target, n = item
            counts.append((str(rule), str(target), int(n)))
        counts.sort(key=lambda c: (-c[2], c[0], c[1]))
        other += sum(c[2] for c in counts[MAX_EXPOSURE_KEYS:])
        raw_last = value.get("last_match") or {}
        last = sorted(((str(k), float(v)) for k, v in raw_last.items()), key=lambda kv: -kv[1]) \
            if isinstance(raw_last, dict) else []
        return Exposure(since, window, tuple(counts[:MAX_EXPOSURE_KEYS]), other, dict(last[:MAX_EXPOSURE_KEYS]))
    except (TypeError, ValueError, AttributeError):
        return None


def decode_breakers(value: Any) -> dict[str, dict[str, int]]:
    """Return a heartbeat's "breakers" map: rule id -> {"closed", "open", "half_open": instances}; empty when
    absent or not a map; an entry that is not such counts (or beyond MAX_BREAKER_RULES) is left out."""
    out: dict[str, dict[str, int]] = {}
    if not isinstance(value, dict):
        return out
    for rule, states in value.items():
        if len(out) >= MAX_BREAKER_RULES:
            break
        if not isinstance(rule, str) or not isinstance(states, dict):
            continue
        try:
            counts = {state: int(states.get(state) or 0) for state in BREAKER_STATES}
        except (TypeError, ValueError, OverflowError):
            continue
        if min(counts.values()) >= 0:
            out[rule] = counts
    return dict(sorted(out.items()))


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
