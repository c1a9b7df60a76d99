"""Forecast task scores beyond the largest model, and backtest the forecasts.

Wei et al. (2022) leave predicting emergence before it happens as an open problem; Schaeffer
et al. (2023) argue that a sharp exact-match curve is often a smooth underlying improvement
seen through a thresholding metric. The forecast here follows that view in its simplest form:

- proportion metrics (accuracy, exact match; curves tested with binomials): a sigmoid in
  t = log10 x between the random baseline b and a ceiling u,
      s(t) = b + (u - b) / (1 + exp(-(t - m) / w)),
  with u = 1 unless `min_above_ceiling` (4) points are above baseline: a third parameter
  needs the curve's upper half in view; then u is fitted in [max score, 1] (tasks such as
  LAMBADA saturate well below 1).
  fitted by weighted least squares (weights n / p(1-p), p shrunk to (k + 1/2) / (n + 1) so that
  a score of 0 keeps a finite weight). The small models' slight departures from chance pin the
  lower tail, which is what lets the fit place the midpoint m beyond the data.
- other metrics (log-likelihood, edit distance, Brier): a straight line in t, weighted by
  1 / stderr^2 (a power law in x for log-scale metrics).

The interval is a prediction interval for the score a model at t would *measure*: the fit's
uncertainty (delta method: covariance from the Jacobian, inflated by the reduced chi^2 when the
points scatter more than their sampling noise) plus that measurement's own sampling noise
(binomial at the predicted score on the task's number of examples; for other metrics the stderr
of the largest model's point). An interval of the fitted mean alone is too narrow for what a
held-out model scores: on the Pythia/OPT/BLOOM backtest it covered 84% of the held-out scores at
a nominal 90%, against 95% with the measurement's noise (bench/RESULTS.md, tests/test_forecast.py).

A proportion curve with fewer than `min_above` (2) points significantly above baseline (the
classifier's Holm-corrected test, rerun on the points fitted) gives a sigmoid's midpoint no
anchor: any m beyond the data fits chance-level points equally well. Such a curve is forecast
by its trend, a straight line in t through its points (kind "trend"): the forecast that the
curve goes on as it has, which cannot foresee a jump its points give no hint of. A forecast is
"not possible" only with fewer than `min_points` models, or on a loss axis.

Backtest: per curve, hold out the K largest models, fit on the rest, predict the held-out
scores. Emergence counts as *observed* at a point when it is above baseline by the
classifier's test and by at least `margin` of the way from baseline to ceiling (default 10%:
0.325 for a 4-choice task, a rise Wei et al. would call clearly above chance). The outcome
per curve: "already observed" (a training point qualifies), "hit" (forecast and observed),
"false alarm", "miss", "correct negative", or "not possible" with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.special import expit, ndtri

from analysis.emergence import KEYS, Classification, classify, x_transform

MIN_ABOVE_CEILING = 4  # points above baseline from which the sigmoid's ceiling is fitted
MARGIN = 0.1  # share of (ceiling - baseline) a score must clear to count as clearly emerged
EXTRAPOLATE = 1.0  # forecast column: predict this many decades of x beyond the largest model


@dataclass
class Fit:
    """A fitted score curve in t (see module docstring); `reason` is set when there is none."""

    kind: str  # "sigmoid" | "linear" | "trend" (linear, on a proportion) | "none"
    params: np.ndarray
    cov: np.ndarray
    baseline: float
    reason: str = ""
    bounds: tuple[float, float] = (-np.inf, np.inf)  # of the oriented score: (0, 1) for rates

    def predict(self, t, ci: float = 0.9, noise_sd=0.0):
        """(mean, lo, hi) at t, in the oriented score (higher is better); the interval adds a
        measurement's own sampling noise `noise_sd` (scalar or one per t) to the fit's."""
        t = np.atleast_1d(np.asarray(t, float))
        if self.kind == "none":
            nan = np.full(t.shape, np.nan)
            return nan, nan, nan
        f, jac = _model(self.kind, self.params, t, self.baseline)
        se = np.sqrt(np.einsum("ip,pq,iq->i", jac, self.cov, jac) + np.square(noise_sd))
        z = ndtri(0.5 + ci / 2)
        return tuple(np.clip(v, *self.bounds) for v in (f, f - z * se, f + z * se))


def _model(kind: str, p: np.ndarray, t: np.ndarray, b: float):
    """Model values and Jacobian d f / d params at t."""
    if kind in ("linear", "trend"):
        return p[0] + p[1] * t, np.stack([np.ones_like(t), t], -1)
    m, w, u = p[0], np.exp(p[1]), (p[2] if len(p) == 3 else 1.0)
    g = expit((t - m) / w)
    dg = (u - b) * g * (1 - g)  # d f / d((t - m) / w)
    jac = [-dg / w, -dg * (t - m) / w] + ([g] if len(p) == 3 else [])
    return b + (u - b) * g, np.stack(jac, -1)


def fit_curve(t, s, sd, baseline: float, kind: str, n_above: int, min_above: int = 2) -> Fit:
    """Fit one curve's points (oriented scores s with standard deviations sd) in t."""
    t, s, sd = (np.asarray(a, float) for a in (t, s, sd))
    if kind == "sigmoid" and n_above < min_above:
        return Fit(
            "none",
            np.array([]),
            np.zeros((0, 0)),
            baseline,
            f"not possible: {n_above} point(s) above baseline, needs {min_above}",
        )
    if kind in ("linear", "trend"):
        X = np.stack([np.ones_like(t), t], -1) / sd[:, None]
        params, *_ = np.linalg.lstsq(X, s / sd, rcond=None)
        resid = s / sd - X @ params
        cov = np.linalg.inv(X.T @ X)
    else:
        lo, hi = [t.min() - 5, np.log(0.02)], [t.max() + 10, np.log(10.0)]
        if n_above >= MIN_ABOVE_CEILING:
            top = min(max(s.max(), baseline + 1e-3), 1 - 1e-6)
            lo, hi = lo + [top], hi + [1.0]
        # The loss is not convex in (m, w): start from the best point of a coarse grid.
        m_grid, w_grid = np.meshgrid(np.linspace(lo[0], hi[0], 42)[1:-1], np.log([0.1, 0.3, 1, 3]))
        grid = np.stack([m_grid.ravel(), w_grid.ravel()], -1)
        g = expit((t[None] - grid[:, :1]) / np.exp(grid[:, 1:]))
        cost = ((baseline + (1 - baseline) * g - s) / sd) ** 2
        x0 = [*grid[np.argmin(cost.sum(-1))], (lo[-1] + 1) / 2][: len(lo)]
        best = least_squares(
            lambda p: (_model("sigmoid", p, t, baseline)[0] - s) / sd,
            x0=x0,
            jac=lambda p: _model("sigmoid", p, t, baseline)[1] / sd[:, None],
            bounds=(lo, hi),
        )
        params, resid = best.x, best.fun
        J = best.jac
        cov = np.linalg.pinv(J.T @ J)
    dof = max(len(t) - len(params), 1)
    cov = cov * max(1.0, float(resid @ resid) / dof)
    return Fit(kind, params, cov, baseline)


