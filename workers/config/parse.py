"""Reading one configuration section from environment variables.

A section is a frozen dataclass whose fields name their variable in their metadata
(`field(default=..., metadata=env("NAME"))`); the dataclass default is the working
default, an unset or empty variable keeps it, and a value that does not parse raises
`ConfigError` naming the variable, so a typo stops the process at start-up.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_EXPECTED = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}


class ConfigError(ValueError):
    """A configuration variable holds a value that cannot be used; the message names it."""


def env(name: str) -> dict[str, str]:
    """Field metadata: the environment variable that overrides this field's default."""
    return {"env": name}


def variables(section: type) -> list[str]:
    """The environment variables a section reads, in field order."""
    return [f.metadata["env"] for f in dataclasses.fields(section) if "env" in f.metadata]


def _scalar(hint: Any) -> type:
    """int from `int`, str from `str | None`: the type a variable's text parses to."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint not in _EXPECTED:
        raise TypeError(f"no parser for configuration fields of type {hint!r}")
    return typing.cast(type, hint)


def parse_value(name: str, raw: str, kind: type) -> bool | int | float | str:
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
        elif kind is int:
            return int(text)
        elif kind is float:
            value = float(text)
            if math.isfinite(value):
                return value
        else:
            return text
    except ValueError:
        pass
    raise ConfigError(f"{name}={raw!r}: expected {_EXPECTED[kind]}")


def from_env(section: type[T], environ: Mapping[str, str], **given: Any) -> T:
    """`section` with every field whose variable is set in `environ` parsed from it;
    `given` fields (derived from other sections) are taken as they are."""
    if not dataclasses.is_dataclass(section):
        raise TypeError(f"{section!r} is not a dataclass")
    hints = typing.get_type_hints(section)
    values = dict(given)
    read: list[str] = []
    for f in dataclasses.fields(section):
        name = f.metadata.get("env")
        raw = environ.get(name, "") if name else ""
        if name and f.name not in given and raw.strip():
            values[f.name] = parse_value(name, raw, _scalar(hints[f.name]))
            read.append(name)
    try:
        return section(**values)
    except ValueError as exc:  # the section's own checks: name the variables that were set
        raise ConfigError(f"{', '.join(read or variables(section))}: {exc}") from None
