"""The search behind Chinchilla approach 3 (see analysis.fits.chinchilla): the start grid, the
Huber objective in log loss with its gradient, the batched L-BFGS passes (float32 screen from
every start, float64 polish of the best) and the diagnostics of the optimum found.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from analysis import lbfgs
from analysis.inputs import ConfigError

# Start grid of Besiroglu et al. 2024 (and Hoffmann et al. 2022 App. D.2), in (a, b, e, alpha,
# beta) order: a = log A, b = log B, e = log E.
GRID = {
    "a": np.arange(0.0, 30.0, 5.0),
    "b": np.arange(0.0, 30.0, 5.0),
    "e": np.arange(-1.0, 1.5, 0.5),
    "alpha": np.arange(0.0, 2.5, 0.5),
    "beta": np.arange(0.0, 2.5, 0.5),
}
PARAMS = tuple(GRID)
N_PARAMS = len(PARAMS)
DELTA = 1e-3  # Huber delta on log loss: Hoffmann et al. 2022, App. D.2

# Optimiser settings. float32 pass: no gradient floor it could reach (1e-12), stop when an
# accepted step no longer lowers f at all (ftol 0), i.e. at working precision. float64 polish:
# the tolerances under which scipy's L-BFGS-B reproduces Epoch's figures.
SCREEN = dict(gtol=1e-12, ftol=0.0, max_iter=500, dtype=np.float32)
POLISH = dict(gtol=1e-12, ftol=1e-15, max_iter=2000, dtype=np.float64)
# Float64 polish of the full-data fit (see candidates).
POLISH_WITHIN, POLISH_MAX = 2.0, 2048
AT_OPTIMUM_RTOL = 1e-3  # a start "reaches the optimum" within 0.1% of its objective

# Diagnostics. E below 1% of the smallest loss means the irreducible term has vanished, a
# degenerate optimum that Besiroglu et al. found many starts fall into. Exponents outside
# [0.01, 3] are far outside anything measured for language models (0.05-0.8).
E_FLOOR_FRACTION = 0.01
EXPONENT_RANGE = (0.01, 3.0)
# A runner-up optimum whose objective is within 1% of the best but whose exponents differ by
# more than 0.05 (or A or B by more than 25%, or E by 1% of the smallest loss) makes the fit
# ambiguous.
RUNNER_UP_RTOL = 0.01
FAR_EXPONENT = 0.05
FAR_LOG_COEF = np.log(1.25)


def start_grid(
    grid: dict | None = None, names: tuple[str, ...] = PARAMS, defaults: dict = GRID
) -> np.ndarray:
    """The Cartesian product of the grid's values, (n_starts, len(names)) in that order; a
    law with fewer parameters (beta tied to alpha) takes the grid of the ones it has, a law
    with other parameters names its own `defaults`."""
    g = {**{k: defaults[k] for k in names}, **(grid or {})}
    unknown = set(g) - set(names)
    if unknown:
        raise ConfigError(
            f"grid.{sorted(unknown)[0]}", "not a parameter", f"use {', '.join(names)}"
        )
    return np.array(list(itertools.product(*(np.asarray(g[p], float) for p in names))))


def huber_loss(total, w, log_l, delta, xp=jnp):
    """(f, psi): the weighted Huber loss of log L - log total per lane, and psi = d f / d total,
    from which a law's gradient follows by the chain rule through its terms."""
    r = log_l - xp.log(total)
    abs_r = xp.abs(r)
    huber = xp.where(abs_r < delta, 0.5 * r * r, delta * (abs_r - 0.5 * delta))
    return xp.sum(w * huber, axis=1), -w * xp.clip(r, -delta, delta) / total


def objective(theta, w, log_n, log_d, log_l, delta, xp=jnp):
    """Weighted Huber objective and its gradient for lanes theta (L, 5); w (L, points).

    In linear space: L_pred = E + A N^-alpha + B D^-beta (two exponentials per point instead
    of the three of a max-shifted logsumexp). An overflow gives f = inf, which the line search
    rejects. `xp` is the array module: jax.numpy here, numpy for the scipy peer in bench/fit.py.
    """
    a, b, e, alpha, beta = (theta[:, i : i + 1] for i in range(N_PARAMS))
    t_n = xp.exp(a - alpha * log_n)
    t_d = xp.exp(b - beta * log_d)
    t_e = xp.exp(e)
    f, psi = huber_loss(t_e + t_n + t_d, w, log_l, delta, xp)
    g_n, g_d = psi * t_n, psi * t_d
    grad = xp.stack(
        [
            g_n.sum(1),
            g_d.sum(1),
            t_e[:, 0] * psi.sum(1),
            -(g_n * log_n).sum(1),
            -(g_d * log_d).sum(1),
        ],
        axis=1,
    )
    return f, grad


def minimize(starts, weights, data, settings, fg=objective) -> lbfgs.Result:
    return lbfgs.minimize(fg, starts, data, (weights,), **settings)


def best_with_polish(
    starts: np.ndarray, weights: np.ndarray, data: tuple, group: np.ndarray, fg=objective
) -> np.ndarray:
    """Per group (one resample each, in group order), the float64-polished best float32 end
    point; NaN where the polish failed."""
    screen = minimize(starts, weights, data, SCREEN, fg)
    f = np.where(np.isfinite(screen.f), screen.f, np.inf)
    order = np.lexsort((f, group))
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    polish = minimize(screen.x[first], weights[first], data, POLISH, fg)
    return np.where(np.isfinite(polish.f)[:, None], polish.x, np.nan)


