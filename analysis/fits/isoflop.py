"""Chinchilla approach 2: IsoFLOP profiles (Hoffmann et al. 2022, sec. 3.2).

Method
------
1. Group the runs into compute budgets (selection.group_budgets: by the design's `flops_budget`
   column when the table has it, else C values within a relative `budget_tolerance` of each
   other, since the runs of one profile share a nominal budget but not their exact FLOPs).
   Within a budget, one row per model size: if a size repeats (e.g. several learning rates),
   its lowest loss is kept, as Porian et al. 2024 do (`groupby_action='min'` in their
   analysis.py).
2. Per budget, locate the loss minimum over x = log N with one of two smooth fits:

   - ``"parabola"`` (default): least-squares quadratic of the loss in log N, as Hoffmann et al.
     2022 (sec. 3.2: "we fit a parabola to each IsoFLOPs curve"). Closed form, so the bootstrap
     is a batched 3x3 solve. Right when the sampled sizes sit near the minimum, where the
     profile is close to a parabola; biased when the grid spans several decades (the profile is
     asymmetric in log N far from its minimum).
   - ``"akima"``: Akima spline of log loss vs log N, minimised on a log-spaced grid of
     (m - 1) * 25 points (refined by a parabola through the three grid points around the
     minimum), as Porian et al. 2024 ("Resolving discrepancies in compute-optimal scaling of
     language models", arXiv:2406.19146, sec. 2 and their `interp_flop`). It follows the data
     wherever the profile is not parabolic; with it, the published exponents of all 15 of
     their set-ups are reproduced within 0.005 (tests/test_analysis_isoflop.py).

3. Edge rule (general, not per data set): a budget whose minimum falls at or outside the sampled
   N range (parabola vertex outside (min N, max N) or curvature <= 0; Akima argmin at the first
   or last grid point) only bounds N_opt, so it is flagged in `edge_budgets` and excluded from
   the exponent fit. Likewise a budget whose bootstrap minimum is at the edge in more than
   `max_edge_frac` (default 0.5, Porian et al.'s rule) of the resamples is flagged in
   `unstable_budgets` and excluded. Budgets with fewer than 3 model sizes (a quadratic has 3
   parameters) are listed in `skipped_budgets`.
4. Fit N_opt = n_coef * C^a by ordinary least squares of log N_opt on log C over the used
   budgets (Hoffmann et al. 2022, Porian et al. 2024 `power_law_fit`, unweighted "basic" fit).
   D_opt: D = C / (6 N) at each budget's N_opt, the Kaplan et al. 2020 (sec. 2.1) convention
   C = 6 N D, unless `d_col` is given, in which case log D is interpolated linearly in log N
   within the budget at N_opt. D_opt = d_coef * C^b is fitted the same way (with C = 6 N D,
   b = 1 - a exactly). R^2 of both log-log fits are reported.

Intervals (95% by default) are bootstrap percentile intervals over `n_boot` resamples (default
1000: enough for stable 2.5/97.5 percentiles) from `numpy.random.default_rng(seed)` (seed 0),
so results are deterministic. Every resample redoes step 2 for every budget and step 4, so the
intervals on a, b and the allocation carry the uncertainty of each budget's minimum. What is
resampled (`resample`):

- ``"residuals"`` (default for the parabola): within each budget, the parabola's residuals,
  leverage-corrected (r_i / sqrt(1 - h_ii), Davison & Hinkley 1997, alg. 6.3) and centred, are
  resampled with replacement and added to the fitted values. A budget with exactly 3 sizes has
  no residuals of its own and draws from all budgets' pooled residuals.
- ``"noise"`` (default for Akima): Gaussian noise of sd `loss_noise_sd` is added to every
  observed loss, as Porian et al.'s seed-noise bootstrap (their sd was 0.002 for RefinedWeb and
  0.01 for OpenWebText2, measured across seeds). If `loss_noise_sd` is None it is estimated as
  the pooled residual sd of quadratic fits to the (up to) 5 sizes around each budget's lowest
  loss, where a parabola is adequate.
- ``"points"``: within each budget, the (N, loss) points are resampled with replacement
  (a case bootstrap; resamples with fewer than 3 distinct sizes count as edge/invalid).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.fits.allocation import AllocationLaw, allocation_fields
from analysis.fits.bootstrap import resample_counts, resample_indices
from analysis.fits.columns import BUDGET_COL, CONVENTIONS
from analysis.fits.isoflop_minima import (
    MIN_SIZES,
    Budget,
    curve_fn,
    local_residual_var,
    minima,
    parabola_residuals,
)
from analysis.fits.ols import ols
from analysis.fits.selection import DEFAULT_BUDGET_TOLERANCE, group_budgets
from analysis.inputs import ConfigError, require_columns, require_min_rows, require_positive_finite
from analysis.tables import json_safe

METHODS = ("parabola", "akima")
RESAMPLES = ("residuals", "noise", "points")
DEFAULT_RESAMPLE = {"parabola": "residuals", "akima": "noise"}
MIN_BUDGETS = 3  # a line through the budgets' optima with at least one degree of freedom

RESAMPLE_DESCRIPTION = {
    "residuals": "within each budget, leverage-corrected parabola residuals resampled and added "
    "to the fitted losses; every budget's minimum and then the exponents refitted",
    "noise": "Gaussian noise of sd loss_noise_sd added to every observed loss; every budget's "
    "minimum and then the exponents refitted (Porian et al. 2024 seed-noise bootstrap)",
    "points": "within each budget, (N, loss) points resampled with replacement; every budget's "
    "minimum and then the exponents refitted",
}


@dataclass
class IsoFLOPFit(AllocationLaw):
    """N_opt = n_coef * C^a and D_opt = d_coef * C^b from per-budget loss minima (approach 2)."""

    method: str
    resample: str
    resampled: str
    n_col: str
    c_col: str
    loss_col: str
    d_col: str | None
    c_convention: str
    d_convention: str
    budget_grouping: str  # how runs were grouped into budgets
    n_points: int
    n_budgets: int
    n_budgets_used: int
    edge_budgets: list[float]
    unstable_budgets: list[float]
    skipped_budgets: list[float]
    loss_noise_sd: float | None
    ci: float
    n_boot: int
    n_boot_failed: int  # resamples with fewer than 2 budgets that have an interior minimum
    seed: int
    # One row per budget: C, n_sizes, n_opt (+ lo/hi), log_n_opt_sd, d_opt, loss_opt,
    # at_edge, edge_frac, used.
    budgets: pd.DataFrame = field(repr=False)
    # Per successful resample: (a, log N_opt at C = c_ref, b, log D_opt at c_ref).
    boot: np.ndarray = field(repr=False, compare=False)
    c_ref: float = field(repr=False, default=1.0)  # geometric mean of the used budgets
    _curves: dict = field(repr=False, compare=False, default_factory=dict)
    # The budget C of every input row (index of the fitted table), for plots.
    point_budgets: pd.Series = field(repr=False, compare=False, default=None)

    def curve(self, C: float, n) -> np.ndarray:
        """The fitted loss-vs-N curve of budget C (for plots); NaN outside its sampled range."""
        return self._curves[float(C)](np.log(np.asarray(n, float)))

    def to_dict(self) -> dict:
        d = {
            k: getattr(self, k)
            for k in self.__dataclass_fields__
            if k not in ("budgets", "boot", "c_ref", "_curves", "point_budgets")
        }
        d["budgets"] = self.budgets.to_dict(orient="records")
        return {"status": "ok", **json_safe(d)}


def _check_settings(method, resample, loss_noise_sd, where) -> str:
    if method not in METHODS:
        raise ConfigError(f"{where}.method", f"unknown method {method!r}", f"use one of {METHODS}")
    resample = resample or DEFAULT_RESAMPLE[method]
    if resample not in RESAMPLES:
        raise ConfigError(
            f"{where}.resample", f"unknown resample {resample!r}", f"use one of {RESAMPLES}"
        )
    if resample == "residuals" and method != "parabola":
        raise ConfigError(
            f"{where}.resample",
            "residual resampling needs a smoothing fit (an Akima spline has no residuals)",
            "use resample='noise' or 'points' with method='akima'",
        )
    if loss_noise_sd is not None and not (np.isfinite(loss_noise_sd) and loss_noise_sd >= 0):
        raise ConfigError(f"{where}.loss_noise_sd", "must be finite and >= 0", "pass e.g. 0.002")
    return resample


def _prepare(df, n_col, c_col, loss_col, d_col, point_budgets, where):
    """The budgets with >= MIN_SIZES sizes (best row per size) and the C of those skipped."""
    cols = [n_col, c_col, loss_col] + ([d_col] if d_col else [])
    require_columns(df, cols, where)
    require_positive_finite(df, cols, where)
    require_min_rows(len(df), MIN_SIZES * MIN_BUDGETS, "an IsoFLOP fit", where)
    if df[n_col].nunique() < 2:
        raise ConfigError(
            f"{where}.{n_col}",
            f"a single model size ({df[n_col].iloc[0]!r}): IsoFLOP minima need several sizes",
            "train at least 3 model sizes per compute budget",
        )
    budgets, skipped = [], []
    data = df[[n_col, loss_col] + ([d_col] if d_col else [])].astype(float)
    for C, g in data.groupby(point_budgets, sort=True):
        g = g.loc[g.groupby(n_col)[loss_col].idxmin()].sort_values(n_col)  # best row per size
        if len(g) < MIN_SIZES:
            skipped.append(float(C))
            continue
        logd = np.log(g[d_col].to_numpy()) if d_col else None
        budgets.append(Budget(float(C), np.log(g[n_col].to_numpy()), g[loss_col].to_numpy(), logd))
    if len(budgets) < MIN_BUDGETS:
        raise ConfigError(
            f"{where}.{c_col}",
            f"{len(budgets)} compute budget(s) with >= {MIN_SIZES} model sizes "
            f"(of {point_budgets.nunique()}), too few to fit N_opt ∝ C^a (needs >= {MIN_BUDGETS})",
            f"train >= {MIN_SIZES} model sizes at each of >= {MIN_BUDGETS} budgets, or widen "
            "--budget-tolerance if one budget's runs differ in FLOPs",
        )
    return budgets, skipped


def _resampled_losses(budgets, method, resample, loss_noise_sd, n_boot, rng):
    """Per budget, (Y, W): n_boot resampled loss profiles and their point weights (None but for
    the case resample), drawn as the module docstring says."""
    if resample == "residuals":
        res = [parabola_residuals(b.logn, b.loss) for b in budgets]
        pooled = np.concatenate([r for _, r, dof in res if dof > 0] or [np.zeros(1)])
    out = []
    for j, b in enumerate(budgets):
        m, W = len(b.logn), None
        if resample == "residuals":
            fitted, r, dof = res[j]
            pool = r if dof > 0 else pooled
            Y = fitted + pool[resample_indices(rng, len(pool), n_boot, size=m)]
        elif resample == "noise":
            Y = b.loss + loss_noise_sd * rng.standard_normal((n_boot, m))
            Y = np.maximum(Y, 1e-12 * b.loss.min())  # keep log loss defined for Akima
        else:
            W = resample_counts(rng, m, n_boot)
            Y = np.broadcast_to(b.loss, (n_boot, m))
        out.append((Y, W))
    return out


def _noise_sd(budgets) -> float:
    """Loss noise for the "noise" bootstrap: pooled residual sd of local parabolas."""
    ssr, dof = map(sum, zip(*(local_residual_var(b) for b in budgets), strict=True))
    return float(np.sqrt(ssr / dof)) if dof > 0 else 0.0


def _log_d_at(b: Budget, logc: float, logn_star):
    """log D at the minimum: C = 6 N D, or interpolated in log N within the budget."""
    if b.logd is None:
        return logc - np.log(6.0) - logn_star
    q, p = np.polyfit(b.logn, b.logd, 1)
    return p + q * logn_star


def _budget_table(
    budgets, logn_opt, loss_opt, logd_opt, boot_logn, n_boot, ci, at_edge, edge_frac, used
):
    """One row per budget: its minimum with bootstrap interval, sizes, edge flags, use."""
    q = 50 * (1 - ci)
    n_lo, n_hi, sd = (np.full(len(budgets), np.nan) for _ in range(3))
    if n_boot:
        with np.errstate(all="ignore"):
            finite = np.isfinite(boot_logn).sum(0) >= 2
            pct = np.nanpercentile(boot_logn[:, finite], [q, 100 - q], axis=0)
            n_lo[finite], n_hi[finite] = np.exp(pct)
            sd[finite] = np.nanstd(boot_logn[:, finite], axis=0)
    return pd.DataFrame(
        {
            "C": [b.C for b in budgets],
            "n_sizes": [len(b.logn) for b in budgets],
            "n_opt": np.exp(logn_opt),
            "n_opt_lo": n_lo,
            "n_opt_hi": n_hi,
            "log_n_opt_sd": sd,
            "d_opt": np.exp(logd_opt),
            "loss_opt": loss_opt,
            "n_min": [np.exp(b.logn[0]) for b in budgets],
            "n_max": [np.exp(b.logn[-1]) for b in budgets],
            "at_edge": at_edge,
            "edge_frac": edge_frac,
            "used": used,
        }
    )


def fit_isoflop(
    df: pd.DataFrame,
    *,
    n_col: str = "params_non_embedding",
    c_col: str = "flops_detailed",
    loss_col: str = "loss",
    d_col: str | None = None,
    budget_col: str | None = BUDGET_COL,
    budget_tolerance: float = DEFAULT_BUDGET_TOLERANCE,
    method: str = "parabola",
    resample: str | None = None,
    loss_noise_sd: float | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    max_edge_frac: float = 0.5,
    where: str = "isoflop",
) -> IsoFLOPFit:
    """Approach 2 of Hoffmann et al. 2022 on a table of final losses (see the module docstring).

    df: one row per run, with its non-embedding parameter count `n_col` (Kaplan et al. 2020's N),
    compute `c_col` (default flops_detailed) and final loss `loss_col`; `d_col` optionally gives
    the training tokens. Runs form budgets by `budget_col` where df has it, else by C within
    `budget_tolerance` (selection.group_budgets). `method` is "parabola" (Hoffmann et al.) or
    "akima" (Porian et al.); `resample` defaults to "residuals" for the parabola and "noise"
    for Akima. Raises ConfigError (one line) for missing columns, non-positive or non-finite
    values, a single model size, too few budgets with >= 3 sizes, or too few interior minima.
    """
    resample = _check_settings(method, resample, loss_noise_sd, where)
    require_columns(df, [c_col], where)
    require_positive_finite(df, [c_col], where)
    point_budgets, grouping = group_budgets(df, c_col, budget_col, budget_tolerance)
    budgets, skipped = _prepare(df, n_col, c_col, loss_col, d_col, point_budgets, where)

    est = [minima(method, b.logn, b.loss) for b in budgets]
    logn_opt = np.array([e[0][0] for e in est])
    loss_opt = np.array([e[1][0] for e in est])
    at_edge = ~np.isfinite(logn_opt)

    rng = np.random.default_rng(seed)
    if resample == "noise" and loss_noise_sd is None:
        loss_noise_sd = _noise_sd(budgets)
    boot_logn = np.full((n_boot, len(budgets)), np.nan)
    resampled = _resampled_losses(budgets, method, resample, loss_noise_sd, n_boot, rng)
    for j, (b, (Y, W)) in enumerate(zip(budgets, resampled, strict=True)):
        if n_boot:
            boot_logn[:, j] = minima(method, b.logn, Y, W)[0]
    edge_frac = np.isnan(boot_logn).mean(0) if n_boot else np.zeros(len(budgets))
    unstable = ~at_edge & (edge_frac > max_edge_frac)
    used = ~at_edge & ~unstable
    if used.sum() < 2:
        raise ConfigError(
            f"{where}.{n_col}",
            f"only {int(used.sum())} of {len(budgets)} budgets have their loss minimum inside "
            "the sampled model sizes; N_opt ∝ C^a needs >= 2",
            "sample model sizes on both sides of each budget's optimum",
        )

    logc = np.log([b.C for b in budgets])
    c_ref = float(np.exp(logc[used].mean()))
    x = logc - np.log(c_ref)
    logd_opt = np.array([_log_d_at(b, logc[j], logn_opt[j]) for j, b in enumerate(budgets)])
    boot_logd = np.column_stack(
        [_log_d_at(b, logc[j], boot_logn[:, j]) for j, b in enumerate(budgets)]
    )

    # Per resample: OLS over the used budgets whose resampled minimum is interior.
    Wb = np.isfinite(boot_logn[:, used]).astype(float)
    ok = Wb.sum(-1) >= 2
    sa, ia = ols(x[used], np.nan_to_num(boot_logn[ok][:, used]), Wb[ok])
    sb, ib = ols(x[used], np.nan_to_num(boot_logd[ok][:, used]), Wb[ok])
    boot = np.column_stack([sa, ia, sb, ib])
    boot = boot[np.all(np.isfinite(boot), axis=1)]

    d_conv = (
        f"D_opt interpolated from column {d_col!r} (linear in log N within each budget)"
        if d_col
        else f"D = C / (6 N) with C = {c_col!r}, N = {n_col!r} (Kaplan et al. 2020, sec. 2.1)"
    )
    return IsoFLOPFit(
        **allocation_fields(x[used], logn_opt[used], logd_opt[used], boot, c_ref, ci),
        method=method,
        resample=resample,
        resampled=RESAMPLE_DESCRIPTION[resample],
        n_col=n_col,
        c_col=c_col,
        loss_col=loss_col,
        d_col=d_col,
        c_convention=CONVENTIONS.get(c_col, c_col),
        d_convention=d_conv,
        budget_grouping=grouping,
        n_points=int(sum(len(b.logn) for b in budgets)),
        n_budgets=len(budgets),
        n_budgets_used=int(used.sum()),
        edge_budgets=[b.C for b, e in zip(budgets, at_edge, strict=True) if e],
        unstable_budgets=[b.C for b, u in zip(budgets, unstable, strict=True) if u],
        skipped_budgets=skipped,
        loss_noise_sd=loss_noise_sd if resample == "noise" else None,
        ci=ci,
        n_boot=n_boot,
        n_boot_failed=int(n_boot - len(boot)),
        seed=seed,
        budgets=_budget_table(
            budgets, logn_opt, loss_opt, logd_opt, boot_logn, n_boot, ci, at_edge, edge_frac, used
        ),
        boot=boot,
        c_ref=c_ref,
        _curves={b.C: curve_fn(method, b) for b in budgets},
        point_budgets=point_budgets,
    )
