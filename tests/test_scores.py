from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.importers import (
    attach_models,
    load_scores,
    read_bigbench,
    read_csv,
    read_lm_eval,
)
from analysis.project_scores import from_project
from analysis.scores import (
    SCHEMA,
    baseline_from_target_scores,
    fill_n_examples,
    read_bigbench_task,
    resolve_baselines,
    tidy,
)
from scaling.config import ConfigError

DATA = Path(__file__).parent / "data" / "emergence"


def row(df, **match):
    hit = df
    for k, v in match.items():
        hit = hit[hit[k] == v]
    assert len(hit) == 1, f"{match}: {len(hit)} rows"
    return hit.iloc[0]


def test_lm_eval_v03():
    s = read_lm_eval(DATA / "lm_eval_v03.json")
    assert list(s.columns[: len(SCHEMA)]) == SCHEMA
    # from model_args pretrained=org/name,revision=step143000: a checkpoint keeps its revision
    assert set(s["model"]) == {"pythia-70m@step143000"}
    assert set(s["model_name"]) == {"pythia-70m"} and set(s["step"]) == {143000}
    assert set(s["shots"]) == {5.0}  # config.num_fewshot
    assert len(s) == 6  # 2 + 2 + 2 metrics, stderr keys are not metrics
    acc = row(s, task="lambada_openai", metric="acc")
    assert acc["value"] == 0.1846 and acc["stderr"] == 0.0054
    assert row(s, task="lambada_openai", metric="ppl")["higher_is_better"] == 0.0
    assert acc["higher_is_better"] == 1.0


def test_lm_eval_v04_subtasks_shots_filters():
    s = read_lm_eval(DATA / "lm_eval_v04.json")
    assert set(s["model"]) == {"pythia-1b"}
    astro = row(s, task="mmlu", subtask="mmlu_astronomy")
    assert (astro["value"], astro["stderr"], astro["n_examples"], astro["shots"]) == (
        0.3026,
        0.0374,
        152,
        0,
    )
    assert astro["n_choices"] == 4
    # "N/A": lm-eval's own binomial stderr from the 166 examples n-samples gives
    virology = row(s, subtask="mmlu_virology")
    assert virology["stderr"] == pytest.approx(np.sqrt(0.2771 * (1 - 0.2771) / 165))
    assert row(s, task="mmlu", subtask="")["value"] == 0.262  # the group's own row
    gsm = s[s["task"] == "gsm8k"]
    assert set(gsm["metric"]) == {"exact_match:strict-match", "exact_match:flexible-extract"}
    assert set(gsm["shots"]) == {5.0} and set(gsm["higher_is_better"]) == {1.0}
    assert row(s, metric="exact_match:strict-match")["stderr"] == 0.0034


def test_bigbench_scores_file():
    s = read_bigbench(DATA / "scores_BIG-G_2m.json")
    assert set(s["family"]) == {"BIG-G T=0"} and set(s["model"]) == {"BIG-G T=0 2m"}
    assert set(s["params"]) == {2098048} and set(s["non_embedding_params"]) == {1048576}
    three = row(s, subtask="three_objects", metric="multiple_choice_grade")
    assert three["task"] == "logical_deduction" and three["random_baseline"] == 0.25
    assert row(s, subtask="five_objects", metric="multiple_choice_grade")["random_baseline"] == 0.2
    # Only the preferred score's low_score is a chance level; other metrics get none.
    assert np.isnan(
        row(s, subtask="three_objects", metric="calibration_multiple_choice_brier_score")[
            "random_baseline"
        ]
    )  # noqa: E501
    whole = row(s, subtask="", metric="exact_str_match")
    assert whole["shots"] == 1 and whole["random_baseline"] == 0.0
    assert "flop_matched_non_embedding_params" in s.columns


def test_target_scores_baseline():
    assert baseline_from_target_scores(
        [
            {"target_scores": {"a": 1, "b": 0}},
            {"target_scores": dict.fromkeys("abcd", 0) | {"a": 1}},
        ]
    ) == pytest.approx((1 / 2 + 1 / 4) / 2)
    info = read_bigbench_task(DATA / "task.json")
    assert info.loc[0, "random_baseline"] == pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3)
    assert info.loc[0, "n_examples"] == 3


def test_mapped_csv():
    mapping = {
        "name": "model",
        "series": "family",
        "size": "params",
        "benchmark": "task",
        "part": "subtask",
        "k": "shots",
        "score": "value",
        "score_se": "stderr",
        "count": "n_examples",
    }
    s = read_csv(DATA / "mapped.csv", mapping, defaults={"metric": "acc"})
    assert len(s) == 6 and set(s["subtask"]) == {"easy", "hard"}
    r = row(s, model="a-2", subtask="easy")
    assert (r["params"], r["value"], r["stderr"], r["n_examples"]) == (1e9, 0.40, 0.024, 400)
    with pytest.raises(ConfigError, match="metric"):
        read_csv(DATA / "mapped.csv", mapping)  # no metric column and no default


def test_tidy_rejects_non_numeric_values():
    df = pd.DataFrame(
        {"model": ["a"], "task": ["t"], "metric": ["acc"], "shots": [0], "value": ["high"]}
    )
    with pytest.raises(ConfigError, match="non-numeric"):
        tidy(df)


