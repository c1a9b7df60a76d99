"""The statistics of curve classification (analysis.emergence): whether each point is above the
random baseline, the trend, the class, the emergence threshold, the bootstrap confidence, and
BIG-bench's linearity and breakthroughness, on arrays of curves with the same number of points.
Separate from analysis.emergence, which turns tidy score tables into such arrays and back.

A curve's points are sorted by t (log10 of the scale, or minus a loss), and its scores are
oriented so that "better" is always "higher" below.

Above baseline. Each point gets a one-sided p-value for H0: score <= p0, and the p-values of
one curve are Holm-corrected (Holm 1979) at level `alpha`: the chance that a curve of
chance-level models gets any point called "above" is <= alpha whatever the number of models.
- Proportion metrics (accuracy, exact match) with a known number of examples n: the exact
  binomial test P(X >= k | n, p0) with k = round(value * n), p0 = max(random_baseline,
  min_rate). The floor `min_rate` (1%) exists because exact-match tasks have a baseline of 0,
  against which one lucky hit would be "significant"; with the floor a model must solve more
  than 1% of the examples. It leaves multiple-choice baselines (>= 1/#choices) unchanged.
- Other metrics (log-likelihood, edit distance, Brier score) use the reported stderr:
  z = (value - baseline) / stderr, p = 1 - Phi(z).
`min_above` (2): a curve needs at least two points above baseline to be anything but flat.
Holm controls chance, but not a single checkpoint's quirk (a contaminated or badly formatted
run); published families have 5-10 sizes, so two points is the least that shows a trend.

Trend. The slope of score on t (t = log10 x, or -loss) by weighted least squares, tested with
known variances: weights n_i and variance p(1-p) at the pooled rate for proportions (the
Cochran-Armitage test for trend), weights 1/stderr^2 otherwise. trend_z = slope / se.

Classes, after Wei et al. 2022 ("Emergent abilities of large language models", sec. 2) and
Wei et al. 2023 ("Inverse scaling can become U-shaped"), first match wins:
- U-shaped: some interior point is below both the first and the last point, each by a
  one-sided two-sample z-test at alpha / (P - 2) (Bonferroni over the P - 2 candidate
  minima), and the curve has >= min_above points above baseline.
- inverse-scaling: trend_z < -z(alpha), and >= min_above points above baseline (McKenzie et
  al. 2023). A curve that only drifts within chance level is flat, as Wei defines it.
- flat: fewer than min_above points above baseline ("no model above random").
- emergent: the smallest model is at baseline and the largest `min_above` or more are above.
- smooth: the smallest model is already above baseline and trend_z > z(alpha).
- other: none of these (saturated or non-increasing above chance, inverted U, erratic).

Threshold (emergent curves): the last run of above-baseline points starts at index i, so the
score first rises significantly above baseline between x[i-1] and x[i]; threshold_x is their
midpoint in t. The reported interval is the union of that bracket and the central `ci`
(90%) range of the brackets of the bootstrap replicates that are also emergent, so it widens
when sampling noise could move the threshold by a model or more.

Confidence: the share of `n_boot` parametric bootstrap replicates that get the same class;
a replicate redraws every point from Binomial(n, value) (proportions) or Normal(value, stderr)
(other metrics). It measures how stable the label is under example-sampling noise; it is not a
posterior probability. Deterministic given the table and the seed.

Linearity and breakthroughness (Srivastava et al. 2022, BIG-bench, appendix "Linearity and
breakthroughness"), with y the scores in increasing scale: I = sign(argmax y - argmin y) *
(max y - min y); linearity L = I / RMS(y[i+1] - y[i]); breakthroughness B = I /
sqrt(median((y[i+1] - y[i])^2)). Both are invariant to BIG-bench's normalisation
100 (y - low) / (high - low), so they are computed on the raw (oriented) scores. A steady rise
over P points gives L ~ P - 1; a single jump gives a large B.

Speed: curves with the same number of points are classified together as arrays, and exact
binomial p-values are computed only for points between the two critical counts (alpha and
alpha/P) where Holm's decision can depend on the exact value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.special import betainc, ndtr, ndtri
from scipy.stats import binom

from scaling.config import ConfigError

CLASSES = ("flat", "smooth", "emergent", "inverse-scaling", "U-shaped", "other")
CHUNK = 4_000_000  # bootstrap elements (replicates x points) per batch, bounds memory
NORMAL_OK = 9.0  # n p (1 - p) from which bootstrap binomial draws use the normal approximation


@dataclass(frozen=True)
class Settings:
    """Every threshold of the method (see module docstring for why these defaults)."""

    alpha: float = 0.05  # family-wise error per curve (Holm) and level of each trend test
    min_rate: float = 0.01  # floor on the chance level of proportion metrics
    min_above: int = 2  # points above baseline needed for any class but flat
    min_points: int = 3  # models needed to classify a curve
    n_boot: int = 200  # bootstrap replicates for confidence and threshold interval
    ci: float = 0.9  # coverage of the threshold's bootstrap interval and of forecasts
    forecast_boot: int = 1000  # parametric bootstrap replicates of a forecast (analysis.forecast)
    seed: int = 0

    def __post_init__(self):
        if self.forecast_boot < 20:
            raise ConfigError(
                "forecast_boot",
                f"{self.forecast_boot} replicates are too few to place an interval's quantiles",
                "give 20 or more (1000 by default)",
            )


def _holm_reject(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down decisions at level alpha along the last axis (Holm 1979): sort the
    p-values, reject while p_(j) <= alpha / (m - j), i.e. every p <= the last one rejected."""
    m = p.shape[-1]
    ordered = np.sort(p, axis=-1)
    n_reject = np.cumprod(ordered <= alpha / (m - np.arange(m)), axis=-1).sum(-1)
    last = np.take_along_axis(ordered, np.maximum(n_reject - 1, 0)[..., None], -1)
    return (p <= last) & (n_reject[..., None] > 0)


