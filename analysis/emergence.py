"""Classify score-vs-scale curves as flat, smooth, emergent, inverse-scaling or U-shaped: from a
tidy score table (analysis.scores) to curves, and their classes back to tables.

A curve is one (family, task, subtask, metric, shots) evaluated on several models, sorted by
the x axis (training FLOPs, parameters, or a loss column read right to left). Scores whose
metric is lower-is-better are negated first, so "better" is always "higher".

Rows that cannot be classified (no usable x, baseline, metric direction or sampling
uncertainty; NaN scores; mixed shot counts; several models at one x; fewer than `min_points`
models) are listed with the reason, never dropped silently. Each datum is counted once: a
group's average (an `aggregate` row, as lm-eval and BIG-bench report them) is not classified
beside its subtasks, or with groups="aggregates" the top-level group instead of them.

The method itself (the tests, the classes, the threshold, the bootstrap confidence, linearity
and breakthroughness, and why each setting has its default) is in analysis.emergence_stats, on
arrays of curves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.emergence_stats import Settings, classify_arrays
from analysis.inputs import lookalike, require_columns
from analysis.scores import DERIVED, PROPORTION_METRICS, SCHEMA, metric_name
from scaling.config import ConfigError

KEYS = ["family", "task", "subtask", "metric", "shots"]


@dataclass
class Classification:
    """curves: one row per classified curve; points: one row per (curve, model) with the
    `above` flag; skipped: what was not classified and why (never silently dropped)."""

    curves: pd.DataFrame
    points: pd.DataFrame
    skipped: pd.DataFrame
    x: str
    x_scale: str  # "log" (t = log10 x) or "loss" (t = -x: lower loss is further right)
    settings: Settings = field(default_factory=Settings)


def x_transform(x: str, x_scale: str | None = None) -> tuple[str, callable, callable]:
    """(scale, t(x), x(t)): log10 for sizes and compute; -x for a loss column (lower loss is a
    more capable model, so it goes right). x_scale None picks "loss" when 'loss' is in x."""
    scale = x_scale or ("loss" if "loss" in x.lower() else "log")
    if scale == "loss":
        return scale, np.negative, np.negative
    if scale == "log":
        return scale, np.log10, lambda t: 10.0**t
    raise ConfigError("x_scale", f"unknown scale {scale!r}", "use 'log' or 'loss'")


def _skip(rows: list, frame: pd.DataFrame, reason: str, model: bool = False) -> None:
    cols = KEYS + (["model"] if model else [])
    for r in frame[cols].drop_duplicates().to_dict("records"):
        rows.append({**r, "model": r.get("model", ""), "reason": reason})


def _hint(scores: pd.DataFrame, field: str) -> str:
    """The hint for a missing field: " (did you mean column 'baseline'? rename it or --map
    baseline=random_baseline)", or "" when no column looks like it."""
    known = {*SCHEMA, *DERIVED}
    col = lookalike(
        field, [c for c in scores.columns if c not in known and scores[c].notna().any()]
    )
    return f" (did you mean column {col!r}? rename it or --map {col}={field})" if col else ""


def _count_once(d: pd.DataFrame, groups: str, skipped: list) -> pd.DataFrame:
    """d without rows whose data other rows already count (module docstring): aggregates of
    subtasks present for the same (task, metric, shots), or with groups="aggregates" those
    subtasks (and inner groups) where a top-level aggregate is present."""
    if groups not in ("subtasks", "aggregates"):
        raise ConfigError("groups", f"unknown {groups!r}", "use 'subtasks' or 'aggregates'")
    if "aggregate" not in d.columns:
        return d
    agg = d["aggregate"].fillna(False).astype(bool)
    key = d["task"] + "\0" + d["metric"] + "\0" + d["shots"].astype(str)
    if groups == "subtasks":
        drop = agg & key.isin(key[~agg & (d["subtask"] != "")])
        reason = "group average: its subtasks are classified (--groups aggregates: the group)"
    else:
        drop = (d["subtask"] != "") & key.isin(key[agg & (d["subtask"] == "")])
        reason = "in a group classified as a whole (--groups subtasks: each part)"
    _skip(skipped, d[drop], reason)
    return d[~drop]


