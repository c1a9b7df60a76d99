"""This project's results table as tidy scores, one curve per training budget.

An emergence curve must hold the budget fixed while the model grows: a line through runs of
mixed token budgets zigzags (a small model trained long beats a larger one trained briefly)
and says nothing about scale. So the family of a run is its place in the sweep's design:
- an IsoFLOP design (`flops_budget`): one curve through the compute-optimal run of each budget
  (the lowest held-out loss at that budget), the frontier along which a study scales models;
- a design of token budgets (`tokens_per_param`, else `tokens`): one curve per budget, one
  point per model size;
- a design where no budget holds two sizes (one model, many token counts): one curve per model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.inputs import require_columns
from analysis.scores import tidy

FRONTIER = "compute-optimal"


def si(v: float) -> str:
    """1234567 -> '1.23M'."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _model_labels(runs: pd.DataFrame) -> pd.Series:
    """Model name, plus '@<tokens>' where one model was trained at several token budgets, or the
    run_id where that is still ambiguous (so that every run is one point of a curve)."""
    label = runs["model"].astype(str)
    label = label.where(~label.duplicated(keep=False), label + "@" + runs["tokens"].map(si))
    return label.where(~label.duplicated(keep=False), runs["run_id"].astype(str))


def _budget_families(runs: pd.DataFrame) -> pd.Series:
    """Each run's curve within its sweep (see the module docstring); NaN: on no curve (an
    IsoFLOP run that is not its budget's best)."""
    if "flops_budget" in runs and runs["flops_budget"].notna().any():
        budgeted = runs[runs["flops_budget"].notna()]
        best = budgeted.loc[budgeted.groupby("flops_budget")["loss"].idxmin(), "run_id"]
        return pd.Series(np.where(runs["run_id"].isin(best), FRONTIER, None), runs.index)
    if "tokens_per_param" in runs and runs["tokens_per_param"].notna().all():
        return "D/N=" + runs["tokens_per_param"].map(lambda r: f"{r:g}")
    if runs.groupby("tokens")["model"].nunique().max() >= 2:
        return "D=" + runs["tokens"].map(si)
    return runs["model"].astype(str)


def from_project(results: pd.DataFrame, flops_col: str = "flops_detailed") -> pd.DataFrame:
    """This project's results table (experiments.collect) -> tidy scores, family = "<sweep>,
    <curve>" (module docstring), flops = `flops_col`; both FLOPs conventions and the final loss
    are kept as columns. Runs on no curve are left out."""
    require_columns(
        results,
        ["run_id", "model", "params_total", "params_non_embedding", "tokens", "loss", flops_col],
        "results",
    )
    if "sweep" not in results:
        results = results.assign(sweep="all")
    runs = results.drop_duplicates("run_id")
    label = dict(zip(runs["run_id"], _model_labels(runs), strict=True))
    curve = pd.concat([_budget_families(g) for _, g in runs.groupby("sweep", sort=False)])
    curve = curve.reindex(runs.index)
    family = dict(zip(runs["run_id"], runs["sweep"].astype(str) + ", " + curve, strict=True))
    on_curve = results["run_id"].map(curve.set_axis(runs["run_id"]).notna())
    out = results[on_curve].assign(
        model=lambda d: d["run_id"].map(label),
        family=lambda d: d["run_id"].map(family),
        params=lambda d: d["params_total"],
        non_embedding_params=lambda d: d["params_non_embedding"],
        flops=lambda d: d[flops_col],
    )
    return tidy(out, "results")
