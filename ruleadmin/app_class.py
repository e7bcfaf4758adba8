"""ruleadmin's Flask class: Flask, remembering which view and hook functions `ensure_sync` returns as they are."""
from __future__ import annotations

from typing import Any, Callable

from flask import Flask

SYNC_REMEMBERED = 4096  # functions ensure_sync remembers (views and hooks: a few hundred; per-request callbacks stop)


class RuleadminFlask(Flask):
    """Flask's app. Every request runs `ensure_sync` on its view and each hook (seven times for an API write), which
    inspects the function to find out that it is not a coroutine function (~2.5k instructions each); the functions
    it returned unchanged are remembered, and returned unchanged again without the inspection."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._plain: dict[Callable, None] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        """Return func when it is a plain function (as Flask.ensure_sync does), else Flask's sync wrapper of it."""
        plain = self._plain
        try:
            if func in plain:
                return func
        except TypeError:  # an unhashable callable: as Flask does, every time
            return super().ensure_sync(func)
        wrapped = super().ensure_sync(func)
        if wrapped is func and len(plain) < SYNC_REMEMBERED:
            plain[func] = None
        return wrapped
