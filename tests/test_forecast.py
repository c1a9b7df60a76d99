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


def test_a_flat_curve_is_forecast_by_its_trend():
    flat = sigmoid_scores(mid=30.0)  # at chance everywhere: no sigmoid midpoint to place
    c = classify(flat, settings=Settings(n_boot=0))
    points, curves = backtest(c, holdout_largest=3)
    assert curves["fit"].iloc[0] == "trend" and curves["outcome"].iloc[0] == "correct negative"
    assert points["inside"].all() and (points["error"].abs() < 0.02).all()
    f = forecast(c).iloc[0]
    assert f["forecast_note"] == "trend" and f["forecast_lo"] < 0.25 < f["forecast_hi"]


def test_forecast_not_possible_with_too_few_models():
    c = classify(sigmoid_scores().iloc[:4], settings=Settings(n_boot=0))
    points, curves = backtest(c, holdout_largest=2)
    assert curves["outcome"].iloc[0].startswith("not possible: 2 training point(s)")
    assert points["predicted"].isna().all()


def synthetic_family(n_curves: int, seed: int, mids: tuple[float, float]) -> pd.DataFrame:
    """Sigmoid curves of 8 models with random midpoints (log10 FLOPs in `mids`), widths and
    example counts: binomial samples of a known law."""
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e19, 1e24, 8)
    rows = []
    for i in range(n_curves):
        mid, width = rng.uniform(*mids), rng.uniform(0.3, 1.2)
        n = int(rng.choice([100, 300, 1000, 3000]))
        p = 0.25 + 0.75 / (1 + np.exp(-(np.log10(x) - mid) / width))
        df = sigmoid_scores(n=n).iloc[:8].assign(flops=x, task=f"syn{i}", n_examples=n)
        rows.append(df.assign(value=rng.binomial(n, p) / n))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize(
    "mids, kind", [((21.0, 24.0), "sigmoid"), ((28.0, 40.0), "trend")], ids=["rising", "flat"]
)
def test_forecast_intervals_are_calibrated_on_synthetic_curves(mids, kind):
    """Nominal 90% intervals cover 85-97% of held-out measurements, one and two models out,
    for curves whose rise is in view (sigmoid fits) and for curves still at chance (trend).
    A curve that jumps right after its last model is not in either set: nothing in its points
    foretells the jump (module docstring)."""
    c = classify(synthetic_family(150, seed=1, mids=mids), settings=Settings(n_boot=0))
    for held in (1, 2):
        points, curves = backtest(c, holdout_largest=held)
        fitted = points.merge(curves[["curve", "fit"]], on="curve")
        fitted = fitted[fitted["fit"] == kind]
        assert len(fitted) > 100 * held
        assert 0.85 <= fitted["inside"].mean() <= 0.97, (held, fitted["inside"].mean())


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


def test_backtest_on_real_families_is_calibrated():
    """Pythia, Pythia-deduped, OPT and BLOOM (every task, 0- and 5-shot), the largest one or two
    models of each family held out: every held-out point gets a forecast, within 0.05 on average,
    and the nominal 90% intervals cover 85-95% of them."""
    if not PYTHIA.exists():
        pytest.skip(f"{PYTHIA} not available")
    s = load_scores([PYTHIA], mapping={"model_family": "family", "total_params": "params"})
    groups = [g for _, g in s.groupby(["family", "shots"])]
    settings = Settings(n_boot=0)
    for held in (1, 2):
        points = pd.concat(
            backtest(classify(g, x="params", settings=settings), held)[0] for g in groups
        )
        assert len(points) == 762 * held and points["predicted"].notna().all()
        assert points["error"].abs().mean() <= 0.05
        assert 0.85 <= points["inside"].mean() <= 0.951, (held, points["inside"].mean())
