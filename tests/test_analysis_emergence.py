from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.emergence import classify, classify_curve, metric_sensitivity
from analysis.emergence_stats import Settings, _holm_reject, linearity_breakthroughness
from analysis.importers import load_scores
from analysis.project_scores import from_project
from analysis.scores import resolve_baselines
from scaling.config import ConfigError

PYTHIA = Path("/work/shared/data/pythia_evals/pythia_evals_final.csv")
X = np.geomspace(1e18, 1e23, 11)
N = np.full(11, 400)
JUMP = 10**21.2  # between X[6] = 1e21 and X[7] = 10^21.5
SHAPES = {  # name: (scores at X, random baseline)
    "flat": ([0.0, 0.0, 0.0025, 0.0, 0.0, 0.0025, 0.0, 0.0, 0.0025, 0.0, 0.0], 0.0),
    "flat_mc": ([0.24, 0.26, 0.25, 0.22, 0.27, 0.25, 0.23, 0.26, 0.25, 0.24, 0.26], 0.25),
    "smooth": (list(np.linspace(0.35, 0.85, 11)), 0.25),
    "emergent": ([0.0] * 7 + [0.3, 0.55, 0.7, 0.8], 0.0),  # sharp jump at JUMP
    "inverse-scaling": (list(np.linspace(0.8, 0.3, 11)), 0.25),
    "U-shaped": ([0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7], 0.25),
}


@pytest.mark.parametrize("name", SHAPES)
def test_known_shapes(name):
    scores, baseline = SHAPES[name]
    c = classify_curve(X, scores, N, baseline)
    assert c["class"] == name.removesuffix("_mc")
    assert c["confidence"] > 0.8
    assert c["n_points"] == 11


def test_jump_x_inside_threshold_interval():
    c = classify_curve(X, SHAPES["emergent"][0], N, 0.0)
    assert c["threshold_lo"] <= JUMP <= c["threshold_hi"]
    assert (c["threshold_lo"], c["threshold_hi"]) == (X[6], X[7])  # a clean jump: no widening
    assert c["threshold_x"] == pytest.approx(np.sqrt(X[6] * X[7]))
    assert c["above"].tolist() == [False] * 7 + [True] * 4
    smooth = classify_curve(X, SHAPES["smooth"][0], N, 0.25)
    assert np.isnan([smooth["threshold_lo"], smooth["threshold_hi"]]).all()


def test_noisy_jump_interval_widens_and_still_covers():
    # A rise that starts within noise: the bootstrap moves the threshold, the interval follows.
    scores = [0.25, 0.24, 0.26, 0.25, 0.27, 0.29, 0.31, 0.45, 0.6, 0.7, 0.8]
    c = classify_curve(X, scores, np.full(11, 300), 0.25)
    assert c["class"] == "emergent"
    assert c["threshold_lo"] < c["threshold_hi"]
    assert c["threshold_lo"] <= 10**21.2 <= c["threshold_hi"]


def test_points_are_sorted_by_x():
    scores, baseline = SHAPES["emergent"]
    perm = np.random.default_rng(0).permutation(11)
    c = classify_curve(X[perm], np.array(scores)[perm], N, baseline)
    assert c["class"] == "emergent" and c["above"].tolist() == [False] * 7 + [True] * 4


def test_rise_within_noise_at_small_n_is_flat():
    scores = [0.0] * 8 + [0.0, 0.05, 0.1]
    assert classify_curve(X, scores, np.full(11, 20), 0.0)["class"] == "flat"
    assert classify_curve(X, scores, np.full(11, 400), 0.0)["class"] == "emergent"


def test_zero_baseline_floor_and_single_point():
    # One lucky exact match in 400 at every size is not "above a baseline of 0" (1% floor).
    c = classify_curve(X, np.full(11, 1 / 400), N, 0.0)
    assert c["class"] == "flat" and not c["above"].any()
    # A single model far above chance is not enough (min_above = 2) ...
    one = [0.25] * 10 + [0.45]
    c = classify_curve(X, one, N, 0.25)
    assert c["n_above"] == 1 and c["class"] == "flat"
    # ... unless asked for.
    assert classify_curve(X, one, N, 0.25, settings=Settings(min_above=1))["class"] == "emergent"