def _points(c: Classification) -> pd.DataFrame:
    """Points joined with their curve's baseline, direction and test, plus t, oriented s, sd."""
    _, to_t, _ = x_transform(c.x, c.x_scale)
    meta = c.curves[["random_baseline", "higher_is_better", "test"]]
    p = c.points.join(meta, on="curve")
    hib = p["higher_is_better"] > 0
    binomial = p["test"] == "binomial"
    n = p["n_examples"].where(binomial, 1.0)
    shrunk = (p["value"] * n + 0.5) / (n + 1)
    return p.assign(
        t=to_t(p["x"].to_numpy(float)),
        s=np.where(hib, p["value"], -p["value"]),
        b=np.where(hib, p["random_baseline"], -p["random_baseline"]),
        sd=np.where(binomial, np.sqrt(shrunk * (1 - shrunk) / n), p["stderr"]),
    )


def _fit(g: pd.DataFrame, n_above: int, c: Classification) -> Fit:
    """Sigmoid, trend or linear fit of one curve's points (module docstring)."""
    if c.x_scale != "log":
        return Fit("none", np.array([]), np.zeros((0, 0)), 0.0, "not possible on a loss axis")
    kind, bounds = "linear", (-np.inf, np.inf)
    if _is_rate(g):
        kind = "sigmoid" if n_above >= c.settings.min_above else "trend"
        bounds = (0.0, 1.0) if g["higher_is_better"].iloc[0] > 0 else (-1.0, 0.0)
    f = fit_curve(g["t"], g["s"], g["sd"], g["b"].iloc[0], kind, n_above, c.settings.min_above)
    return replace(f, bounds=bounds)


def _is_rate(g: pd.DataFrame) -> bool:
    return g["test"].iloc[0] == "binomial"


def _noise_sd(g: pd.DataFrame, predicted: np.ndarray) -> np.ndarray:
    """Sampling sd of a measurement at the predicted (oriented) score on the examples of the
    points `g`: binomial for rates, the points' own stderr otherwise."""
    if not _is_rate(g):
        return g["sd"].to_numpy(float)
    n = g["n_examples"].to_numpy(float)
    p = np.clip(np.abs(np.nan_to_num(predicted)), 0.5 / n, 1 - 0.5 / n)
    return np.sqrt(p * (1 - p) / n)