@dataclass
class _Batch:
    """C curves of P points sorted by t, plus what the tests precompute from them; every field
    has the curves on axis 0, so `take` slices a batch into chunks."""

    t: np.ndarray  # (C, P)
    s: np.ndarray  # (C, P) oriented scores
    sd: np.ndarray  # (C, P) stderr (1 on binomial curves)
    n: np.ndarray  # (C, P) examples (1 on stderr curves)
    binom: np.ndarray  # (C,) tested with exact binomials
    p0: np.ndarray  # (C,) tested level: baseline, floored at min_rate on binomial curves
    k: np.ndarray  # (C, P) successes, round(s * n)
    crit: np.ndarray  # (2, C, P) successes at which binomial p <= alpha and <= alpha / P
    slope_coef: np.ndarray  # (C, P) slope = sum(slope_coef * s)
    slope_var: np.ndarray  # (C,) variance of the slope, times p(1-p) on binomial curves

    def take(self, c) -> _Batch:
        return _Batch(
            **{f.name: getattr(self, f.name)[c] for f in fields(self) if f.name != "crit"},
            crit=self.crit[:, c],
        )


def _batch(t, s, sd, n, binomial, p0, alpha: float) -> _Batch:
    b = binomial[:, None]
    w = np.where(b, n, 1 / sd**2)
    tc = t - (w * t).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)
    stt = (w * tc**2).sum(-1)
    crit = np.full((2, *s.shape), np.inf)
    if binomial.any():
        nb, pb = n[binomial], np.broadcast_to(p0[binomial, None], n[binomial].shape)
        # smallest k with P(X >= k) <= level
        crit[:, binomial] = [binom.isf(lv, nb, pb) + 1 for lv in (alpha, alpha / s.shape[-1])]
    return _Batch(t, s, sd, n, binomial, p0, np.rint(s * n), crit, w * tc / stt[:, None], 1 / stt)


def _p_above(bt: _Batch, s, k):
    """One-sided p-values of 'above p0' (see module docstring), shape of s."""
    b = bt.binom[:, None]
    p = ndtr(-(s - bt.p0[:, None]) / bt.sd) if not bt.binom.all() else np.ones(s.shape)
    if b.any():
        # Below crit[0] Holm never rejects and from crit[1] on it always does; only in between
        # does the exact p-value matter.
        p = np.where(b & (k >= bt.crit[1]), 0.0, np.where(b, 1.0, p))
        mid = np.broadcast_to(b, k.shape) & (k >= bt.crit[0]) & (k < bt.crit[1])
        kk, nn, pp = (np.broadcast_to(a, k.shape)[mid] for a in (k, bt.n, bt.p0[:, None]))
        p[mid] = betainc(kk, nn - kk + 1, pp)
    return p