def test_stderr_metric_and_lower_is_better():
    # A continuous, lower-is-better metric (token edit distance, baseline 8 edits).
    edits = np.array([8.1, 7.9, 8.0, 8.05, 7.95, 8.0, 7.0, 5.5, 4.0, 3.0, 2.5])
    c = classify_curve(
        X,
        edits,
        stderr=np.full(11, 0.2),
        random_baseline=8.0,
        metric="token_edit_distance",
        higher_is_better=False,
    )
    assert c["test"] == "stderr" and c["class"] == "emergent"
    assert (c["threshold_lo"], c["threshold_hi"]) == (X[5], X[6])


def test_holm():
    p = np.array([[0.01, 0.04, 0.03], [0.01, 0.02, 0.04]])
    # Holm: 0.01 <= 0.05/3 rejects; 0.03 > 0.05/2 stops (first row); second row 0.02 <= 0.025,
    # 0.04 <= 0.05: all rejected.
    assert _holm_reject(p, 0.05).tolist() == [[True, False, False], [True, True, True]]


def test_linearity_and_breakthroughness():
    steady = np.arange(6.0)
    jump = np.array([0, 0, 0, 0, 0, 5.0])
    L, B = linearity_breakthroughness(np.stack([steady, jump]))
    assert L[0] == pytest.approx(5.0) and B[0] == pytest.approx(5.0)  # I = 5, steps of 1
    assert L[1] == pytest.approx(5 / np.sqrt(5)) and np.isinf(B[1])  # one step carries all
    assert linearity_breakthroughness(-steady)[0] == pytest.approx(-5.0)  # decreasing: I < 0


def frame(curves: dict, models=None, **extra) -> pd.DataFrame:
    """Tidy scores: one family 'f', models m0..m10 at X, n = 400."""
    rows = []
    for task, (scores, baseline) in curves.items():
        for i, v in enumerate(scores):
            rows.append(
                {
                    "model": f"m{i}",
                    "family": "f",
                    "task": task,
                    "subtask": "",
                    "metric": "acc",
                    "shots": 0,
                    "flops": X[i],
                    "value": v,
                    "stderr": np.nan,
                    "n_examples": 400,
                    "random_baseline": baseline,
                    "higher_is_better": 1.0,
                }
                | extra
            )
    return pd.DataFrame(rows)


def test_classify_table_and_per_family():
    a = frame(SHAPES)
    b = frame({"emergent": SHAPES["smooth"]}).assign(family="g", model=lambda d: "g" + d["model"])
    c = classify(pd.concat([a, b]), settings=Settings(n_boot=50))
    got = {(r["family"], r["task"]): r["class"] for r in c.curves.to_dict("records")}
    assert got[("f", "emergent")] == "emergent" and got[("g", "emergent")] == "smooth"
    assert len(c.curves) == len(SHAPES) + 1 and c.skipped.empty
    pooled = classify(pd.concat([a, b]), pooled=True, settings=Settings(n_boot=0))
    assert set(pooled.curves["family"]) == {"pooled"}
    assert pooled.curves.set_index("task").loc["emergent", "n_points"] == 22


def test_bad_input_is_named_never_dropped():
    good = frame({"ok": SHAPES["smooth"]})
    nan = frame({"nan": SHAPES["smooth"]})
    nan.loc[3, "value"] = np.nan
    few = frame({"few": SHAPES["smooth"]}).iloc[:2]
    mixed = frame({"mixed": SHAPES["smooth"]})
    mixed.loc[mixed.index[5:], "shots"] = 5
    unknown = frame({"weird": SHAPES["smooth"]}, metric="zorbs", higher_is_better=np.nan)
    nobase = frame({"nobase": SHAPES["smooth"]}, random_baseline=np.nan)
    noerr = frame({"noerr": SHAPES["smooth"]}, metric="f1", n_examples=np.nan)
    c = classify(
        pd.concat([good, nan, few, mixed, unknown, nobase, noerr]), settings=Settings(n_boot=0)
    )
    assert set(c.curves["task"]) == {"ok", "nan"}  # NaN drops the point, not the curve
    reasons = c.skipped.groupby("task")["reason"].first()
    assert (
        reasons["nan"].startswith("NaN score")
        and c.skipped.set_index("task").loc["nan", "model"] == "m3"
    )
    assert reasons["few"] == "2 model(s) < min_points=3"
    assert reasons["mixed"].startswith("mixed shots")
    assert reasons["weird"].startswith("unknown metric direction")
    assert reasons["nobase"].startswith("no random baseline")
    assert reasons["noerr"].startswith("no stderr or n_examples")


