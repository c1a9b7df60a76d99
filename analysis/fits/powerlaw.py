"""Saturating power-law fits L(x) = E + A * x^(-alpha), x = training FLOPs or parameters.

Conventions:
- The functional form with an irreducible term E is the one of Hoffmann et al. 2022
  ("Chinchilla", eq. 2) and Henighan et al. 2020; Kaplan et al. 2020 fit the pure power law,
  which is the special case E = 0 (allowed here: E >= 0; fixed with irreducible=False).
- The fit minimises squared residuals of log L (Hoffmann et al. 2022 App. D.2 fit in log space
  too), so every point counts in relative error whatever its loss level.
- x is divided by x0 = geometric mean of x before fitting so that A is O(1) and the optimiser is
  well conditioned; A is reported in the original units as A = A_scaled * x0^alpha.
- Intervals are percentile intervals of a nonparametric bootstrap over data points
  (Efron & Tibshirani 1993, ch. 13).
- N is the non-embedding parameter count, following Kaplan et al. 2020 (sec. 2.1), who found
  that excluding embeddings gives cleaner laws at small scale.
"""

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from analysis.fits.base import Estimate, estimates_of
from analysis.fits.bootstrap import percentile_band, percentile_interval, resample_indices
from analysis.fits.columns import CONVENTIONS
from analysis.fits.ols import ols
from analysis.fits.selection import final_rows
from analysis.tables import json_safe

N_PARAMS = 3  # E, A, alpha
# alpha is kept in [1e-3, 5]: far outside the 0.05-0.5 seen for language models, the bound only
# stops the optimiser from overflowing x^-alpha on degenerate (e.g. bootstrap) data.
LOG_ALPHA_BOUNDS = (np.log(1e-3), np.log(5.0))
START_E_FRACTIONS = (0.0, 0.5, 0.9)  # starting E as a fraction of min(L)
START_ALPHAS = (0.05, 0.2, 0.5, 1.0)


class FitError(ValueError):
    """A fit that cannot be done (too few points, bad values, optimiser failure)."""


