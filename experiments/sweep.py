"""Sweep files and their expansion into run specs.

A sweep file is YAML: a run config shared by all runs (`base`) and a design, the product of its
axes (any of grid, zip, isoflop, each one axis or more):

    name: demo                       # runs go to <runs_dir>/<name>/<run_id>/
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
    isoflop:                         # IsoFLOP profiles (Hoffmann et al. 2022, approach 2)
      budgets: [1e12, 3e12]          # compute budgets C in FLOPs
      models: [s1, s2, s3]           # sizes per budget, or `sizes: 5`: the 5 ladder rungs
      flops: 6n                      # nearest in log N to sqrt(C/120) (D = 20 N); tokens
                                     # = C / FLOPs per token, `6n` (6N) or `detailed`
    lr_rule: {rule: inverse_width, base_width: 64}  # or constant (the default), or mup
    cooldown: {decay_fraction: 0.2}  # WSD: one stable run per shape, a cooldown per budget

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

import yaml

from experiments import store
from scaling import zoo
from scaling.config import ConfigError, RunConfig, build, run_config
from scaling.flops import flops_per_token, param_counts
from scaling.schedules import decay_start

SWEEP_KEYS = {"name", "description", "base", "grid", "zip", "isoflop", "lr_rule", "cooldown"}
ISOFLOP_KEYS = {"budgets", "models", "sizes", "flops"}
LR_RULES = ("constant", "inverse_width", "mup")
MAX_RUNS = 256
# Pseudo-fields of an axis, resolved into train.tokens once the model is known.
TOKENS_PER_PARAM, FLOPS_BUDGET = "tokens_per_param", "flops_budget"
CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: D_opt ≈ 20 N


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    name: str
    config: RunConfig
    design: dict = field(default_factory=dict)  # how the design chose it: budget, ratio, role


DEFAULTS = RunConfig().to_dict()


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

    def stages(self) -> list[list[RunSpec]]:
        """Runs in launch order: everything else, then the cooldown branches of stable runs."""
        first = [r for r in self.runs if not r.config.train.init_from]
        then = [r for r in self.runs if r.config.train.init_from]
        return [stage for stage in (first, then) if stage]


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


def load_sweep(path: str | Path, yes: bool = False) -> Sweep:
    return expand(read_yaml(path, "sweep"), yes)


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
    base = spec.get("base", {}) or {}
    axes = _grid_axes(spec) + _zip_axes(spec) + _isoflop_axes(spec, base)
    if not axes:
        raise ConfigError(
            "sweep", "the design is empty", "give a non-empty grid, zip or isoflop section"
        )
    n_runs = math.prod(len(a) for a in axes)
    if n_runs > MAX_RUNS and not yes:
        raise ConfigError(
            "sweep",
            f"the design expands to {n_runs} runs (more than {MAX_RUNS})",
            "check the grid, or pass --yes to launch them all",
        )
    rule = _lr_rule(spec.get("lr_rule"))
    runs = [_run(base, points, rule) for points in itertools.product(*axes)]
    if spec.get("cooldown") is not None:
        runs = _branch(runs, spec["cooldown"])
    unique = {r.run_id: r for r in reversed(runs)}  # first occurrence wins, order kept
    return Sweep(
        name, str(spec.get("description", "")), tuple(r for r in runs if unique[r.run_id] is r)
    )


Point = tuple[str, tuple[tuple[str, object], ...]]  # (label, ((dotted path, value), ...))


def _label(key: str, value) -> str:
    """A value's part of a run name: the value itself, or the field's name for a dict."""
    return key if isinstance(value, dict) else str(value)


def _grid_axes(spec: dict) -> list[list[Point]]:
    if "grid" not in spec:
        return []
    grid = spec["grid"]
    if (
        not isinstance(grid, dict)
        or not grid
        or not all(isinstance(v, list) and v for v in grid.values())
    ):
        raise ConfigError(
            "sweep.grid",
            "must map field paths to non-empty lists",
            "write e.g. `train.tokens: [100000, 300000]`",
        )
    return [[(_label(k, v), ((k, v),)) for v in values] for k, values in grid.items()]


def _zip_axes(spec: dict) -> list[list[Point]]:
    if "zip" not in spec:
        return []
    lists = spec["zip"]
    lengths = (
        {len(v) for v in lists.values() if isinstance(v, list)}
        if isinstance(lists, dict)
        else set()
    )
    if (
        not lists
        or len(lengths) != 1
        or 0 in lengths
        or len(lists) != sum(isinstance(v, list) for v in lists.values())
    ):
        raise ConfigError(
            "sweep.zip",
            "must map field paths to non-empty lists of one length",
            "write e.g. `model: [s1, s2]` and `train.learning_rate: [3e-3, 2e-3]`",
        )
    return [
        [
            (
                "-".join(_label(k, v[i]) for k, v in lists.items()),
                tuple((k, v[i]) for k, v in lists.items()),
            )
            for i in range(lengths.pop())
        ]
    ]


def _isoflop_axes(spec: dict, base: dict) -> list[list[Point]]:
    """One axis of (budget, model) points; tokens follow from the budget once the shape is
    known (see _resolve_tokens)."""
    if "isoflop" not in spec:
        return []
    iso = spec["isoflop"]
    if not isinstance(iso, dict):
        raise ConfigError("sweep.isoflop", "expected a mapping", "give budgets and models or sizes")
    unknown = set(iso) - ISOFLOP_KEYS
    if unknown:
        raise ConfigError(
            f"sweep.isoflop.{sorted(unknown)[0]}", "unknown key", f"use only {sorted(ISOFLOP_KEYS)}"
        )
    budgets = iso.get("budgets")
    if (
        not isinstance(budgets, list)
        or not budgets
        or not all(isinstance(b, int | float) and b > 0 for b in budgets)
    ):
        raise ConfigError(
            "sweep.isoflop.budgets",
            "must be a non-empty list of FLOPs > 0",
            "write e.g. [1e12, 3e12]",
        )
    if ("models" in iso) == ("sizes" in iso):
        raise ConfigError(
            "sweep.isoflop",
            "give exactly one of models and sizes",
            "e.g. `models: [s1, s2, s3]` or `sizes: 5`",
        )
    convention = iso.get("flops", "6n")
    if convention not in ("6n", "detailed"):
        raise ConfigError(
            "sweep.isoflop.flops", f"unknown convention {convention!r}", "use 6n or detailed"
        )
    points = []
    for budget in budgets:
        models = iso["models"] if "models" in iso else _around_optimum(budget, iso["sizes"], base)
        if not isinstance(models, list) or not models:
            raise ConfigError(
                "sweep.isoflop.models",
                "must be a non-empty list",
                "list ladder names or model dicts",
            )
        for model in models:
            label = f"{_label('model', model)}-C{budget:.0e}"
            points.append((label, (("model", model), (FLOPS_BUDGET, (float(budget), convention)))))
    return [points]


def _around_optimum(budget: float, k, base: dict) -> list[str]:
    """The k ladder rungs nearest in log N to a guess of the compute-optimal size,
    N ≈ sqrt(C / (6·20)) from C = 6·N·D and Chinchilla's D ≈ 20·N."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(zoo.LADDER):
        raise ConfigError(
            "sweep.isoflop.sizes", f"must be an integer in 1..{len(zoo.LADDER)}", "use e.g. 5"
        )
    guess = math.log(math.sqrt(budget / (6 * CHINCHILLA_TOKENS_PER_PARAM)))
    model = base.get("model", {})
    size = {
        n: param_counts(build_model({**model, **zoo.shape(n)})).non_embedding for n in zoo.LADDER
    }
    nearest = sorted(size, key=lambda n: abs(math.log(size[n]) - guess))[:k]
    return sorted(nearest, key=size.get)


