"""Chinchilla approach 2: IsoFLOP profiles (Hoffmann et al. 2022, sec. 3.2).

Method
------
1. Group the runs by compute budget C (exact value of `c_col`: the runs of one IsoFLOP profile
   share their nominal budget). Within a budget, one row per model size: if a size repeats
   (e.g. several learning rates), its lowest loss is kept, as Porian et al. 2024 do
   (`groupby_action='min'` in their analysis.py).
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
from scipy.interpolate import Akima1DInterpolator

from analysis.inputs import ConfigError, require_columns, require_min_rows, require_positive_finite
from analysis.powerlaw import CONVENTIONS, json_safe, percentile_interval

METHODS = ("parabola", "akima")
RESAMPLES = ("residuals", "noise", "points")
DEFAULT_RESAMPLE = {"parabola": "residuals", "akima": "noise"}
MIN_SIZES = 3  # a quadratic has 3 parameters; Akima needs 3 points for an interior minimum
MIN_BUDGETS = 3  # a line through the budgets' optima with at least one degree of freedom
AKIMA_GRID_PER_INTERVAL = 25  # Porian et al.'s interp_num_multiplier
NOISE_WINDOW = 5  # sizes around the lowest loss used to estimate loss noise for "noise"

RESAMPLE_DESCRIPTION = {
    "residuals": "within each budget, leverage-corrected parabola residuals resampled and added "
    "to the fitted losses; every budget's minimum and then the exponents refitted",
    "noise": "Gaussian noise of sd loss_noise_sd added to every observed loss; every budget's "
    "minimum and then the exponents refitted (Porian et al. 2024 seed-noise bootstrap)",
    "points": "within each budget, (N, loss) points resampled with replacement; every budget's "
    "minimum and then the exponents refitted",
}


@dataclass
class _Budget:
    C: float
    logn: np.ndarray  # sorted log N, distinct
    loss: np.ndarray
    logd: np.ndarray | None  # log D per size, when d_col is given


@dataclass
class AllocationLaw:
    """N_opt = n_coef * C^a and D_opt = d_coef * C^b with intervals: what approaches 1 and 2
    both estimate. Subclasses carry `ci`, `boot` and `c_ref` for `allocation_table`."""

    a: float
    a_ci: tuple[float, float]
    n_coef: float
    n_coef_ci: tuple[float, float]
    b: float
    b_ci: tuple[float, float]
    d_coef: float
    d_coef_ci: tuple[float, float]
    r2_n: float  # R^2 of log N_opt vs log C
    r2_d: float

    def n_opt(self, C) -> np.ndarray:
        return self.n_coef * np.asarray(C, float) ** self.a

    def d_opt(self, C) -> np.ndarray:
        return self.d_coef * np.asarray(C, float) ** self.b

    def allocation(self, C, label: str | None = None) -> pd.DataFrame:
        """N_opt(C), D_opt(C) with bootstrap percentile intervals; see `allocation_table`."""
        return allocation_table(self, C, label)


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

    def curve(self, C: float, n) -> np.ndarray:
        """The fitted loss-vs-N curve of budget C (for plots); NaN outside its sampled range."""
        return self._curves[float(C)](np.log(np.asarray(n, float)))

    def to_dict(self) -> dict:
        d = {
            k: getattr(self, k)
            for k in self.__dataclass_fields__
            if k not in ("budgets", "boot", "c_ref", "_curves")
        }
        d["budgets"] = self.budgets.to_dict(orient="records")
        return {"status": "ok", **json_safe(d)}


def coefficient(slope, icpt, c_ref: float):
    """G in G * C^slope from a line log y = icpt + slope * (log C - log c_ref)."""
    return np.exp(icpt - slope * np.log(c_ref))


def allocation_table(fit, C, label: str | None = None) -> pd.DataFrame:
    """Compute-optimal allocation at budgets C from a fit exposing a, n_coef, b, d_coef, ci, boot.

    Columns C, n_opt, n_lo, n_hi, d_opt, d_lo, d_hi (the layout plot_allocation takes), plus
    `approach` when `label` is given. Intervals are pointwise bootstrap percentiles of the
    resampled power laws evaluated at each C.
    """
    C = np.atleast_1d(np.asarray(C, float))
    if not (np.all(np.isfinite(C)) and np.all(C > 0)):
        raise ConfigError("budgets", "compute budgets must be finite and > 0", "pass C > 0")
    q = 50 * (1 - fit.ci)
    out = {"C": C, "n_opt": fit.n_opt(C)}
    logc = np.log(C / fit.c_ref)
    for i, key in ((0, "n"), (2, "d")):
        if len(fit.boot) >= 2:
            logv = fit.boot[:, i + 1, None] + fit.boot[:, i, None] * logc[None, :]
            lo, hi = np.exp(np.percentile(logv, [q, 100 - q], axis=0))
        else:
            lo = hi = np.full(C.shape, np.nan)
        if key == "d":
            out["d_opt"] = fit.d_opt(C)
        out[f"{key}_lo"], out[f"{key}_hi"] = lo, hi
    df = pd.DataFrame(out)[["C", "n_opt", "n_lo", "n_hi", "d_opt", "d_lo", "d_hi"]]
    if label is not None:
        df.insert(0, "approach", label)
    return df


# --- per-budget minima -------------------------------------------------------------------------


def _quad_coefs(u: np.ndarray, Y: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares y = c0 + c1 u + c2 u^2 for each row of Y (B, m); returns (B, 3).

    Closed form: the normal equations from the weighted moments of u, one 3x3 solve per row.
    Rows whose design is singular (fewer than 3 distinct u with weight) give NaN.
    """
    if W is None:
        W = np.ones_like(Y)
    S = np.stack([W @ u**k for k in range(5)], axis=-1)  # (B, 5): sum w u^k
    T = np.stack([np.sum(W * Y * u**k, -1) for k in range(3)], axis=-1)  # (B, 3)
    M = np.stack([S[:, i : i + 3] for i in range(3)], axis=1)  # (B, 3, 3) Hankel
    nonsingular = (W > 0).sum(-1) >= 3  # u are distinct sizes: 3 with weight fix a quadratic
    out = np.full((len(Y), 3), np.nan)
    if nonsingular.any():
        out[nonsingular] = np.linalg.solve(M[nonsingular], T[nonsingular][..., None])[..., 0]
    return out


