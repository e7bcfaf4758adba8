"""ruleadmin's gunicorn worker class: gunicorn's gevent worker whose settings are plain attributes (same values)."""
from __future__ import annotations

import argparse
import subprocess
import sys

from gunicorn.config import Config
from gunicorn.workers.ggevent import GeventWorker as StockGeventWorker

from ruleadmin.gunicorn_worker import GeventWorker, SettledConfig


def _configured() -> Config:
    cfg = Config()
    for name, value in (("worker_class", "ruleadmin.gunicorn_worker.GeventWorker"), ("workers", 2),
                        ("keepalive", 7), ("forwarded_allow_ips", "127.0.0.1"), ("limit_request_line", 1024),
                        ("bind", ["127.0.0.1:1"])):
        cfg.set(name, value)
    return cfg


def test_settled_config_reads_every_setting_and_property_as_config_does():
    cfg = _configured()
    settled = SettledConfig(cfg)
    assert isinstance(settled, Config)
    for name in cfg.settings:
        assert getattr(settled, name) == getattr(cfg, name), name
    for name in ("worker_class", "worker_class_str", "address", "is_ssl", "sendfile", "reuse_port", "env",
                 "proc_name", "uid", "gid"):  # Config's properties
        assert getattr(settled, name) == getattr(cfg, name), name
    assert settled.worker_class is GeventWorker
    assert settled.forwarded_allow_networks() == cfg.forwarded_allow_networks()
    assert settled.proxy_allow_networks() == cfg.proxy_allow_networks()
    assert "settings" not in vars(settled) or settled.settings is cfg.settings
    assert "keepalive" in vars(settled) and "worker_class" not in vars(settled)  # a property stays the class's


def test_settled_config_set_updates_the_attribute_and_refuses_unknown_names():
    settled = SettledConfig(_configured())
    settled.set("keepalive", 9)
    assert settled.keepalive == 9 and settled.settings["keepalive"].get() == 9
    try:
        settled.set("no_such_setting", 1)
    except AttributeError as exc:
        assert "No configuration setting for: no_such_setting" in str(exc)
    else:
        raise AssertionError("an unknown setting was accepted")
    try:
        settled.no_such_setting  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("an unknown attribute was found")


def test_worker_class_is_the_gevent_worker_and_serve_runs_it(monkeypatch):
    assert issubclass(GeventWorker, StockGeventWorker)
    import ruleadmin.cli as cli

    seen: list[list[str]] = []
    monkeypatch.setenv("RULEADMIN_SECRET_KEY", "x" * 32)
    monkeypatch.setattr(cli.os, "execv", lambda _exe, argv: seen.append(argv))
    cli.serve(argparse.Namespace(workers=1, worker_connections=10, bind="127.0.0.1:1", timeout=5, access_log=None))
    argv = seen[0]
    assert argv[argv.index("--worker-class") + 1] == "ruleadmin.gunicorn_worker.GeventWorker"


def test_importing_the_worker_class_imports_no_app_module():
    """gunicorn's arbiter imports the worker class before its workers fork and gevent monkey-patches them: the app's
    modules (Flask, redis-py, ...) must be imported only after that, in the worker, as with `-k gevent`."""
    code = ("import sys, gunicorn.workers.ggevent; before = set(sys.modules); import ruleadmin.gunicorn_worker; "
            "new = set(sys.modules) - before; "
            "print(sorted(m for m in new if m.split('.')[0] in ('flask', 'werkzeug', 'redis', 'rulegate', 'ssl') "
            "or m.startswith('ruleadmin.') and m != 'ruleadmin.gunicorn_worker'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
