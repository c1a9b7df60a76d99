"""Kaplan-style scaling laws (Kaplan et al. 2020, "Scaling laws for neural language models").

One-variable laws, each pure (Kaplan's form) or with an irreducible term E (Henighan et al.
2020; Hoffmann et al. 2022 eq. 2):

- L(N) = (N_c / N)^alpha_N  [+ E]   Kaplan eq. 1.1: N = non-embedding parameters, runs trained
  to (near) convergence on enough data; fitted on the rows given (the caller picks them).
- L(D) = (D_c / D)^alpha_D  [+ E]   Kaplan eq. 1.2: D = training tokens, large models with
  early stopping.
- L(C_min) = (C_c / C_min)^alpha_C [+ E]   Kaplan eq. 1.3: the compute-efficient frontier, the
  lower envelope of the training curves over all runs (see powerlaw.compute_frontier). Kaplan
  et al. measure C_min = 6 N B_crit S_min after correcting for the critical batch size; here C is
  whatever FLOP column is passed (default flops_detailed; 1 PF-day = 8.64e19 FLOPs), so
  C_c is in FLOPs.

and the joint L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D (Kaplan eq. 1.5 / 4.1).

All fits minimise squared residuals of log L (so every point counts in relative error). The
one-variable fits are powerlaw.fit_power_law (E >= 0, or E fixed at 0: then log L is linear in
log x and solved in closed form), reparametrised as x_c = A^(1/alpha). The joint fit is a bounded
least-squares problem in (log-scale) parameters with a fixed multi-start grid, deterministic.
Intervals: 95% percentile intervals of a nonparametric bootstrap over points (rows resampled with
replacement and refitted, default 1000 resamples, numpy Generator seeded with `seed` = 0),
warm-started from the full-data estimate.
Kaplan et al.'s published values, for orientation: alpha_N = 0.076, N_c = 8.8e13;
alpha_D = 0.095, D_c = 5.4e13; alpha_C^min = 0.050, C_c^min = 3.1e8 PF-days; and for eq. 1.5
alpha_N = 0.076, alpha_D = 0.103, N_c = 6.4e13, D_c = 1.8e13 (their Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from analysis.fits.base import Estimate, estimates_of
from analysis.fits.bootstrap import percentile_band, percentile_interval, resample_indices
from analysis.fits.columns import CONVENTIONS
from analysis.fits.powerlaw import FitError, PowerLawFit, compute_frontier, fit_power_law
from analysis.inputs import ConfigError, require_columns, require_min_rows, require_positive_finite
from analysis.tables import json_safe

RESAMPLED = "rows (points) resampled with replacement, law refitted"


@dataclass
class KaplanFit:
    """L(x) = (x_c / x)^alpha + E (E = 0 for Kaplan's pure form), from a PowerLawFit."""

    law: str  # "L(N)", "L(D)" or "L(C_min)"
    x_col: str
    loss_col: str
    convention: str
    irreducible: bool
    n_points: int
    alpha: float
    alpha_ci: tuple[float, float]
    x_c: float
    x_c_ci: tuple[float, float]
    E: float
    E_ci: tuple[float, float]
    r2_log: float
    rmse_log: float
    ci: float
    n_boot: int
    n_boot_failed: int
    seed: int
    method: str
    resampled: str
    fit: PowerLawFit = field(repr=False, compare=False)

    def predict(self, x) -> np.ndarray:
        return self.fit.predict(x)

    def band(self, x):
        return self.fit.band(x)

    def estimates(self) -> dict[str, Estimate]:
        return estimates_of(self, ("alpha", "x_c", "E") if self.irreducible else ("alpha", "x_c"))

    def allocation(self, C) -> None:
        """A one-variable law gives no compute-optimal allocation."""

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "fit"}
        return {"status": "ok", **json_safe(d)}


def _check(df, cols, n_params, what, where):
    require_columns(df, cols, where)
    require_positive_finite(df, cols, where)
    require_min_rows(len(df), n_params + 1, f"{what} ({n_params} parameters)", where)


