"""One option declaration type for every wsload option, and the ways a declaration is used.

A declaration is plain data, so the same row becomes a Locust option (command line,
environment variable, ``locust.conf``, web UI form), a plain argparse argument (the
reference target's knobs) and a line of ``wsload options``, without the three drifting
apart. Help texts use argparse's conventions (``%%`` for a percent sign, ``%(default)s``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from wsload.errors import ConfigError

#: option groups, in the order ``wsload options`` lists them
GROUPS = ("run", "gate", "capacity", "slo", "target")


@dataclass(frozen=True)
class OptionSpec:
    """One option: its flag, environment variable, help, default and how values parse.

    ``web_ui`` says whether Locust's web UI form offers it: never for secrets (Locust writes
    a form value into the page source), repeatable options (the form edits one value) or
    knobs that only act at start-up. ``field`` names the attribute the value fills when it
    is not ``dest`` (the SLO's fields); ``section`` and ``metavar`` shape ``--help``.
    """

    flag: str
    env: str | None
    help: str
    default: Any = None
    type: type = str
    secret: bool = False
    choices: tuple[Any, ...] | None = None
    action: str | None = None  # "append" (repeatable) or "store_true" (a switch)
    web_ui: bool = True
    group: str = "run"
    section: str = ""
    metavar: str | None = None
    field: str = ""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def name(self) -> str:
        return self.flag.lstrip("-")

    def plain_help(self) -> str:
        """The help as it reads on screen: argparse escapes and ``%(default)s`` resolved."""
        try:
            return self.help % {"default": self.default}
        except (KeyError, TypeError, ValueError):
            return self.help

    def coerce(self, value: Any) -> Any:
        """A namespace value in this option's type; None when unset.

        Values typed into Locust's web UI arrive as text when the option's default is
        None, so numbers are parsed here, with a ``ConfigError`` naming the option.
        """
        if value is None or value == "":
            return None
        if self.action == "append":
            values = (value,) if isinstance(value, str) else tuple(value)
            return tuple(v for v in values if v not in (None, "")) or None
        if self.action == "store_true":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if self.type in (int, float) and not isinstance(value, bool | int | float):
            try:
                value = self.type(str(value).strip())
            except ValueError:
                kind = "a whole number" if self.type is int else "a number"
                raise ConfigError(
                    f"--{self.name} must be {kind}, got {value!r}",
                    fix=f"give --{self.name} {self.default if self.default is not None else 1}",
                ) from None
        elif self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.choices and value not in self.choices:
            raise ConfigError(
                f"--{self.name} {value!r} is not one of {', '.join(map(str, self.choices))}",
                fix=f"give --{self.name} {self.choices[0]}",
            )
        return value


def _common_kwargs(spec: OptionSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"default": spec.default}
    if spec.action:
        kwargs["action"] = spec.action
    elif spec.type is not str:
        kwargs["type"] = spec.type
    if spec.choices:
        kwargs["choices"] = spec.choices
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    return kwargs


def add_locust_arguments(parser: Any, specs: tuple[OptionSpec, ...]) -> None:
    """Register ``specs`` on Locust's parser: flag, environment variable, web UI form."""
    for spec in specs:
        kwargs = _common_kwargs(spec)
        kwargs["help"] = f"{spec.help} [env {spec.env}]" if spec.env else spec.help
        if spec.env:
            kwargs["env_var"] = spec.env
        kwargs["include_in_web_ui"] = spec.web_ui
        parser.add_argument(spec.flag, **kwargs)


def add_argparse_arguments(parser: argparse.ArgumentParser, specs: tuple[OptionSpec, ...]) -> None:
    """Add ``specs`` to a plain argparse parser, one argument group per ``section``."""
    sections: dict[str, Any] = {}
    for spec in specs:
        group = sections.get(spec.section)
        if group is None:
            group = parser.add_argument_group(spec.section) if spec.section else parser
            sections[spec.section] = group
        group.add_argument(spec.flag, help=spec.help, **_common_kwargs(spec))
