"""The gunicorn worker class `ruleadmin serve` runs: gunicorn's gevent worker, its settings read as plain attributes.

gunicorn's `Config` answers `cfg.<setting>` through `__getattr__`, which Python calls only after the normal lookup
failed and built an AttributeError (its message formatted) for it; the worker reads ~26 settings per HTTP request
(parser limits, header policy, keep-alive, timeouts), ~170k instructions of a request. In the worker process, its
configuration is copied once with each setting's value as an instance attribute: the same values, found directly.
The arbiter keeps its own `Config` (a reload of the configuration starts new workers, each copying the new one).
"""
from __future__ import annotations

from typing import Any

from gunicorn.config import Config
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker


class SettledConfig(Config):
    """A copy of a worker's Config whose settings are instance attributes holding what `Config.__getattr__` returns
    (`settings[name].get()`); names the Config class itself defines (properties such as `worker_class`, methods)
    are left to the class, as they are in Config, and `set()` refreshes the copy."""

    def __init__(self, cfg: Config):  # pylint: disable=super-init-not-called  (a copy of cfg, not a new Config)
        object.__setattr__(self, "settings", cfg.settings)
        for name, value in vars(cfg).items():
            if name != "settings":
                object.__setattr__(self, name, value)
        self._settle()

    def _settle(self) -> None:
        cls = type(self)
        for name, setting in self.settings.items():
            if not hasattr(cls, name):
                object.__setattr__(self, name, setting.get())

    def set(self, name: str, value: Any) -> None:
        """Set a setting as Config.set does, and its attribute with it."""
        super().set(name, value)
        self._settle()


class GeventWorker(_GeventWorker):
    """gunicorn's gevent worker (`--worker-class gevent`) reading its settings from a SettledConfig."""

    def init_process(self) -> None:
        """Settle the configuration in the worker process (after the fork), then run as gunicorn's worker."""
        self.cfg = SettledConfig(self.cfg)
        super().init_process()
