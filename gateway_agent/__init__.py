"""gateway_agent: what a gateway runs — background sync, budgets, `RuleClient`, the sidecar.

Entry point: `from gateway_agent import RuleClient`. Names are imported lazily so that
`python -m gateway_agent` can apply gevent's monkey patching before redis is imported.
"""
from __future__ import annotations

from typing import Any

__all__ = ["RuleClient", "Decision", "Request"]


def __getattr__(name: str) -> Any:
    if name == "RuleClient":
        from .client import RuleClient
        return RuleClient
    if name in ("Decision", "Request"):
        from rulegate import evaluator
        return getattr(evaluator, name)
    raise AttributeError(f"module 'gateway_agent' has no attribute {name!r}")
