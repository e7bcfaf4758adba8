"""The cyclic garbage collector held off while a large rule set is built (the agent's reloads, ruleadmin's listings)."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collector_held(freeze: bool = False) -> Iterator[None]:
    """Hold the cyclic GC off inside the block, then (freeze) gc.freeze() what exists.

    Building tens of MiB of rules makes young objects (acyclic, freed by reference counting) that otherwise
    trigger collections traversing every rule already built, each one a 100 ms block — about half the CPU
    of a 20,000-rule decode and compile. Frozen objects are skipped by later collections (refcounting
    still frees them); the freeze is process-wide (docs/agent.md): without it the rules stay in the
    collector's generations, and a later full collection traverses them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()