def build_model(fields: dict):
    from scaling.config import ModelConfig

    return build(ModelConfig, fields, "model")


def _lr_rule(rule) -> tuple[str, int]:
    """(rule, base_width): how hyperparameters follow d_model. `inverse_width`: lr ∝ 1/width,
    lr = learning_rate·base_width/d_model for the whole network, the Adam hidden-layer rule of
    µP (Yang et al. 2022, table 3) applied to every parameter. `mup`: µP proper, each run gets
    model.mup_base_width = base_width (per-parameter learning rates, init and output
    multiplier: scaling.model.mup_ratio); learning_rate is the one tuned at base_width."""
    if rule is None:
        return ("constant", 0)
    if (
        not isinstance(rule, dict)
        or rule.get("rule") not in LR_RULES
        or set(rule) - {"rule", "base_width"}
    ):
        raise ConfigError(
            "sweep.lr_rule",
            f"invalid ({rule!r})",
            f"write {{rule: {'|'.join(LR_RULES)}, base_width: 64}}",
        )
    width = rule.get("base_width", 0)
    if rule["rule"] != "constant" and (not isinstance(width, int) or width < 1):
        raise ConfigError(
            "sweep.lr_rule.base_width",
            "must be a positive integer",
            "use the width the learning rate was tuned at",
        )
    return (rule["rule"], width)


def _run(base: dict, points: tuple[Point, ...], rule: tuple[str, int]) -> RunSpec:
    """One run from the base config and one point of every axis."""
    resolved, design = copy.deepcopy(base), {}
    for _, assignments in points:
        for key, value in assignments:
            if key in (TOKENS_PER_PARAM, FLOPS_BUDGET):
                design[key] = value
            else:
                _set_path(resolved, key, value)
    if rule[0] == "mup":
        _set_path(resolved, "model.mup_base_width", rule[1])
    run_name = "-".join(label for label, _ in points)
    try:
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
    else:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, tokens=int(tokens)))


def _branch(runs: list[RunSpec], cooldown) -> list[RunSpec]:
    """WSD cooldown branching: runs that differ only in their token budget share one stable
    (constant learning rate) run, which keeps a checkpoint at each budget's decay start; each
    budget becomes a wsd run that starts from that checkpoint and trains only its cooldown.
    Up to the decay start a wsd run and the stable run take the same steps (same batches, same
    learning rates), so each branch equals a whole wsd run of its budget."""
    if not isinstance(cooldown, dict) or set(cooldown) - {"decay_fraction"}:
        raise ConfigError(
            "sweep.cooldown", f"invalid ({cooldown!r})", "write {decay_fraction: 0.2}"
        )
    fraction = cooldown.get("decay_fraction", 0.2)
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
        stable = dataclasses.replace(first, train=stable_train, name=f"{members[0].name}-stable")
        stable_id = run_id(stable)
        out.append(RunSpec(stable_id, stable.name, stable, {"role": "stable"}))
        for r in members:
            cfg = dataclasses.replace(
                r.config, train=dataclasses.replace(r.config.train, init_from=stable_id)
            )
            out.append(RunSpec(run_id(cfg), r.name, cfg, r.design | {"role": "branch"}))
    return out


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
