"""Thread-safe counter records: a dataclass of numbers guarded by one lock."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class LockedCounters:
    """Base of counter dataclasses; update fields under `lock`, read them with snapshot()."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: float = 1) -> None:
        """Add n to the counter called name."""
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, float]:
        """Return the counters as a plain dict."""
        with self.lock:
            return {k: v for k, v in vars(self).items() if k != "lock"}
