"""Typed configs from plain mappings: the one builder behind every config section.

`build(cls, mapping)` makes the frozen dataclass `cls` from what YAML or JSON gave, checking every
key against the fields (a did-you-mean for a typo) and every value against the field's type
hint, and raising a one-line `ConfigError` that names the dotted field and the fix. The CLI
turns that error into exit code 2 before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing


class ConfigError(ValueError):
    """A bad config value: `field` is the dotted path, the message says how to fix it."""

    def __init__(self, field_path: str, problem: str, fix: str):
        self.field, self.problem, self.fix = field_path, problem, fix
        super().__init__(f"{field_path}: {problem}; fix: {fix}")

    def within(self, context: str) -> ConfigError:
        """The same error, its field prefixed by where it occurred (e.g. a sweep's run)."""
        return ConfigError(f"{context}: {self.field}", self.problem, self.fix)


def require_positive(config, names: tuple[str, ...], where: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(
                f"{where}.{name}",
                f"must be >= 1, got {getattr(config, name)}",
                "use a positive integer",
            )


def build(cls, data, where: str = ""):
    """Build dataclass `cls` from a dict, rejecting unknown keys and wrong types by name."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(
            where or cls.__name__,
            f"expected a mapping, got {type(data).__name__}",
            f"write {where or 'it'} as key: value pairs",
        )
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {sorted(known)}"
            raise ConfigError(path, "unknown key", hint)
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(hint, value, path: str):
    """Check `value` against a field's type hint; allow int for float, an exact float for int,
    a list for a tuple and one value for a tuple of one."""
    if isinstance(value, str) and hasattr(hint, "from_name"):
        value = hint.from_name(value, path)  # a named preset (ModelConfig: a ladder rung)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, (str, int, float)):
            value = [value]  # `shots: 3` means [3], `tasks: add2` means [add2]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                path, f"expected a list, got {type(value).__name__}", "write a YAML list"
            )
        (item_type, _) = typing.get_args(hint)
        return tuple(_coerce(item_type, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type {hint} at {path}")
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"{value} is not a finite number", "give a finite value")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)  # `tokens: 1e6` is a float in YAML; an exact one is the integer
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        article = "an" if hint.__name__[0] in "aeiou" else "a"
        raise ConfigError(
            path,
            f"expected {hint.__name__}, got {type(value).__name__} {value!r}",
            f"write {article} {hint.__name__}",
        )
    return value