def _prepare(scores, x, scale, family, pooled, st, missing_x, groups, skipped):
    """Rows that can be classified, one curve per KEYS group; everything else into skipped."""
    require_columns(scores, ["model", "task", "subtask", "metric", "shots", "value", x], "scores")
    for col in ("random_baseline", "higher_is_better", "stderr", "n_examples"):
        if col not in scores.columns:
            scores = scores.assign(**{col: np.nan})
    if not pooled:
        require_columns(scores, [family], "scores")
    d = scores.reset_index(drop=True)
    d = d.assign(family="pooled" if pooled else d[family].astype(str))
    d = d.assign(x=pd.to_numeric(d[x], errors="coerce"))

    nan_value = d["value"].isna()
    _skip(skipped, d[nan_value], "NaN score: point dropped", model=True)
    d = d[~nan_value]
    bad_x = ~np.isfinite(d["x"]) | ((d["x"] <= 0) & (scale == "log"))
    if bad_x.any():
        models = sorted(d.loc[bad_x, "model"].unique())
        if missing_x == "error":
            raise ConfigError(
                f"scores.{x}",
                f"missing or non-positive for {len(models)} model(s): {', '.join(models)}",
                "attach model sizes/FLOPs (--models FILE), choose another --x, or drop them "
                "(--skip-missing-x)" + _hint(scores, x),
            )
        _skip(skipped, d[bad_x], f"no {x}: point dropped", model=True)
        d = d[~bad_x]

    dup = d.duplicated([*KEYS, "model"], keep=False)
    if dup.any():
        r = d[dup].iloc[0]
        times = int((d[[*KEYS, "model"]] == r[[*KEYS, "model"]]).all(axis=1).sum())
        raise ConfigError(
            "scores",
            f"model {r['model']} appears {times} times in curve "
            f"{r['family']}/{r['task']}/{r['subtask']}/{r['metric']}/{r['shots']}-shot",
            "give each (model, task, subtask, metric, shots) one row",
        )
    # Points of one family at one x (checkpoints of one model along --x params): no order to
    # classify. Pooled families may share sizes: that is what pooling is for.
    shared = d.duplicated([*KEYS, "x"], keep=False) & (not pooled)
    shared = shared.groupby([d[c] for c in KEYS]).transform("any")
    _skip(
        skipped,
        d[shared],
        f"several models at one {x}: choose an --x (step, tokens) or --family that separates them",
    )
    d = _count_once(d[~shared], groups, skipped)

    # Mixed shots: several shot settings for one curve, but no model evaluated in two of them.
    base = ["family", "task", "subtask", "metric"]
    per_model = d.groupby([*base, "model"])["shots"].transform("nunique")
    mixed = (d.groupby(base)["shots"].transform("nunique") > 1) & (
        per_model.groupby([d[c] for c in base]).transform("max") == 1
    )
    _skip(skipped, d[mixed], "mixed shots: each model has a different shot count")
    d = d[~mixed]

    for col, reason in (
        ("higher_is_better", "unknown metric direction: add higher_is_better"),
        ("random_baseline", "no random baseline: give one in a task_info file"),
    ):
        reason += _hint(scores, col)
        bad = d[col].isna().groupby([d[c] for c in KEYS]).transform("any")
        _skip(skipped, d[bad], reason)
        d = d[~bad]
    metric = d["metric"].map(metric_name)

    hib = d["higher_is_better"] > 0
    binomial = (
        metric.isin(PROPORTION_METRICS) & hib & (d["n_examples"] >= 1) & d["value"].between(0, 1)
    )
    d = d.assign(
        binomial=binomial.groupby([d[c] for c in KEYS]).transform("all"),
        s=np.where(hib, d["value"], -d["value"]),
        b=np.where(hib, d["random_baseline"], -d["random_baseline"]),
    )
    no_sd = ~d["binomial"] & ~(d["stderr"] > 0)
    bad = no_sd.groupby([d[c] for c in KEYS]).transform("any")
    _skip(
        skipped,
        d[bad],
        "no stderr or n_examples: sampling uncertainty unknown"
        + (_hint(scores, "stderr") or _hint(scores, "n_examples")),
    )
    d = d[~bad]
    size = d.groupby(KEYS)["model"].transform("size")
    few = size < st.min_points
    for n_pts, g in d[few].groupby(size[few]):
        _skip(skipped, g, f"{n_pts} model(s) < min_points={st.min_points}")
    return d[~few]


