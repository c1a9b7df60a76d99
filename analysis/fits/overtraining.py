"""Scaling with over-training (Gadre et al. 2024, "Language models scale reliably with
over-training and on downstream tasks", sec. 3): the loss of a run of compute C = 6 N D and token
multiplier M = D / N,

    L(C, M) = E + (a M^eta + b M^-eta) C^-eta.

Substituting C and M, L = E + A / N^alpha + B / D^alpha with alpha = 2 eta, A = a 6^-eta and
B = b 6^-eta: the Chinchilla law with the two exponents tied, the assumption under which the
compute-optimal multiplier M_opt = (b / a)^(1 / (2 eta)) is the same at every budget. So it is
fitted as approach 3 is (analysis.fits.chinchilla: log-space Huber loss, L-BFGS from a start
grid, float64 polish, the same bootstrap), over (log A, log B, log E, alpha).

The loss is approach 3's Huber loss on log L with delta = 1e-3 (--delta; delta = inf is
least squares in log L). The paper fits by least squares in L (scipy curve_fit); on its 5-run
grid the three losses predict the 1.4B, M = 640 run to 0.40% (Huber), 0.71% (the paper's) and
1.05% (least squares in log L), and fitted on every RedPajama run below 1e21 FLOPs Huber
misses it by 0.01%, least squares in log L by 2.0%: the small, under-trained runs are where
the law fits worst, and the robust loss keeps them from pulling the extrapolation.

Identifiability: with every run at one M, A and B are not separable (only A + B M^-alpha is);
with one N, A and E are not. A fit needs >= 5 distinct runs, >= 2 model sizes and >= 2
multipliers, and a bootstrap resample that lacks them is left out (counted in the
diagnostics): with the paper's five-run grid most resamples are, and its intervals say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis.fits.base import Estimate
from analysis.fits.bootstrap import percentile_interval, resample_counts, standard_error
from analysis.fits.chinchilla import ChinchillaFit
from analysis.fits.chinchilla_search import (
    DELTA,
    bootstrap_optima,
    diagnostics,
    objective,
    search,
    start_grid,
)
from analysis.inputs import ConfigError, require_columns, require_positive_finite
from analysis.tables import json_safe

LAW = "L(C, M) = E + (a M^eta + b M^-eta) C^-eta, C = 6 N D, M = D / N"
PARAMS = ("a", "b", "e", "alpha")  # log A, log B, log E, alpha = beta: the fitted vector
N_PARAMS = len(PARAMS)
ESTIMATED = ("E", "a", "b", "eta", "M_opt")
LOG6 = np.log(6.0)


def tied_objective(theta, w, log_n, log_d, log_l, delta):
    """The approach-3 objective and gradient with beta = alpha, lanes theta (L, 4)."""
    f, g = objective(jnp.concatenate([theta, theta[:, 3:]], axis=1), w, log_n, log_d, log_l, delta)
    return f, jnp.concatenate([g[:, :3], g[:, 3:4] + g[:, 4:]], axis=1)


def untie(theta) -> np.ndarray:
    """(..., 4) -> the Chinchilla vector (..., 5) with beta = alpha."""
    theta = np.asarray(theta, float)
    return np.concatenate([theta, theta[..., 3:]], axis=-1)


def paper_parameters(theta5) -> dict[str, np.ndarray]:
    """E, a, b, eta and M_opt of the paper's form from Chinchilla vectors (..., 5)."""
    log_a, log_b, e, alpha = (np.asarray(theta5, float)[..., i] for i in range(4))
    eta = alpha / 2
    with np.errstate(all="ignore"):
        return {
            "E": np.exp(e),
            "a": np.exp(log_a + eta * LOG6),
            "b": np.exp(log_b + eta * LOG6),
            "eta": eta,
            "M_opt": np.exp((log_b - log_a) / alpha),
        }


def identified(N, D, weights=None) -> np.ndarray | bool:
    """Whether the runs (with weight > 0) identify the law: >= 5 distinct (N, D), >= 2 distinct
    N and >= 2 distinct M. weights (n_resamples, n) gives one answer per resample."""
    # Values equal to 9 digits are one value: D / N of M = 20 runs differs in the last bits.
    log_n, log_m = (np.round(np.log(v), 9) for v in (N, D / N))
    keys = np.unique(np.stack([log_n, log_m], axis=1), axis=0, return_inverse=True)[1].ravel()
    n_ids, m_ids = (np.unique(v, return_inverse=True)[1].ravel() for v in (log_n, log_m))
    w = np.ones((1, len(N))) if weights is None else np.asarray(weights)
    present = w > 0
    count = lambda ids: np.array([len(np.unique(ids[row])) for row in present])
    ok = (count(keys) >= N_PARAMS + 1) & (count(n_ids) >= 2) & (count(m_ids) >= 2)
    return ok if weights is not None else bool(ok[0])