def test_baseline_resolution_order_and_named_gaps():
    s = tidy(
        pd.DataFrame(
            {
                "model": "m",
                "task": ["piqa", "piqa", "quiz", "quiz", "mine", "hendrycksTest-x"],
                "metric": ["acc", "acc", "acc", "exact_match", "acc", "ppl"],
                "shots": 0,
                "value": 0.5,
                "random_baseline": [0.4, np.nan, np.nan, np.nan, np.nan, np.nan],
                "subtask": ["", "b", "", "", "", ""],
            }
        )
    )
    s["n_choices"] = [np.nan, np.nan, np.nan, np.nan, 5, np.nan]
    info = pd.DataFrame(
        {
            "task": ["quiz", "piqa"],
            "metric": ["acc", "acc"],
            "random_baseline": [0.1, np.nan],
            "n_choices": [np.nan, 3],
        }
    )
    r = resolve_baselines(s, info)
    assert r["random_baseline"].tolist()[:5] == pytest.approx(
        [0.4, 1 / 3, 0.1, np.nan, 0.2], nan_ok=True
    )
    assert r["baseline_source"].tolist()[:5] == [
        "row",
        "task_info:n_choices",
        "task_info",
        "",
        "n_choices",
    ]
    # A perplexity gets no chance level from choice counts, even on a known task.
    assert np.isnan(r["random_baseline"].iloc[5])
    known = resolve_baselines(s.iloc[[1]])
    assert (
        known["random_baseline"].iloc[0] == 0.5 and known["baseline_source"].iloc[0] == "known:piqa"
    )


def test_n_examples_from_lm_eval_stderr():
    # lm-eval stderr = sqrt(p(1-p)/(n-1)); three models on 400 examples, one scoring 0.
    p = np.array([0.3, 0.5, 0.0])
    s = tidy(
        pd.DataFrame(
            {
                "model": list("abc"),
                "task": "t",
                "metric": "acc",
                "shots": 0,
                "value": p,
                "stderr": np.sqrt(p * (1 - p) / 399),
            }
        )
    )
    f = fill_n_examples(s)
    assert f["n_examples"].tolist() == [400, 400, 400]
    assert set(f["n_source"]) == {"stderr"}


def test_project_results_importer():
    results = pd.DataFrame(
        {
            "sweep": "demo",
            "run_id": ["r1", "r2", "r1", "r2"],
            "model": ["s1", "s1", "s1", "s1"],
            "params_total": 2000,
            "params_non_embedding": 1000,
            "tokens": [10**6, 4 * 10**6] * 2,
            "flops_6n": 1.0,
            "flops_detailed": [7e9, 2.8e10] * 2,
            "loss": 3.0,
            "task": ["add", "add", "copy", "copy"],
            "metric": "exact_match",
            "shots": 1,
            "value": 0.1,
            "stderr": 0.01,
            "n_examples": 100,
            "random_baseline": 0.0,
        }
    )
    s = from_project(results)
    assert s["model"].tolist() == ["s1@1M", "s1@4M", "s1@1M", "s1@4M"]
    assert set(s["family"]) == {"demo, s1"}  # one model at two budgets: the model's curve
    assert s["flops"].tolist() == [7e9, 2.8e10] * 2
    assert {"loss", "flops_6n", "run_id"} <= set(s.columns)


def test_load_scores_attaches_models(tmp_path):
    models = pd.DataFrame(
        {"model": ["pythia-70m", "pythia-1b"], "family": "pythia", "params": [7e7, 1e9]}
    )
    s = load_scores([DATA / "lm_eval_v03.json", DATA / "lm_eval_v04.json"], models=models)
    assert set(s["family"]) == {"pythia"}
    assert row(s, model="pythia-1b", subtask="mmlu_astronomy")["params"] == 1e9
    # the models file names pythia-70m; its checkpoint pythia-70m@step143000 gets its size
    piqa = row(s, model_name="pythia-70m", task="piqa", metric="acc")
    assert piqa["params"] == 7e7 and piqa["random_baseline"] == 0.5
    # n_examples from stderr where the file has none (v0.3): the median of acc's and acc_norm's
    # estimates (same examples); as reported where the file has them (v0.4).
    n_est = [p * (1 - p) / se**2 + 1 for p, se in ((0.5958, 0.0114), (0.5941, 0.0115))]
    assert piqa["n_examples"] == round(np.median(n_est))
    assert row(s, subtask="mmlu_astronomy")["n_examples"] == 152
    with pytest.raises(ConfigError, match="file not found"):
        load_scores([tmp_path / "missing.json"])
    assert attach_models(s, models).equals(s)


def _runs(**columns) -> pd.DataFrame:
    n = len(columns["run_id"])
    base = {"sweep": "d", "params_total": 1, "params_non_embedding": 1, "flops_detailed": 1.0}
    score = {"task": "add2", "metric": "exact_match", "shots": 0, "value": 0.0, "n_examples": 9}
    return pd.DataFrame({k: [v] * n for k, v in base.items()} | columns | score)


def test_project_curves_hold_the_budget_fixed():
    grid = from_project(
        _runs(
            run_id=["a", "b", "c", "d"],
            model=["s0", "s1", "s0", "s1"],
            tokens=[1000, 1000, 4000, 4000],
            loss=[3.0, 2.9, 2.8, 2.7],
        )
    )
    assert dict(zip(grid["run_id"], grid["family"])) == {
        "a": "d, D=1k", "b": "d, D=1k", "c": "d, D=4k", "d": "d, D=4k"
    }  # fmt: skip
    iso = from_project(
        _runs(
            run_id=["a", "b", "c", "d", "e"],
            model=["s0", "s1", "s1", "s2", "s3"],
            tokens=[4000, 2000, 8000, 4000, 2000],
            flops_budget=[1e9, 1e9, 4e9, 4e9, 4e9],
            loss=[3.0, 2.9, 2.6, 2.5, 2.7],
        )
    )
    assert iso["run_id"].tolist() == ["b", "d"] and set(iso["family"]) == {"d, compute-optimal"}
