"""The parametric bootstrap of emergence forecasts (the method is in analysis.forecast's
docstring), on groups of curves with the same numbers of points fitted (P) and predicted (H):
the replicates of every curve in a group are drawn and fitted as one array program
(analysis.forecast_fit), so that a curve costs milliseconds at 1,000 replicates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2 as chi2_dist

from analysis.emergence_stats import Settings, n_above_binomial
from analysis.forecast_fit import draw_rates, fit_line, fit_sigmoid, line, shrunk_sd, sigmoid

MIN_ABOVE_CEILING = 4  # points above baseline from which the sigmoid's ceiling is fitted
PRIOR_DOF = 4  # the scatter about a fit is shrunk towards sampling noise by this many points
ROWS = 200_000  # curves x replicates fitted at once (bounds memory)


@dataclass
class Group:
    """C curves, P points fitted and H measurements predicted each: t (C, P), oriented scores
    s, examples n (rates) or stderr sd (other metrics), baselines b (C,), and the t_new (C, H)
    to predict at, with the examples (rates) or stderr (other metrics) `new` of those
    measurements. nll (C, P): the target's mean negative log-likelihood, NaN where unknown."""

    t: np.ndarray
    s: np.ndarray
    n: np.ndarray
    sd: np.ndarray
    b: np.ndarray
    t_new: np.ndarray
    new: np.ndarray
    nll: np.ndarray
    nll_sd: np.ndarray

    def take(self, c) -> Group:
        return Group(**{k: v[c] for k, v in self.__dict__.items()})


def _dispersion(s, fitted, sd, n_params) -> np.ndarray:
    """Per curve, how much more (or less) its points scatter about the fit than their sampling
    noise: the reduced chi^2, shrunk towards 1 by a prior worth PRIOR_DOF points (a few points
    pin it poorly; the scaled inverse-chi^2 prior of a normal variance)."""
    chi2 = np.square((s - fitted) / sd).sum(-1)
    return (chi2 + PRIOR_DOF) / (np.maximum(s.shape[-1] - n_params, 0) + PRIOR_DOF)


def _fit_sigmoids(x, S, sd, b, n_above, st: Settings, start):
    """Sigmoid parameters (R, 3) of rows S (R, P) at x (R, P): the ceiling u is fitted when
    the row has MIN_ABOVE_CEILING points above baseline and the data reject u = 1 (module
    docstring of analysis.forecast), else u = 1."""
    p = fit_sigmoid(x, S, sd, b, np.zeros(len(S), bool), start)
    maybe = n_above >= MIN_ABOVE_CEILING
    if maybe.any():
        rows = (x[maybe], S[maybe], sd[maybe], b[maybe])
        free = fit_sigmoid(
            *rows, np.ones(maybe.sum(), bool), None if start is None else start[maybe]
        )
        chi2 = [
            np.square((sigmoid(q, rows[0], rows[3]) - rows[1]) / rows[2]).sum(-1)
            for q in (p[maybe], free)
        ]
        phi = _dispersion(rows[1], sigmoid(free, rows[0], rows[3]), rows[2], 3)
        better = (chi2[0] - chi2[1]) / phi > chi2_dist.isf(2 * st.alpha, 1)
        p[np.flatnonzero(maybe)[better]] = free[better]
    return p


def _fit_rates(g: Group, S, x, x_new, st: Settings, start):
    """Fit every row of scores S (R, C, P) of the group's proportion curves with the form its
    own points call for: a sigmoid in x with >= min_above points above baseline (its ceiling:
    _fit_sigmoids), else the trend, a line in t. Returns the predictions at x_new / t_new
    (R, C, H), the fitted values (R, C, P), parameters per fit (R, C) and sigmoid flags (R, C).
    `start` (C, 3): sigmoid parameters to start from (None: a grid)."""
    n_above = n_above_binomial(g.t, S, g.n, g.b, st)
    sd = shrunk_sd(S, g.n)
    trend = fit_line(g.t, S, sd)
    pred, fitted = line(trend, g.t_new), line(trend, g.t)
    sig = n_above >= st.min_above
    n_params = np.full(sig.shape, 2)
    if sig.any():
        b = np.broadcast_to(g.b, sig.shape)[sig]
        xs = np.broadcast_to(x, S.shape)[sig]
        begin = None if start is None else np.broadcast_to(start, (*sig.shape, 3))[sig]
        p = _fit_sigmoids(xs, S[sig], sd[sig], b, n_above[sig], st, begin)
        pred[sig] = sigmoid(p, np.broadcast_to(x_new, pred.shape)[sig], b)
        fitted[sig] = sigmoid(p, xs, b)
        n_params[sig] += p[:, 2] < 1
    return np.clip(pred, 0.0, 1.0), fitted, n_params, sig


