"""Chinchilla approach 3: the parametric loss L(N, D) = E + A / N^alpha + B / D^beta.

Fitted as Hoffmann et al. 2022 (sec. 3.3, App. D.2) and Besiroglu et al. 2024 ("Chinchilla
scaling: a replication attempt") do: with a = log A, b = log B, e = log E, minimise

    sum_i  w_i * Huber_delta( log L_i - LSE(a - alpha log N_i, b - beta log D_i, e) )

(a sum, not a mean: a mean divides the gradient by n and default tolerances then stop the
optimiser at its start, one of the pitfalls Besiroglu et al. found) by L-BFGS from every point
of a start grid (by default theirs: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
a, b in {0, 5, ..., 25}: 4,500 starts), keeping the lowest objective.

Speed. All starts run at once in JAX (analysis.lbfgs): a float32 pass takes every start to
working precision, then every end point within 2x of the best objective is polished in
float64 to gtol = 1e-12. A start that stalls in float32 on the plateau where both power-law
terms are negligible (~e^-20 of E, gradient ~1e-8) stays there, where scipy in float64 creeps
on for hundreds of iterations and sometimes reaches the optimum. So `frac_at_optimum` (the
share of starts that end within AT_OPTIMUM_RTOL of the optimum's objective) is lower than
scipy's: 0.17 against 0.37-0.40 on Epoch's data. The optimum itself is the same.

Bootstrap (Besiroglu et al. 2024, sec. 3): resample the points with replacement (as integer
weights w_i), refit each resample from `boot_starts` starts - the full-data optimum and
boot_starts - 1 grid points drawn at random per resample - and take percentile intervals of
every parameter and derived quantity over the resamples.

Compute-optimal allocation under C = 6 N D (Hoffmann et al. 2022, eq. 4 and App. D.2):
N_opt(C) = G (C/6)^a_exp, D_opt(C) = G^-1 (C/6)^b_exp, with
G = (alpha A / (beta B))^(1/(alpha+beta)), a_exp = beta / (alpha + beta) and
b_exp = alpha / (alpha + beta). In the JSON these exponents are `a` and `b`; the
log-coefficients are never reported under those names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.fits.base import Estimate
from analysis.fits.bootstrap import percentile_band, resample_counts, standard_error
from analysis.fits.chinchilla_search import (
    DELTA,
    N_PARAMS,
    POLISH,
    bootstrap_optima,
    diagnostics,
    search,
    start_grid,
)
from analysis.inputs import (
    ConfigError,
    require_columns,
    require_min_rows,
    require_positive_finite,
)
from analysis.tables import json_safe


def allocation_exponents(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) = (beta / (alpha + beta), alpha / (alpha + beta)) for theta (..., 5)."""
    alpha, beta = theta[..., 3], theta[..., 4]
    return beta / (alpha + beta), alpha / (alpha + beta)


def optimal_allocation(theta: np.ndarray, C) -> dict[str, np.ndarray]:
    """N_opt, D_opt, L_opt at compute C under C = 6 N D; theta (..., 5) broadcasts against C."""
    theta = np.asarray(theta, float)
    a, b, e, alpha, beta = (theta[..., i, None] for i in range(N_PARAMS))
    log_c6 = np.log(np.asarray(C, float) / 6.0)
    # A degenerate bootstrap resample (alpha or beta at 0) has no optimum: its inf/NaN rows are
    # what the intervals leave out, so numpy's warnings about them are only noise.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        log_g = (np.log(alpha / beta) + a - b) / (alpha + beta)
        log_n = log_g + beta / (alpha + beta) * log_c6
        log_d = log_c6 - log_n
        loss = np.exp(e) + np.exp(a - alpha * log_n) + np.exp(b - beta * log_d)
        return {"n_opt": np.exp(log_n), "d_opt": np.exp(log_d), "l_opt": loss}


def loss_curves(theta, N, D) -> np.ndarray:
    """L(N, D) for theta (5,) or, per row, for resampled optima (n, 5) -> (n, len(N)); a NaN
    row (a failed refit) gives a NaN curve."""
    theta = np.asarray(theta, float)
    a, b, e, alpha, beta = (theta[..., i, None] for i in range(N_PARAMS))
    log_n, log_d = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
    with np.errstate(all="ignore"):
        curves = np.exp(e) + np.exp(a - alpha * log_n) + np.exp(b - beta * log_d)
    return curves if theta.ndim > 1 else curves.reshape(np.shape(log_n))


