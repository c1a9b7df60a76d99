"""N_opt = n_coef * C^a and D_opt = d_coef * C^b: what approaches 1 (envelope) and 2 (IsoFLOP)
both estimate, by the shared OLS of log N_opt and log D_opt on log C, with bootstrap intervals.

The lines are fitted in x = log C - log c_ref, c_ref the geometric mean of the budgets used, so
that intercept and slope are nearly uncorrelated; `boot` holds per resample (a, log N_opt at
c_ref, b, log D_opt at c_ref), from which intervals of the coefficients and pointwise intervals
of the allocation follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.fits.base import Estimate, estimates_of
from analysis.fits.bootstrap import percentile_band, percentile_interval
from analysis.fits.ols import ols, r_squared
from analysis.inputs import ConfigError

ESTIMATED = ("a", "b", "n_coef", "d_coef")


def coefficient(slope, icpt, c_ref: float):
    """G in G * C^slope from a line log y = icpt + slope * (log C - log c_ref)."""
    return np.exp(icpt - slope * np.log(c_ref))


def allocation_fields(x, log_n, log_d, boot: np.ndarray, c_ref: float, ci: float) -> dict:
    """The AllocationLaw fields from the used points (x = log C - log c_ref, log N_opt, log
    D_opt) and the resampled lines `boot` (n_ok, 4)."""
    a, icpt_n = ols(x, log_n)
    b, icpt_d = ols(x, log_d)
    coef = lambda slope, icpt: coefficient(slope, icpt, c_ref)
    return {
        "a": float(a),
        "a_ci": percentile_interval(boot[:, 0], ci),
        "n_coef": float(coef(a, icpt_n)),
        "n_coef_ci": percentile_interval(coef(boot[:, 0], boot[:, 1]), ci),
        "b": float(b),
        "b_ci": percentile_interval(boot[:, 2], ci),
        "d_coef": float(coef(b, icpt_d)),
        "d_coef_ci": percentile_interval(coef(boot[:, 2], boot[:, 3]), ci),
        "r2_n": r_squared(x, log_n, a, icpt_n),
        "r2_d": r_squared(x, log_d, b, icpt_d),
    }


@dataclass
class AllocationLaw:
    """N_opt = n_coef * C^a and D_opt = d_coef * C^b with intervals. Subclasses carry `ci`,
    `boot` and `c_ref`."""

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

    def predict(self, C) -> np.ndarray:
        return self.n_opt(C)

    def band(self, C) -> tuple[np.ndarray, np.ndarray]:
        return self._band(C, 0)

    def _band(self, C, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Band of N_opt (i = 0) or D_opt (i = 2) at C from the resampled lines."""
        logc = np.log(np.atleast_1d(np.asarray(C, float)) / self.c_ref)
        log_v = self.boot[:, i + 1, None] + self.boot[:, i, None] * logc[None, :]
        lo, hi = percentile_band(log_v, self.ci)
        return np.exp(lo), np.exp(hi)

    def estimates(self) -> dict[str, Estimate]:
        return estimates_of(self, ESTIMATED)

    def allocation(self, C, label: str | None = None) -> pd.DataFrame:
        """N_opt(C), D_opt(C) with pointwise bootstrap percentile intervals: columns C, n_opt,
        n_lo, n_hi, d_opt, d_lo, d_hi (the layout plot_allocation takes), and `approach` first
        when `label` is given."""
        return allocation_table(self, C, label)


def allocation_table(fit: AllocationLaw, C, label: str | None = None) -> pd.DataFrame:
    """See AllocationLaw.allocation."""
    C = np.atleast_1d(np.asarray(C, float))
    if not (np.all(np.isfinite(C)) and np.all(C > 0)):
        raise ConfigError("budgets", "compute budgets must be finite and > 0", "pass C > 0")
    n_lo, n_hi = fit._band(C, 0)
    d_lo, d_hi = fit._band(C, 2)
    df = pd.DataFrame(
        {"C": C, "n_opt": fit.n_opt(C), "n_lo": n_lo, "n_hi": n_hi,
         "d_opt": fit.d_opt(C), "d_lo": d_lo, "d_hi": d_hi}
    )  # fmt: skip
    if label is not None:
        df.insert(0, "approach", label)
    return df
