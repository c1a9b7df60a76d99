"""Config files and command-line overrides: one YAML loader, one way to set a dotted field.

PyYAML implements YAML 1.1, where `3e-3`, `1e6` and `1E+12` are strings (1.1 floats need a dot
and a signed exponent: `3.0e-3`). Researchers write the short forms, and YAML 1.2 (the current
spec, core schema) reads them as floats, so `Loader` resolves floats by the 1.2 rule. Everything
that reads a YAML file or a `key=value` override goes through `load_yaml`/`parse_value`, so a
number means the same in a sweep file, a run config and on the command line.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from scaling.config import ConfigError, RunConfig, model_fields, run_config

FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2 core schema floats (plus 1.1's `_` digit separators, which PyYAML keeps for ints):
# 3e-3, 1e6, 1E+12, .5, 2., -1.5e3, .inf, .nan. A bare integer stays an int (its resolver wins:
# this pattern demands a dot or an exponent).
FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+
        |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*
        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats (see the module docstring)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(FLOAT_TAG, FLOAT_12, list("-+0123456789."))


def parse_yaml(text: str):
    """A YAML document (or one scalar, list or mapping) read with YAML 1.2 numbers."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 — Loader is a SafeLoader


def load_yaml(path: str | Path, field: str) -> dict:
    """The mapping in a YAML file; a missing, unreadable or malformed file is a ConfigError
    naming `field` (what the file is for: config, sweep)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(field, f"{path} is a directory", "give the path of a YAML file")
    if not path.is_file():
        raise ConfigError(
            field, f"file not found: {path}", "give the path of an existing YAML file"
        )
    try:
        loaded = parse_yaml(path.read_text())
    except UnicodeDecodeError as e:
        raise ConfigError(field, f"{path} is not UTF-8 text", "give a YAML file") from e
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            field, f"{path} is not valid YAML{at} ({problem})", "fix the YAML syntax"
        ) from e
    if not isinstance(loaded, dict):
        raise ConfigError(field, f"{path} does not hold a mapping", "write key: value pairs")
    return loaded


def parse_override(text: str) -> tuple[str, object]:
    """`a.b=value` -> ("a.b", value), the value read as YAML (`3e-4`, `[1e6, 3e6]`, `s3`)."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            text, "not an override", "write dotted.field=value, e.g. train.learning_rate=3e-4"
        )
    try:
        return key, parse_yaml(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(key, f"value {value!r} is not valid YAML", "quote or fix it") from e


def set_path(tree: dict, dotted: str, value) -> None:
    """tree[a][b]... = value for 'a.b...'. A mapping merges into the mapping already there, and
    a ladder name for `model` (or `base.model`) merges that rung's shape into it, so `model=s3`
    keeps the file's seq_len and vocab_size."""
    *parents, leaf = dotted.split(".")
    if leaf == "model" and isinstance(value, str):
        value = model_fields(value, dotted)
    node = tree
    for i, key in enumerate(parents):
        child = node.setdefault(key, {})
        if key == "model" and isinstance(child, str):  # `model: s3` in the file, then model.x=
            child = node[key] = model_fields(child, ".".join(parents[: i + 1]))
        if not isinstance(child, dict):
            raise ConfigError(
                ".".join(parents[: i + 1]),
                f"is {type(child).__name__} {child!r}, not a section",
                f"drop the override of {dotted} or give the section as a mapping",
            )
        node = child
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        node[leaf] = {**node[leaf], **value}
    else:
        node[leaf] = value


def load_run_config(path: str | Path, overrides=()) -> RunConfig:
    """The validated run config in a YAML file, `key=value` overrides set on top of it."""
    return run_config_with(load_yaml(path, "config"), overrides)


def run_config_with(tree: dict, overrides=()) -> RunConfig:
    """The validated run config of a mapping read from a file, overrides set on top of it."""
    for text in overrides:
        set_path(tree, *parse_override(text))
    return run_config(tree)
