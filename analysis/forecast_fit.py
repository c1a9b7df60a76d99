"""The fits and draws behind the emergence forecast (analysis.forecast), batched over rows: the
observed curves are rows, and so is each of their bootstrap replicates; points on the last axis.

- `fit_line`: weighted least squares line, closed form.
- `fit_sigmoid`: s = b + (u - b) expit((x - m) / w) by weighted least squares, within bounds
  (m at most 5 below and 10 beyond the data, w in [0.02, 10], u in [max score, 1] when the
  ceiling is fitted, else u = 1). The loss is not convex in (m, w): each row starts from the
  best point of a grid (or of its curve's own fit and neighbours), then takes projected
  Levenberg-Marquardt steps (More 1978; a step leaving the box is clipped to it and kept only
  if it lowers the loss) in (1/w, -m/w), u solved for exactly at each step.
- `draw_rates`: binomial draws, scattered phi times as much: beta-binomial for phi > 1,
  shrunk binomial deviations for phi < 1.

Hand-written because the library fits one problem per call: scipy.optimize.least_squares takes
about 6 ms of CPU for one such 3-parameter fit of 8 points, mostly Python overhead: 6 s per
curve at 1,000 replicates and an hour per backtest of the Pythia evals. Here the replicates of
every curve take each step together (17 ms per curve at 1,000 replicates, bench/RESULTS.md);
tests/test_forecast.py checks that the optimum is scipy's. analysis.lbfgs batches too, but has
no bounds and compiles a JAX program per problem shape, which costs more than these fits.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

GRID_M = 40  # midpoints in the starting grid, spread over the bounds of m
GRID_W = np.log([0.1, 0.3, 1.0, 3.0])  # widths in the starting grid
M_BELOW, M_BEYOND = 5.0, 10.0  # bounds of m: this far below / beyond the data's x
W_BOUNDS = np.log([0.02, 10.0])
ITERATIONS = 100  # Levenberg-Marquardt steps at most; most rows converge in under 20
RTOL = 1e-6  # a row is done when an accepted step lowers its loss by less than this share,
XTOL = 1e-8  # or when its step (after damping and clipping to the bounds) is this small


def shrunk_sd(s, n):
    """Binomial sd of scores s on n examples with p shrunk to (k + 1/2) / (n + 1), so that a
    score of 0 or 1 keeps a finite weight."""
    p = (s * n + 0.5) / (n + 1)
    return np.sqrt(p * (1 - p) / n)


def fit_line(x, y, sd) -> np.ndarray:
    """(..., 2) intercepts and slopes of y (..., P) on x (..., P), weighted by 1 / sd^2."""
    w = 1 / np.square(sd)
    sw, sx, sy = w.sum(-1), (w * x).sum(-1), (w * y).sum(-1)
    sxx, sxy = (w * x * x).sum(-1), (w * x * y).sum(-1)
    slope = (sw * sxy - sx * sy) / (sw * sxx - sx**2)
    return np.stack([(sy - slope * sx) / sw, slope], -1)


def line(p, x) -> np.ndarray:
    """Values (..., X) of lines p (..., 2) at x (..., X)."""
    return p[..., :1] + p[..., 1:] * x


def sigmoid(p, x, b) -> np.ndarray:
    """Values (..., X) of sigmoids p (..., 3) = (m, log w, u) over baselines b (...) at x
    (..., X)."""
    b = np.asarray(b)[..., None]
    return b + (p[..., 2:] - b) * expit((x - p[..., :1]) / np.exp(p[..., 1:2]))


def _profile(q, x, s, w, b, free_u, u_lo):
    """Sigmoid values g = expit(a x + c) (R, P) for q = (a, c), and the ceiling u (R,) that
    fits best with them: weighted least squares, the model being linear in u, clipped to
    [u_lo, 1] (1 where u is fixed); `inside` marks rows where the clip did not bind."""
    g = expit(q[:, :1] * x + q[:, 1:])
    sgg = (w * g * g).sum(-1)
    seen = sgg > 1e-12  # else the sigmoid is 0 at every point and u is not seen
    best = b + (w * g * (s - b[:, None])).sum(-1) / np.where(seen, sgg, 1.0)
    inside = free_u & seen & (best > u_lo) & (best < 1)
    return g, np.where(free_u, np.clip(best, u_lo, 1.0), 1.0), inside


def _residuals(q, x, s, sd, b, free_u, u_lo):
    """Weighted residuals (R, P) and their Jacobian (R, P, 2) in q = (a, c), with u profiled
    out (_profile): its dependence on q enters the Jacobian where the clip does not bind."""
    w = 1 / np.square(sd)
    g, u, inside = _profile(q, x, s, w, b, free_u, u_lo)
    dg = np.stack([x, np.ones_like(x)], -1) * (g * (1 - g))[..., None]  # d g / d q
    h = s - b[:, None]
    sgg, sgh = (w * g * g).sum(-1), (w * g * h).sum(-1)
    sgg = np.where(inside, sgg, 1.0)  # du is used only inside
    du = (
        np.einsum("rp,rpk->rk", w * h, dg) * sgg[:, None]
        - 2 * sgh[:, None] * np.einsum("rp,rpk->rk", w * g, dg)
    ) / np.square(sgg)[:, None]
    jac = (u - b)[:, None, None] * dg + g[..., None] * (du * inside[:, None])[:, None]
    return (b[:, None] + (u - b)[:, None] * g - s) / sd, jac / sd[..., None]


def _project(q, m_lo, m_hi):
    """Clip q = (a, c) into the bounds: w = 1/a in W_BOUNDS, m = -c/a in [m_lo, m_hi]."""
    a = np.clip(q[:, 0], *np.exp(-W_BOUNDS[::-1]))
    return np.stack([a, np.clip(q[:, 1], -a * m_hi, -a * m_lo)], -1)


def fit_sigmoid(x, s, sd, b, ceiling, start=None) -> np.ndarray:
    """(R, 3) parameters (m, log w, u) of sigmoids over baselines b (R,) fitted to rows s
    (R, P) at x (R, P) with sds sd (R, P); u is fitted in [max score, 1] where `ceiling` (R,)
    is true, else 1. Starts from the best of a grid of (m, w), or of `start` (R, 3) and its
    neighbours: replicates of a curve start from the curve's own fit.

    The fit runs in (a, c) = (1/w, -(m - x0)/w), x0 the mean of a row's x: below the midpoint
    the sigmoid is nearly exp(a (x - x0) + c), linear in (a, c) on a log scale, where in
    (m, w) the same curves lie along a bent valley that Levenberg-Marquardt crawls along. The
    model is linear in u, which is solved for at each (a, c) (variable projection, Golub &
    Pereyra 1973): a 2-parameter search whatever the form."""
    x0 = x.mean(-1)
    xc = x - x0[:, None]
    m_lo, m_hi = xc.min(-1) - M_BELOW, xc.max(-1) + M_BEYOND
    u_lo = np.where(ceiling, np.clip(s.max(-1), b + 1e-3, 1 - 1e-6), 1.0)
    rows = (xc, s, sd, b, np.asarray(ceiling, bool), u_lo)
    q = _start(rows, (m_lo, m_hi), start, x0)
    q = _levenberg_marquardt(q, rows, (m_lo, m_hi))
    u = _profile(q, xc, s, 1 / np.square(sd), b, *rows[4:])[1]
    return np.stack([x0 - q[:, 1] / q[:, 0], -np.log(q[:, 0]), u], -1)


def _start(rows, m_bounds, start, x0):
    """(a, c) of least loss among a grid of GRID_M midpoints x GRID_W widths, or, given
    `start` (m, log w, u) per row, among it and its neighbours (m +- 1, w x 3 and / 3)."""
    xc, s, sd, b, free_u, u_lo = rows
    lo, hi = m_bounds
    if start is None:
        m = [lo + f * (hi - lo) for f in np.linspace(0, 1, GRID_M + 2)[1:-1]]
        cands = [(mi, np.full(len(s), w)) for mi in m for w in np.exp(GRID_W)]
    else:
        m, w = start[:, 0] - x0, np.exp(start[:, 1])
        cands = [(m, w), (m - 1, w), (m + 1, w), (m, 3 * w), (m, w / 3)]
    best, best_q = np.full(len(s), np.inf), None
    for m, w in cands:
        q = _project(np.stack([1 / w, -m / w], -1), lo, hi)
        g, u, _ = _profile(q, xc, s, 1 / np.square(sd), b, free_u, u_lo)
        cost = np.square((b[:, None] + (u - b)[:, None] * g - s) / sd).sum(-1)
        better = cost < best
        best = np.where(better, cost, best)
        best_q = q if best_q is None else np.where(better[:, None], q, best_q)
    return best_q


def _levenberg_marquardt(q, rows, m_bounds):
    """Projected Levenberg-Marquardt on every row at once; rows leave the batch as they
    converge (module docstring). `rows`: (x, s, sd, b, free_u, u_lo) per row."""
    q = q.copy()
    active = np.arange(len(q))
    r, J = _residuals(q, *rows)
    cost = np.square(r).sum(-1)
    lam = np.full(len(q), 1e-3)
    for _ in range(ITERATIONS):
        if not len(active):
            break
        here = [v[active] for v in rows]
        g = np.einsum("rp,rpk->rk", r, J)
        A = np.swapaxes(J, 1, 2) @ J
        A = A + (lam[:, None] * np.diagonal(A, axis1=1, axis2=2) + 1e-12)[:, :, None] * np.eye(2)
        det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] ** 2
        step = (
            -np.stack(
                [
                    A[:, 1, 1] * g[:, 0] - A[:, 0, 1] * g[:, 1],
                    A[:, 0, 0] * g[:, 1] - A[:, 0, 1] * g[:, 0],
                ],
                -1,
            )
            / det[:, None]
        )
        trial = _project(q[active] + step, *(v[active] for v in m_bounds))
        r_t, J_t = _residuals(trial, *here)
        cost_t = np.square(r_t).sum(-1)
        ok = cost_t < cost
        moved = np.abs(trial - q[active]).max(-1) > XTOL * (1 + np.abs(q[active]).max(-1))
        done = (ok & (cost - cost_t <= RTOL * cost)) | ~moved
        q[active[ok]] = trial[ok]
        r, J, cost = (
            np.where(ok[:, None], r_t, r),
            np.where(ok[:, None, None], J_t, J),
            np.where(ok, cost_t, cost),
        )
        lam = np.where(ok, lam / 3, lam * 4)
        keep = ~done
        active, r, J, cost, lam = active[keep], r[keep], J[keep], cost[keep], lam[keep]
    return q


def draw_rates(rng: np.random.Generator, p, n, phi) -> np.ndarray:
    """Scores k / n drawn at success rates p (any shape; n and phi broadcast with it) that
    scatter phi times as much as binomial counts: for phi > 1 beta-binomial (intra-class
    correlation (phi - 1) / (n - 1)); for phi < 1 (models measured on the same examples
    differ by less than independent samples would) binomial deviations shrunk by sqrt(phi)."""
    p = np.clip(p, 0.0, 1.0)
    n = np.broadcast_to(np.rint(n).astype(np.int64), p.shape)
    phi = np.broadcast_to(phi, p.shape)
    rho = np.clip((phi - 1) / np.maximum(n - 1, 1), 0.0, 0.5)
    mixed = (rho > 0) & (p > 0) & (p < 1)
    q = p.copy()
    if mixed.any():
        scale = 1 / rho[mixed] - 1
        q[mixed] = rng.beta(p[mixed] * scale, (1 - p[mixed]) * scale)
    k = rng.binomial(n, q) / n
    return np.where(phi < 1, p + np.sqrt(np.minimum(phi, 1)) * (k - p), k)
