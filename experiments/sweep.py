"""Sweep files and their expansion into run specs.

A sweep file is YAML:

    name: demo                       # runs go to <runs_dir>/<name>/<run_id>/
    description: free text
    base:                            # a run config (scaling.config.RunConfig) shared by all runs
      model: {seq_len: 128}
      train: {batch_size: 8}
    grid:                            # the cartesian product of these lists, by dotted field path
      model: [s0, s1, s2]            # `model` takes ladder names (scaling.zoo) or field dicts
      train.tokens: [100000, 300000]

A run's id is a hash of its resolved config, so the same run has the same id in every sweep
that contains it, and editing a run's config makes it a new run.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from scaling import zoo
from scaling.config import ConfigError, RunConfig, run_config

SWEEP_KEYS = {"name", "description", "base", "grid"}


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    name: str
    config: RunConfig


def run_id(cfg: RunConfig) -> str:
    """12 hex digits of the SHA-256 of the config, its display name and device layout (`mesh`)
    left out: they do not change the numbers a run produces."""
    fields = cfg.to_dict()
    fields.pop("name")
    fields.pop("mesh")
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    runs: tuple[RunSpec, ...]


def read_yaml(path: str | Path, field: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            field, f"file not found: {path}", "give the path of an existing YAML file"
        )
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(
            field, f"{path} is not valid YAML ({e.problem})", "fix the YAML syntax"
        ) from e
    if not isinstance(loaded, dict):
        raise ConfigError(field, f"{path} does not hold a mapping", "write key: value pairs")
    return loaded


def load_sweep(path: str | Path) -> Sweep:
    return expand(read_yaml(path, "sweep"))


def expand(spec: dict) -> Sweep:
    """Validate a sweep mapping and expand its grid into run specs (every run validated)."""
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise ConfigError(
            f"sweep.{sorted(unknown)[0]}", "unknown key", f"use only {sorted(SWEEP_KEYS)}"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError("sweep.name", f"missing or invalid ({name!r})", "give a name without '/'")
    base = spec.get("base", {}) or {}
    grid = spec.get("grid", {}) or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(
            "sweep.grid",
            "must map field paths to non-empty lists",
            "write e.g. `train.tokens: [100000, 300000]`",
        )
    runs, seen = [], set()
    for values in itertools.product(*grid.values()):
        resolved = copy.deepcopy(base)
        labels = []
        for key, value in zip(grid, values):
            _set_path(resolved, key, value)
            labels.append(str(value) if not isinstance(value, dict) else key)
        run_name = "-".join(labels) or name
        try:
            cfg = run_config({**resolved, "name": run_name})
        except ConfigError as e:
            raise e.within(f"run {run_name}") from None
        if cfg.steps < 1:
            raise ConfigError(
                f"run {run_name}: train.tokens",
                f"{cfg.train.tokens} tokens is less than one batch "
                f"({cfg.train.batch_size}×{cfg.model.seq_len})",
                "raise train.tokens",
            )
        rid = run_id(cfg)
        if rid not in seen:
            seen.add(rid)
            runs.append(RunSpec(rid, run_name, cfg))
    return Sweep(name, str(spec.get("description", "")), tuple(runs))


def _set_path(tree: dict, dotted: str, value) -> None:
    """Set tree[a][b]... = value for 'a.b...'; a ladder name for `model` expands to its shape."""
    if dotted == "model" and isinstance(value, str):
        if value not in zoo.LADDER:
            raise ConfigError(
                "sweep.grid.model",
                f"unknown size {value!r}",
                f"use one of {sorted(zoo.LADDER)} or a dict of model fields",
            )
        value = zoo.shape(value)
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
    if isinstance(value, dict):
        node[leaf] = {**node.get(leaf, {}), **value}
    else:
        node[leaf] = value
