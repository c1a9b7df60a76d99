"""Downstream error from loss (Gadre et al. 2024, "Language models scale reliably with
over-training and on downstream tasks", sec. 3): the top-1 error of a task, or averaged over
tasks, as an exponential decay in the loss,

    Err(L) = eps - k exp(-gamma L),

eps the error the curve leaves as L grows (about chance), k and gamma how fast it falls.
Chained with the over-training law (analysis.fits.overtraining), Err(L(C, M)) predicts a run's
error from its compute and token multiplier alone: how the paper predicts its two large runs.

Fit: least squares in Err, as the paper's (scipy curve_fit). For a fixed gamma the law is a
line in x = exp(-gamma (L - L0)) (L0 the smallest loss keeps x in (0, 1]), solved by the shared
weighted OLS (analysis.fits.ols) for eps and k; gamma minimises the residual sum of squares: a
log grid, then golden-section search between the grid neighbours of the best. Every bootstrap
resample is solved at once, as integer weights. k > 0 is required (the error falls with the
loss); a gamma at the edge of the grid means the data do not pin the curvature - a straight
line fits as well - and is flagged.

Bootstrap: runs resampled with replacement (resample_counts, drawn first from
default_rng(seed) like the over-training law, so that a chained fit on the same rows pairs the
same resample in both laws); a resample with fewer than 4 distinct losses is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.fits.base import Estimate
from analysis.fits.bootstrap import (
    percentile_band,
    percentile_interval,
    resample_counts,
    standard_error,
)
from analysis.fits.chinchilla import loss_curves
from analysis.fits.columns import as_flag
from analysis.fits.ols import ols
from analysis.fits.overtraining import OvertrainingFit
from analysis.inputs import ConfigError, require_columns, require_positive_finite
from analysis.tables import json_safe

LAW = "Err(L) = eps - k exp(-gamma L)"
PARAMS = ("eps", "k", "gamma")
N_PARAMS = len(PARAMS)
GAMMA_GRID = np.geomspace(1e-3, 1e2, 101)  # 20 per decade; the paper's fits: gamma ~ 0.3-1
GOLDEN_STEPS = 40  # shrinks the bracket (two grid steps) by 0.618^40 ~ 4e-9
INV_PHI = (np.sqrt(5.0) - 1) / 2


def error_curves(params, L) -> np.ndarray:
    """Err(L) for params (3,) or, per row, for resamples (n, 3); L broadcasts against the rows
    (a (n, m) L gives each resample its own losses, as a chained prediction does)."""
    params = np.asarray(params, float)
    eps, k, gamma = (params[..., i, None] for i in range(N_PARAMS))
    with np.errstate(all="ignore"):
        curves = eps - k * np.exp(-gamma * np.asarray(L, float))
    return curves if params.ndim > 1 else curves.reshape(np.shape(L))


def _line_fit(gamma, L, err, w, l0):
    """(rss, eps, k) of the best line in x = exp(-gamma (L - l0)) per row of weights w (B, n);
    rss = inf where the slope is not negative (k <= 0)."""
    x = np.exp(-gamma[:, None] * (L - l0))
    slope, eps = ols(x, err, w)
    with np.errstate(all="ignore"):
        rss = np.sum(w * (err - eps[:, None] - slope[:, None] * x) ** 2, axis=1)
        k = -slope * np.exp(gamma * l0)
    return np.where(slope < 0, rss, np.inf), eps, k


def _solve(L, err, w) -> np.ndarray:
    """(B, 3) least-squares (eps, k, gamma) per row of w; NaN where no k > 0 fits."""
    l0 = L.min()
    rss = lambda log_g: _line_fit(np.exp(log_g), L, err, w, l0)[0]
    log_grid = np.log(GAMMA_GRID)
    profile = np.stack([rss(np.full(len(w), g)) for g in log_grid])  # (G, B)
    best = np.argmin(profile, axis=0)
    lo = log_grid[np.maximum(best - 1, 0)]
    hi = log_grid[np.minimum(best + 1, len(log_grid) - 1)]
    for _ in range(GOLDEN_STEPS):
        c, d = hi - INV_PHI * (hi - lo), lo + INV_PHI * (hi - lo)
        left = rss(c) <= rss(d)
        lo, hi = np.where(left, lo, c), np.where(left, d, hi)
    gamma = np.exp((lo + hi) / 2)
    final, eps, k = _line_fit(gamma, L, err, w, l0)
    ok = np.isfinite(final) & np.isfinite(np.min(profile, axis=0))
    return np.where(ok[:, None], np.stack([eps, k, gamma], axis=1), np.nan)


@dataclass
class DownstreamFit:
    """Err(L) = eps - k exp(-gamma L) with bootstrap percentile intervals; `boot` holds one row
    per resample (NaN where left out or failed), for pairing in a chained fit."""

    eps: float
    k: float
    gamma: float
    ci: float
    n_boot: int
    seed: int
    n_points: int
    n_unidentified: int
    rmse: float  # of Err on the fitted rows
    columns: dict
    diagnostics: dict
    boot: np.ndarray = field(repr=False)

    def predict(self, L) -> np.ndarray:
        return error_curves((self.eps, self.k, self.gamma), L)

    def band(self, L) -> tuple[np.ndarray, np.ndarray]:
        return percentile_band(error_curves(self.boot, L), self.ci)

    def estimates(self) -> dict[str, Estimate]:
        return {
            k: Estimate(getattr(self, k), *percentile_interval(self.boot[:, i], self.ci))
            for i, k in enumerate(PARAMS)
        }

    def allocation(self, C) -> None:
        """An error-from-loss law gives no compute-optimal allocation."""

    def to_dict(self) -> dict:
        out = {"status": "ok", "law": LAW}
        for i, (k, (v, lo, hi, _)) in enumerate(self.estimates().items()):
            out |= {k: v, f"{k}_ci": [lo, hi], f"{k}_se": standard_error(self.boot[:, i])}
        skip = ("eps", "k", "gamma", "boot")
        out |= {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        out["settings"] = {
            "loss": "least squares in Err (variable projection: OLS for eps, k; gamma by grid "
            "and golden-section search)",
            "bootstrap": "runs resampled with replacement, percentile intervals; resamples with "
            "< 4 distinct losses left out",
        }
        return json_safe(out)


def _diagnostics(gamma: float, n_boot: int, left_out: int, failed: int) -> dict:
    warnings = []
    if not GAMMA_GRID[1] < gamma < GAMMA_GRID[-2]:
        warnings.append(
            f"gamma = {gamma:.3g} at the edge of [{GAMMA_GRID[0]:g}, {GAMMA_GRID[-1]:g}]: the "
            "data do not pin the curvature (a straight line in L fits as well)"
        )
    if n_boot and left_out + failed > 0.5 * n_boot:
        warnings.append(
            f"{left_out + failed}/{n_boot} bootstrap resamples were left out or found no k > 0:"
            " the intervals are unreliable"
        )
    return {"warnings": warnings, "boot_failed": failed}


def _bootstrap(L, err, n_boot: int, seed: int) -> tuple[np.ndarray, int, int]:
    """(n_boot, 3) refits, NaN where left out or failed; how many left out, how many failed."""
    boot = np.full((n_boot, N_PARAMS), np.nan)
    if not n_boot:
        return boot, 0, 0
    counts = resample_counts(np.random.default_rng(seed), len(L), n_boot)
    identified = np.array([len(np.unique(L[row > 0])) > N_PARAMS for row in counts])
    if identified.any():
        boot[identified] = _solve(L, err, counts[identified])
    failed = int((~np.all(np.isfinite(boot[identified]), axis=1)).sum())
    return boot, int((~identified).sum()), failed


def fit_downstream_error_arrays(
    L, err, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
    columns: dict | None = None, where: str = "downstream_error",
) -> DownstreamFit:  # fmt: skip
    """The law on arrays of losses and errors (finite); see the module docstring."""
    L, err = np.asarray(L, float), np.asarray(err, float)
    if len(np.unique(L)) <= N_PARAMS:
        raise ConfigError(
            where, f"{len(np.unique(L))} distinct loss(es)", "the law needs >= 4 runs"
        )
    best = _solve(L, err, np.ones((1, len(L))))[0]
    if not np.all(np.isfinite(best)):
        raise ConfigError(
            where, "the error does not fall as the loss falls (no fit with k > 0)",
            "check the error column (1 - accuracy) and the loss column",
        )  # fmt: skip
    boot, left_out, failed = _bootstrap(L, err, n_boot, seed)
    return DownstreamFit(
        *best, ci=ci, n_boot=n_boot, seed=seed, n_points=len(L), n_unidentified=left_out,
        rmse=float(np.sqrt(np.mean((error_curves(best, L) - err) ** 2))),
        columns=columns or {}, diagnostics=_diagnostics(best[2], n_boot, left_out, failed),
        boot=boot,
    )  # fmt: skip


def fit_downstream_error(
    df: pd.DataFrame, *, loss_col: str, error_col: str = "error", **kw
) -> DownstreamFit:
    """The law on the rows of a table: L from loss_col, Err from error_col."""
    with as_flag("--error", error_col):
        require_columns(df, [error_col], "input")
        require_positive_finite(df, [error_col], "input")
    require_columns(df, [loss_col], kw.get("where", "downstream_error"))
    L, err = df[loss_col].to_numpy(float), df[error_col].to_numpy(float)
    columns = {"loss": loss_col, "error": error_col}
    return fit_downstream_error_arrays(L, err, columns=columns, **kw)


@dataclass
class ErrorFromCompute:
    """Err(L(C, M)): the over-training law's loss fed to the error law, so predict(N, D) and
    band(N, D) give the error from compute (C = 6 N D, M = D / N). The band pairs resample i
    of the two laws: the same rows when both were fitted on the same runs with one seed."""

    loss_law: OvertrainingFit
    error_law: DownstreamFit

    def predict(self, N, D) -> np.ndarray:
        return self.error_law.predict(self.loss_law.predict(N, D))

    def band(self, N, D) -> tuple[np.ndarray, np.ndarray]:
        loss_boot, error_boot = self.loss_law.law.boot, self.error_law.boot
        n = min(len(loss_boot), len(error_boot))
        losses = loss_curves(loss_boot[:n], N, D)
        return percentile_band(error_curves(error_boot[:n], losses), self.error_law.ci)

    def estimates(self) -> dict[str, Estimate]:
        out = {}
        for name, law in (("L(C,M)", self.loss_law), ("Err(L)", self.error_law)):
            out |= {f"{name} {k}": e._replace(law=name) for k, e in law.estimates().items()}
        return out

    def allocation(self, C) -> None:
        """The chained law reports the error; the loss law's allocation is in its record."""

    def to_dict(self) -> dict:
        return {
            "status": "ok",
            "law": "Err(L(C, M)): the over-training law's loss fed to the error law",
            "laws": {"L(C, M)": self.loss_law.to_dict(), "Err(L)": self.error_law.to_dict()},
        }
