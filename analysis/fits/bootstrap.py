"""The one bootstrap of every fit: resampling with replacement and percentile intervals.

Every interval the fits report is a central `ci` percentile interval (Efron & Tibshirani 1993,
ch. 13) over `n_boot` nonparametric resamples drawn from `numpy.random.default_rng(seed)`, so a
fit is deterministic for a given seed. What a fit resamples depends on where its independent
noise is: points (rows) for the loss laws, whole runs for the envelope of training curves
(`resample_groups`), residuals within a budget for IsoFLOP parabolas (`resample_indices` over
the residual pool). Resamples whose refit fails are dropped and counted by the caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_N_BOOT = 1000  # enough for stable 2.5 / 97.5 percentiles
DEFAULT_CI = 0.95


@dataclass(frozen=True)
class Bootstrap:
    """How many resamples, which interval level, which seed: the settings every fit shares."""

    n_boot: int = DEFAULT_N_BOOT
    ci: float = DEFAULT_CI
    seed: int = 0

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def interval(self, values) -> tuple[float, float]:
        return percentile_interval(values, self.ci)

    def to_dict(self) -> dict:
        return asdict(self)


def resample_indices(rng: np.random.Generator, n: int, n_boot: int, size: int | None = None):
    """(n_boot, size) draws with replacement from range(n) (size defaults to n): one resample
    per row, as indices into the points (or residuals) being resampled."""
    return rng.integers(0, n, size=(n_boot, n if size is None else size))


def resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) float weights: how often each point appears in each resample (a point
    resample written as integer weights, for fits that minimise a weighted objective)."""
    idx = resample_indices(rng, n, n_boot)
    return np.stack([np.bincount(i, minlength=n) for i in idx]).astype(float).reshape(n_boot, n)


def resample_groups(rng: np.random.Generator, n_groups: int, n_boot: int) -> list[np.ndarray]:
    """Per resample, the distinct groups (e.g. runs) drawn with replacement: a cluster
    bootstrap, for data whose rows within a group are not independent (a training curve)."""
    return [np.unique(i) for i in resample_indices(rng, n_groups, n_boot)]


def percentile_interval(values, ci: float) -> tuple[float, float]:
    """The central `ci` percentile interval of the finite values; NaNs if fewer than 2."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (np.nan, np.nan)
    q = 50 * (1 - ci)
    return tuple(float(b) for b in np.percentile(v, [q, 100 - q]))


def standard_error(values) -> float:
    """Bootstrap standard error: the sd (ddof 1) of the finite values; NaN if fewer than 2;
    inf when resamples run off to values whose squares overflow (an unidentified A or B of a
    law fitted to few sizes), which is what such an estimate's error is."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    with np.errstate(over="ignore"):
        return float(np.std(v, ddof=1)) if len(v) > 1 else np.nan


def percentile_band(curves, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise central `ci` percentile band of resampled curves (n_resamples, ...) along
    axis 0, ignoring NaN; NaN everywhere with fewer than 2 resamples."""
    curves = np.asarray(curves, float)
    if len(curves) < 2:
        nan = np.full(curves.shape[1:], np.nan)
        return nan, nan.copy()
    q = 50 * (1 - ci)
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(curves, [q, 100 - q], axis=0)
    return lo, hi