def _distinct(df, col, n, what, where):
    k = df[col].nunique()
    if k < n:
        single = "a single value" if k == 1 else f"{k} distinct values"
        raise ConfigError(
            f"{where}.{col}",
            f"{single} of {col!r}: {what} needs >= {n}",
            f"add runs at more values of {col!r}",
        )


def fit_kaplan_1d(
    df: pd.DataFrame,
    x_col: str,
    *,
    loss_col: str = "loss",
    law: str | None = None,
    irreducible: bool = False,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    where: str = "kaplan",
) -> KaplanFit:
    """L = (x_c / x)^alpha (+ E if irreducible) over the rows of df; see the module docstring.

    Default irreducible=False: Kaplan et al.'s pure power law. Raises ConfigError for missing
    columns, non-positive/non-finite values, or fewer distinct x than parameters + 1.
    """
    n_params = 3 if irreducible else 2
    _check(df, [x_col, loss_col], n_params, "a power-law fit", where)
    _distinct(df, x_col, n_params + 1, f"a {n_params}-parameter power law", where)
    x = df[x_col].to_numpy(float)
    try:
        f = fit_power_law(
            x,
            df[loss_col].to_numpy(float),
            x_col=x_col,
            n_boot=n_boot,
            ci=ci,
            seed=seed,
            irreducible=irreducible,
        )
    except FitError as e:
        raise ConfigError(where, str(e), "check the data") from e
    with np.errstate(all="ignore"):
        # (x_c / x)^alpha = A x^-alpha  =>  x_c = A^(1/alpha) = x0 * A_scaled^(1/alpha)
        xc_boot = f.x0 * f.boot[:, 1] ** (1 / f.boot[:, 2])
        x_c = f.x0 * f.A_scaled ** (1 / f.alpha)
    return KaplanFit(
        law=law or f"L({x_col})",
        x_col=x_col,
        loss_col=loss_col,
        convention=f.convention,
        irreducible=irreducible,
        n_points=f.n_points,
        alpha=f.alpha,
        alpha_ci=f.alpha_ci,
        x_c=float(x_c),
        x_c_ci=percentile_interval(xc_boot, ci),
        E=f.E,
        E_ci=f.E_ci if irreducible else (0.0, 0.0),
        r2_log=f.r2_log,
        rmse_log=f.rmse_log,
        ci=ci,
        n_boot=n_boot,
        n_boot_failed=f.n_boot_failed,
        seed=seed,
        method="least squares on log L"
        + (" (E >= 0, multi-start)" if irreducible else " (E = 0: OLS in log-log)"),
        resampled=RESAMPLED,
        fit=f,
    )


def fit_kaplan_n(df, n_col: str = "params_non_embedding", **kw) -> KaplanFit:
    """L(N) (Kaplan eq. 1.1) on the given rows (e.g. final losses of runs with ample data)."""
    return fit_kaplan_1d(df, n_col, law="L(N)", **kw)


def fit_kaplan_d(df, d_col: str = "tokens", **kw) -> KaplanFit:
    """L(D) (Kaplan eq. 1.2) on the given rows (e.g. early-stopped losses of a large model)."""
    return fit_kaplan_1d(df, d_col, law="L(D)", **kw)


def fit_kaplan_compute(
    curves: pd.DataFrame,
    c_col: str = "flops_detailed",
    *,
    loss_col: str = "loss",
    n_bins: int = 20,
    where: str = "kaplan",
    **kw,
) -> tuple[pd.DataFrame, KaplanFit]:
    """L(C_min) (Kaplan eq. 1.3) on the lower envelope of all training curves; returns
    (frontier, fit). `n_bins` log-spaced FLOP bins (default 20: one point per ~0.1-0.3 decade
    over typical sweeps); rows with C <= 0 (step 0) are ignored before the checks."""
    require_columns(curves, [c_col, loss_col], where)
    pts = curves[pd.to_numeric(curves[c_col], errors="coerce") > 0]
    require_positive_finite(pts, [loss_col], where)
    frontier = compute_frontier(pts, c_col, n_bins, loss_col=loss_col)
    return frontier, fit_kaplan_1d(
        frontier, c_col, loss_col=loss_col, law="L(C_min)", where=where, **kw
    )


