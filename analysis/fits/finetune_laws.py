"""The fine-tuning laws and their batched fit (the whole analysis: analysis.fits.finetune).

Each law is fitted by weighted least squares on cell means (rows of `cell_means`: row 0 the
data, the others bootstrap resamples, finetune_data.resample_cells), weights the inverse
variance of a cell mean (finetune_data.Runs.weights). For fixed exponents a law is linear in
(E, A): weighted OLS (analysis.fits.ols), with E >= 0 (else E = 0 and A through the origin) and
A > 0 (the error falls with data). The exponents: a grid, then LEVELS zooms around the best
point, every resample at once; hand-written because scipy's minimisers take one problem at a
time (here 1,001 per law) and a one-parameter golden section does not serve the joint law's two
exponents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.fits.finetune_data import PRETRAINED, SCRATCH, Runs
from analysis.fits.ols import ols
from analysis.inputs import ConfigError

LAW = "error(D) = E + A D^-alpha"
JOINT_LAW = "L(N, D_f) = A (1 / N^alpha) (1 / D_f^beta) + E (Zhang et al. 2024)"
TRANSFER_LAW = "D_T = k D_F^alpha N^beta, D_T = D_E - D_F (Hernandez et al. 2021)"
EXPONENT = (0.01, 3.0)  # the data exponent; beyond these the data do not pin it (flagged)
SIZE_EXPONENT = (-1.0, 3.0)  # the joint law's model-size exponent: larger may be worse
GRID, ZOOM, LEVELS = 21, 9, 5  # grid points per exponent; zoom points; zooms (each 1/4)
CHUNK = 128  # resamples searched at once (memory: CHUNK x GRID^2 x cells)
QUANTITIES = (
    "E",
    "A",
    "alpha",
    "error_at_d_max",
    "error_at_2d_max",
    "per_doubling",
    "reducible_per_doubling",
    "examples_to_target",
)


def _linear_part(x, y, w):
    """(E, A, rss) of y = E + A x per row (batched), E >= 0; rss = inf where A <= 0."""
    slope, icpt = ols(x, y, w)
    with np.errstate(all="ignore"):
        origin = (w * x * y).sum(-1) / (w * x * x).sum(-1)
        A = np.where(icpt < 0, origin, slope)
        E = np.where(icpt < 0, 0.0, icpt)
        rss = (w * (y - E[..., None] - A[..., None] * x) ** 2).sum(-1)
    return E, A, np.where((A > 0) & np.isfinite(rss), rss, np.inf)


def _search(y, w, features, bounds) -> np.ndarray:
    """(B, 2 + q): E, A and the q exponents minimising the weighted rss, per row of y (B, P);
    NaN where no A > 0 fits. features(theta (..., q)) -> x (..., P)."""
    lo, hi = np.array(bounds, float).T
    width = (hi - lo) / (GRID - 1)
    axes = np.meshgrid(*[np.linspace(a, b, GRID) for a, b in bounds], indexing="ij")
    grid = np.stack(axes, -1).reshape(-1, len(bounds))
    theta = np.broadcast_to(grid, (len(y), *grid.shape))
    unit = np.meshgrid(*[np.linspace(-1, 1, ZOOM)] * len(bounds), indexing="ij")
    offsets = np.stack(unit, -1).reshape(-1, len(bounds))
    rows = np.arange(len(y))
    for level in range(LEVELS + 1):
        E, A, rss = _linear_part(features(theta), y[:, None, :], w)
        best = np.argmin(rss, axis=1)
        center = theta[rows, best]
        if level < LEVELS:
            theta = np.clip(center[:, None, :] + offsets * width, lo, hi)
            width = width * 2 / (ZOOM - 1)
    out = np.column_stack([E[rows, best], A[rows, best], center])
    return np.where(np.isfinite(rss[rows, best])[:, None], out, np.nan)


def profile_fit(y, w, features, bounds) -> np.ndarray:
    """_search over rows of y in chunks of CHUNK resamples."""
    y = np.atleast_2d(y)
    return np.concatenate(
        [_search(y[s : s + CHUNK], w, features, bounds) for s in range(0, len(y), CHUNK)]
    )


def interval_with_inf(values, ci: float) -> tuple[float, float]:
    """Percentile interval (order statistics) keeping +inf (an unreachable target) in the
    ranking, NaN dropped."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return (np.nan, np.nan)
    q = 50 * (1 - ci)
    return tuple(float(x) for x in np.percentile(v, [q, 100 - q], method="inverted_cdf"))


