"""ruleadmin.app_class.RuleadminFlask: ensure_sync remembers plain functions and otherwise does what Flask does."""
from __future__ import annotations

from flask import Flask

from ruleadmin import app_class
from ruleadmin.app_class import RuleadminFlask


def _counting(monkeypatch) -> list:
    seen: list = []
    real = Flask.ensure_sync

    def counted(self, func):
        seen.append(func)
        return real(self, func)

    monkeypatch.setattr(Flask, "ensure_sync", counted)
    return seen


def test_a_plain_function_is_inspected_once_and_returned_as_it_is(monkeypatch):
    seen = _counting(monkeypatch)
    app = RuleadminFlask(__name__)

    def view():
        return "x"

    class Hooks:
        def after(self, resp):
            return resp

    hooks = Hooks()
    assert all(app.ensure_sync(view) is view for _ in range(3))
    assert all(app.ensure_sync(hooks.after) == hooks.after for _ in range(3))
    assert seen == [view, hooks.after]


def test_a_coroutine_function_goes_to_flask_every_time(monkeypatch):
    async def view():
        return "x"

    expected = _flask_error(view)
    seen = _counting(monkeypatch)
    app = RuleadminFlask(__name__)
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(callable(app.ensure_sync(view)))
        except RuntimeError as exc:  # Flask without its async extra says so, as plain Flask would
            outcomes.append(str(exc) == expected)
    assert outcomes == [True, True] and seen == [view, view]


def _flask_error(view) -> str:
    try:
        Flask(__name__).ensure_sync(view)
    except RuntimeError as exc:
        return str(exc)
    return ""


def test_unhashable_callables_and_the_bound_work(monkeypatch):
    seen = _counting(monkeypatch)
    monkeypatch.setattr(app_class, "SYNC_REMEMBERED", 2)
    app = RuleadminFlask(__name__)

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self):
            return "x"

    odd = Unhashable()
    assert app.ensure_sync(odd) is odd and app.ensure_sync(odd) is odd
    funcs = [lambda: 1, lambda: 2, lambda: 3]
    for f in funcs + funcs:
        assert app.ensure_sync(f) is f
    assert seen.count(odd) == 2 and seen.count(funcs[2]) == 2 and seen.count(funcs[0]) == 1
