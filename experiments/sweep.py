"""Sweep files and their expansion into run specs.

A sweep file is YAML: a run config shared by all runs (`base`) and a design, the product of its
axes (any of grid, zip, repeat, isoflop, each one axis or more):

    name: demo                       # runs go to <runs_dir>/<name>/<label>-<run_id>/
    description: free text
    base:                            # a run config (scaling.config.RunConfig)
      model: {seq_len: 128}
      train: {batch_size: 8}
    grid:                            # the cartesian product of these lists, by dotted field path
      model: [s0, s1, s2]            # `model` takes ladder names (scaling.zoo) or field dicts
      train.tokens: [100000, 300000] # or tokens_per_param: [20] (tokens = ratio × N)
      train.seed: [0, 1, 2]          # seeds are a field like any other
    zip:                             # lists of equal length, taken element by element
      model: [s2, s3]
      train.learning_rate: [3e-3, 2e-3]
    repeat:                          # repeated data (Muennighoff et al. 2023): the first U
      unique_tokens: [1e6, 4e6]      # train tokens, epoch-exact, for each number of epochs;
      epochs: [1, 2, 4, 8]           # train.tokens = epochs × the tokens of U's windows
    isoflop:                         # IsoFLOP profiles (Hoffmann et al. 2022, approach 2)
      budgets: [1e12, 3e12]          # compute budgets C in FLOPs
      models: [s1, s2, s3]           # sizes per budget, or `sizes: 5`: the 5 ladder rungs
      flops: detailed                # nearest in log N to sqrt(C/120) (D = 20 N); tokens
                                     # = C / FLOPs per token: `detailed` (the default, the
                                     # compute actually spent) or `6n` (6N, Kaplan's)
    lr_rule: {rule: inverse_width, base_width: 64}  # or constant (the default), or mup
    cooldown: {decay_fraction: 0.2}  # WSD: one stable run per shape, a cooldown per budget
    launch: {executor: local, workers: 2}  # where it runs (experiments.launch_config); flags win

A sweep file of fine-tunes has a `finetune:` section instead of base and the axes above: every
finished run of a sweep directory (or listed run) fine-tuned on a task at each point of its
axes (experiments.finetune_design).

A run's id is a hash of its resolved config (the fields that differ from their defaults: see
run_id), so the same run has the same id in every sweep that contains it, and editing a run's
config makes it a new run. A design of more than
MAX_RUNS runs is refused unless launched with `--yes`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from experiments import designs, finetune_design, store
from experiments.designs import EPOCHS, FLOPS_BUDGET, TOKENS_PER_PARAM
from experiments.launch_config import LaunchConfig
from scaling.config import ConfigError, RunConfig, build, run_config
from scaling.config_io import load_yaml, parse_override, set_path
from scaling.data import epoch_windows
from scaling.flops import flops_per_token, param_counts
from scaling.schedules import decay_start

DESIGN_KEYS = {"base", "grid", "zip", "repeat", "isoflop", "lr_rule", "cooldown"}
SWEEP_KEYS = {"name", "description", "launch", "finetune", *DESIGN_KEYS}
MAX_RUNS = 256


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    name: str
    config: RunConfig
    design: dict = field(default_factory=dict)  # how the design chose it: budget, ratio, role


DEFAULTS = RunConfig().to_dict()


@dataclass(frozen=True)
class Cooldown:
    """The `cooldown:` section: the share of each branch's steps spent decaying."""

    decay_fraction: float = 0.2


def run_id(cfg: RunConfig) -> str:
    """12 hex digits of the SHA-256 of the config's fields that differ from their defaults, the
    display name and device layout (`mesh`) left out: they do not change the numbers a run
    produces. Leaving defaults out keeps every id when a field is added to the schema, with a
    default that keeps the old behaviour (the rule for adding one), so a sweep launched before
    an upgrade resumes after it. A default that changes anyway is caught when a run is claimed:
    its directory's config.json holds the whole config it was trained with, and a mismatch is
    an error naming the fields (experiments.store.claim_config)."""
    fields = _non_default(cfg.to_dict(), DEFAULTS)
    for key in store.NOT_IDENTITY:
        fields.pop(key, None)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def _non_default(fields: dict, defaults: dict) -> dict:
    out = {}
    for key, value in fields.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            if nested := _non_default(value, default):
                out[key] = nested
        elif value != default:
            out[key] = value
    return out


def normalize(stored: dict) -> dict:
    """A stored config.json as the current schema reads it (added fields at their defaults)."""
    return run_config(stored).to_dict()


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    runs: tuple[RunSpec, ...]
    launch: dict = field(default_factory=dict)  # the `launch:` section (launch_config.resolve)

    def stages(self) -> list[list[RunSpec]]:
        """Runs in launch order: everything else, then the cooldown branches of stable runs."""
        first = [r for r in self.runs if not r.config.train.init_from]
        then = [r for r in self.runs if r.config.train.init_from]
        return [stage for stage in (first, then) if stage]