@dataclass
class PowerLawFit:
    """L(x) = E + A * x^(-alpha), with bootstrap percentile intervals (lo, hi)."""

    x_col: str
    convention: str
    n_points: int
    E: float
    A: float  # original units of x
    alpha: float
    x0: float  # geometric mean of x; A_scaled = A * x0^(-alpha)
    A_scaled: float
    E_ci: tuple[float, float]
    A_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    ci: float
    n_boot: int
    n_boot_failed: int  # resamples with < N_PARAMS + 1 distinct x, or where the optimiser failed
    seed: int
    r2_log: float  # R^2 of log L
    rmse_log: float  # RMSE of log L residuals (~ relative error)
    # (E, A_scaled, alpha) of each successful resample, for bands in plots; not serialised.
    boot: np.ndarray = field(repr=False, compare=False)

    def predict(self, x) -> np.ndarray:
        return _predict((self.E, self.A_scaled, self.alpha), np.asarray(x, float) / self.x0)

    def band(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise bootstrap percentile band of the fitted curve at x."""
        z = np.asarray(x, float) / self.x0
        return percentile_band([_predict(p, z) for p in self.boot], self.ci)

    def estimates(self) -> dict[str, Estimate]:
        return estimates_of(self, ("E", "A", "alpha"))

    def allocation(self, C) -> None:
        """A one-variable law gives no compute-optimal allocation."""

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "boot"}
        return {"status": "ok", **json_safe(d)}


@dataclass
class FitSkipped:
    """A fit that was not done, with the reason (written to fits.json instead of a result)."""

    x_col: str
    n_points: int
    reason: str

    def to_dict(self) -> dict:
        return {"status": "skipped", **asdict(self)}


def _predict(p, z):
    E, A, alpha = p
    return E + A * z ** (-alpha)


def _residuals(theta, logz, logy):
    # theta = (E, log A_scaled, log alpha): A > 0 and alpha > 0 by construction, E >= 0 by bound.
    E, log_a, log_alpha = theta
    return logy - np.log(E + np.exp(log_a - np.exp(log_alpha) * logz))


def _jacobian(theta, logz, logy):
    E, log_a, log_alpha = theta
    alpha = np.exp(log_alpha)
    t = np.exp(log_a - alpha * logz)  # the power-law term A z^-alpha
    f = E + t
    return np.column_stack([-1 / f, -t / f, t * alpha * logz / f])


def _solve(theta0, logz, logy):
    """One bounded least-squares solve; returns (theta, cost) or None on failure."""
    lo = [0.0, -np.inf, LOG_ALPHA_BOUNDS[0]]
    hi = [np.inf, np.inf, LOG_ALPHA_BOUNDS[1]]
    theta0 = np.clip(theta0, lo, hi)
    with np.errstate(all="ignore"):
        r = least_squares(_residuals, theta0, _jacobian, bounds=(lo, hi), args=(logz, logy))
    if not (r.success and np.all(np.isfinite(r.x)) and np.isfinite(r.cost)):
        return None
    return r.x, r.cost


def _theta_to_params(theta) -> np.ndarray:
    return np.array([theta[0], np.exp(theta[1]), np.exp(theta[2])])  # (E, A_scaled, alpha)


def fit_power_law(
    x,
    loss,
    *,
    x_col: str = "x",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    irreducible: bool = True,
) -> PowerLawFit:
    """Fit L = E + A * x^(-alpha) in log space; bootstrap over points for intervals.

    irreducible=False fixes E = 0 (Kaplan et al. 2020's pure power law): log L is then linear in
    log x, solved in closed form for the estimate and for every resample (2 parameters, so 3
    distinct x are enough).

    Deterministic: a fixed multi-start grid (E0 in START_E_FRACTIONS * min L, alpha0 in
    START_ALPHAS, A0 so that the curve passes through the geometric-mean point) keeps the best
    of several local optima; each bootstrap resample (numpy Generator seeded with `seed`) is
    warm-started from it: one solve instead of the grid's 12. Non-finite rows are dropped.
    Raises FitError when fewer than N_PARAMS + 1 distinct x remain or no start converges.
    """
    x, y = np.asarray(x, float), np.asarray(loss, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    n_params = N_PARAMS if irreducible else 2
    if len(np.unique(x)) < n_params + 1:
        raise FitError(
            f"need at least {n_params + 1} distinct positive {x_col} values to fit "
            f"{n_params} parameters, got {len(np.unique(x))}"
        )
    x0 = float(np.exp(np.mean(np.log(x))))
    logz, logy = np.log(x / x0), np.log(y)
    rng = np.random.default_rng(seed)
    if not irreducible:
        best, boot = _pure_fit(logz, logy, rng, n_boot)
        return _make_fit(x_col, x, x0, best, boot, ci, n_boot, seed, logz, logy)

    gm_y = np.exp(logy.mean())
    starts = [
        (f * y.min(), np.log(gm_y - f * y.min()), np.log(a))
        for f in START_E_FRACTIONS
        for a in START_ALPHAS
    ]
    solves = [s for s in (_solve(np.array(t), logz, logy) for t in starts) if s is not None]
    if not solves:
        raise FitError("least_squares did not converge from any start")
    best = min(solves, key=lambda s: s[1])[0]
    boot = []
    for idx in resample_indices(rng, len(x), n_boot):
        # Fewer distinct x than N_PARAMS + 1 leaves the fit underdetermined: count as degenerate.
        s = _solve(best, logz[idx], logy[idx]) if len(np.unique(x[idx])) > N_PARAMS else None
        if s is not None:
            boot.append(_theta_to_params(s[0]))
    boot = np.array(boot).reshape(-1, N_PARAMS)
    return _make_fit(x_col, x, x0, _theta_to_params(best), boot, ci, n_boot, seed, logz, logy)


def _pure_fit(logz, logy, rng, n_boot):
    """E = 0: OLS of log L on log z, for the data and for each point resample (vectorised)."""

    def ols_params(idx):
        slope, icpt = ols(logz[idx], logy[idx])
        return np.stack([np.zeros_like(slope), np.exp(icpt), -slope], -1)

    best = ols_params(np.arange(len(logz))[None, :])[0]
    idx = resample_indices(rng, len(logz), n_boot)
    # Resamples with < 3 distinct x leave no residual degree of freedom: count as degenerate.
    distinct = np.array([len(np.unique(logz[i])) >= 3 for i in idx], dtype=bool)
    boot = ols_params(idx[distinct]) if distinct.any() else np.zeros((0, N_PARAMS))
    return best, boot[np.all(np.isfinite(boot), axis=1)]


def _make_fit(x_col, x, x0, params, boot, ci, n_boot, seed, logz, logy) -> PowerLawFit:
    E, A_scaled, alpha = params
    A_boot = boot[:, 1] * x0 ** boot[:, 2]

    interval = lambda v: percentile_interval(v, ci)
    res = logy - np.log(_predict(params, np.exp(logz)))
    ss_tot = np.sum((logy - logy.mean()) ** 2)
    return PowerLawFit(
        x_col=x_col,
        convention=CONVENTIONS.get(x_col, x_col),
        n_points=len(x),
        E=float(E),
        A=float(A_scaled * x0**alpha),
        alpha=float(alpha),
        x0=x0,
        A_scaled=float(A_scaled),
        E_ci=interval(boot[:, 0]),
        A_ci=interval(A_boot),
        alpha_ci=interval(boot[:, 2]),
        ci=ci,
        n_boot=n_boot,
        n_boot_failed=n_boot - len(boot),
        seed=seed,
        r2_log=float(1 - np.sum(res**2) / ss_tot) if ss_tot > 0 else np.nan,
        rmse_log=float(np.sqrt(np.mean(res**2))),
        boot=boot,
    )


def _fit_or_skip(x, loss, x_col: str, **fit_kw) -> PowerLawFit | FitSkipped:
    try:
        return fit_power_law(x, loss, x_col=x_col, **fit_kw)
    except FitError as e:
        return FitSkipped(x_col=x_col, n_points=len(x), reason=str(e))


FRONTIER_COLS = ["run_id", "model", "params_non_embedding", "params_total", "step", "tokens"]


def compute_frontier(
    curves: pd.DataFrame,
    flops_col: str = "flops_detailed",
    n_bins: int = 20,
    *,
    loss_col: str = "loss",
    keep_cols=FRONTIER_COLS,
) -> pd.DataFrame:
    """Compute-efficient frontier: lower envelope of held-out loss vs FLOPs over all runs.

    As in Kaplan et al. 2020 (fig. 1) and Hoffmann et al. 2022 approach 1: pool every
    evaluation of every run's training curve, split [min C, max C] into `n_bins` log-spaced
    bins and keep, per bin, the point with the lowest loss together with the run that attains
    it. A bin is then kept only if its loss is strictly below that of every lower-compute bin:
    otherwise a cheaper budget already reached a lower loss, so the bin is not on the envelope.
    Points with C <= 0 (step 0) or non-finite loss are ignored.

    The frontier is conservative: an intermediate point of a cosine-schedule run has not
    annealed its learning rate yet, so it overestimates the loss a run trained for exactly that
    compute would reach (Hoffmann et al. 2022, sec. 3.1 and fig. A1).
    Returns one row per frontier bin with those of `keep_cols` that curves has (default
    FRONTIER_COLS), flops_col and loss_col, sorted by FLOPs.
    """
    keep = [
        c
        for c in dict.fromkeys(keep_cols)
        if c in curves.columns and c not in (flops_col, loss_col)
    ]
    cols = [*keep, flops_col, loss_col]
    # Unique index labels: idxmin below returns labels, and concatenated tables repeat them.
    pts = curves.loc[(curves[flops_col] > 0) & np.isfinite(curves[loss_col]), cols]
    pts = pts.reset_index(drop=True)
    if pts.empty:
        return pts
    logc = np.log(pts[flops_col].to_numpy(float))
    edges = np.linspace(logc.min(), logc.max(), n_bins + 1)
    bins = np.clip(np.searchsorted(edges, logc, side="right") - 1, 0, n_bins - 1)
    best = pts.loc[pts.groupby(bins)[loss_col].idxmin()]  # groupby sorts bins: ascending FLOPs
    on_envelope = best[loss_col] < best[loss_col].cummin().shift(fill_value=np.inf)
    return best[on_envelope].reset_index(drop=True)


def fit_loss_vs_flops(
    curves: pd.DataFrame, flops_col: str = "flops_detailed", n_bins: int = 20, **fit_kw
) -> tuple[pd.DataFrame, PowerLawFit | FitSkipped]:
    """L(C) fit on the compute frontier (see compute_frontier). Returns (frontier, fit)."""
    frontier = compute_frontier(curves, flops_col, n_bins)
    return frontier, _fit_or_skip(frontier[flops_col], frontier["loss"], flops_col, **fit_kw)


def fit_loss_vs_params(results: pd.DataFrame, **fit_kw) -> dict[int, PowerLawFit | FitSkipped]:
    """L(N) at each token budget: final loss of the runs sharing `tokens` vs non-embedding N.

    Runs are grouped by exact `tokens` (the sweep trains each budget for the same token count).
    """
    runs = final_rows(results)
    return {
        int(tokens): _fit_or_skip(
            g["params_non_embedding"], g["loss"], "params_non_embedding", **fit_kw
        )
        for tokens, g in runs.groupby("tokens", sort=True)
    }