def _orient(g: pd.DataFrame, v: np.ndarray) -> np.ndarray:
    """Back from the oriented score to the metric's own direction."""
    return v if g["higher_is_better"].iloc[0] > 0 else -v


def forecast(c: Classification, decades: float = EXTRAPOLATE) -> pd.DataFrame:
    """Per curve: the score predicted `decades` beyond the largest model's x, fitted on all
    points (columns curve, forecast_x, forecast, forecast_lo, forecast_hi, forecast_note)."""
    rows = []
    pts = _points(c)
    for cid, g in pts.groupby("curve", sort=True):
        f = _fit(g, int(c.curves.at[cid, "n_above"]), c)
        largest = g.loc[[g["t"].idxmax()]]
        t_new = largest["t"].iloc[0] + decades
        noise = _noise_sd(largest, f.predict(t_new)[0])
        mean, lo, hi = (_orient(g, v)[0] for v in f.predict(t_new, c.settings.ci, noise))
        lo, hi = min(lo, hi), max(lo, hi)
        rows.append(
            {
                "curve": cid,
                "forecast_x": 10.0**t_new if c.x_scale == "log" else np.nan,
                "forecast": mean,
                "forecast_lo": lo,
                "forecast_hi": hi,
                "forecast_note": f.reason or f.kind,
            }
        )
    cols = ["curve", "forecast_x", "forecast", "forecast_lo", "forecast_hi", "forecast_note"]
    return pd.DataFrame(rows, columns=cols).set_index("curve")


def backtest(c: Classification, holdout_largest: int = 2, margin: float = MARGIN):
    """Hold out each curve's `holdout_largest` largest models, forecast them from the rest.

    Returns (points, curves): one row per held-out point (actual, predicted, its interval,
    error = predicted - actual, `inside` the interval) and one row per curve (held-out models,
    fit, mean absolute error, emergence outcome; see module docstring)."""
    pts = _points(c)
    held = pts.groupby("curve")["t"].rank(ascending=False, method="first") <= holdout_largest
    # Above-baseline flags of the training points alone, by the same Holm-corrected test.
    train = classify(
        pts[~held].drop(columns="curve"), x="x", x_scale=c.x_scale, settings=c.settings
    )
    n_above = train.curves.set_index(KEYS)["n_above"]
    point_rows, curve_rows = [], []
    for cid, g in pts.groupby("curve", sort=True):
        info = c.curves.loc[cid]
        key = {k: info[k] for k in KEYS}
        tr, ho = g[~held[g.index]], g[held[g.index]]
        if len(tr) < c.settings.min_points:
            f = Fit(
                "none",
                np.array([]),
                np.zeros((0, 0)),
                0.0,
                f"not possible: {len(tr)} training point(s) < min_points",
            )
        else:
            f = _fit(tr, int(n_above.get(tuple(key.values()), 0)), c)
        noise = _noise_sd(ho, f.predict(ho["t"])[0])
        mean, lo, hi = f.predict(ho["t"], c.settings.ci, noise)
        pm, plo, phi = (_orient(g, v) for v in (mean, lo, hi))
        plo, phi = np.fmin(plo, phi), np.fmax(plo, phi)
        actual = ho["value"].to_numpy()
        point_rows += [
            {
                **key,
                "curve": cid,
                "model": m,
                "x": x,
                "actual": a,
                "predicted": p_,
                "lo": l_,
                "hi": h_,
                "error": p_ - a,
                "inside": bool(l_ <= a <= h_),
            }
            for m, x, a, p_, l_, h_ in zip(ho["model"], ho["x"], actual, pm, plo, phi, strict=True)
        ]
        b = g["b"].iloc[0]
        level = b + margin * (1.0 - b)  # "clearly above": only defined with a ceiling of 1
        observed_train = bool(((tr["s"] >= level) & tr["above"]).any())
        observed = bool(((ho["s"] >= level) & ho["above"]).any())
        if not _is_rate(g):
            outcome = "no ceiling: outcome undefined"
        elif observed_train:
            outcome = "already observed"
        elif f.kind == "none":
            outcome = f.reason + (" (emerged in held-out models)" if observed else "")
        else:
            outcome = {
                (True, True): "hit",
                (True, False): "false alarm",
                (False, True): "miss",
                (False, False): "correct negative",
            }[(bool((mean >= level).any()), observed)]
        curve_rows.append(
            {
                **key,
                "curve": cid,
                "held_out": ", ".join(ho["model"]),
                "fit": f.kind,
                "mean_abs_error": float(np.mean(np.abs(pm - actual)))
                if f.kind != "none"
                else np.nan,
                "outcome": outcome,
            }
        )
    return pd.DataFrame(point_rows), pd.DataFrame(curve_rows)