def n_above_binomial(t, s, n, baseline, st: Settings) -> np.ndarray:
    """Points above baseline (the Holm-corrected exact binomial test of the module docstring)
    in scores s (..., C, P) of C curves at t (C, P) on n (C, P) examples with baselines
    (C,): for callers that draw their own replicates of curves (analysis.forecast_boot)."""
    t, n, s = (np.asarray(a, float) for a in (t, n, s))
    p0 = np.maximum(baseline, st.min_rate)
    bt = _batch(t, t, np.ones_like(t), n, np.ones(len(t), bool), p0, st.alpha)
    return _holm_reject(_p_above(bt, s, np.rint(s * n)), st.alpha).sum(-1)


def _decide(bt: _Batch, s, k, st: Settings):
    """Class codes (index into CLASSES), above flags, trailing-run length and trend z for
    scores s (..., C, P) of the batch (k: successes, used by binomial curves)."""
    b = bt.binom[:, None]
    above = _holm_reject(_p_above(bt, s, k), st.alpha)
    n_above = above.sum(-1)
    run = np.cumprod(above[..., ::-1], axis=-1).sum(-1)
    P = s.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = k.sum(-1) / bt.n.sum(-1)
        var_scale = np.where(bt.binom, pooled * (1 - pooled), 1.0)
        trend_z = (bt.slope_coef * s).sum(-1) / np.sqrt(var_scale * bt.slope_var)
        # U: the lowest interior point m against the first and the last point (two-sample z;
        # pooled binomial variance on binomial curves). Bonferroni over the P - 2 candidates.
        m = 1 + np.argmin(s[..., 1 : P - 1], axis=-1, keepdims=True) if P > 2 else None

        def z_gap(i):
            at = lambda a: np.take_along_axis(np.broadcast_to(a, s.shape), m, -1)  # noqa: E731
            kp = (k[..., [i]] + at(k)) / (bt.n[..., [i]] + at(bt.n))
            se_b = np.sqrt(kp * (1 - kp) * (1 / bt.n[..., [i]] + 1 / at(bt.n)))
            se_n = np.sqrt(bt.sd[..., [i]] ** 2 + at(bt.sd) ** 2)
            return ((s[..., [i]] - at(s)) / np.where(b, se_b, se_n))[..., 0]

        z_u = np.minimum(z_gap(0), z_gap(P - 1)) if P > 2 else np.full(s.shape[:-1], -np.inf)
    u_shaped = np.nan_to_num(z_u, nan=-np.inf) > ndtri(1 - st.alpha / max(P - 2, 1))
    z_crit = ndtri(1 - st.alpha)
    present = n_above >= st.min_above
    code = np.select(
        [
            present & u_shaped,
            present & (trend_z < -z_crit),
            ~present,
            ~above[..., 0] & (run >= st.min_above),
            above[..., 0] & (trend_z > z_crit),
        ],
        [4, 3, 0, 2, 1],
        5,
    )
    return code, above, run, trend_z