# --- joint L(N, D) --------------------------------------------------------------------------------

# Multi-start grid for (alpha_D, alpha_N / alpha_D): spans the 0.05-0.5 exponents seen for LMs.
START_ALPHA_D = (0.05, 0.1, 0.3)
START_RATIO = (0.5, 1.0, 2.0)
LOG_EXP_BOUNDS = (np.log(1e-3), np.log(10.0))


def _nd_model(theta, logn, logd):
    """log L and its Jacobian; theta = (p, q, log r, log alpha_D), r = alpha_N / alpha_D,
    (N_c/N)^r = exp(p - r log n), D_c/D = exp(q - log d) with n = N/N0, d = D/D0."""
    p, q, log_r, log_ad = theta
    r, ad = np.exp(log_r), np.exp(log_ad)
    u1, u2 = p - r * logn, q - logd
    s = np.logaddexp(u1, u2)
    w1 = np.exp(u1 - s)
    f = ad * s
    jac = np.column_stack([ad * w1, ad * (1 - w1), ad * w1 * (-r * logn), f])
    return f, jac


def _nd_solve(theta0, logn, logd, logy):
    lo = [-np.inf, -np.inf, LOG_EXP_BOUNDS[0], LOG_EXP_BOUNDS[0]]
    hi = [np.inf, np.inf, LOG_EXP_BOUNDS[1], LOG_EXP_BOUNDS[1]]
    with np.errstate(all="ignore"):
        r = least_squares(
            lambda t: logy - _nd_model(t, logn, logd)[0],
            np.clip(theta0, lo, hi),
            lambda t: -_nd_model(t, logn, logd)[1],
            bounds=(lo, hi),
        )
    if not (r.success and np.all(np.isfinite(r.x)) and np.isfinite(r.cost)):
        return None
    return r.x, r.cost


def _nd_loss(params, N, D):
    """Kaplan eq. 1.5 at (N, D) for params (alpha_N, alpha_D, N_c, D_c) along axis 0."""
    a_n, a_d, n_c, d_c = params
    with np.errstate(all="ignore"):
        return ((n_c / np.asarray(N, float)) ** (a_n / a_d) + d_c / np.asarray(D, float)) ** a_d


@dataclass
class KaplanNDFit:
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan et al. 2020, eq. 1.5)."""

    n_col: str
    d_col: str
    loss_col: str
    n_convention: str
    n_points: int
    alpha_N: float
    alpha_N_ci: tuple[float, float]
    alpha_D: float
    alpha_D_ci: tuple[float, float]
    N_c: float
    N_c_ci: tuple[float, float]
    D_c: float
    D_c_ci: tuple[float, float]
    r2_log: float
    rmse_log: float
    ci: float
    n_boot: int
    n_boot_failed: int
    seed: int
    method: str
    resampled: str
    # (alpha_N, alpha_D, N_c, D_c) per successful resample; not serialised.
    boot: np.ndarray = field(repr=False, compare=False)

    def predict(self, N, D) -> np.ndarray:
        return _nd_loss(np.array([self.alpha_N, self.alpha_D, self.N_c, self.D_c]), N, D)

    def band(self, N, D) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise bootstrap percentile band of L(N, D) from the resampled parameters."""
        N, D = np.asarray(N, float), np.asarray(D, float)
        return percentile_band(_nd_loss(self.boot.T[:, :, None], N[None], D[None]), self.ci)

    def estimates(self) -> dict[str, Estimate]:
        return estimates_of(self, ("alpha_N", "alpha_D", "N_c", "D_c"))

    def allocation(self, C) -> None:
        """Kaplan's L(N, D) is not solved for a compute-optimal allocation here."""

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "boot"}
        return {"status": "ok", **json_safe(d)}