def classify(
    scores: pd.DataFrame,
    *,
    x: str = "flops",
    family: str = "family",
    pooled: bool = False,
    x_scale: str | None = None,
    missing_x: str = "error",
    groups: str = "subtasks",
    settings: Settings | None = None,
) -> Classification:
    """Classify every (family, task, subtask, metric, shots) curve of tidy `scores`
    (analysis.scores) along column `x`; per family (column `family`) or pooled; a group's
    subtasks, or with groups="aggregates" the group's average (module docstring).

    Models without a usable x raise ConfigError naming them (missing_x="skip": named skips).
    Curves without baseline, direction or uncertainty, with NaN scores, mixed shots or fewer
    than min_points models are listed in .skipped with the reason."""
    settings = settings or Settings()
    scale, to_t, _ = x_transform(x, x_scale)
    skipped: list[dict] = []
    d = _prepare(scores, x, scale, family, pooled, settings, missing_x, groups, skipped)
    d = d.assign(t=to_t(d["x"].to_numpy(float)))
    d = d.sort_values([*KEYS, "t", "model"], kind="stable").reset_index(drop=True)
    curve_id = d.groupby(KEYS, sort=False).ngroup().to_numpy()
    d["curve"] = curve_id
    size = np.bincount(curve_id) if len(d) else np.zeros(0, int)
    first = d.groupby("curve", sort=True).head(1)
    curves = first[[*KEYS, "random_baseline", "higher_is_better"]].reset_index(drop=True)
    curves = curves.assign(
        baseline_source=first["baseline_source"].to_numpy()
        if "baseline_source" in first.columns
        else "row",
        test=np.where(first["binomial"], "binomial", "stderr"),
        n_points=size,
    )
    out = {
        k: np.full(len(curves), np.nan, dtype=object if k == "class" else float)
        for k in (
            "class",
            "confidence",
            "n_above",
            "t_threshold",
            "t_lo",
            "t_hi",
            "trend_z",
            "linearity",
            "breakthroughness",
        )
    }
    above = np.zeros(len(d), bool)
    rng = np.random.default_rng(settings.seed)
    for P in np.unique(size):
        ids = np.flatnonzero(size == P)
        rows = np.flatnonzero(np.isin(curve_id, ids))  # curves are contiguous and sorted
        g = d.iloc[rows]
        col = {
            k: g[k].to_numpy(float).reshape(len(ids), P)
            for k in ("t", "s", "b", "stderr", "n_examples", "binomial")
        }
        res = classify_arrays(
            col["t"],
            col["s"],
            col["b"][:, 0],
            col["stderr"],
            col["n_examples"],
            col["binomial"][:, 0] > 0,
            settings,
            rng,
        )
        above[rows] = res.pop("above").ravel()
        for k, v in res.items():
            out[k][ids] = v
    _, _, from_t = x_transform(x, x_scale)
    curves = curves.assign(
        **{k: out[k] for k in ("class", "confidence")},
        n_above=out["n_above"].astype(int),
        threshold_x=from_t(out["t_threshold"]),
        threshold_lo=from_t(out["t_lo"] if scale == "log" else out["t_hi"]),
        threshold_hi=from_t(out["t_hi"] if scale == "log" else out["t_lo"]),
        **{k: out[k] for k in ("trend_z", "linearity", "breakthroughness")},
    )
    points = d[["curve", *KEYS, "model", "x", "value", "stderr", "n_examples"]].assign(above=above)
    skipped_df = pd.DataFrame(skipped, columns=[*KEYS, "model", "reason"])
    return Classification(curves, points, skipped_df, x, scale, settings)


def metric_sensitivity(curves: pd.DataFrame) -> pd.DataFrame:
    """Schaeffer et al. (2023): does a curve's class depend on the metric? One row per
    (family, task, subtask, shots) with two or more classified metrics: the class under each
    metric ('acc: flat; acc_norm: smooth'), whether it changes, and whether the change is
    "emergent" under one metric but not another (the case they argue is a metric artefact)."""
    rows = []
    for key, g in curves.groupby(["family", "task", "subtask", "shots"], sort=True):
        if g["metric"].nunique() < 2:
            continue
        classes = dict(zip(g["metric"], g["class"], strict=True))
        distinct = set(classes.values())
        rows.append(
            dict(zip(["family", "task", "subtask", "shots"], key, strict=True))
            | {
                "classes": "; ".join(f"{m}: {c}" for m, c in sorted(classes.items())),
                "changes": len(distinct) > 1,
                "emergent_only_under": ", ".join(
                    sorted(m for m, c in classes.items() if c == "emergent")
                )
                if "emergent" in distinct and len(distinct) > 1
                else "",
            }
        )
    cols = ["family", "task", "subtask", "shots", "classes", "changes", "emergent_only_under"]
    return pd.DataFrame(rows, columns=cols)


def classify_curve(
    x,
    value,
    n_examples=None,
    random_baseline=0.0,
    *,
    stderr=None,
    metric="acc",
    higher_is_better=True,
    x_scale=None,
    settings: Settings | None = None,
) -> dict:
    """Classify one curve given as arrays; returns the curve's row as a dict, plus the
    per-point `above` flags in x order. Give n_examples (proportions) or stderr."""
    m = len(value)
    scores = pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(m)],
            "family": "f",
            "task": "t",
            "subtask": "",
            "metric": metric,
            "shots": 0,
            "x": np.asarray(x, float),
            "value": np.asarray(value, float),
            "stderr": np.nan if stderr is None else np.asarray(stderr, float),
            "n_examples": np.nan if n_examples is None else np.asarray(n_examples, float),
            "random_baseline": float(random_baseline),
            "higher_is_better": float(higher_is_better),
        }
    )
    c = classify(scores, x="x", x_scale=x_scale, settings=settings)
    if c.curves.empty:
        raise ConfigError("curve", "; ".join(c.skipped["reason"].unique()), "see the reason")
    row = c.curves.iloc[0].to_dict()
    return row | {"above": c.points["above"].to_numpy()}