def linearity_breakthroughness(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BIG-bench linearity and breakthroughness of curves y (..., P) in increasing scale."""
    improvement = np.sign(y.argmax(-1) - y.argmin(-1)) * (y.max(-1) - y.min(-1))
    d2 = np.diff(y, axis=-1) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        lin = improvement / np.sqrt(d2.mean(-1))
        brk = improvement / np.sqrt(np.median(d2, -1))
    return np.where(improvement == 0, 0.0, lin), np.where(improvement == 0, 0.0, brk)


def _start_index(run: np.ndarray, P: int) -> np.ndarray:
    """Index of the first point of the trailing run of above-baseline points (>= 1 when the
    first point is at baseline, as on emergent curves)."""
    return np.clip(P - run, 1, P - 1)


def _replicates(bt: _Batch, n_boot: int, rng: np.random.Generator):
    """Parametric bootstrap (scores, successes), each (n_boot, C, P). Binomial draws use the
    normal approximation (rounded, clipped to [0, n]) where n p (1 - p) >= NORMAL_OK, the
    textbook rule for it, and exact draws elsewhere (scores near 0 or 1): same distribution to
    within a count, about five times faster."""
    z = rng.standard_normal((n_boot, *bt.s.shape))
    b = bt.binom[:, None]
    p = np.clip(bt.k / bt.n, 0, 1)
    var = bt.n * p * (1 - p)
    k = np.where(b, np.clip(np.rint(bt.k + z * np.sqrt(var)), 0, bt.n), bt.k)
    exact = b & (var < NORMAL_OK)
    if exact.any():
        n = bt.n[exact].astype(np.int64)
        k[:, exact] = rng.binomial(n, p[exact], size=(n_boot, len(n)))
    return np.where(b, k / bt.n, bt.s + z * bt.sd), k


def _classify_batch(bt: _Batch, st: Settings, rng: np.random.Generator) -> dict:
    """Observed classes plus bootstrap confidence and threshold interval for one batch."""
    C, P = bt.s.shape
    code, above, run, trend_z = _decide(bt, bt.s, bt.k, st)
    emergent = code == 2
    i = _start_index(run, P)
    same = np.full(C, np.nan)
    # Bootstrap bracket [i_lo, i_hi] of point indices: central ci range of the replicates'
    # brackets [i-1, i], over the replicates that are emergent too (P marks the others).
    i_lo, i_hi = i - 1, i.copy()
    step = max(1, CHUNK // max(st.n_boot * P, 1))
    for c0 in range(0, C if st.n_boot else 0, step):
        c = slice(c0, c0 + step)
        sub = bt.take(c)
        code_b, _, run_b, _ = _decide(sub, *_replicates(sub, st.n_boot, rng), st)
        same[c] = (code_b == code[c]).mean(0)
        hit = code_b == 2
        n_hit = hit.sum(0)
        ib = np.sort(np.where(hit, _start_index(run_b, P), P), axis=0)
        rank = (
            np.maximum(n_hit - 1, 0)[None] * np.array([(1 - st.ci) / 2, (1 + st.ci) / 2])[:, None]
        )
        q_lo, q_hi = np.take_along_axis(ib, np.floor(rank).astype(int), 0)
        i_lo[c] = np.where(n_hit > 0, np.minimum(i_lo[c], q_lo - 1), i_lo[c])
        i_hi[c] = np.where(n_hit > 0, np.maximum(i_hi[c], q_hi), i_hi[c])
    t_at = lambda idx: np.take_along_axis(bt.t, idx[:, None], 1)[:, 0]  # noqa: E731
    nan = np.full(C, np.nan)
    lin, brk = linearity_breakthroughness(bt.s)
    return {
        "class": np.asarray(CLASSES)[code],
        "confidence": same,
        "n_above": above.sum(-1),
        "t_threshold": np.where(emergent, (t_at(i - 1) + t_at(i)) / 2, nan),
        "t_lo": np.where(emergent, t_at(i_lo), nan),
        "t_hi": np.where(emergent, t_at(i_hi), nan),
        "trend_z": trend_z,
        "linearity": lin,
        "breakthroughness": brk,
        "above": above,
    }


def classify_arrays(t, s, baseline, stderr, n_examples, binomial, st: Settings, rng) -> dict:
    """Classify C curves of P points: t, s (oriented scores), stderr and n_examples (C, P),
    sorted by t; baseline (oriented) and binomial (tested with exact binomials) (C,). Returns
    per curve the class, bootstrap confidence, threshold bracket in t, trend z, linearity and
    breakthroughness, and the (C, P) `above` flags."""
    bt = _batch(
        t=t,
        s=s,
        sd=np.where(binomial[:, None], 1.0, stderr),
        n=np.where(binomial[:, None], n_examples, 1.0),
        binomial=binomial,
        p0=np.where(binomial, np.maximum(baseline, st.min_rate), baseline),
        alpha=st.alpha,
    )
    return _classify_batch(bt, st, rng)
