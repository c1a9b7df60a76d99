from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.emergence import classify
from analysis.emergence_stats import Settings
from analysis.forecast import backtest, fit_curve, forecast
from analysis.importers import load_scores

PYTHIA = Path("/work/shared/data/pythia_evals/pythia_evals_final.csv")
X = np.geomspace(1e19, 1e24, 11)


def sigmoid_scores(mid=23.2, width=0.6, n=10_000, seed=0, baseline=0.25):
    """A 4-choice task whose accuracy is a sigmoid in log10 FLOPs, sampled on n examples."""
    t = np.log10(X)
    p = baseline + (1 - baseline) / (1 + np.exp(-(t - mid) / width))
    v = np.random.default_rng(seed).binomial(n, p) / n
    return pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(11)],
            "family": "f",
            "task": "syn",
            "subtask": "",
            "metric": "acc",
            "shots": 0,
            "flops": X,
            "value": v,
            "stderr": np.nan,
            "n_examples": n,
            "random_baseline": baseline,
            "higher_is_better": 1.0,
        }
    )


def test_emergence_forecast_before_it_is_observed():
    # Training models (up to 10^21.5 FLOPs) are at most 0.29, significantly but not clearly
    # above chance; every held-out model is above 0.325 (MARGIN of the way to 1).
    for seed in range(3):
        c = classify(sigmoid_scores(seed=seed), settings=Settings(n_boot=0))
        points, curves = backtest(c, holdout_largest=5)
        assert curves["outcome"].tolist() == ["hit"]
        assert curves["held_out"].iloc[0] == "m6, m7, m8, m9, m10"
        assert (points["actual"] > 0.325).all() and points["inside"].all()
        assert (points["error"].abs() < 0.12).all()


def test_forecast_not_possible_without_points_above_baseline():
    flat = sigmoid_scores(mid=30.0)  # at chance everywhere
    c = classify(flat, settings=Settings(n_boot=0))
    points, curves = backtest(c, holdout_largest=3)
    assert curves["outcome"].iloc[0].startswith("not possible: 0 point(s) above baseline")
    assert points["predicted"].isna().all()
    f = forecast(c)
    assert np.isnan(f["forecast"].iloc[0]) and f["forecast_note"].iloc[0].startswith("not possible")


def test_linear_fit_for_a_continuous_metric():
    t = np.log10(X)
    f = fit_curve(t, -4 + 0.5 * t, np.full(11, 0.01), baseline=-20.0, kind="linear", n_above=11)
    mean, lo, hi = f.predict([25.0])
    assert mean[0] == pytest.approx(-4 + 12.5) and lo[0] < mean[0] < hi[0]


def test_pythia_lambada_backtest():
    if not PYTHIA.exists():
        pytest.skip(f"{PYTHIA} not available")
    s = load_scores([PYTHIA], mapping={"model_family": "family", "total_params": "params"})
    s = s[(s["family"] == "pythia") & (s["shots"] == 0) & (s["task"] == "lambada_openai")]
    points, curves = backtest(classify(s, x="params", settings=Settings(n_boot=0)), 2)
    acc = points[points["metric"] == "acc"].set_index("model")
    assert list(acc.index) == ["pythia-6.9b", "pythia-12b"]
    assert acc.loc["pythia-6.9b", "actual"] == pytest.approx(0.6728, abs=1e-4)
    assert (acc["error"].abs() < 0.06).all()  # from 70m..2.8b, within 6 points of accuracy
    assert curves.set_index("metric").loc["acc", "outcome"] == "already observed"
