"""The one ordinary-least-squares line of every fit: log N_opt on log C (approaches 1 and 2),
log L on log x (Kaplan's pure power laws), batched over bootstrap resamples.

Closed form, weighted: a weight is a bootstrap count or a 0/1 mask (a resample whose minimum
at some budget is missing gives that budget weight 0). A line through fewer than 2 distinct x
(with weight) has no slope: NaN, which the callers count as a failed resample.
"""

from __future__ import annotations

import numpy as np


def ols(x, y, w=None) -> tuple[np.ndarray, np.ndarray]:
    """(slope, intercept) of y = intercept + slope * x along the last axis, batched over the
    leading axes of x, y and w (broadcast together)."""
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    w = np.ones(y.shape) if w is None else np.broadcast_to(np.asarray(w, float), y.shape)
    with np.errstate(all="ignore"):
        sw = w.sum(-1)
        x_mean = (w * x).sum(-1) / sw
        y_mean = (w * y).sum(-1) / sw
        dx = x - x_mean[..., None]
        sxx = (w * dx**2).sum(-1)
        slope = np.where(sxx > 0, (w * dx * (y - y_mean[..., None])).sum(-1) / sxx, np.nan)
    return slope, y_mean - slope * x_mean


def r_squared(x, y, slope: float, intercept: float) -> float:
    """R^2 of the line on (x, y); NaN when y is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ss = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum((y - intercept - slope * x) ** 2) / ss) if ss > 0 else float("nan")
