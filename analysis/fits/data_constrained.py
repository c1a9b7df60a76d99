"""Data-constrained scaling (Muennighoff et al. 2023, "Scaling data-constrained language
models", NeurIPS 2023, sec. 3): the loss of a run with N parameters trained on D tokens drawn
from U unique tokens,

    L(N, D, U) = E + A / N'^alpha + B / D'^beta,
    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)),  U_D = min(U, D),  R_D = D / U_D - 1,
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),  U_N = min(N, N_opt(U_D)),  R_N = N / U_N - 1.

R_D counts the epochs beyond the first; the k-th repetition is worth exp(-k / R_D*) of a new
token, so D' never exceeds U_D (1 + R_D*). U_N is the compute-optimal size for U_D tokens under
the base law's allocation (analysis.fits.data_constrained_law.log_base_size, as their
utils/parametric_fit.ipynb of huggingface/datablations), and parameters beyond it decay alike
with R_N*. With no repetition and no excess parameters this is Chinchilla's L(N, D).

Procedure (the paper's): first the base law E, A, B, alpha, beta, then the two decay constants
with the base held fixed. The base is fitted as approach 3 (analysis.fits.chinchilla_search:
Huber loss with delta on log L, L-BFGS from a start grid, float64 polish; `tie` sets
alpha = beta as their fits did) to the runs of at most `max_epochs_base` epochs, with D their
tokens, or it is given (`base`: they took a fit to Chinchilla's C4 IsoFLOP points). The decay
constants minimise the same Huber loss over all runs, as log R*, from DECAY_GRID (every start
held at the base: its gradient is zero) through the same search.
The base law reads N itself, while under the law a run of one epoch larger than N_opt(U_D) is
worth N' < N: its base runs should be at most compute-optimal for their data, else the base
takes up part of the excess parameters' decay.

Bootstrap: runs resampled with replacement; on each resample the base is refitted on that
resample's own runs of few epochs (unless given), then the decay constants with that base
(bootstrap_optima with the base frozen per resample), so that their intervals carry the base's
uncertainty. A resample that does not identify a stage (< 3 model sizes or token counts among
its base runs, no repeated data or no excess parameters) is left out and counted.

The decay constants trade off along a valley: on the paper's 182 runs with its base, the
published R_D* = 15.4, R_N* = 5.3 (their local optimum, reached from their 4 x 4 grid) and
R_D* = 95, R_N* = 1.7 (the optimum from DECAY_GRID) differ by 0.13% in the objective. The
diagnostics then name the runner-up, and the intervals span the valley.
"""

from __future__ import annotations

from collections.abc import Callable
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
from analysis.fits.chinchilla_search import (
    DELTA,
    FAR_LOG_COEF,
    PARAMS,
    POLISH,
    RUNNER_UP_RTOL,
    bootstrap_optima,
    diagnostics,
    search,
    start_grid,
)
from analysis.fits.chinchilla_search import objective as base_objective
from analysis.fits.columns import as_flag
from analysis.fits.data_constrained_law import (
    N_BASE,
    RD,
    RN,
    data_multiplier,
    loss_curves,
    objective,
    repetitions,
)
from analysis.fits.overtraining import PARAMS as TIED_PARAMS
from analysis.fits.overtraining import tied_objective, untie
from analysis.inputs import ConfigError, require_columns, require_positive_finite
from analysis.tables import json_safe

LAW = (
    "L(N, D, U) = E + A / N'^alpha + B / D'^beta, D' = U_D (1 + R_D* (1 - exp(-R_D / R_D*))), "
    "N' = U_N (1 + R_N* (1 - exp(-R_N / R_N*)))"
)
# Starts of the decay constants, in log: a factor 4 apart over what repetition studies report
# (R_D* ~ 15, R_N* ~ 5 in the paper), wide enough to reach either end of the valley.
DECAY_GRID = {"log_rd": np.log([1.0, 4.0, 16.0, 64.0, 256.0]),
              "log_rn": np.log([0.5, 2.0, 8.0, 32.0, 128.0])}  # fmt: skip
ESTIMATED = ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star")


def parameters(theta) -> dict[str, np.ndarray]:
    """The reported quantities of fitted vectors (..., 7)."""
    t = np.asarray(theta, float)
    exp = lambda i: np.exp(t[..., i])
    return {"E": exp(2), "A": exp(0), "B": exp(1), "alpha": t[..., 3], "beta": t[..., 4],
            "R_D_star": exp(5), "R_N_star": exp(6)}  # fmt: skip


