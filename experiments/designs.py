"""The axes of a sweep design: grid, zip, IsoFLOP profiles and repeated data, and the
learning-rate rule.

Each axis is a list of points; a point is a label (its part of the run name) and the dotted
field paths it sets. experiments.sweep takes the product of the axes. The syntax of each
section is in experiments.sweep's docstring.
"""

from __future__ import annotations

import math

from scaling import zoo
from scaling.config import ConfigError, ModelConfig, build
from scaling.families import label as model_label
from scaling.flops import param_counts

ISOFLOP_KEYS = {"budgets", "models", "sizes", "flops"}
REPEAT_KEYS = {"unique_tokens", "epochs"}
LR_RULES = ("constant", "inverse_width", "mup")
# Pseudo-fields of an axis, resolved into train.tokens once the model is known.
TOKENS_PER_PARAM, FLOPS_BUDGET = "tokens_per_param", "flops_budget"
EPOCHS = "planned_epochs"  # the design's; the results table's `epochs` is what the run trained
CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: D_opt ≈ 20 N


Point = tuple[str, tuple[tuple[str, object], ...]]  # (label, ((dotted path, value), ...))


def label(key: str, value) -> str:
    """A value's part of a run name: the value itself; for a model given by its fields, its
    family's label (`L1-d24`, the ladder name it matches, `llama-s2`); for another dict, the
    field's name. A float is written short (`2e+05`, `0.003`): YAML's `2e5` is a float."""
    shape = ("n_layer", "d_model", "n_head", "d_ff")
    if key == "model" and isinstance(value, dict) and all(k in value for k in shape):
        return model_label(build_model(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return key if isinstance(value, dict) else str(value)


def grid_axes(spec: dict) -> list[list[Point]]:
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
    return [[(label(k, v), ((k, v),)) for v in values] for k, values in grid.items()]


def zip_axes(spec: dict) -> list[list[Point]]:
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
                "-".join(label(k, v[i]) for k, v in lists.items()),
                tuple((k, v[i]) for k, v in lists.items()),
            )
            for i in range(lengths.pop())
        ]
    ]


def isoflop_axes(spec: dict, base: dict) -> list[list[Point]]:
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
        or not all(isinstance(b, int | float) and 0 < b < math.inf for b in budgets)
    ):
        raise ConfigError(
            "sweep.isoflop.budgets",
            "must be a non-empty list of finite FLOPs > 0",
            "write e.g. [1e12, 3e12]",
        )
    if ("models" in iso) == ("sizes" in iso):
        raise ConfigError(
            "sweep.isoflop",
            "give exactly one of models and sizes",
            "e.g. `models: [s1, s2, s3]` or `sizes: 5`",
        )
    convention = iso.get("flops", "detailed")
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
            name = f"{label('model', model)}-C{budget:.3g}"
            points.append((name, (("model", model), (FLOPS_BUDGET, (float(budget), convention)))))
    return [points]


def repeat_axes(spec: dict) -> list[list[Point]]:
    """One axis of (unique tokens U, epochs) points, the data-constrained design of Muennighoff
    et al. 2023: each run trains on the first U tokens of the train split in epoch-exact order
    (data.sampling: epochs, no window repeated within an epoch) for the given number of
    passes; train.tokens follows once seq_len is known (see experiments.sweep)."""
    if "repeat" not in spec:
        return []
    rep = spec["repeat"]
    if not isinstance(rep, dict) or set(rep) != REPEAT_KEYS:
        raise ConfigError(
            "sweep.repeat",
            f"must give exactly {sorted(REPEAT_KEYS)}",
            "write e.g. `repeat: {unique_tokens: [1e6, 4e6], epochs: [1, 2, 4, 8]}`",
        )
    for key, minimum in (("unique_tokens", 2), ("epochs", 0)):
        values = rep[key]
        if (
            not isinstance(values, list)
            or not values
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and minimum < v < math.inf
                for v in values
            )
        ):
            raise ConfigError(
                f"sweep.repeat.{key}",
                f"must be a non-empty list of finite numbers > {minimum}",
                "write e.g. [1e6, 4e6]" if key == "unique_tokens" else "write e.g. [1, 2, 4, 8]",
            )
    return [
        [
            (
                f"U{unique:.3g}-ep{epochs:g}",
                (
                    ("data.unique_tokens", int(unique)),
                    ("data.sampling", "epochs"),
                    (EPOCHS, float(epochs)),
                ),
            )
            for unique in rep["unique_tokens"]
            for epochs in rep["epochs"]
        ]
    ]


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


def build_model(fields: dict) -> ModelConfig:
    return build(ModelConfig, fields, "model")


def lr_rule(rule) -> tuple[str, int]:
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
