"""Chinchilla approach 1: the training-curve envelope (Hoffmann et al. 2022, sec. 3.1).

Method
------
1. Pool every evaluation of every run's training curve (loss vs FLOPs, one row per evaluation,
   runs told apart by `group_col`). Split [min C, max C] into `n_bins` log-spaced bins (default
   20, about 3 bins per decade over a 1e15-1e21 sweep: fine enough to follow the envelope, coarse
   enough that most bins hold several runs) and keep, per bin, the evaluation with the lowest
   loss and the run (hence N) that attains it. A bin is kept only if its loss is strictly below
   that of every cheaper bin. This is powerlaw.compute_frontier; Hoffmann et al. interpolate
   each curve at 1500 log-spaced FLOP values instead of binning.
2. Edge rule (general): an envelope point attained by the smallest or the largest model size
   only bounds N_opt (no smaller / larger model was trained to compete), so it is flagged
   (`edge` column, `n_edge_points`) and left out of the fit unless exclude_edge_models=False.
3. N_opt = n_coef * C^a by ordinary least squares of log N on log C over the remaining envelope
   points (Hoffmann et al. 2022 sec. 3.1, their fig. 2). D_opt at each point is the run's
   `d_col` (tokens seen) when given, else D = C / (6 N) (Kaplan et al. 2020 sec. 2.1); D_opt =
   d_coef * C^b is fitted the same way. R^2 of both log-log fits are reported.

The envelope is conservative: an intermediate point of a cosine-schedule run has not annealed its
learning rate, so it overestimates the loss of a run trained for exactly that compute (Hoffmann
et al. 2022 sec. 3.1 and fig. A1). Training curves must therefore come from runs whose schedule
length matches (or exceeds) the FLOPs read off them.

Intervals: 95% bootstrap percentile intervals (default 1000 resamples, numpy Generator seeded
with `seed` = 0, deterministic). `resample="runs"` (default) draws whole runs with replacement,
rebuilds the envelope (same bins) and refits: the unit of independent noise is a run, and the
envelope depends on which model sizes exist. `resample="points"` resamples the fitted envelope
points instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.fits.allocation import AllocationLaw, allocation_fields
from analysis.fits.bootstrap import resample_groups, resample_indices
from analysis.fits.columns import CONVENTIONS
from analysis.fits.ols import ols
from analysis.inputs import ConfigError, require_columns, require_min_rows, require_positive_finite
from analysis.tables import json_safe

RESAMPLES = ("runs", "points")
RESAMPLED = {
    "runs": "whole runs (training curves) resampled with replacement; envelope rebuilt on the "
    "same FLOP bins and N_opt(C), D_opt(C) refitted",
    "points": "envelope points resampled with replacement; N_opt(C), D_opt(C) refitted",
}


@dataclass
class EnvelopeFit(AllocationLaw):
    """N_opt = n_coef * C^a and D_opt = d_coef * C^b from the loss-vs-FLOPs envelope."""

    n_col: str
    c_col: str
    loss_col: str
    d_col: str | None
    group_col: str
    c_convention: str
    d_convention: str
    n_runs: int
    n_sizes: int
    n_envelope: int  # points on the envelope
    n_edge_points: int  # of which attained by the smallest or largest model
    n_points: int  # used in the fit
    exclude_edge_models: bool
    n_bins: int
    resample: str
    resampled: str
    ci: float
    n_boot: int
    n_boot_failed: int
    seed: int
    envelope: pd.DataFrame = field(repr=False)  # group, N, C, D, loss, edge, used
    boot: np.ndarray = field(repr=False, compare=False)  # (a, log N at c_ref, b, log D at c_ref)
    c_ref: float = field(repr=False, default=1.0)

    def to_dict(self) -> dict:
        skip = ("envelope", "boot", "c_ref")
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        d["envelope"] = self.envelope.to_dict(orient="records")
        return {"status": "ok", **json_safe(d)}


def _envelope_rows(bins, loss, order, selected):
    """Indices of envelope rows among `selected` rows (bool per row); order sorts by (bin, loss)."""
    sel = order[selected[order]]
    _, first = np.unique(bins[sel], return_index=True)
    best = sel[first]  # lowest loss per bin, bins ascending
    lb = loss[best]
    prev = np.concatenate([[np.inf], np.minimum.accumulate(lb)[:-1]])
    return best[lb < prev]


def fit_envelope(
    curves: pd.DataFrame,
    *,
    n_col: str = "params_non_embedding",
    c_col: str = "flops_detailed",
    loss_col: str = "loss",
    group_col: str = "run_id",
    d_col: str | None = None,
    n_bins: int = 20,
    exclude_edge_models: bool = True,
    resample: str = "runs",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    where: str = "envelope",
) -> EnvelopeFit:
    """Approach 1 of Hoffmann et al. 2022 on training curves; see the module docstring.

    Rows with C <= 0 (step 0) are dropped first. Raises ConfigError (one line) for missing
    columns, non-positive/non-finite N, C, D or loss, a single model size, or fewer than 3
    envelope points (2 distinct sizes) left for the fit.
    """
    if resample not in RESAMPLES:
        raise ConfigError(
            f"{where}.resample", f"unknown resample {resample!r}", f"use one of {RESAMPLES}"
        )
    cols = [group_col, n_col, c_col, loss_col] + ([d_col] if d_col else [])
    require_columns(curves, cols, where)
    pts = curves.loc[pd.to_numeric(curves[c_col], errors="coerce") > 0, cols].reset_index(drop=True)
    require_positive_finite(pts, cols[1:], where)
    require_min_rows(len(pts), 3, "an envelope fit (2 parameters)", where)
    if pts[n_col].nunique() < 2:
        raise ConfigError(
            f"{where}.{n_col}",
            f"a single model size ({pts[n_col].iloc[0]!r}): the envelope needs several sizes",
            "train runs of at least 3 model sizes",
        )

    N = pts[n_col].to_numpy(float)
    C = pts[c_col].to_numpy(float)
    loss = pts[loss_col].to_numpy(float)
    logc = np.log(C)
    edges = np.linspace(logc.min(), logc.max(), n_bins + 1)
    bins = np.clip(np.searchsorted(edges, logc, side="right") - 1, 0, n_bins - 1)
    order = np.lexsort((loss, bins))
    logd = np.log(pts[d_col].to_numpy(float)) if d_col else logc - np.log(6.0) - np.log(N)
    run_codes, runs = pd.factorize(pts[group_col])

    def fit_rows(rows, sizes):
        """(a, icpt_n, b, icpt_d) on envelope rows, and their edge mask; sizes = available N."""
        edge = (N[rows] == sizes.min()) | (N[rows] == sizes.max())
        use = rows[~edge] if exclude_edge_models else rows
        if len(use) < 3 or len(np.unique(N[use])) < 2:
            return None, edge
        return lines(use), edge

    def lines(rows):
        x = logc[rows] - np.log(c_ref)
        return (*ols(x, np.log(N[rows])), *ols(x, logd[rows]))

    env = _envelope_rows(bins, loss, order, np.ones(len(pts), bool))
    edge0 = (N[env] == N.min()) | (N[env] == N.max())
    used0 = env[~edge0] if exclude_edge_models else env
    c_ref = float(np.exp(logc[used0].mean())) if len(used0) else 1.0
    est, edge = fit_rows(env, N)
    if est is None:
        raise ConfigError(
            f"{where}.{n_col}",
            f"{len(env)} envelope point(s), {int(edge.sum())} of them from the smallest or "
            "largest model: too few (needs >= 3 from >= 2 sizes) to fit N_opt ∝ C^a",
            "train more model sizes, or pass exclude_edge_models=False",
        )
    used = ~edge if exclude_edge_models else np.ones(len(env), bool)
    rng = np.random.default_rng(seed)
    if resample == "runs":  # whole training curves: rebuild the envelope from the drawn runs
        boot = []
        for chosen in resample_groups(rng, len(runs), n_boot):
            selected = np.isin(run_codes, chosen)
            boot.append(fit_rows(_envelope_rows(bins, loss, order, selected), N[selected])[0])
    else:
        boot = [
            lines(env[used][i]) if len(np.unique(N[env[used][i]])) >= 2 else None
            for i in resample_indices(rng, int(used.sum()), n_boot)
        ]
    boot = np.array([r for r in boot if r is not None and np.all(np.isfinite(r))], float)
    boot = boot.reshape(-1, 4)
    fields = allocation_fields(
        logc[env[used]] - np.log(c_ref), np.log(N[env[used]]), logd[env[used]], boot, c_ref, ci
    )
    table = pd.DataFrame(
        {
            group_col: runs[run_codes[env]],
            n_col: N[env],
            c_col: C[env],
            "d": np.exp(logd[env]),
            loss_col: loss[env],
            "edge": edge,
            "used": used,
        }
    )
    d_conv = (
        f"D_opt = column {d_col!r} at the envelope point"
        if d_col
        else f"D = C / (6 N) with C = {c_col!r}, N = {n_col!r} (Kaplan et al. 2020, sec. 2.1)"
    )
    return EnvelopeFit(
        **fields,
        n_col=n_col,
        c_col=c_col,
        loss_col=loss_col,
        d_col=d_col,
        group_col=group_col,
        c_convention=CONVENTIONS.get(c_col, c_col),
        d_convention=d_conv,
        n_runs=len(runs),
        n_sizes=int(len(np.unique(N))),
        n_envelope=len(env),
        n_edge_points=int(edge.sum()),
        n_points=int(used.sum()),
        exclude_edge_models=exclude_edge_models,
        n_bins=n_bins,
        resample=resample,
        resampled=RESAMPLED[resample],
        ci=ci,
        n_boot=n_boot,
        n_boot_failed=n_boot - len(boot),
        seed=seed,
        envelope=table,
        boot=boot,
        c_ref=c_ref,
    )