def parse_base(text: str) -> np.ndarray:
    """`E,A,B,ALPHA,BETA` (--base) as the base vector (log A, log B, log E, alpha, beta)."""
    try:
        v = np.array([float(x) for x in text.split(",")])
    except ValueError:
        v = np.array([])
    if len(v) != N_BASE or not np.all(np.isfinite(v) & (v > 0)):
        raise ConfigError(
            "--base", f"not five numbers > 0: {text!r}", "give E,A,B,ALPHA,BETA, e.g. "
            "1.87,521,1488,0.353,0.353 (the paper's C4 law)",
        )  # fmt: skip
    e, a, b, alpha, beta = v
    return np.array([np.log(a), np.log(b), np.log(e), alpha, beta])


def _distinct(w, *values) -> np.ndarray:
    """Per row of weights w (R, runs): how many distinct values (tuples of `values`, equal to
    9 digits in log) carry weight > 0."""
    keys = np.round(np.log(np.column_stack(values)), 9)
    ids = np.unique(keys, axis=0, return_inverse=True)[1].ravel()
    return np.array([len(np.unique(ids[row > 0])) for row in w])


@dataclass(frozen=True)
class BaseProblem:
    """Stage 1: the base law's multi-start problem on the runs of few epochs (`rows`)."""

    rows: np.ndarray
    starts: np.ndarray
    data: tuple
    fg: Callable
    tie: bool

    def full(self, theta) -> np.ndarray:
        """The base vector (..., 5) of a fitted one (alpha copied to beta when tied)."""
        return untie(theta) if self.tie else np.asarray(theta, float)

    def identified(self, N, D, w) -> np.ndarray:
        """Per row of weights over the base runs: >= 3 model sizes and token counts (a power
        law plus a constant needs 3 values), more distinct runs than parameters."""
        N, D = N[self.rows], D[self.rows]
        return (
            (_distinct(w, N) >= 3)
            & (_distinct(w, D) >= 3)
            & (_distinct(w, N, D) > self.starts.shape[1])
        )


def base_problem(N, D, loss, epochs, max_epochs, tie, grid, delta) -> BaseProblem:
    rows = epochs <= max_epochs * (1 + 1e-9)  # D / U_D in floating point
    names, fg = (TIED_PARAMS, tied_objective) if tie else (PARAMS, base_objective)
    data = tuple(np.log(v[rows]) for v in (N, D, loss)) + (delta,)
    return BaseProblem(rows, start_grid(grid, names), data, fg, tie)


def decay_identified(base, log_n, log_d, log_u, w) -> np.ndarray:
    """Per base (R, 5) and row of weights (R, runs): some run repeats data, some has
    parameters beyond U_N (else that decay constant does not enter the loss)."""
    _, r_n, _, r_d = repetitions(base, log_n, log_d, log_u)
    return ((w > 0) & (r_d > 0)).any(1) & ((w > 0) & (r_n > 0)).any(1)


