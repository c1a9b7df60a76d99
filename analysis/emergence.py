"""Classify each task's score-vs-scale curve as flat, emergent, smooth or inverse.

One point per run (score on a task vs x, by default the run's training FLOPs), sorted by x.

Above baseline. A point with k = round(value * n_examples) successes is "above baseline" when
a one-sided exact binomial test rejects H0: p <= p0 (scipy.stats.binomtest, alternative
"greater"; computed here as binom.sf(k - 1, n, p0), which is the same number, vectorised),
with p0 = max(random_baseline, min_rate). Equivalently: the one-sided lower Clopper-Pearson
bound on the success rate exceeds p0. The floor `min_rate` (default 1%) exists because
exact-match tasks report a random baseline of 0, against which the test is degenerate: a single
lucky hit would give p = 0. With the floor a model must demonstrably solve more than 1% of
the examples; it does not change multiple-choice tasks, whose baselines are >= 1/#choices.
The p-values of the points of one curve are Holm-corrected (Holm 1979) at level alpha = 0.05:
like Bonferroni it controls the family-wise error rate, so a curve of m chance-level runs is
called non-flat with probability <= alpha whatever m is, and it needs no independence
assumption, but it is uniformly more powerful than Bonferroni.

Classes, after Wei et al. 2022 ("Emergent abilities of large language models", sec. 2:
"an ability is emergent if it is not present in smaller models but is present in larger
models"; performance is "near random" below a threshold scale and well above it after), in
order of precedence:
- inverse: the largest-x run is significantly worse than the smallest-x run (one-sided Fisher
  exact two-proportion test at level alpha), as in inverse scaling (McKenzie et al. 2023).
- flat: no point is significantly above baseline.
- emergent: the smallest-x point is at baseline and the largest-x point is above it.
- smooth: the smallest-x point is already above baseline and the score increases with x
  (Spearman rho > 0).
- other: none of the above, e.g. non-monotonic curves (inverted U: up, then back to baseline)
  or an above-baseline curve that does not increase. U-shaped scaling (Wei et al. 2023,
  "Inverse scaling can become U-shaped") is not detected separately yet; it falls into
  inverse, other or emergent depending on its endpoints.

Threshold (emergent curves only): the points from index i on are all above baseline and point
i - 1 is not. The transition lies in [x[i-1], x[i]] (threshold_lo, threshold_hi); threshold_x
is its log-space midpoint sqrt(x[i-1] * x[i]).

Confidence: the fraction of `n_boot` parametric bootstrap replicates that get the same class,
where each replicate redraws every point's successes from Binomial(n_examples, value)
(the example-level bootstrap of the score). It measures how stable the label is under
example-sampling noise; it is not a posterior probability.
"""

import numpy as np
import pandas as pd
from scipy.stats import binom, hypergeom, rankdata

CLASS_COLS = [
    "task",
    "metric",
    "shots",
    "random_baseline",
    "class",
    "threshold_x",
    "threshold_lo",
    "threshold_hi",
    "confidence",
    "n_points",
]


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values along the last axis (Holm 1979)."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    stepped = np.take_along_axis(p, order, -1) * (m - np.arange(m))
    adjusted = np.minimum(1.0, np.maximum.accumulate(stepped, axis=-1))
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, -1)
    return out


def _labels(k: np.ndarray, n: np.ndarray, p0: float, alpha: float):
    """Class of each row of k (replicates x points, points sorted by x) -> (labels, above)."""
    above = _holm(binom.sf(k - 1, n, p0)) < alpha
    # One-sided Fisher exact test of rate(first) > rate(last): P(X >= k_first) with X the
    # successes of the first run under the hypergeometric null of equal rates.
    k_first, k_last = k[:, 0], k[:, -1]
    p_decrease = hypergeom.sf(k_first - 1, n[0] + n[-1], k_first + k_last, n[0])
    inverse = (k.shape[1] >= 2) & (p_decrease < alpha)
    # Spearman rho of rate vs position: Pearson correlation of ranks (ties -> average ranks).
    r = rankdata(k / n, axis=1)
    r -= r.mean(axis=1, keepdims=True)
    pos = np.arange(k.shape[1]) - (k.shape[1] - 1) / 2
    increasing = (r @ pos) > 0  # same sign as rho; constant scores give 0 -> not increasing
    label = np.select(
        [inverse, ~above.any(axis=1), ~above[:, 0] & above[:, -1], above[:, 0] & increasing],
        ["inverse", "flat", "emergent", "smooth"],
        "other",
    )
    return label, above