def load_sweep(path: str | Path, yes: bool = False, overrides: tuple[str, ...] = ()) -> Sweep:
    """The sweep in a YAML file, with `key=value` overrides (see apply_overrides) applied."""
    return expand(apply_overrides(load_yaml(path, "sweep"), overrides), yes)


def apply_overrides(spec: dict, overrides) -> dict:
    """A copy of a sweep mapping with command-line overrides set: a path that starts with a
    sweep key sets that key (`grid.train.tokens=[1e6,3e6]`: in grid and zip the rest of the
    path is one field path, as written there); any other path is a field of `base`
    (`train.learning_rate=3e-4`, `model=s3`)."""
    spec = copy.deepcopy(spec)
    for text in overrides:
        key, value = parse_override(text)
        head, _, rest = key.partition(".")
        if head in ("grid", "zip") and rest:
            section = spec.setdefault(head, {})
            if not isinstance(section, dict):
                raise ConfigError(f"sweep.{head}", "is not a mapping", "write field: [values]")
            section[rest] = value
        elif head in SWEEP_KEYS:
            set_path(spec, key, value)
        else:
            if not isinstance(spec.setdefault("base", {}), dict):
                raise ConfigError("sweep.base", "is not a mapping", "write a run config there")
            set_path(spec["base"], key, value)
    return spec


def expand(spec: dict, yes: bool = False) -> Sweep:
    """Validate a sweep mapping and expand its design into run specs (every run validated)."""
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise ConfigError(
            f"sweep.{sorted(unknown)[0]}", "unknown key", f"use only {sorted(SWEEP_KEYS)}"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError("sweep.name", f"missing or invalid ({name!r})", "give a name without '/'")
    runs = _finetunes(spec, yes) if "finetune" in spec else _design(spec, yes)
    unique = {r.run_id: r for r in reversed(runs)}  # first occurrence wins, order kept
    launch = spec.get("launch") or {}
    build(LaunchConfig, launch, "sweep.launch")  # wrong keys and types fail here, before any run
    return Sweep(
        name,
        str(spec.get("description", "")),
        tuple(r for r in runs if unique[r.run_id] is r),
        launch,
    )


def _check_size(n_runs: int, yes: bool) -> None:
    if n_runs > MAX_RUNS and not yes:
        raise ConfigError(
            "sweep",
            f"the design expands to {n_runs} runs (more than {MAX_RUNS})",
            "check the grid, or pass --yes to launch them all",
        )


def _design(spec: dict, yes: bool) -> list[RunSpec]:
    """The runs of a base config and its design axes (grid, zip, isoflop, cooldown)."""
    base = spec.get("base", {}) or {}
    if not isinstance(base, dict):
        raise ConfigError(
            "sweep.base",
            f"expected a mapping, got {type(base).__name__}",
            "write base as a run config: model/data/train/eval sections",
        )
    axes = [
        *designs.grid_axes(spec),
        *designs.zip_axes(spec),
        *designs.repeat_axes(spec),
        *designs.isoflop_axes(spec, base),
    ]
    if not axes:
        raise ConfigError(
            "sweep", "the design is empty", "give a non-empty grid, zip, repeat or isoflop section"
        )
    _check_size(math.prod(len(a) for a in axes), yes)
    rule = designs.lr_rule(spec.get("lr_rule"))
    runs = [_run(base, points, rule) for points in itertools.product(*axes)]
    if spec.get("cooldown") is not None:
        runs = _branch(runs, spec["cooldown"])
    return runs


def _finetunes(spec: dict, yes: bool) -> list[RunSpec]:
    """The runs of a `finetune:` design (experiments.finetune_design): they take their configs
    from their parents, so the other design keys have no place beside it."""
    mixed = sorted(set(spec) & DESIGN_KEYS)
    if mixed:
        raise ConfigError(
            f"sweep.{mixed[0]}",
            "does not go with a finetune design (a fine-tune takes its config from its parent)",
            "put the fine-tunes in a sweep file of their own",
        )
    runs = finetune_design.expand(spec["finetune"])
    _check_size(len(runs), yes)
    return [RunSpec(run_id(cfg), name, cfg, design) for name, cfg, design in runs]


def _run(base: dict, points: tuple[designs.Point, ...], rule: tuple[str, int]) -> RunSpec:
    """One run from the base config and one point of every axis."""
    resolved, design = copy.deepcopy(base), {}
    run_name = "-".join(label for label, _ in points)
    try:
        for _, assignments in points:
            for key, value in assignments:
                if key in (TOKENS_PER_PARAM, FLOPS_BUDGET, EPOCHS):
                    design[key] = value
                else:
                    set_path(resolved, key, value)
        if rule[0] == "mup":
            set_path(resolved, "model.mup_base_width", rule[1])
        cfg = run_config({**resolved, "name": run_name})
        cfg = _resolve_tokens(cfg, design)
        if rule[0] == "inverse_width":
            lr = cfg.train.learning_rate * rule[1] / cfg.model.d_model
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, learning_rate=lr))
    except ConfigError as e:
        raise e.within(f"run {run_name}") from None
    if cfg.steps < 1:
        raise ConfigError(
            f"run {run_name}: train.tokens",
            f"{cfg.train.tokens} tokens is less than one batch "
            f"({cfg.train.batch_size}×{cfg.model.seq_len})",
            "raise train.tokens" + (" (the compute budget)" if FLOPS_BUDGET in design else ""),
        )
    if FLOPS_BUDGET in design:
        design[FLOPS_BUDGET] = design[FLOPS_BUDGET][0]
    return RunSpec(run_id(cfg), run_name, cfg, design)


