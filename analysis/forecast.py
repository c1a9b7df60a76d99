"""Forecast task scores beyond the largest model, and backtest the forecasts.

Wei et al. (2022) leave predicting emergence before it happens as an open problem; Schaeffer
et al. (2023) argue that a sharp exact-match curve is often a smooth underlying improvement
seen through a thresholding metric. The forecast follows that view. In t = log10 x:

- "sigmoid" (proportion metrics: accuracy, exact match; curves tested with binomials):
      s(t) = b + (u - b) / (1 + exp(-(t - m) / w))
  between the random baseline b and a ceiling u, fitted by weighted least squares (weights
  n / p(1-p), p shrunk to (k + 1/2) / (n + 1)). u = 1 unless the curve has 4 points above
  baseline (a third parameter needs its upper half in view) and the data reject u = 1: a
  likelihood-ratio test of the chi^2 drop, scaled by the dispersion below, at the critical
  value of a parameter on its boundary (chi^2_1 at 2 alpha, Self & Liang 1987); then u is
  fitted in [max score, 1] (LAMBADA saturates well below 1). Fitting u whenever 4 points are
  above baseline let noise flatten rising curves: on synthetic curves with u = 1 those fits
  covered 81% of the held-out scores at a nominal 90% (88% with the test). The small models'
  slight departures from chance pin the lower tail, which lets the fit place m beyond the data.
- "trend": a proportion curve with fewer than `min_above` (2) points above baseline (the
  classifier's Holm-corrected test, rerun on the points fitted) gives a sigmoid's midpoint no
  anchor: any m beyond the data fits chance-level points equally well. It is forecast by a
  weighted straight line in t through its points: the curve goes on as it has, which cannot
  foresee a jump its points give no hint of.
- "logprob" (Schaeffer et al. 2023; `logprobs` given, `scaling emergence --forecast-logprob`):
  when the table also holds the mean log-probability of the target for the curve's models
  (metric `logprob` of this project's evaluation, or lm-eval's `ppl` = exp(mean negative
  log-likelihood of the target), LAMBADA's), its mean negative log-likelihood NLL is fitted as a
  power law in x (a line in t of ln NLL, weighted by its stderr) and mapped back to accuracy by
  the sigmoid above with abscissa -ln NLL instead of t, fitted on the same models: accuracy
  follows the smooth metric, the smooth metric follows scale. The link needs the above-baseline
  points of a sigmoid too (else: "trend"). Off by default: on the one task with the data, LAMBADA
  (Pythia, OPT, BLOOM), it did not beat the sigmoid in t (mean |error| 0.034 against 0.031 with
  one model held out, 0.036 against 0.039 with two): its NLL flattens faster than a power law.
  What needs per-example data, and so is not done: mapping log-probabilities to accuracy with
  no fitted link, as the expected accuracy mean_i p_i(correct choice) or exp(log p(target))
  averaged over examples, or PassUntil's pass rate from repeated samples (Hu et al. 2023).
  lm-eval's result files, the Pythia/OPT/BLOOM evals and this project's results.csv keep only
  means over examples (of log p, not of p), so none of these has the data.
- "linear" (other metrics: Brier score, edit distance): a line in t weighted by 1 / stderr^2.

Interval: a parametric bootstrap of the whole procedure (`Settings.forecast_boot` replicates,
1,000 by default; analysis.forecast_boot). Each replicate redraws every point from the fitted
curve on its own number of examples (the NLLs normal with their stderr), scattered phi times as
much as binomial draws, phi the fit's reduced chi^2 shrunk towards 1 by a prior worth 4 points
(phi < 1 is allowed: models scored on the same examples differ by less than independent samples
would; on the Pythia/OPT/BLOOM trends the pooled chi^2 per degree of freedom is 0.9). Each then
reruns the above-baseline test and the ceiling test on its own points, and so the choice of form
(sigmoid with or without ceiling, or trend: Efron 2014, the bootstrap of an estimate after
model selection), refits, predicts, and draws the measurement a model at the forecast's x would
report, on the examples of the point predicted, with the same phi, spread over its 1/n bin. The
interval is the central `ci` range of those measurements: the scatter of the points, the
uncertainty of the parameters and of the form, and the noise of the new measurement. It does
not count a wrong form: where the examples are many and the binomial noise small, the error of
a sigmoid extrapolated past its data dominates (LAMBADA, 5,153 examples: 4 of its 6 held-out
scores fall outside, with this interval and with the delta method's before it).
Why parametric and not a case bootstrap: a curve has 3-8 models and the forecast extrapolates
from its ends; a case resample leaves out the largest model a third of the time and repeats
others, so that its replicates extrapolate from a shorter curve than the forecast does, and ties
in x leave a sigmoid unidentified. The delta method it replaces ignored the choice of form and
the asymmetry of a sigmoid at its bounds.

"Not forecastable", with the reason: fewer than `min_points` models to fit; a U-shaped curve
(the classifier's class on the models fitted: neither form extrapolates a turn); a loss axis
(there is no "one decade beyond" on it).

Measured (tests/test_forecast.py, bench/RESULTS.md): on the Pythia/OPT/BLOOM evals, holding out
each family's largest model, 759 of 762 held-out scores get a forecast, mean |error| 0.029, and
the nominal 90% intervals cover 92% of them; two held out, 1,522 of 1,524, 0.037, 90% (the
delta method before: 95% and 93%). On synthetic sigmoid curves 93% and 89%, on curves at
chance 87% and 89%.

Backtest: per curve, hold out the K largest models, fit on the rest, predict the held-out
scores. Emergence counts as *observed* at a point when it is above baseline by the
classifier's test and by at least `margin` of the way from baseline to ceiling (default 10%:
0.325 for a 4-choice task, a rise Wei et al. would call clearly above chance). The outcome
per curve: "already observed" (a training point qualifies), "hit" (forecast and observed),
"false alarm", "miss", "correct negative", or the reason it is not forecastable.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis.emergence import KEYS, Classification, classify, x_transform
from analysis.forecast_boot import Group, forecast_group
from analysis.forecast_fit import shrunk_sd
from analysis.scores import metric_name

MARGIN = 0.1  # share of (ceiling - baseline) a score must clear to count as clearly emerged
EXTRAPOLATE = 1.0  # forecast column: predict this many decades of x beyond the largest model
# Metrics that give the target's mean negative log-likelihood: -logprob, ln ppl (lm-eval's
# perplexity aggregation is exp(-mean log-likelihood), e.g. LAMBADA's)
LOGPROB_METRICS = ("logprob", "perplexity", "ppl")


@dataclass
class Prediction:
    """Predicted mean and interval of the measurements at the points asked for (oriented:
    higher is better), the form fitted, and the reason when there is no forecast."""

    kind: str  # "sigmoid" | "trend" | "logprob" | "linear" | "none"
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    reason: str = ""


def _not_forecastable(c: Classification, train: pd.DataFrame, cls: str) -> str:
    """Why a curve with these training points and class gets no forecast ("" if it does)."""
    if c.x_scale != "log":
        return "x is a loss: there is no decade beyond to forecast at"
    if len(train) < c.settings.min_points:
        return f"{len(train)} model(s) to fit, fewer than min_points={c.settings.min_points}"
    if cls == "U-shaped":
        return "U-shaped: neither a sigmoid nor a trend extrapolates a turn"
    return ""


def _group(jobs: list) -> Group:
    """Stack the (train, new) frames of curves with equal numbers of points into a Group."""
    col = lambda f, k: np.stack([j[f][k].to_numpy(float) for j in jobs])  # noqa: E731
    return Group(
        t=col(1, "t"),
        s=col(1, "s"),
        n=col(1, "n_examples"),
        sd=col(1, "sd"),
        b=col(1, "b")[:, 0],
        t_new=col(2, "t"),
        new=col(2, "n_examples" if _is_rate(jobs[0][1]) else "sd"),
        nll=col(1, "nll"),
        nll_sd=col(1, "nll_sd"),
    )


def predict(jobs: list, c: Classification) -> dict:
    """Predictions {curve: Prediction} for jobs (curve, training points, points to predict,
    class of the training points); frames are rows of `_points`."""
    out, groups = {}, {}
    for cid, train, new, cls in jobs:
        reason = _not_forecastable(c, train, cls)
        if reason:
            nan = np.full(len(new), np.nan)
            out[cid] = Prediction("none", nan, nan, nan, f"not forecastable: {reason}")
        else:
            groups.setdefault((_is_rate(train), len(train), len(new)), []).append((cid, train, new))
    for (rate, P, H), members in sorted(groups.items()):
        seed = (c.settings.seed, int(rate), P, H)
        kinds, *values = forecast_group(_group(members), rate, c.settings, seed)
        for i, (cid, *_) in enumerate(members):
            out[cid] = Prediction(kinds[i], *(v[i] for v in values))
    return out


def logprob_table(scores: pd.DataFrame, family: str = "family", pooled: bool = False):
    """The target's mean negative log-likelihood `nll` and its stderr `nll_sd` per (family,
    task, subtask, shots, model), from the LOGPROB_METRICS rows of a score table (the first
    such metric by name where there are several); empty when it has none."""
    keys = ["family", "task", "subtask", "shots", "model"]
    name = scores["metric"].map(metric_name)
    keep = (name.isin(LOGPROB_METRICS) & (scores["stderr"] > 0)).to_numpy()
    d = scores[keep].assign(_m=name[keep].to_numpy())
    d = d.assign(family="pooled" if pooled else d[family].astype(str))
    v, se = d["value"].to_numpy(float), d["stderr"].to_numpy(float)
    log = (d["_m"] == "logprob").to_numpy()
    # NLL = -logprob (stderr as is), or ln ppl (stderr / ppl, the delta method)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = d.assign(nll=np.where(log, -v, np.log(v)), nll_sd=np.where(log, se, se / v))
    d = d[d["nll"] > 0].sort_values(["_m", *keys], kind="stable").drop_duplicates(keys)
    return d[[*keys, "nll", "nll_sd"]].reset_index(drop=True)


def _points(c: Classification, logprobs: pd.DataFrame | None) -> pd.DataFrame:
    """Points joined with their curve's baseline, direction and test, plus t, oriented s, sd,
    and the target's nll where `logprobs` has it."""
    _, to_t, _ = x_transform(c.x, c.x_scale)
    meta = c.curves[["random_baseline", "higher_is_better", "test"]]
    p = c.points.join(meta, on="curve")
    if logprobs is not None and len(logprobs):
        p = p.merge(logprobs, how="left", on=list(logprobs.columns[:5])).set_axis(p.index)
    else:
        p = p.assign(nll=np.nan, nll_sd=np.nan)
    hib = p["higher_is_better"] > 0
    binomial = p["test"] == "binomial"
    n = p["n_examples"].where(binomial, 1.0)
    return p.assign(
        t=to_t(p["x"].to_numpy(float)),
        s=np.where(hib, p["value"], -p["value"]),
        b=np.where(hib, p["random_baseline"], -p["random_baseline"]),
        sd=np.where(binomial, shrunk_sd(p["value"].clip(0, 1), n), p["stderr"]),
    )