@dataclass
class OvertrainingFit:
    """The over-training law with bootstrap percentile intervals. `law` holds it as the
    equivalent Chinchilla law (predict, band, allocation), its `boot` one row per resample
    (NaN where left out), so that a chained fit can pair resample i with another law's."""

    law: ChinchillaFit
    n_unidentified: int  # resamples left out: they do not identify the law

    def predict(self, N, D) -> np.ndarray:
        return self.law.predict(N, D)

    def band(self, N, D) -> tuple[np.ndarray, np.ndarray]:
        return self.law.band(N, D)

    def allocation(self, C=None) -> pd.DataFrame:
        """N_opt, D_opt, L_opt at budgets C under C = 6 N D (D_opt / N_opt = M_opt)."""
        return self.law.allocation(C)

    def estimates(self) -> dict[str, Estimate]:
        best, boot = paper_parameters(self.law.theta), paper_parameters(self.law.boot)
        return {
            k: Estimate(float(best[k]), *percentile_interval(boot[k], self.law.ci))
            for k in ESTIMATED
        }

    def to_dict(self) -> dict:
        law = self.law.to_dict()
        boot = paper_parameters(self.law.boot)
        out = {"status": "ok", "law": LAW}
        for k, (v, lo, hi, _) in self.estimates().items():
            out |= {k: v, f"{k}_ci": [lo, hi], f"{k}_se": standard_error(boot[k])}
        out["equivalent_chinchilla"] = {
            "law": "E + A / N^alpha + B / D^alpha, alpha = 2 eta, A = a 6^-eta, B = b 6^-eta",
            **{k: law[k] for k in ("A", "B", "alpha")},
        }
        keep = ("allocation", "allocation_convention", "objective", "n_points", "columns")
        out |= {k: law[k] for k in keep}
        out["settings"] = {
            **law["settings"],
            "loss": f"sum of Huber_delta(log L - log L_pred), delta = {self.law.delta:g}"
            + (" (least squares)" if np.isinf(self.law.delta) else ""),
            "bootstrap": law["settings"]["bootstrap"] + "; resamples that do not identify "
            "the law (< 5 distinct runs, one N or one M) are left out",
        }
        out["frac_at_optimum"] = law["frac_at_optimum"]
        out["diagnostics"] = {**law["diagnostics"], "boot_unidentified": self.n_unidentified}
        return json_safe(out)


def _bootstrap(theta, starts, data, N, D, n_boot, boot_starts, seed):
    """(n_boot, 4) optima, NaN for resamples that do not identify the law or fail; the number
    left out. Counts come first from default_rng(seed), as in every fit of this package, so a
    fit on the same rows with the same seed sees the same resamples."""
    rng = np.random.default_rng(seed)
    counts = resample_counts(rng, len(N), n_boot)
    ok = identified(N, D, counts)
    boot = np.full((n_boot, N_PARAMS), np.nan)
    if ok.any():
        boot[ok] = bootstrap_optima(
            theta, starts, data, counts[ok], rng, boot_starts, tied_objective
        )
    return boot, int((~ok).sum())


def fit_overtraining_arrays(
    N, D, loss, *, delta: float = DELTA, grid: dict | None = None, n_boot: int = 1000,
    boot_starts: int = 25, budgets=None, ci: float = 0.95, seed: int = 0,
    columns: dict | None = None, where: str = "overtraining",
) -> OvertrainingFit:  # fmt: skip
    """The law on arrays of N, D and loss (finite, > 0); see the module docstring."""
    N, D, loss = (np.asarray(v, float) for v in (N, D, loss))
    if not identified(N, D):
        raise ConfigError(
            where,
            f"{len(np.unique(N))} model size(s), {len(np.unique(D / N))} token multiplier(s) "
            f"in {len(N)} runs do not identify the law",
            "give >= 5 distinct runs with >= 2 model sizes and >= 2 values of M = D / N",
        )
    data = (np.log(N), np.log(D), np.log(loss), delta)
    starts = start_grid(grid, PARAMS)
    found = search(starts, data, tied_objective)
    boot, n_left_out = (
        _bootstrap(found.theta, starts, data, N, D, n_boot, boot_starts, seed)
        if n_boot
        else (np.empty((0, N_PARAMS)), 0)
    )
    failed = int((~np.all(np.isfinite(boot), axis=1)).sum()) - n_left_out
    if budgets is None:  # a decade beyond the data at either end, one point per decade
        c = 6 * N * D
        budgets = 10.0 ** np.arange(np.floor(np.log10(c.min())), np.ceil(np.log10(c.max())) + 2)
    theta = untie(found.theta)
    law = ChinchillaFit(
        theta=theta, objective=found.objective, n_points=len(loss), delta=delta,
        n_starts=len(starts), frac_at_optimum=found.frac_at_optimum, ci=ci, n_boot=n_boot,
        boot_starts=boot_starts, seed=seed, columns=columns or {},
        budgets=np.asarray(budgets, float),
        diagnostics=diagnostics(
            theta, found.objective, untie(found.polished), found.f_polished, loss.min(),
            failed, n_boot,
        ),
        boot=untie(boot),
    )  # fmt: skip
    if n_boot and n_left_out > 0.5 * n_boot:
        law.diagnostics["warnings"].append(
            f"{n_left_out}/{n_boot} bootstrap resamples do not identify the law (too few "
            "distinct runs, sizes or multipliers) and were left out: the intervals are unreliable"
        )
    return OvertrainingFit(law, n_left_out)


def fit_overtraining(
    df: pd.DataFrame, *, n_col: str, d_col: str, loss_col: str = "loss", **kw
) -> OvertrainingFit:
    """The law on the rows of a table: N from n_col, D from d_col (C = 6 N D, M = D / N)."""
    cols = [n_col, d_col, loss_col]
    where = kw.get("where", "overtraining")
    require_columns(df, cols, where)
    require_positive_finite(df, cols, where)
    columns = {"n": n_col, "d": d_col, "loss": loss_col}
    N, D, loss = (df[c].to_numpy(float) for c in cols)
    return fit_overtraining_arrays(N, D, loss, columns=columns, **kw)