@dataclass
class Search:
    """The optimum of a multi-start fit and the polished end points it was chosen from."""

    theta: np.ndarray
    objective: float
    frac_at_optimum: float  # share of starts ending within AT_OPTIMUM_RTOL of the optimum
    polished: np.ndarray  # (n_polished, P) float64 end points
    f_polished: np.ndarray  # their objectives (inf where the polish failed)


def search(starts: np.ndarray, data: tuple, fg=objective) -> Search:
    """Every start in float32, then the candidates (see `candidates`) polished in float64;
    data = (log N, log D, log L, delta), fg the objective of the law being fitted."""
    ones = np.ones((len(starts), len(data[2])))
    screen = minimize(starts, ones, data, SCREEN, fg)
    top = candidates(np.where(np.isfinite(screen.f), screen.f, np.inf))
    polish = minimize(screen.x[top], ones[top], data, POLISH, fg)
    f_polished = np.where(np.isfinite(polish.f), polish.f, np.inf)
    best = int(np.argmin(f_polished))
    objective_at_best = float(f_polished[best])
    at_optimum = np.sum(f_polished <= objective_at_best * (1 + AT_OPTIMUM_RTOL)) / len(starts)
    return Search(polish.x[best], objective_at_best, float(at_optimum), polish.x, f_polished)


def bootstrap_optima(theta, starts, data, counts, rng, boot_starts: int, fg=objective, frozen=None):
    """Per resample (a row of integer weights `counts`), the optimum refitted from the
    full-data optimum `theta` and boot_starts - 1 grid starts drawn at random for that
    resample; (n_resamples, P), NaN rows where the refit failed, in the order of `counts`.

    frozen (n_resamples, Q): leading parameters each resample holds at its own values (fg
    gives them zero gradient: a law fitted in stages refits its later stage on each resample's
    own earlier one); theta and the starts then cover the parameters after them, and the rows
    returned hold Q + P values."""
    n_boot, p = len(counts), len(theta)
    k = min(boot_starts - 1, len(starts))
    picks = np.stack([rng.choice(len(starts), k, replace=False) for _ in range(n_boot)])
    lanes = np.concatenate([np.broadcast_to(theta, (n_boot, 1, p)), starts[picks]], axis=1)
    if frozen is not None:
        held = np.broadcast_to(np.asarray(frozen)[:, None], (n_boot, k + 1, frozen.shape[1]))
        lanes = np.concatenate([held, lanes], axis=2)
    lane_starts = lanes.reshape(n_boot * (k + 1), -1)
    group = np.repeat(np.arange(n_boot), k + 1)
    return best_with_polish(lane_starts, counts[group], data, group, fg)


def _is_far(p: np.ndarray, q: np.ndarray, loss_scale: float) -> np.ndarray:
    """Whether optima p and q (..., 5), broadcast, are distinct: FAR_EXPONENT apart in an
    exponent, FAR_LOG_COEF apart in log A or log B, or E differing by more than
    E_FLOOR_FRACTION x loss_scale (E is compared in loss units: log E is arbitrary as E -> 0)."""
    diff = np.abs(np.asarray(p) - np.asarray(q))
    e_diff = np.abs(np.exp(np.asarray(p)[..., 2]) - np.exp(np.asarray(q)[..., 2]))
    return (
        np.any(diff[..., 3:] > FAR_EXPONENT, -1)
        | np.any(diff[..., :2] > FAR_LOG_COEF, -1)
        | (e_diff > E_FLOOR_FRACTION * loss_scale)
    )


def candidates(f: np.ndarray) -> np.ndarray:
    """Lanes to polish in float64: every float32 end point within POLISH_WITHIN of the best
    objective, at most POLISH_MAX of them.

    Float32 end points in the valley of the optimum lie spread along it, up to ~20% above the
    optimum's objective (the valley is flat to float32 precision), and polish to the optimum;
    a runner-up optimum close enough to matter (RUNNER_UP_RTOL) is among them too."""
    order = np.argsort(f)
    return order[f[order] <= POLISH_WITHIN * f[order[0]]][:POLISH_MAX]


def diagnostics(theta, objective, polished, f_polished, min_loss, boot_failed, n_boot):
    """Warnings about a degenerate optimum, and the runner-up optimum if one is close."""
    warnings = []
    irreducible = np.exp(theta[2])
    if irreducible < E_FLOOR_FRACTION * min_loss:
        warnings.append(
            f"E = {irreducible:.3g} < {E_FLOOR_FRACTION:g} x min loss: the irreducible term "
            "vanished (degenerate optimum)"
        )
    lo, hi = EXPONENT_RANGE
    for name, v in (("alpha", theta[3]), ("beta", theta[4])):
        if not lo <= v <= hi:
            warnings.append(f"{name} = {v:.3g} outside [{lo:g}, {hi:g}]: exponent at a bound")
    far = [i for i in np.argsort(f_polished) if _is_far(theta, polished[i], min_loss)]
    runner_up = None
    if far:
        i = far[0]
        gap = (f_polished[i] - objective) / objective
        runner_up = {
            "objective_rel_gap": gap,
            **{k: v for k, v in zip(PARAMS, polished[i], strict=True)},
        }
        if gap < RUNNER_UP_RTOL:
            warnings.append(
                f"a distinct optimum (alpha {polished[i][3]:.3g}, beta {polished[i][4]:.3g}) "
                f"is within {100 * gap:.2g}% of the best objective: the fit is ambiguous"
            )
    if n_boot and boot_failed > 0.05 * n_boot:
        warnings.append(f"{boot_failed}/{n_boot} bootstrap resamples failed to converge")
    return {"warnings": warnings, "runner_up": runner_up, "boot_failed": boot_failed}
