"""Errors of the local launchers; each message says what failed and what to do."""
from __future__ import annotations


class LauncherError(RuntimeError):
    """The launcher cannot start, reach or stop its servers; the message says what to do."""