def _parabola_minima(logn, Y, W=None):
    """Vertex log N and loss of the fitted parabolas (B,); NaN where at/over the edge."""
    xm = logn.mean()
    u = logn - xm
    c = _quad_coefs(u, np.atleast_2d(Y), None if W is None else np.atleast_2d(W))
    with np.errstate(all="ignore"):
        v = -c[:, 1] / (2 * c[:, 2])
        lo = c[:, 0] - c[:, 1] ** 2 / (4 * c[:, 2])
    ok = (c[:, 2] > 0) & (v > u.min()) & (v < u.max())
    return np.where(ok, v + xm, np.nan), np.where(ok, lo, np.nan)


def _akima_grid(logn):
    return np.linspace(logn[0], logn[-1], (len(logn) - 1) * AKIMA_GRID_PER_INTERVAL)


def _akima_minima(logn, Y):
    """Argmin over log N of Akima splines of log loss, rows of Y (B, m); NaN at the grid edge."""
    Y = np.atleast_2d(Y)
    g = _akima_grid(logn)
    v = Akima1DInterpolator(logn, np.log(Y).T, axis=0)(g)  # (G, B)
    j = np.argmin(v, axis=0)
    ok = (j > 0) & (j < len(g) - 1)
    jj = np.clip(j, 1, len(g) - 2)
    cols = np.arange(v.shape[1])
    y0, y1, y2 = v[jj - 1, cols], v[jj, cols], v[jj + 1, cols]
    # Parabola through the three grid points around the argmin: sub-grid precision.
    den = y0 - 2 * y1 + y2
    with np.errstate(all="ignore"):
        shift = np.where(den > 0, 0.5 * (y0 - y2) / den, 0.0)
    shift = np.clip(shift, -0.5, 0.5)
    step = g[1] - g[0]
    xmin = g[jj] + shift * step
    lmin = np.exp(y1 - 0.25 * (y0 - y2) * shift)
    return np.where(ok, xmin, np.nan), np.where(ok, lmin, np.nan)


def _minima(method, logn, Y, W=None):
    if method == "parabola":
        return _parabola_minima(logn, Y, W)
    if W is None:
        return _akima_minima(logn, Y)
    # Case resampling with Akima: one spline per resample over its distinct points.
    Y, W = np.atleast_2d(Y), np.atleast_2d(W)
    xs, ls = np.full(len(Y), np.nan), np.full(len(Y), np.nan)
    for i in range(len(Y)):
        keep = W[i] > 0
        if keep.sum() >= MIN_SIZES:
            xs[i], ls[i] = (r[0] for r in _akima_minima(logn[keep], Y[i, keep]))
    return xs, ls


def _parabola_residuals(logn, y):
    """Leverage-corrected, centred residuals of the parabola fit (Davison & Hinkley alg. 6.3)."""
    u = logn - logn.mean()
    X = np.column_stack([np.ones_like(u), u, u**2])
    H = X @ np.linalg.pinv(X)
    fitted = H @ y
    h = np.clip(np.diag(H), 0, 1 - 1e-9)
    r = (y - fitted) / np.sqrt(1 - h)
    return fitted, r - r.mean(), len(y) - 3