@dataclass
class Curve:
    """error(D) = E + A (D / d0)^-alpha of one (init, size): params (E, A, alpha) in those
    units, boot one row per resample (NaN where the resample fitted no A > 0)."""

    init: str
    size: float
    d0: float
    examples: np.ndarray  # the example counts run
    params: np.ndarray
    boot: np.ndarray = field(repr=False)

    def predict(self, D, params=None) -> np.ndarray:
        """error at D (1-D) of the fit, or (n, len(D)) for params (n, 3)."""
        p = np.atleast_2d(self.params if params is None else params)
        E, A, alpha = (p[:, i, None] for i in range(3))
        out = E + A * (np.asarray(D, float).ravel()[None] / self.d0) ** -alpha
        return out[0] if params is None else out

    def quantities(self, params, target: float) -> dict[str, np.ndarray]:
        """Every reported quantity for params (n, 3): one value per row."""
        p = np.atleast_2d(params)
        E, A, alpha = p[:, 0], p[:, 1], p[:, 2]
        d_max = self.examples.max()
        at, at2 = (self.predict([d], p)[:, 0] for d in (d_max, 2 * d_max))
        with np.errstate(all="ignore"):
            reach = self.d0 * (A / (target - E)) ** (1 / alpha)
        reach = np.where(np.isnan(E), np.nan, np.where(target > E, reach, np.inf))
        return {
            "E": E,
            "A": A * self.d0**alpha,
            "alpha": alpha,
            "error_at_d_max": at,
            "error_at_2d_max": at2,
            "per_doubling": at2 / at,
            "reducible_per_doubling": 2.0**-alpha,
            "examples_to_target": reach,
        }


def fit_curves(runs: Runs, cell_means, w) -> tuple[dict, list[dict]]:
    """{(init, size): Curve} and the sizes whose error does not fall with examples (skipped)
    from cell means (1 + B, n_cells): row 0 the data, the others resamples."""
    curves, skipped = {}, []
    cells = runs.cells
    for (init, size), at in cells.groupby(["init", "size"]).indices.items():
        D = cells["examples"].to_numpy(float)[at]
        d0 = float(np.exp(np.mean(np.log(D))))
        logd = np.log(D / d0)
        fits = profile_fit(
            cell_means[:, at], w[at], lambda t, logd=logd: np.exp(-t[..., :1] * logd), [EXPONENT]
        )
        if not np.all(np.isfinite(fits[0])):
            skipped.append(
                {
                    "init": init,
                    "size": size,
                    "reason": "the error does not fall with examples (no A > 0 fits)",
                }
            )
            continue
        curves[(init, size)] = Curve(init, float(size), d0, D, fits[0], fits[1:])
    if not any(init == PRETRAINED for init, _ in curves):
        raise ConfigError(
            "input",
            "the error falls with examples at no model size",
            "check the error column (1 - accuracy) and the example counts",
        )
    return curves, skipped


@dataclass
class Joint:
    """Zhang et al.'s law: params (E, A, alpha, beta) with N / n0, D / d0; boot per resample."""

    n0: float
    d0: float
    params: np.ndarray
    boot: np.ndarray = field(repr=False)
    rmse: float

    def predict(self, N, D, params=None) -> np.ndarray:
        p = np.atleast_2d(self.params if params is None else params)
        E, A, a, b = (p[:, i, None] for i in range(4))
        N, D = np.broadcast_arrays(np.asarray(N, float), np.asarray(D, float))
        out = E + A * (N.ravel()[None] / self.n0) ** -a * (D.ravel()[None] / self.d0) ** -b
        return out[0].reshape(N.shape) if params is None else out

    def quantities(self, params) -> dict[str, np.ndarray]:
        p = np.atleast_2d(params)
        A = p[:, 1] * self.n0 ** p[:, 2] * self.d0 ** p[:, 3]
        return {"E": p[:, 0], "A": A, "alpha": p[:, 2], "beta": p[:, 3]}