def test_missing_x_names_the_models_and_duplicates_are_errors():
    s = frame({"t": SHAPES["smooth"]})
    s.loc[[2, 4], "flops"] = np.nan
    with pytest.raises(ConfigError, match="m2, m4"):
        classify(s)
    c = classify(s, missing_x="skip", settings=Settings(n_boot=0))
    assert c.curves["n_points"].tolist() == [9] and set(c.skipped["model"]) == {"m2", "m4"}
    with pytest.raises(ConfigError, match="appears 2 times"):
        classify(
            pd.concat([frame({"t": SHAPES["smooth"]}), frame({"t": SHAPES["smooth"]}).iloc[:1]])
        )


def test_metric_sensitivity_exact_match_vs_continuous():
    # Schaeffer et al.: exact match jumps, per-token log-likelihood of the target rises smoothly.
    em = frame({"arith": SHAPES["emergent"]})
    ll = frame(
        {"arith": (list(np.linspace(-3.0, -0.5, 11)), -3.5)},
        metric="log_likelihood",
        n_examples=np.nan,
        stderr=0.05,
    )
    c = classify(pd.concat([em, ll]), settings=Settings(n_boot=0))
    s = metric_sensitivity(c.curves)
    assert len(s) == 1 and s["changes"].iloc[0]
    assert s["classes"].iloc[0] == "exact_match: emergent; log_likelihood: smooth".replace(
        "exact_match", "acc"
    )
    assert s["emergent_only_under"].iloc[0] == "acc"


def test_classifies_this_projects_results_table():
    results = frame({"add": SHAPES["emergent"], "count": SHAPES["smooth"]}).assign(
        sweep="s",
        run_id=lambda d: d["model"],
        params_total=1000,
        params_non_embedding=900,
        tokens=10**6,
        loss=3.0,
        flops_detailed=lambda d: d["flops"],
    )
    curves = classify(resolve_baselines(from_project(results)), x="flops").curves
    assert dict(zip(curves["task"], curves["class"])) == {"add": "emergent", "count": "smooth"}
    assert set(curves["family"]) == {"s, D=1M"}  # the sweep and its token budget


@pytest.fixture(scope="module")
def pythia():
    if not PYTHIA.exists():
        pytest.skip(f"{PYTHIA} not available")
    scores = load_scores([PYTHIA], mapping={"model_family": "family", "total_params": "params"})
    pythia = scores[scores["family"].isin(["pythia", "pythia-deduped"])]
    return {
        shots: classify(pythia[pythia["shots"] == shots], x="params").curves for shots in (0, 5)
    }


def test_pythia_lambada_is_smooth(pythia):
    for shots, curves in pythia.items():
        lam = curves[(curves["task"] == "lambada_openai") & (curves["metric"] == "acc")]
        assert len(lam) == 2, shots  # pythia and pythia-deduped; ppl has no chance level
        assert set(lam["class"]) == {"smooth"} and (lam["confidence"] > 0.95).all()


def test_pythia_mmlu_mostly_flat_and_never_emergent_on_one_point(pythia):
    for shots, curves in pythia.items():
        mmlu = curves[curves["task"].str.startswith("hendrycksTest-") & (curves["metric"] == "acc")]
        for fam, g in mmlu.groupby("family"):
            assert len(g) == 57
            assert (g["class"] == "flat").mean() > 0.7, (shots, fam)
        emergent = mmlu[mmlu["class"] == "emergent"]
        assert (emergent["n_above"] >= 2).all()
        assert (emergent["confidence"] < 1).any()  # the weak calls say so


def test_pythia_mmlu_single_high_point_is_not_emergent(pythia):
    # Raise only the largest model of a flat subject well above chance (12b: 0.40 of 100).
    scores = load_scores([PYTHIA], mapping={"model_family": "family", "total_params": "params"})
    g = scores[
        (scores["family"] == "pythia")
        & (scores["shots"] == 0)
        & (scores["metric"] == "acc")
        & (scores["task"] == "hendrycksTest-abstract_algebra")
    ].copy()
    g.loc[g["params"].idxmax(), "value"] = 0.40
    c = classify(g, x="params").curves.iloc[0]
    assert c["class"] == "flat" and c["n_above"] <= 1
