"""Config files and command-line overrides: one YAML loader, one way to set a dotted field.

PyYAML implements YAML 1.1, where `3e-3`, `1e6` and `1E+12` are strings (1.1 floats need a dot
and a signed exponent: `3.0e-3`). Researchers write the short forms, and YAML 1.2 (the current
spec, core schema) reads them as floats, so `Loader` resolves floats by the 1.2 rule. Everything
that reads a YAML file or a `key=value` override goes through `load_yaml`/`parse_value`, so a
number means the same in a sweep file, a run config and on the command line.

Every input file (configs, sweeps, task.json, data files, score and fit tables) is opened by
`read_input`, so a missing, unreadable, binary or non-UTF-8 file is one ConfigError naming the
file and what it is for, whatever reads it; `load_json` parses JSON the same way.
"""

from __future__ import annotations

import json
import re
import stat
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


def read_input(path: str | Path, field: str, text: bool = True) -> str | bytes:
    """The contents of an input file (text: UTF-8, else bytes); a path that is missing, a
    directory, not a regular file (a socket, a device), unreadable or not UTF-8 is a ConfigError
    naming `field` (what the file is for: config, sweep, data.paths[0], ...)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(field, f"file not found: {path}", "check the path") from None
    except OSError as e:
        raise ConfigError(field, f"cannot read {path}: {e.strerror}", "check the path") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(field, f"{path} is a directory", "give the path of a file in it")
    if not stat.S_ISREG(mode):
        raise ConfigError(field, f"{path} is not a regular file", "give the path of a file")
    try:
        raw = path.read_bytes()
    except OSError as e:  # permissions, I/O errors: what the system says, on one line
        raise ConfigError(
            field, f"cannot read {path}: {e.strerror}", "check its permissions"
        ) from None
    if not text:
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            field, f"{path} is not UTF-8 text (line {line}, byte {e.start})", "give a text file"
        ) from None


JSON_TYPES = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}


def json_type(value) -> str:
    """What a parsed JSON value is, in JSON's words (for messages): object, list, number..."""
    return JSON_TYPES.get(type(value), "number")


def load_json(path: str | Path, field: str):
    """The JSON document in a file; unreadable or malformed JSON is a ConfigError with the line."""
    try:
        return json.loads(read_input(path, field))
    except json.JSONDecodeError as e:
        raise ConfigError(
            field, f"{path} is not valid JSON at line {e.lineno} ({e.msg})", "fix the JSON syntax"
        ) from None


def load_yaml(path: str | Path, field: str) -> dict:
    """The mapping in a YAML file; a missing, unreadable or malformed file is a ConfigError
    naming `field` (what the file is for: config, sweep)."""
    text = read_input(path, field)
    try:
        loaded = parse_yaml(text)
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