ESTIMATED = ("E", "A", "B", "alpha", "beta", "a", "b")


@dataclass
class ChinchillaFit:
    """L(N, D) = E + A/N^alpha + B/D^beta with bootstrap percentile intervals."""

    theta: np.ndarray  # (a, b, e, alpha, beta) at the optimum
    objective: float
    n_points: int
    delta: float
    n_starts: int
    frac_at_optimum: float
    ci: float
    n_boot: int
    boot_starts: int
    seed: int
    columns: dict  # n, d (or c), loss: where the numbers came from
    budgets: np.ndarray
    diagnostics: dict
    boot: np.ndarray = field(repr=False)  # (n_ok, 5) optima of the resamples

    E = property(lambda self: float(np.exp(self.theta[2])))
    A = property(lambda self: float(np.exp(self.theta[0])))
    B = property(lambda self: float(np.exp(self.theta[1])))
    alpha = property(lambda self: float(self.theta[3]))
    beta = property(lambda self: float(self.theta[4]))
    a = property(lambda self: float(allocation_exponents(self.theta)[0]))
    b = property(lambda self: float(allocation_exponents(self.theta)[1]))

    def predict(self, N, D) -> np.ndarray:
        return loss_curves(self.theta, N, D)

    def _boot_values(self) -> dict[str, np.ndarray]:
        t = self.boot
        a_exp, b_exp = allocation_exponents(t)
        return {
            "E": np.exp(t[:, 2]),
            "A": np.exp(t[:, 0]),
            "B": np.exp(t[:, 1]),
            "alpha": t[:, 3],
            "beta": t[:, 4],
            "a": a_exp,
            "b": b_exp,
        }

    def _interval(self, v: np.ndarray):
        return percentile_band(v, self.ci)

    def band(self, N, D) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise bootstrap percentile band of L(N, D) from the resampled optima."""
        return percentile_band(loss_curves(self.boot, N, D), self.ci)

    def estimates(self) -> dict[str, Estimate]:
        boot = self._boot_values()
        return {k: Estimate(getattr(self, k), *self._interval(boot[k])) for k in ESTIMATED}

    def allocation(self, C=None) -> pd.DataFrame:
        """N_opt, D_opt, L_opt (C = 6 N D) at budgets C, with bootstrap percentile intervals."""
        C = np.atleast_1d(np.asarray(self.budgets if C is None else C, float))
        best = optimal_allocation(self.theta, C)
        boot = optimal_allocation(self.boot, C) if len(self.boot) else None
        table = {"C": C}
        for key, short in (("n_opt", "n"), ("d_opt", "d"), ("l_opt", "l")):
            lo, hi = self._interval(boot[key]) if boot else (np.nan, np.nan)
            table |= {key: best[key], f"{short}_lo": lo, f"{short}_hi": hi}
        return pd.DataFrame(table)

    def to_dict(self) -> dict:
        boot = self._boot_values()
        out = {"status": "ok", "law": "L(N, D) = E + A / N^alpha + B / D^beta"}
        for k, (v, lo, hi, _) in self.estimates().items():
            out |= {k: v, f"{k}_ci": [lo, hi], f"{k}_se": standard_error(boot[k])}
        alloc = self.allocation()
        out |= {
            "allocation": alloc.to_dict("records"),
            "allocation_convention": "C = 6 N D (Hoffmann et al. 2022, eq. 4)",
            "objective": self.objective,
            "n_points": self.n_points,
            "columns": self.columns,
            "settings": {
                "delta": self.delta,
                "n_starts": self.n_starts,
                "ci": self.ci,
                "n_boot": self.n_boot,
                "boot_starts": self.boot_starts,
                "seed": self.seed,
                "loss": "sum of Huber(log L - log L_pred) over points",
                "optimizer": "L-BFGS (analysis.lbfgs): float32 pass from every start, "
                f"float64 polish (gtol {POLISH['gtol']:g})",
                "bootstrap": "points resampled with replacement; each resample refit from "
                "the full-data optimum and boot_starts - 1 random grid starts; percentile "
                "intervals",
            },
            "frac_at_optimum": self.frac_at_optimum,
            "diagnostics": self.diagnostics,
        }
        return json_safe(out)


def _check_inputs(n, d, loss, n_col, d_name, where) -> None:
    """More points than parameters, and >= 3 distinct N and D: L = E + f(N) + g(D) identifies
    f and g only up to a constant each, so a term with 3 parameters (its coefficient, exponent
    and that constant) needs at least 3 distinct values; with 2 its exponent is arbitrary."""
    require_min_rows(len(loss), N_PARAMS + 1, "the 5-parameter law", where)
    for values, col in ((n, n_col), (d, d_name)):
        distinct = np.unique(values)
        if len(distinct) < 3:
            raise ConfigError(
                f"{where}.{col}",
                f"{len(distinct)} distinct value(s) ({', '.join(f'{v:g}' for v in distinct)})",
                "the law needs at least 3 model sizes and 3 token counts to identify its exponents",
            )


def fit_chinchilla_arrays(
    N,
    D,
    loss,
    *,
    delta: float = DELTA,
    grid: dict | None = None,
    n_boot: int = 1000,
    boot_starts: int = 25,
    budgets=None,
    ci: float = 0.95,
    seed: int = 0,
    columns: dict | None = None,
) -> ChinchillaFit:
    """Approach 3 on arrays (validated by the caller); see the module docstring."""
    N, D, loss = (np.asarray(v, float) for v in (N, D, loss))
    data = (np.log(N), np.log(D), np.log(loss), delta)
    starts = start_grid(grid)
    n = len(loss)

    found = search(starts, data)
    theta = found.theta
    rng = np.random.default_rng(seed)
    boot = np.empty((0, N_PARAMS))
    if n_boot:
        counts = resample_counts(rng, n, n_boot)
        boot = bootstrap_optima(theta, starts, data, counts, rng, boot_starts)
        boot = boot[np.all(np.isfinite(boot), axis=1)]

    if budgets is None:  # a decade beyond the data at either end, one point per decade
        c = 6 * N * D
        budgets = 10.0 ** np.arange(np.floor(np.log10(c.min())), np.ceil(np.log10(c.max())) + 2)
    return ChinchillaFit(
        theta=theta,
        objective=found.objective,
        n_points=n,
        delta=delta,
        n_starts=len(starts),
        frac_at_optimum=found.frac_at_optimum,
        ci=ci,
        n_boot=n_boot,
        boot_starts=boot_starts,
        seed=seed,
        columns=columns or {},
        budgets=np.asarray(budgets, float),
        diagnostics=diagnostics(
            theta,
            found.objective,
            found.polished,
            found.f_polished,
            loss.min(),
            n_boot - len(boot),
            n_boot,
        ),  # fmt: skip
        boot=boot,
    )


def fit_chinchilla(
    df: pd.DataFrame,
    *,
    n_col: str = "params_non_embedding",
    d_col: str | None = None,
    c_col: str | None = None,
    loss_col: str = "loss",
    delta: float = DELTA,
    grid: dict | None = None,
    n_boot: int = 1000,
    boot_starts: int = 25,
    budgets=None,
    ci: float = 0.95,
    seed: int = 0,
    where: str = "chinchilla",
) -> ChinchillaFit:
    """Approach 3 on a table: N from n_col, D from d_col or D = C / (6 N) from c_col.

    Bad input (unknown columns, non-positive or non-finite values, fewer than 6 points, a
    single model size or token count, bad settings) raises ConfigError before any fitting.
    """
    if (d_col is None) == (c_col is None):
        raise ConfigError(
            f"{where}.d_col", "give exactly one of d_col and c_col", "pass tokens or FLOPs"
        )
    for name, value, ok in (
        ("delta", delta, delta > 0),
        ("boot_starts", boot_starts, boot_starts >= 1),
        ("n_boot", n_boot, n_boot >= 0),
        ("ci", ci, 0 < ci < 1),
    ):
        if not ok:
            raise ConfigError(f"{where}.{name}", f"invalid value {value!r}", "see the docstring")
    cols = [n_col, d_col or c_col, loss_col]
    require_columns(df, cols, where)
    require_positive_finite(df, cols, where)
    N = df[n_col].to_numpy(float)
    D = df[d_col].to_numpy(float) if d_col else df[c_col].to_numpy(float) / (6 * N)
    loss = df[loss_col].to_numpy(float)
    _check_inputs(N, D, loss, n_col, d_col or c_col, where)
    columns = {"n": n_col, "loss": loss_col}
    columns |= {"d": d_col} if d_col else {"c": c_col, "d": "C / (6 N)"}
    return fit_chinchilla_arrays(
        N, D, loss, delta=delta, grid=grid, n_boot=n_boot, boot_starts=boot_starts,
        budgets=budgets, ci=ci, seed=seed, columns=columns,
    )  # fmt: skip