def _interval(measured, ci: float):
    return np.quantile(measured, [(1 - ci) / 2, (1 + ci) / 2], axis=0)


def forecast_rates(g: Group, st: Settings, rng: np.random.Generator):
    """Kinds (C,), predicted means, lower and upper bounds (C, H) of proportion curves."""
    B, link = st.forecast_boot, np.isfinite(g.nll).all(-1)
    y, y_sd = np.log(g.nll), g.nll_sd / g.nll  # ln NLL: a line in t, where known
    y_lines = fit_line(g.t, y, y_sd)
    x = np.where(link[:, None], -y, g.t)  # the sigmoid's abscissa: -ln NLL, else t
    x_new = np.where(link[:, None], -line(y_lines, g.t_new), g.t_new)
    sd = shrunk_sd(g.s, g.n)
    # The observed sigmoid of every curve: the fit where the test admits one, and where it
    # does not, the start of the replicates that it admits.
    n_above = n_above_binomial(g.t, g.s, g.n, g.b, st)
    start = _fit_sigmoids(x, g.s, sd, g.b, n_above, st, None)
    pred, fitted, n_params, sig = (v[0] for v in _fit_rates(g, g.s[None], x, x_new, st, start))
    phi = _dispersion(g.s, fitted, sd, n_params)[:, None]
    S = draw_rates(rng, np.broadcast_to(fitted, (B, *g.s.shape)), g.n, phi)
    if link.any():
        y_fit = line(y_lines, g.t)
        y_phi = _dispersion(y, y_fit, y_sd, 2)[:, None]
        Y = y_fit + np.sqrt(y_phi) * y_sd * rng.standard_normal(S.shape)
        x_new = np.where(link[:, None], -line(fit_line(g.t, Y, y_sd), g.t_new), g.t_new)
    boot = _fit_rates(g, S, x, x_new, st, start)[0]
    # The measurement a model would report, spread over its 1/n bin (a continuity correction:
    # quantiles of lattice draws would sit on the lattice, and ties count as covered).
    n_new = np.rint(g.new)
    measured = draw_rates(rng, boot, n_new, phi) + (rng.random(boot.shape) - 0.5) / n_new
    lo, hi = _interval(measured, st.ci)
    kind = np.where(sig, np.where(link, "logprob", "sigmoid"), "trend")
    return kind, pred, np.clip(lo, 0, 1), np.clip(hi, 0, 1)


def forecast_linear(g: Group, st: Settings, rng: np.random.Generator):
    """Kinds (C,), predicted means, lower and upper bounds (C, H) of other metrics' curves."""
    lines = fit_line(g.t, g.s, g.sd)
    fitted = line(lines, g.t)
    scale = np.sqrt(_dispersion(g.s, fitted, g.sd, 2))[:, None]
    z = rng.standard_normal((st.forecast_boot, *g.s.shape))
    boot = line(fit_line(g.t, fitted + scale * g.sd * z, g.sd), g.t_new)
    lo, hi = _interval(boot + scale * g.new * rng.standard_normal(boot.shape), st.ci)
    return np.full(len(g.t), "linear"), line(lines, g.t_new), lo, hi


def forecast_group(g: Group, rate: bool, st: Settings, seed) -> tuple:
    """forecast_rates or forecast_linear on chunks of at most ROWS curves x replicates, each
    with its own generator from `seed`: the same group and seed give the same numbers."""
    step = max(1, ROWS // max(st.forecast_boot, 1))
    parts = [
        (forecast_rates if rate else forecast_linear)(
            g.take(slice(c0, c0 + step)), st, np.random.default_rng([*seed, c0])
        )
        for c0 in range(0, len(g.t), step)
    ]
    return tuple(np.concatenate(v) for v in zip(*parts, strict=True))