def _is_rate(g: pd.DataFrame) -> bool:
    return g["test"].iloc[0] == "binomial"


def _orient(g: pd.DataFrame, v: np.ndarray) -> np.ndarray:
    """Back from the oriented score to the metric's own direction."""
    return v if g["higher_is_better"].iloc[0] > 0 else -v


def _interval(g, p: Prediction):
    """(mean, lo, hi) in the metric's own direction."""
    lo, hi = _orient(g, p.lo), _orient(g, p.hi)
    return _orient(g, p.mean), np.fmin(lo, hi), np.fmax(lo, hi)


def forecast(c: Classification, decades: float = EXTRAPOLATE, logprobs=None) -> pd.DataFrame:
    """Per curve: the score predicted `decades` beyond the largest model's x, fitted on all
    points (columns curve, forecast_x, forecast, forecast_lo, forecast_hi, forecast_note).
    `logprobs` (logprob_table) enables the "logprob" form."""
    curves = list(_points(c, logprobs).groupby("curve", sort=True))
    jobs = [
        (
            cid,
            g,
            g.loc[[g["t"].idxmax()]].assign(t=lambda d: d["t"] + decades),
            c.curves.at[cid, "class"],
        )
        for cid, g in curves
    ]
    preds = predict(jobs, c)
    rows = []
    for (cid, g), (_, _, new, _) in zip(curves, jobs, strict=True):
        p = preds[cid]
        mean, lo, hi = (v[0] for v in _interval(g, p))
        rows.append(
            {
                "curve": cid,
                "forecast_x": 10.0 ** new["t"].iloc[0] if c.x_scale == "log" else np.nan,
                "forecast": mean,
                "forecast_lo": lo,
                "forecast_hi": hi,
                "forecast_note": p.reason or p.kind,
            }
        )
    cols = ["curve", "forecast_x", "forecast", "forecast_lo", "forecast_hi", "forecast_note"]
    return pd.DataFrame(rows, columns=cols).set_index("curve")