def fit_kaplan_nd(
    df: pd.DataFrame,
    *,
    n_col: str = "params_non_embedding",
    d_col: str = "tokens",
    loss_col: str = "loss",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    where: str = "kaplan",
) -> KaplanNDFit:
    """Kaplan eq. 1.5 on one row per (N, D) run, e.g. early-stopped or final losses.

    log L = alpha_D * log[(N_c/N)^(alpha_N/alpha_D) + D_c/D] is fitted by bounded least squares
    from a 3x3 grid of starts (START_ALPHA_D x START_RATIO, with N_c and D_c set so that both
    terms are equal at the geometric-mean N and D); the best is kept. Needs >= 5 rows, >= 2
    distinct N and >= 2 distinct D (else ConfigError).
    """
    _check(df, [n_col, d_col, loss_col], 4, "the joint L(N, D) fit", where)
    _distinct(df, n_col, 2, "the joint L(N, D) fit", where)
    _distinct(df, d_col, 2, "the joint L(N, D) fit", where)
    N, D = df[n_col].to_numpy(float), df[d_col].to_numpy(float)
    logy = np.log(df[loss_col].to_numpy(float))
    n0, d0 = np.exp(np.log(N).mean()), np.exp(np.log(D).mean())
    logn, logd = np.log(N / n0), np.log(D / d0)

    solves = []
    for ad in START_ALPHA_D:
        half = logy.mean() / ad - np.log(2)  # each term = half of L^(1/alpha_D) at the centre
        for r in START_RATIO:
            s = _nd_solve(np.array([half, half, np.log(r), np.log(ad)]), logn, logd, logy)
            if s is not None:
                solves.append(s)
    if not solves:
        raise ConfigError(where, "the L(N, D) fit did not converge from any start", "check data")
    best = min(solves, key=lambda s: s[1])[0]

    def natural(theta):
        p, q, log_r, log_ad = theta
        r, ad = np.exp(log_r), np.exp(log_ad)
        return np.array([r * ad, ad, n0 * np.exp(p / r), d0 * np.exp(q)])

    rng = np.random.default_rng(seed)
    boot = []
    for idx in resample_indices(rng, len(N), n_boot):
        if len(np.unique(N[idx])) < 2 or len(np.unique(D[idx])) < 2 or len(np.unique(idx)) < 5:
            continue
        s = _nd_solve(best, logn[idx], logd[idx], logy[idx])
        if s is not None:
            boot.append(natural(s[0]))
    boot = np.array(boot).reshape(-1, 4)

    est = natural(best)
    res = logy - _nd_model(best, logn, logd)[0]
    ss = np.sum((logy - logy.mean()) ** 2)
    return KaplanNDFit(
        n_col=n_col,
        d_col=d_col,
        loss_col=loss_col,
        n_convention=CONVENTIONS.get(n_col, n_col),
        n_points=len(N),
        alpha_N=float(est[0]),
        alpha_N_ci=percentile_interval(boot[:, 0], ci),
        alpha_D=float(est[1]),
        alpha_D_ci=percentile_interval(boot[:, 1], ci),
        N_c=float(est[2]),
        N_c_ci=percentile_interval(boot[:, 2], ci),
        D_c=float(est[3]),
        D_c_ci=percentile_interval(boot[:, 3], ci),
        r2_log=float(1 - np.sum(res**2) / ss) if ss > 0 else float("nan"),
        rmse_log=float(np.sqrt(np.mean(res**2))),
        ci=ci,
        n_boot=n_boot,
        n_boot_failed=n_boot - len(boot),
        seed=seed,
        method="bounded least squares on log L, 9-start grid",
        resampled=RESAMPLED,
        boot=boot,
    )