def classify_curve(
    x,
    value,
    n_examples,
    random_baseline: float,
    *,
    alpha=0.05,
    min_rate=0.01,
    n_boot=1000,
    seed=0,
) -> dict:
    """Classify one score curve (see module docstring). Points are sorted by x here.

    Returns class, threshold_x/lo/hi (NaN unless emergent), confidence, n_points and the
    per-point `above` flags in x order.
    """
    order = np.argsort(np.asarray(x, float), kind="stable")
    x = np.asarray(x, float)[order]
    n = np.asarray(n_examples, int)[order]
    k = np.rint(np.asarray(value, float)[order] * n).astype(int)
    p0 = max(float(random_baseline), min_rate)

    (label,), (above,) = _labels(k[None], n, p0, alpha)
    lo = hi = np.nan
    if label == "emergent":
        i = np.flatnonzero(~above)[-1] + 1  # start of the final run of above-baseline points
        lo, hi = x[i - 1], x[i]
    rng = np.random.default_rng(seed)
    boot_labels, _ = _labels(rng.binomial(n, k / n, size=(n_boot, len(n))), n, p0, alpha)
    return {
        "class": str(label),
        "threshold_x": float(np.sqrt(lo * hi)),
        "threshold_lo": float(lo),
        "threshold_hi": float(hi),
        "confidence": float(np.mean(boot_labels == label)) if n_boot else np.nan,
        "n_points": len(x),
        "above": above,
    }


def _si(v: float) -> str:
    """1234567 -> '1.2M' (for column headers)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def run_labels(results: pd.DataFrame, x: str = "flops_detailed") -> dict[str, str]:
    """run_id -> column header, in increasing x: the model name, plus '@<tokens>' where one model
    was trained at several token budgets, or the run_id where that is still ambiguous."""
    runs = results.drop_duplicates("run_id").sort_values([x, "run_id"], kind="stable")
    label = runs["model"].astype(str)
    label = label.where(~label.duplicated(keep=False), label + "@" + runs["tokens"].map(_si))
    label = label.where(~label.duplicated(keep=False), runs["run_id"].astype(str))
    return dict(zip(runs["run_id"], label, strict=True))


def classify_tasks(
    results: pd.DataFrame,
    x: str = "flops_detailed",
    *,
    alpha: float = 0.05,
    min_rate: float = 0.01,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (task, metric, shots): CLASS_COLS, then one score column per run.

    Score columns are headed by run_labels (model names) and ordered by x. Reads columns
    run_id, model, tokens, task, metric, shots, value, n_examples, random_baseline and `x`.
    Rows with n_examples < 1 are ignored. random_baseline is taken from the curve's first row.
    """
    if results.duplicated(["run_id", "task", "metric", "shots"]).any():
        raise ValueError("results has several rows for one (run_id, task, metric, shots)")
    labels = run_labels(results, x)
    rows = []
    evals = results[(results["n_examples"] >= 1) & results["value"].notna()]
    for (task, metric, shots), g in evals.groupby(["task", "metric", "shots"], sort=True):
        baseline = float(g["random_baseline"].iloc[0])
        c = classify_curve(
            g[x],
            g["value"],
            g["n_examples"],
            baseline,
            alpha=alpha,
            min_rate=min_rate,
            n_boot=n_boot,
            seed=seed,
        )
        scores = dict(zip(g["run_id"].map(labels), g["value"], strict=True))
        rows.append(
            {"task": task, "metric": metric, "shots": shots, "random_baseline": baseline}
            | {k: v for k, v in c.items() if k != "above"}
            | {label: scores.get(label, np.nan) for label in labels.values()}
        )
    return pd.DataFrame(rows, columns=[*CLASS_COLS, *labels.values()])
