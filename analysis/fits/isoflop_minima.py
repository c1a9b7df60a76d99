"""Per-budget loss minima of IsoFLOP profiles (approach 2, step 2): a parabola in log N
(Hoffmann et al. 2022) or an Akima spline of log loss (Porian et al. 2024), batched over
bootstrap resamples; and the residuals and noise level the IsoFLOP bootstrap draws from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import Akima1DInterpolator

MIN_SIZES = 3  # a quadratic has 3 parameters; Akima needs 3 points for an interior minimum
AKIMA_GRID_PER_INTERVAL = 25  # Porian et al.'s interp_num_multiplier
NOISE_WINDOW = 5  # sizes around the lowest loss used to estimate loss noise for "noise"


@dataclass
class Budget:
    """One IsoFLOP profile: its compute C and, per distinct model size, log N and loss."""

    C: float
    logn: np.ndarray  # sorted log N, distinct
    loss: np.ndarray
    logd: np.ndarray | None  # log D per size, when d_col is given


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


def minima(method, logn, Y, W=None):
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


def parabola_residuals(logn, y):
    """Leverage-corrected, centred residuals of the parabola fit (Davison & Hinkley alg. 6.3)."""
    u = logn - logn.mean()
    X = np.column_stack([np.ones_like(u), u, u**2])
    H = X @ np.linalg.pinv(X)
    fitted = H @ y
    h = np.clip(np.diag(H), 0, 1 - 1e-9)
    r = (y - fitted) / np.sqrt(1 - h)
    return fitted, r - r.mean(), len(y) - 3


def local_residual_var(b: Budget) -> tuple[float, int]:
    """(sum of squared residuals, dof) of a parabola on the sizes around the lowest loss."""
    m = len(b.logn)
    if m <= 3:
        return 0.0, 0
    k = min(NOISE_WINDOW, m)
    start = int(np.clip(np.argmin(b.loss) - k // 2, 0, m - k))
    sl = slice(start, start + k)
    _, r, dof = parabola_residuals(b.logn[sl], b.loss[sl])
    # r is leverage-corrected: its mean square estimates sigma^2; as SSR/dof: sum r^2 * dof / k.
    return float(np.sum(r**2) * dof / k), dof


def curve_fn(method, b: Budget):
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