def _local_residual_var(b: _Budget) -> tuple[float, int]:
    """(sum of squared residuals, dof) of a parabola on the sizes around the lowest loss."""
    m = len(b.logn)
    if m <= 3:
        return 0.0, 0
    k = min(NOISE_WINDOW, m)
    start = int(np.clip(np.argmin(b.loss) - k // 2, 0, m - k))
    sl = slice(start, start + k)
    _, r, dof = _parabola_residuals(b.logn[sl], b.loss[sl])
    # r is leverage-corrected: its mean square estimates sigma^2; as SSR/dof: sum r^2 * dof / k.
    return float(np.sum(r**2) * dof / k), dof


def _curve_fn(method, b: _Budget):
    if method == "parabola":
        xm = b.logn.mean()
        c = np.polyfit(b.logn - xm, b.loss, 2)

        def f(x):
            x = np.asarray(x, float)
            y = np.polyval(c, x - xm)
            return np.where((x >= b.logn[0]) & (x <= b.logn[-1]), y, np.nan)

        return f
    spline = Akima1DInterpolator(b.logn, np.log(b.loss))
    return lambda x: np.exp(spline(np.asarray(x, float), extrapolate=False))


# --- the fit ------------------------------------------------------------------------------------


def _ols(x, Y, W):
    """Weighted OLS of each row of Y (B, k) on x (k,) with weights W (B, k): slope, intercept."""
    sw = W.sum(-1)
    with np.errstate(all="ignore"):
        xb = (W @ x) / sw
        yb = np.sum(W * Y, -1) / sw
        dx = x[None, :] - xb[:, None]
        slope = np.sum(W * dx * (Y - yb[:, None]), -1) / np.sum(W * dx**2, -1)
    return slope, yb - slope * xb, xb


def _r2(x, y, slope, icpt):
    ss = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum((y - icpt - slope * x) ** 2) / ss) if ss > 0 else float("nan")


def _prepare(df, n_col, c_col, loss_col, d_col, where):
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
    data = df[cols].astype(float)
    for C, g in data.groupby(c_col, sort=True):
        g = g.loc[g.groupby(n_col)[loss_col].idxmin()].sort_values(n_col)  # best row per size
        if len(g) < MIN_SIZES:
            skipped.append(float(C))
            continue
        logd = np.log(g[d_col].to_numpy()) if d_col else None
        budgets.append(_Budget(float(C), np.log(g[n_col].to_numpy()), g[loss_col].to_numpy(), logd))
    if len(budgets) < MIN_BUDGETS:
        raise ConfigError(
            f"{where}.{c_col}",
            f"{len(budgets)} compute budget(s) with >= {MIN_SIZES} model sizes "
            f"(of {data[c_col].nunique()}), too few to fit N_opt ∝ C^a (needs >= {MIN_BUDGETS})",
            f"train >= {MIN_SIZES} model sizes at each of >= {MIN_BUDGETS} budgets",
        )
    return budgets, skipped


def fit_isoflop(
    df: pd.DataFrame,
    *,
    n_col: str = "params_non_embedding",
    c_col: str = "flops_6n",
    loss_col: str = "loss",
    d_col: str | None = None,
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
    budget `c_col` (default flops_6n, C = 6 N D) and final loss `loss_col`; `d_col` optionally
    gives the training tokens. `method` is "parabola" (Hoffmann et al.) or "akima" (Porian et
    al.); `resample` defaults to "residuals" for the parabola and "noise" for Akima.
    Raises ConfigError (one line) for missing columns, non-positive or non-finite values, a
    single model size, too few budgets with >= 3 sizes, or too few interior minima.
    """
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
    budgets, skipped = _prepare(df, n_col, c_col, loss_col, d_col, where)

    # Point estimates.
    est = [_minima(method, b.logn, b.loss) for b in budgets]
    logn_opt = np.array([e[0][0] for e in est])
    loss_opt = np.array([e[1][0] for e in est])
    at_edge = ~np.isfinite(logn_opt)

    # Bootstrap: (n_boot, n_budgets) resampled log N_opt, NaN where at the edge.
    rng = np.random.default_rng(seed)
    if resample == "noise" and loss_noise_sd is None:
        ssr, dof = map(sum, zip(*(_local_residual_var(b) for b in budgets), strict=True))
        loss_noise_sd = float(np.sqrt(ssr / dof)) if dof > 0 else 0.0
    if resample == "residuals":
        res = [_parabola_residuals(b.logn, b.loss) for b in budgets]
        pooled = np.concatenate([r for _, r, dof in res if dof > 0] or [np.zeros(1)])
    boot_logn = np.full((n_boot, len(budgets)), np.nan)
    for j, b in enumerate(budgets):
        m, W = len(b.logn), None
        if resample == "residuals":
            fitted, r, dof = res[j]
            pool = r if dof > 0 else pooled
            Y = fitted + pool[rng.integers(0, len(pool), size=(n_boot, m))]
        elif resample == "noise":
            Y = b.loss + loss_noise_sd * rng.standard_normal((n_boot, m))
            Y = np.maximum(Y, 1e-12 * b.loss.min())  # keep log loss defined for Akima
        else:
            idx = rng.integers(0, m, size=(n_boot, m))
            W = np.stack([np.bincount(i, minlength=m) for i in idx]).astype(float)
            Y = np.broadcast_to(b.loss, (n_boot, m))
        if n_boot:
            boot_logn[:, j] = _minima(method, b.logn, Y, W)[0]
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

    def logd_at(j, logn_star):
        b = budgets[j]
        if b.logd is None:  # C = 6 N D
            return logc[j] - np.log(6.0) - logn_star
        q, p = np.polyfit(b.logn, b.logd, 1)
        return p + q * logn_star

    logd_opt = np.array([logd_at(j, logn_opt[j]) for j in range(len(budgets))])
    boot_logd = np.column_stack([logd_at(j, boot_logn[:, j]) for j in range(len(budgets))])

    a, icpt_n, _ = (v[0] for v in _ols(x[used], logn_opt[None, used], np.ones((1, used.sum()))))
    b_exp, icpt_d, _ = (v[0] for v in _ols(x[used], logd_opt[None, used], np.ones((1, used.sum()))))

    # Per resample: OLS over the used budgets whose resampled minimum is interior.
    Wb = np.isfinite(boot_logn[:, used]).astype(float)
    ok = Wb.sum(-1) >= 2
    Yn = np.nan_to_num(boot_logn[ok][:, used])
    Yd = np.nan_to_num(boot_logd[ok][:, used])
    sa, ia, _ = _ols(x[used], Yn, Wb[ok])
    sb, ib, _ = _ols(x[used], Yd, Wb[ok])
    boot = np.column_stack([sa, ia, sb, ib])
    boot = boot[np.all(np.isfinite(boot), axis=1)]

    q = 50 * (1 - ci)
    interval = lambda v: percentile_interval(v, ci)
    coef = lambda slope, icpt: coefficient(slope, icpt, c_ref)

    n_lo = n_hi = sd = np.full(len(budgets), np.nan)
    if n_boot:
        with np.errstate(all="ignore"):
            finite = np.isfinite(boot_logn).sum(0) >= 2
            pct = np.nanpercentile(boot_logn[:, finite], [q, 100 - q], axis=0)
            n_lo, n_hi, sd = (np.full(len(budgets), np.nan) for _ in range(3))
            n_lo[finite], n_hi[finite] = np.exp(pct)
            sd[finite] = np.nanstd(boot_logn[:, finite], axis=0)
    table = pd.DataFrame(
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
    d_conv = (
        f"D_opt interpolated from column {d_col!r} (linear in log N within each budget)"
        if d_col
        else f"D = C / (6 N) with C = {c_col!r}, N = {n_col!r} (Kaplan et al. 2020, sec. 2.1)"
    )
    return IsoFLOPFit(
        method=method,
        resample=resample,
        resampled=RESAMPLE_DESCRIPTION[resample],
        n_col=n_col,
        c_col=c_col,
        loss_col=loss_col,
        d_col=d_col,
        c_convention=CONVENTIONS.get(c_col, c_col),
        d_convention=d_conv,
        n_points=int(sum(len(b.logn) for b in budgets)),
        n_budgets=len(budgets),
        n_budgets_used=int(used.sum()),
        a=float(a),
        a_ci=interval(boot[:, 0]),
        n_coef=float(coef(a, icpt_n)),
        n_coef_ci=interval(coef(boot[:, 0], boot[:, 1])),
        b=float(b_exp),
        b_ci=interval(boot[:, 2]),
        d_coef=float(coef(b_exp, icpt_d)),
        d_coef_ci=interval(coef(boot[:, 2], boot[:, 3])),
        r2_n=_r2(x[used], logn_opt[used], a, icpt_n),
        r2_d=_r2(x[used], logd_opt[used], b_exp, icpt_d),
        edge_budgets=[b.C for b, e in zip(budgets, at_edge, strict=True) if e],
        unstable_budgets=[b.C for b, u in zip(budgets, unstable, strict=True) if u],
        skipped_budgets=skipped,
        loss_noise_sd=loss_noise_sd if resample == "noise" else None,
        ci=ci,
        n_boot=n_boot,
        n_boot_failed=int(n_boot - len(boot)),
        seed=seed,
        budgets=table,
        boot=boot,
        c_ref=c_ref,
        _curves={b.C: _curve_fn(method, b) for b in budgets},
    )