@dataclass
class DataConstrainedFit:
    """The data-constrained law with bootstrap percentile intervals; `boot` holds one row per
    resample (NaN where left out or failed)."""

    theta: np.ndarray  # (a, b, e, alpha, beta, log R_D*, log R_N*)
    objective: float  # of the decay fit, over all runs
    n_points: int
    n_base_points: int  # runs the base was fitted on (0: given)
    frac_at_optimum: float
    ci: float
    settings: dict
    columns: dict
    diagnostics: dict
    boot: np.ndarray = field(repr=False)

    def predict(self, N, D, U) -> np.ndarray:
        return loss_curves(self.theta, N, D, U)

    def band(self, N, D, U) -> tuple[np.ndarray, np.ndarray]:
        return percentile_band(loss_curves(self.boot, N, D, U), self.ci)

    def data_multiplier(self, epochs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """D' / U_D at `epochs` = D / U_D, with its bootstrap band."""
        lo, hi = percentile_band(data_multiplier(self.boot, epochs), self.ci)
        return data_multiplier(self.theta, epochs), lo, hi

    def estimates(self) -> dict[str, Estimate]:
        best, boot = parameters(self.theta), parameters(self.boot)
        return {
            k: Estimate(float(best[k]), *percentile_interval(boot[k], self.ci)) for k in ESTIMATED
        }

    def allocation(self, C) -> None:
        """No closed form under a data constraint (the paper searches a grid); the base law's
        own allocation is Chinchilla's: fit that form to the runs of one epoch."""

    def to_dict(self) -> dict:
        out = {"status": "ok", "law": LAW}
        boot = parameters(self.boot)
        for k, (v, lo, hi, _) in self.estimates().items():
            out |= {k: v, f"{k}_ci": [lo, hi], f"{k}_se": standard_error(boot[k])}
        keep = ("objective", "n_points", "n_base_points", "frac_at_optimum", "columns")
        out |= {k: getattr(self, k) for k in keep}
        out["settings"] = {**self.settings, "ci": self.ci}
        out["diagnostics"] = self.diagnostics
        return json_safe(out)


def _bootstrap(problem, base_found, base, decay, decay_starts, data, n_boot, boot_starts, seed):
    """(n_boot, 7) refits (NaN where left out or failed), how many left out, how many failed.
    base, decay: the full-data optimum's parts; base_found: its base search (None: given).
    Counts come first from default_rng(seed), as in every fit of this package."""
    rng = np.random.default_rng(seed)
    n = len(data[0])
    counts = resample_counts(rng, n, n_boot)
    ident = np.ones(n_boot, bool)
    boot_base = np.tile(base, (n_boot, 1))
    if problem is not None:
        N, D = (np.exp(v) for v in data[:2])
        w = counts[:, problem.rows]
        ident = problem.identified(N, D, w)
        boot_base[:] = np.nan
        if ident.any():
            fitted = bootstrap_optima(
                base_found.theta, problem.starts, problem.data, w[ident], rng, boot_starts,
                problem.fg,
            )  # fmt: skip
            boot_base[ident] = problem.full(fitted)
    finite = np.isfinite(boot_base).all(1)
    ident[finite] &= decay_identified(boot_base[finite], *data[:3], counts[finite])
    boot = np.full((n_boot, len(base) + 2), np.nan)
    todo = ident & finite
    if todo.any():
        boot[todo] = bootstrap_optima(
            decay, decay_starts, data, counts[todo], rng, boot_starts, objective,
            frozen=boot_base[todo],
        )  # fmt: skip
    failed = int((ident & ~np.isfinite(boot).all(1)).sum())
    return boot, int((~ident).sum()), failed


def _runner_up(theta, found) -> dict | None:
    """The best polished end point whose R_D* or R_N* differs from the optimum's by more than
    a factor 1.25 (FAR_LOG_COEF), with its objective's gap; None if there is none."""
    far = np.any(np.abs(found.polished[:, N_BASE:] - theta[N_BASE:]) > FAR_LOG_COEF, axis=1)
    if not far.any():
        return None
    i = np.flatnonzero(far)[np.argmin(found.f_polished[far])]
    gap = (found.f_polished[i] - found.objective) / found.objective
    return {
        "objective_rel_gap": float(gap),
        **{k: float(v) for k, v in parameters(found.polished[i]).items()},
    }


def _unmeasured(theta, data) -> list[str]:
    """Warnings for a decay constant far beyond the repetitions of every run: the data show
    no decay there, and the law's ceiling is an extrapolation."""
    _, r_n, _, r_d = repetitions(theta[:N_BASE], *data[:3])
    return [
        f"{name} = {np.exp(theta[i]):.3g} > 10 x the largest {what} in the data ({r.max():.3g}):"
        " no decay is measured, its ceiling is extrapolated"
        for name, i, what, r in (("R_D*", RD, "R_D", r_d), ("R_N*", RN, "R_N", r_n))
        if np.exp(theta[i]) > 10 * r.max()
    ]


def _diagnostics(theta, found, base_found, problem, data, left_out, failed, n_boot):
    warnings, out = _unmeasured(theta, data), {}
    if base_found is not None:
        d = diagnostics(
            theta[:N_BASE], base_found.objective, problem.full(base_found.polished),
            base_found.f_polished, np.exp(data[3].min()), 0, 0,
        )  # fmt: skip
        warnings += [f"base law: {w}" for w in d["warnings"]]
        out["base_runner_up"] = d["runner_up"]
    runner_up = _runner_up(theta, found)
    if runner_up and runner_up["objective_rel_gap"] < RUNNER_UP_RTOL:
        warnings.append(
            f"distinct decay constants (R_D* {runner_up['R_D_star']:.3g}, R_N* "
            f"{runner_up['R_N_star']:.3g}) are within {100 * runner_up['objective_rel_gap']:.2g}%"
            " of the best objective: the data do not separate R_D* from R_N*"
        )
    if n_boot and failed > 0.05 * n_boot:
        warnings.append(f"{failed}/{n_boot} bootstrap resamples failed to converge")
    if n_boot and left_out > 0.5 * n_boot:
        warnings.append(
            f"{left_out}/{n_boot} bootstrap resamples do not identify the law and were left "
            "out: the intervals are unreliable"
        )
    out |= {"runner_up": runner_up, "boot_failed": failed, "boot_unidentified": left_out}
    return {"warnings": warnings, **out}


def fit_data_constrained_arrays(
    N, D, U, loss, *, delta: float = DELTA, max_epochs_base: float = 1.0, tie: bool = False,
    base=None, grid: dict | None = None, decay_grid: dict | None = None, n_boot: int = 1000,
    boot_starts: int = 25, ci: float = 0.95, seed: int = 0, columns: dict | None = None,
    where: str = "data_constrained",
) -> DataConstrainedFit:  # fmt: skip
    """The law on arrays (finite, > 0); base: a given base vector (parse_base), else fitted on
    the runs of at most max_epochs_base epochs. grid, decay_grid: start grids of the base
    (chinchilla_search.GRID's names) and of the decay constants (DECAY_GRID's)."""
    N, D, U, loss = (np.asarray(v, float) for v in (N, D, U, loss))
    data = tuple(np.log(v) for v in (N, D, U, loss)) + (delta,)
    problem = base_found = None
    if base is None:
        problem = base_problem(N, D, loss, D / np.minimum(U, D), max_epochs_base, tie, grid, delta)
        if not problem.identified(N, D, np.ones((1, problem.rows.sum())))[0]:
            raise ConfigError(
                where, f"{int(problem.rows.sum())} run(s) of at most {max_epochs_base:g} "
                "epoch(s) do not identify the base law (needs >= 3 model sizes and token counts)",
                "raise --max-epochs-base, add runs of one epoch, or give the law with --base",
            )  # fmt: skip
        base_found = search(problem.starts, problem.data, problem.fg)
        base = problem.full(base_found.theta)
    base = np.asarray(base, float)
    if not decay_identified(base[None], *data[:3], np.ones((1, len(N))))[0]:
        raise ConfigError(
            where, "no run repeats data, or none has more parameters than N_opt(U_D), the "
            "compute-optimal size for its unique tokens: R_D* or R_N* does not enter the loss",
            "add runs of several epochs and runs larger than compute-optimal for their data",
        )  # fmt: skip
    decay_starts = start_grid(decay_grid, tuple(DECAY_GRID), DECAY_GRID)
    found = search(
        np.hstack([np.tile(base, (len(decay_starts), 1)), decay_starts]), data, objective
    )
    boot, left_out, failed = (
        _bootstrap(problem, base_found, base, found.theta[N_BASE:], decay_starts, data, n_boot,
                   boot_starts, seed)
        if n_boot else (np.empty((0, len(found.theta))), 0, 0)
    )  # fmt: skip
    settings = {
        "delta": delta, "max_epochs_base": max_epochs_base, "tie_exponents": tie,
        "base": "given" if problem is None else "fitted", "n_starts": len(decay_starts),
        "n_boot": n_boot, "boot_starts": boot_starts, "seed": seed,
        "loss": "sum of Huber_delta(log L - log L_pred) over runs",
        "optimizer": "L-BFGS (analysis.lbfgs): float32 pass from every start, float64 polish "
        f"(gtol {POLISH['gtol']:g}); decay constants as log R*",
        "procedure": "base law on the runs of at most max_epochs_base epochs (D = their "
        "tokens), then R_D*, R_N* on all runs with the base held",
        "bootstrap": "runs resampled with replacement; each resample refits the base (unless "
        "given), then the decay constants with that base; percentile intervals",
    }  # fmt: skip
    return DataConstrainedFit(
        theta=found.theta, objective=found.objective, n_points=len(N),
        n_base_points=0 if problem is None else int(problem.rows.sum()),
        frac_at_optimum=found.frac_at_optimum, ci=ci, settings=settings,
        columns=columns or {}, boot=boot,
        diagnostics=_diagnostics(
            found.theta, found, base_found, problem, data, left_out, failed, n_boot
        ),
    )  # fmt: skip


def fit_data_constrained(
    df: pd.DataFrame, *, n_col: str, d_col: str, unique_col: str = "unique_tokens",
    loss_col: str = "loss", **kw,
) -> DataConstrainedFit:  # fmt: skip
    """The law on the rows of a table: N, D (all tokens trained on), U (unique tokens) and
    the loss from their columns; unique_col is the CLI's --unique."""
    with as_flag("--unique", unique_col):
        require_columns(df, [unique_col], "input")
        require_positive_finite(df, [unique_col], "input")
    cols = [n_col, d_col, loss_col]
    where = kw.get("where", "data_constrained")
    require_columns(df, cols, where)
    require_positive_finite(df, cols, where)
    N, D, loss = (df[c].to_numpy(float) for c in cols)
    columns = {"n": n_col, "d": d_col, "unique": unique_col, "loss": loss_col}
    return fit_data_constrained_arrays(
        N, D, df[unique_col].to_numpy(float), loss, columns=columns, **kw
    )