def fit_joint(runs: Runs, cell_means, w) -> Joint:
    at = runs.of(PRETRAINED)
    cells = runs.cells.iloc[at]
    if cells["size"].nunique() < 2:
        raise ConfigError("joint", "one model size", "fine-tune >= 2 sizes for the joint law")
    N, D = (cells[c].to_numpy(float) for c in ("size", "examples"))
    n0, d0 = (float(np.exp(np.mean(np.log(v)))) for v in (N, D))
    logn, logd = np.log(N / n0), np.log(D / d0)
    features = lambda t: np.exp(-t[..., :1] * logn - t[..., 1:2] * logd)
    fits = profile_fit(cell_means[:, at], w[at], features, [SIZE_EXPONENT, EXPONENT])
    if not np.all(np.isfinite(fits[0])):
        raise ConfigError("joint", "no fit with A > 0", "the error does not fall with examples")
    joint = Joint(n0, d0, fits[0], fits[1:], np.nan)
    joint.rmse = float(np.sqrt(np.mean((joint.predict(N, D) - cell_means[0, at]) ** 2)))
    return joint


@dataclass
class Transfer:
    """Hernandez et al.'s effective data transferred: per fine-tune cell D_E and D_T (data and
    resamples), and the law's (log k, alpha, beta) per resample (beta NaN with one size)."""

    cells: np.ndarray  # indices of the pretrained cells at sizes with a from-scratch curve
    d_e: np.ndarray  # (1 + B, P), inf where below the from-scratch floor
    law: np.ndarray  # (1 + B, 3)
    extrapolated: int  # cells (data) whose D_E lies beyond the largest from-scratch D


def _log_law(log_dt, log_df, log_n, valid) -> np.ndarray:
    """(B, 3) unweighted least-squares (log k, alpha, beta) of log D_T per row over the valid
    points; beta NaN with one model size; NaN rows with too few valid points to fit."""
    one_size = np.ptp(log_n) == 0
    X = np.column_stack([np.ones_like(log_df), log_df] + ([] if one_size else [log_n]))
    Wm = valid.astype(float)
    XtX = np.einsum("bp,pi,pj->bij", Wm, X, X)
    Xty = np.einsum("bp,pi,bp->bi", Wm, X, np.where(valid, log_dt, 0.0))
    ok = (valid.sum(1) >= X.shape[1] + 1) & (np.abs(np.linalg.det(XtX)) > 1e-12)
    coef = np.full((len(valid), 3), np.nan)
    if ok.any():
        coef[ok, : X.shape[1]] = np.linalg.solve(XtX[ok], Xty[ok][..., None])[..., 0]
    return coef


def fit_transfer(runs: Runs, curves: dict, cell_means) -> Transfer:
    scratch = {size: c for (init, size), c in curves.items() if init == SCRATCH}
    if not scratch:
        raise ConfigError(
            "transfer",
            "no from-scratch baseline rows (init = scratch)",
            "train each size from scratch on the task at >= 3 example counts",
        )
    cells = runs.cells
    at = np.array([i for i in runs.of(PRETRAINED) if cells["size"].iloc[i] in scratch], int)
    if len(at) < 3:
        raise ConfigError("transfer", "< 3 fine-tune cells at sizes with a baseline", "add runs")
    size, d_f = (cells[c].to_numpy(float)[at] for c in ("size", "examples"))
    d_e = np.empty((len(cell_means), len(at)))
    for s, curve in scratch.items():
        cols = size == s
        p = np.vstack([curve.params, curve.boot])[:, None, :]  # (1 + B, 1, 3)
        y = cell_means[:, at[cols]]
        with np.errstate(all="ignore"):
            inv = curve.d0 * (p[..., 1] / (y - p[..., 0])) ** (1 / p[..., 2])
        floor = np.where(y > p[..., 0], inv, np.inf)  # at or below the floor: never reached
        d_e[:, cols] = np.where(np.isnan(p[..., 0]), np.nan, floor)  # a failed resample
    d_t = d_e - d_f
    valid = np.isfinite(d_t) & (d_t > 0)
    with np.errstate(all="ignore"):
        law = _log_law(np.log(np.where(valid, d_t, 1.0)), np.log(d_f), np.log(size), valid)
    if not np.all(np.isfinite(law[0, :2])):
        raise ConfigError(
            "transfer",
            f"{int(valid[0].sum())} fine-tune cell(s) with a finite D_T > 0",
            "the law needs >= 3: fine-tunes between the from-scratch floor and curve",
        )
    top = np.array([scratch[s].examples.max() for s in size])
    extrapolated = int(np.sum(np.isfinite(d_e[0]) & (d_e[0] > top)))
    return Transfer(at, d_e, law, extrapolated)