def _resolve_tokens(cfg: RunConfig, design: dict) -> RunConfig:
    if TOKENS_PER_PARAM in design:
        ratio = design[TOKENS_PER_PARAM]
        if not isinstance(ratio, int | float) or ratio <= 0:
            raise ConfigError(TOKENS_PER_PARAM, f"must be > 0, got {ratio!r}", "use e.g. 20")
        tokens = ratio * param_counts(cfg.model).non_embedding
    elif FLOPS_BUDGET in design:
        budget, convention = design[FLOPS_BUDGET]
        per_token = flops_per_token(cfg.model)
        tokens = budget / (per_token.six_n if convention == "6n" else per_token.detailed)
    elif EPOCHS in design:  # passes over the windows of the first unique_tokens tokens,
        # to the nearest whole step: exact when the windows of those epochs fill whole batches
        per_epoch = epoch_windows(cfg.data.unique_tokens, cfg.model.seq_len) * cfg.model.seq_len
        per_step = cfg.train.batch_size * cfg.model.seq_len
        tokens = round(design[EPOCHS] * per_epoch / per_step) * per_step
    else:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, tokens=int(tokens)))


def _branch(runs: list[RunSpec], cooldown) -> list[RunSpec]:
    """WSD cooldown branching: runs that differ only in their token budget share one stable
    (constant learning rate) run, which keeps a checkpoint at each budget's decay start; each
    budget becomes a wsd run that starts from that checkpoint and trains only its cooldown.
    Up to the decay start a wsd run and the stable run take the same steps (same batches, same
    learning rates), so each branch equals a whole wsd run of its budget."""
    fraction = build(Cooldown, cooldown, "sweep.cooldown").decay_fraction
    groups: dict[str, list[RunSpec]] = {}
    for r in runs:
        train = dataclasses.replace(r.config.train, schedule="wsd", decay_fraction=fraction)
        try:
            train.validate("cooldown")
        except ConfigError as e:
            raise e.within("sweep") from None
        stem = dataclasses.replace(r.config, train=dataclasses.replace(train, tokens=1), name="")
        groups.setdefault(run_id(stem), []).append(
            dataclasses.replace(r, config=dataclasses.replace(r.config, train=train))
        )
    out = []
    for members in groups.values():
        starts = {}
        for r in members:
            start = decay_start(r.config.train, r.config.steps)
            if not 1 <= start < r.config.steps:
                raise ConfigError(
                    f"run {r.name}: sweep.cooldown.decay_fraction",
                    f"leaves no stable or no decay steps in {r.config.steps} steps",
                    "use a fraction in (0, 1) and enough tokens",
                )
            starts[r.run_id] = start
        first = members[0].config
        per_step = first.train.batch_size * first.model.seq_len
        stable_train = dataclasses.replace(
            first.train,
            schedule="constant",
            tokens=max(starts.values()) * per_step,
            save_steps=tuple(sorted(set(starts.values()))),
        )
        stable = dataclasses.replace(first, train=stable_train, name=_stable_name(members))
        stable_id = run_id(stable)
        out.append(RunSpec(stable_id, stable.name, stable, {"role": "stable"}))
        for r in members:
            cfg = dataclasses.replace(
                r.config, train=dataclasses.replace(r.config.train, init_from=stable_id)
            )
            out.append(RunSpec(run_id(cfg), r.name, cfg, r.design | {"role": "branch"}))
    return out


def _stable_name(members: list[RunSpec]) -> str:
    """The shared stable run's name: what its branches' names have in common (`s0-C1e+11`,
    `s0-C2e+11` -> `s0-stable`), not the first branch's budget."""
    parts = [m.name.split("-") for m in members]
    common = []
    for words in zip(*parts):
        if len(set(words)) > 1:
            break
        common.append(words[0])
    if len(members) == 1:
        common = parts[0]
    return "-".join([*common, "stable"])
