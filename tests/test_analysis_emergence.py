import numpy as np
import pandas as pd
import pytest

from analysis.emergence import CLASS_COLS, _holm, classify_curve, classify_tasks

X = np.geomspace(1e12, 1e17, 6)
N200 = np.full(6, 200)

CURVES = {  # name: (scores at X, random baseline)
    "flat": ([0.0, 0.0, 0.005, 0.0, 0.0, 0.005], 0.0),
    "flat_mc": ([0.24, 0.26, 0.25, 0.22, 0.27, 0.25], 0.25),
    "smooth": ([0.35, 0.42, 0.5, 0.58, 0.66, 0.75], 0.25),
    "emergent": ([0.0, 0.0, 0.005, 0.15, 0.4, 0.6], 0.0),
    "inverse": ([0.7, 0.65, 0.55, 0.5, 0.4, 0.3], 0.25),
}


@pytest.mark.parametrize("name", CURVES)
def test_classes(name):
    scores, baseline = CURVES[name]
    c = classify_curve(X, scores, N200, baseline, n_boot=200)
    assert c["class"] == name.removesuffix("_mc")
    assert 0.5 < c["confidence"] <= 1.0
    assert c["n_points"] == 6


def test_points_are_sorted_by_x():
    scores, baseline = CURVES["emergent"]
    perm = [3, 0, 5, 1, 4, 2]
    c = classify_curve(X[perm], np.array(scores)[perm], N200, baseline, n_boot=0)
    assert c["class"] == "emergent"
    assert c["above"].tolist() == [False, False, False, True, True, True]


def test_emergence_threshold_lies_between_last_at_baseline_and_first_above():
    scores, baseline = CURVES["emergent"]
    c = classify_curve(X, scores, N200, baseline, n_boot=0)
    assert (c["threshold_lo"], c["threshold_hi"]) == (X[2], X[3])
    assert c["threshold_x"] == pytest.approx(np.sqrt(X[2] * X[3]))
    smooth = classify_curve(X, CURVES["smooth"][0], N200, 0.25, n_boot=0)
    assert np.isnan([smooth["threshold_x"], smooth["threshold_lo"], smooth["threshold_hi"]]).all()


def test_rise_within_noise_at_small_n_is_flat():
    # 1/20 and 2/20 exact matches: not significant after Holm against the 1% floor.
    c = classify_curve(X[:5], [0.0, 0.0, 0.0, 0.05, 0.1], np.full(5, 20), 0.0, n_boot=200)
    assert c["class"] == "flat"
    # The same scores on 400 examples each are a real rise.
    c = classify_curve(X[:5], [0.0, 0.0, 0.0, 0.05, 0.1], np.full(5, 400), 0.0, n_boot=0)
    assert c["class"] == "emergent"


def test_zero_baseline_is_not_degenerate():
    # One lucky exact match out of 200 at every scale is not "above a baseline of 0".
    c = classify_curve(X, np.full(6, 1 / 200), N200, 0.0, n_boot=0)
    assert c["class"] == "flat" and not c["above"].any()


def test_holm_adjusted_p_values():
    assert _holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])


def results_table():
    """Two budgets per model, so model names repeat and get '@tokens' in the headers."""
    rows = []
    for i, (model, tokens) in enumerate([("s1", 1e6), ("s1", 4e6), ("s2", 1e6), ("s2", 4e6)]):
        for task, (scores, baseline) in CURVES.items():
            rows.append(
                {
                    "run_id": f"{model}-{tokens:.0e}",
                    "model": model,
                    "tokens": int(tokens),
                    "flops_detailed": X[[0, 1, 3, 5][i]],
                    "task": task,
                    "metric": "acc",
                    "shots": 0,
                    "value": scores[[0, 1, 3, 5][i]],
                    "n_examples": 200,
                    "random_baseline": baseline,
                }
            )
    return pd.DataFrame(rows)


def test_classify_tasks_table():
    table = classify_tasks(results_table(), n_boot=50)
    assert list(table.columns[: len(CLASS_COLS)]) == CLASS_COLS
    assert list(table.columns[len(CLASS_COLS) :]) == ["s1@1M", "s1@4M", "s2@1M", "s2@4M"]
    assert len(table) == len(CURVES)
    got = dict(zip(table["task"], table["class"], strict=True))
    assert got == {"flat": "flat", "flat_mc": "flat", "smooth": "smooth",
                   "emergent": "emergent", "inverse": "inverse"}  # fmt: skip
    assert table.set_index("task").loc["smooth", "s2@4M"] == 0.75


def test_classify_tasks_rejects_duplicate_rows():
    r = results_table()
    with pytest.raises(ValueError, match="several rows"):
        classify_tasks(pd.concat([r, r.iloc[:1]]))
