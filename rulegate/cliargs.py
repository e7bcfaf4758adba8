"""argparse for the ruleadmin and gateway-agent commands: options an environment variable can also give
(flag > variable > default, the help says which), and value types whose errors name what is wrong."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .schema import is_valid_id

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def host_port(text: str) -> str:
    """Return text when it is host:port with a port 1-65535; raise ArgumentTypeError."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port (e.g. 127.0.0.1:9901)")
    return text.strip()


def host_ports(text: str) -> str:
    """Return text when it is a comma-separated list of host:port; raise ArgumentTypeError."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if not parts:
        raise argparse.ArgumentTypeError("expected host:port[,host:port...]")
    return ",".join(host_port(p) for p in parts)


def positive(kind: type) -> Callable[[str], Any]:
    """Return a converter of text to a number of `kind` (int or float) above 0."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
        return value
    convert.__name__ = f"positive {kind.__name__}"
    return convert


def identifier(what: str) -> Callable[[str], str]:
    """Return a converter accepting a name like [a-z0-9][a-z0-9_.-]{0,63} (what: 'namespace', 'username')."""
    def convert(text: str) -> str:
        if not is_valid_id(text):
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {what}: use 1-64 of a-z 0-9 _ . - "
                                             "(starting with a letter or digit)")
        return text
    convert.__name__ = what
    return convert


def boolean(text: str) -> bool:
    """Return True/False for 1/0, true/false, yes/no, on/off; raise ArgumentTypeError."""
    low = text.strip().lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false)")


@dataclass(frozen=True)
class _EnvOption:
    dest: str
    env: str
    convert: Callable[[str], Any]
    default: Any
    required: bool
    flag: str


class EnvArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose env options fall back to an environment variable, then a default."""

    def __init__(self, *args, environ: Mapping[str, str] | None = None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.environ = environ
        self.env_options: list[_EnvOption] = []

    def add_env_argument(self, flag: str, env: str, *, help: str, type: Callable[[str], Any] = str,
                         default: Any = None, required: bool = False, switch: bool = False,
                         metavar: str | None = None, shown: str | None = None) -> None:
        """Add --flag (a value, or with switch=True an on/off flag) that $env may give instead; the help
        ends with "(default: <shown or default>; env <env>)" or "(required; env <env>)"."""
        if switch:
            default = bool(default)
        if shown is None:
            shown = "off" if switch and not default else "none" if default is None else str(default)
        said = "required" if required else f"default: {shown}"
        text = f"{help} ({said}; env {env})".replace("%", "%%")
        if switch:
            action = self.add_argument(flag, action="store_true", default=None, help=text)
        else:
            action = self.add_argument(flag, type=type, default=None, help=text, metavar=metavar)
        self.env_options.append(_EnvOption(action.dest, env, boolean if switch else type, default, required, flag))

    def error(self, message: str):
        """Print one line, "<prog>: error: <message>", to stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        """Parse, then fill unset env options from the environment or their defaults; exit 2 naming the
        flag or variable at fault."""
        ns, rest = super().parse_known_args(args, namespace)
        environ = os.environ if self.environ is None else self.environ
        for opt in self.env_options:
            if getattr(ns, opt.dest, None) is not None:
                continue
            raw = environ.get(opt.env)
            if raw is not None and raw != "":
                try:
                    setattr(ns, opt.dest, opt.convert(raw))
                except (argparse.ArgumentTypeError, ValueError) as exc:
                    self.error(f"environment variable {opt.env}: {exc}")
            elif opt.required:
                self.error(f"the following arguments are required: {opt.flag} (or environment variable {opt.env})")
            else:
                setattr(ns, opt.dest, opt.default)
        return ns, rest