def _outcome(g, tr, ho, p: Prediction, margin: float) -> str:
    """Emergence outcome of one curve's backtest (module docstring)."""
    b = g["b"].iloc[0]
    level = b + margin * (1.0 - b)  # "clearly above": only defined with a ceiling of 1
    observed_train = bool(((tr["s"] >= level) & tr["above"]).any())
    observed = bool(((ho["s"] >= level) & ho["above"]).any())
    if not _is_rate(g):
        return "no ceiling: outcome undefined"
    if observed_train:
        return "already observed"
    if p.kind == "none":
        return p.reason + (" (emerged in held-out models)" if observed else "")
    return {
        (True, True): "hit",
        (True, False): "false alarm",
        (False, True): "miss",
        (False, False): "correct negative",
    }[(bool((p.mean >= level).any()), observed)]


def backtest(c: Classification, holdout_largest: int = 2, margin: float = MARGIN, logprobs=None):
    """Hold out each curve's `holdout_largest` largest models, forecast them from the rest.

    Returns (points, curves): one row per held-out point (actual, predicted, its interval,
    error = predicted - actual, `inside` the interval) and one row per curve (held-out models,
    fit, why there is none, mean absolute error, emergence outcome; see module docstring)."""
    pts = _points(c, logprobs)
    held = pts.groupby("curve")["t"].rank(ascending=False, method="first") <= holdout_largest
    # The classifier's class of the training points alone (U-shaped is not forecast).
    train = classify(
        pts[~held].drop(columns="curve"),
        x="x",
        x_scale=c.x_scale,
        settings=replace(c.settings, n_boot=0),
    )
    classes = train.curves.set_index(KEYS)["class"]
    curves = list(pts.groupby("curve", sort=True))
    jobs = []
    for cid, g in curves:
        key = tuple(c.curves.at[cid, k] for k in KEYS)
        jobs.append((cid, g[~held[g.index]], g[held[g.index]], classes.get(key, "")))
    preds = predict(jobs, c)
    point_rows, curve_rows = [], []
    for (cid, g), (_, tr, ho, _) in zip(curves, jobs, strict=True):
        key = {k: c.curves.at[cid, k] for k in KEYS}
        p = preds[cid]
        pm, plo, phi = _interval(g, p)
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
        curve_rows.append(
            {
                **key,
                "curve": cid,
                "held_out": ", ".join(ho["model"]),
                "fit": p.kind,
                "reason": p.reason,
                "mean_abs_error": float(np.mean(np.abs(pm - actual)))
                if p.kind != "none"
                else np.nan,
                "outcome": _outcome(g, tr, ho, p, margin),
            }
        )
    return pd.DataFrame(point_rows), pd.DataFrame(curve_rows)
