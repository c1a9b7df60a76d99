"""lm-evaluation-harness v0.4 results in (issue 17, part 5): a directory of a model family's
results files, a checkpoint series, the group tree, counts and look-alike columns. The files in
tests/data/lm_eval_v04 follow lm-eval's own layout (see the README there)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.emergence import classify
from analysis.emergence_stats import Settings
from analysis.importers import load_scores, read_csv, read_lm_eval
from experiments.cli import main
from scaling.config import ConfigError

DATA = Path(__file__).parent / "data" / "lm_eval_v04"
FAMILY, SERIES = DATA / "family", DATA / "checkpoints"
QUICK = Settings(n_boot=0)
SIZES = {
    "pythia-70m": 70426624,
    "pythia-160m": 162322944,
    "pythia-410m": 405334016,
    "pythia-1b": 1011781632,
}


def one(df, **match):
    hit = df
    for k, v in match.items():
        hit = hit[hit[k] == v]
    assert len(hit) == 1, f"{match}: {len(hit)} rows"
    return hit.iloc[0]


def v04(results, **sections) -> dict:
    """A minimal v0.4 file: results plus the sections given (group_subtasks, n-samples...)."""
    config = sections.pop("config", {"model_args": "pretrained=org/m"})
    return {"results": results, "config": config, **sections}


@pytest.fixture(scope="module")
def family():
    return load_scores([FAMILY])


def test_a_family_directory_reads_params_and_one_row_per_metric(family):
    sizes = family.drop_duplicates("model").set_index("model")["params"].to_dict()
    assert sizes == SIZES  # config.model_num_parameters: no --models file needed
    assert set(family["revision"]) == {""}  # "main" is no revision
    # 4 MMLU subjects + 2 inner groups + mmlu, arc_easy acc/acc_norm, lambada acc/perplexity
    assert family.groupby("model").size().to_dict() == dict.fromkeys(SIZES, 11)
    assert set(family["metric"]) == {"acc", "acc_norm", "perplexity"}  # never sample_len
    assert family.duplicated(["model", "task", "subtask", "metric", "shots"]).sum() == 0


def test_the_newest_of_two_runs_wins(family):
    arc = one(family, model="pythia-410m", task="arc_easy", metric="acc")
    assert arc["value"] == 0.521044 and "2024-05-01" in arc["source"]  # not 04-30's 0.301


def test_subtasks_sit_under_their_top_group_and_groups_are_aggregates(family):
    m = family[family["model"] == "pythia-1b"]
    mmlu = m[m["task"] == "mmlu"]
    assert set(mmlu["subtask"]) == {
        "",
        "mmlu_stem",
        "mmlu_humanities",
        "mmlu_astronomy",
        "mmlu_college_physics",
        "mmlu_philosophy",
        "mmlu_high_school_us_history",
    }
    assert one(mmlu, subtask="mmlu_astronomy")["group"] == "mmlu_stem"
    assert one(mmlu, subtask="mmlu_stem")["group"] == "mmlu"
    assert set(mmlu.loc[mmlu["aggregate"], "subtask"]) == {"", "mmlu_stem", "mmlu_humanities"}
    assert not m.loc[m["task"] != "mmlu", "aggregate"].any()
    top = one(mmlu, subtask="")
    assert (top["n_examples"], top["n_choices"], top["random_baseline"]) == (769, 4, 0.25)


def test_counts_come_from_the_file_and_na_stderr_keeps_the_curve(family):
    # pythia-70m's file is an older v0.4: no n-samples, counts in "sample_len"
    physics = one(family, model="pythia-70m", subtask="mmlu_college_physics")
    p = 0.205882
    assert physics["n_examples"] == 102
    assert physics["stderr"] == pytest.approx(np.sqrt(p * (1 - p) / 101))  # it said "N/A"
    assert one(family, model="pythia-1b", subtask="mmlu_college_physics")["n_examples"] == 102
    c = classify(family, x="params", settings=QUICK)
    assert "mmlu_college_physics" in set(c.curves["subtask"])


def test_each_datum_is_classified_once(family):
    c = classify(family, x="params", settings=QUICK)
    leaves = {
        "mmlu_astronomy",
        "mmlu_college_physics",
        "mmlu_philosophy",
        "mmlu_high_school_us_history",
    }
    assert set(c.curves.loc[c.curves["task"] == "mmlu", "subtask"]) == leaves
    groups = c.skipped[c.skipped["reason"].str.startswith("group average")]
    assert set(groups["subtask"]) == {"", "mmlu_stem", "mmlu_humanities"}
    whole = classify(family, x="params", groups="aggregates", settings=QUICK)
    assert set(whole.curves.loc[whole.curves["task"] == "mmlu", "subtask"]) == {""}
    parts = whole.skipped[whole.skipped["reason"].str.startswith("in a group")]
    assert set(parts["subtask"]) == leaves | {"mmlu_stem", "mmlu_humanities"}
    rest = c.curves[c.curves["task"] != "mmlu"][["task", "metric"]]
    assert rest.equals(whole.curves[whole.curves["task"] != "mmlu"][["task", "metric"]])
    with pytest.raises(ConfigError, match="groups"):
        classify(family, x="params", groups="both")


def test_a_checkpoint_series_is_one_model_per_revision():
    s = load_scores([SERIES])
    steps = s.drop_duplicates("model").set_index("model")["step"].to_dict()
    assert steps == {f"pythia-160m@step{k}": k for k in (1000, 2000, 4000, 8000)}
    # revision from model_args (two files) or from config.model_revision only (two files)
    assert set(s["family"]) == {"pythia-160m"}  # one model's checkpoints: its own curve
    along = classify(s, x="step", settings=QUICK)
    assert len(along.curves) == 3 and set(along.curves["n_points"]) == {4}
    across = classify(s, x="params", settings=QUICK)  # every checkpoint has the same size
    assert across.curves.empty
    assert across.skipped["reason"].str.startswith("several models at one params: ").all()


def test_a_suite_of_checkpoints_gets_one_curve_per_revision(tmp_path):
    for i, (name, n) in enumerate(SIZES.items()):
        for step in (1000, 2000):
            doc = v04(
                {
                    "arc_easy": {
                        "alias": "arc_easy",
                        "acc,none": 0.3 + 0.02 * i + step * 1e-5,
                        "acc_stderr,none": 0.009,
                        "samples": 2376,
                    }
                },
                config={
                    "model_args": f"pretrained=EleutherAI/{name},revision=step{step}",
                    "model_num_parameters": n,
                },
            )
            out = (
                tmp_path
                / f"EleutherAI__{name}"
                / f"results_2024-05-0{i + 1}T0{step // 1000}-00-00.1.json"
            )
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps(doc))
    s = load_scores([tmp_path])
    assert set(s["family"]) == {"step1000", "step2000"}
    c = classify(s, x="params", settings=QUICK)
    assert set(c.curves["family"]) == {"step1000", "step2000"}
    assert set(c.curves["n_points"]) == {4}


def test_model_args_of_this_projects_adapter_and_of_olmo():
    ours = read_lm_eval(
        v04(
            {"arc": {"acc,none": 0.5, "acc_stderr,none": 0.01}},
            config={
                "model": "scaling",
                "model_args": "path=runs/demo/s1-ab12cd34,step=500",
                "model_num_parameters": 1234567,
            },
        )
    )
    assert one(ours, metric="acc")[["model", "model_name", "step", "params"]].tolist() == [
        "s1-ab12cd34@step500",
        "s1-ab12cd34",
        500,
        1234567,
    ]
    olmo = read_lm_eval(
        v04(
            {"arc": {"acc,none": 0.5}},
            config={
                "model_args": {"pretrained": "allenai/OLMo-1B", "revision": "step20000-tokens84B"},
                "model_num_parameters": -1,
            },
        )
    )
    r = one(olmo, metric="acc")
    assert (r["model"], r["step"], r["tokens"]) == ("OLMo-1B@step20000-tokens84B", 20000, 84e9)
    assert np.isnan(r["params"])  # lm-eval's -1: unknown


def test_bookkeeping_keys_are_never_metrics():
    s = read_lm_eval(
        v04(
            {
                "arc": {
                    "alias": "arc",
                    "samples": 100,
                    "sample_len": 100,
                    "name": "arc",
                    "acc,none": 0.5,
                    "acc_stderr,none": "N/A",
                    "bogus": 3,
                    "flag,none": True,
                },
                "tagged": {"alias": "tagged", " ": " "},  # a group that does not aggregate
            },
            group_subtasks={"tagged": ["arc"]},
        )
    )
    assert s["metric"].tolist() == ["acc"]
    r = one(s, metric="acc")
    assert (r["task"], r["subtask"], r["n_examples"]) == ("tagged", "arc", 100)
    assert r["stderr"] == pytest.approx(np.sqrt(0.25 / 99))


def test_a_group_without_counts_takes_its_subtasks():
    s = read_lm_eval(
        v04(
            {
                "g": {"acc,none": 0.4, "acc_stderr,none": "N/A"},
                "a": {"acc,none": 0.3, "acc_stderr,none": 0.02},
                "b": {"acc,none": 0.5, "acc_stderr,none": 0.02},
            },
            group_subtasks={"g": ["a", "b"]},
            **{"n-samples": {"a": {"original": 300, "effective": 200}, "b": {"original": 50}}},
            **{"n-shot": {"a": 5, "b": 5}},
        )
    )
    g = one(s, subtask="")
    assert (g["aggregate"], g["n_examples"], g["shots"]) == (True, 250, 5)
    assert one(s, subtask="a")["n_examples"] == 200  # effective (a --limit), not original


def test_a_known_task_keeps_its_baseline_inside_a_group(tmp_path):
    doc = v04(
        {
            "ai2_arc": {"acc,none": 0.4},
            "arc_easy": {"acc,none": 0.5},
            "arc_challenge": {"acc,none": 0.3},
        },
        group_subtasks={"ai2_arc": ["arc_easy", "arc_challenge"]},
    )
    (tmp_path / "results.json").write_text(json.dumps(doc))
    s = load_scores([tmp_path])
    assert one(s, subtask="arc_challenge")["random_baseline"] == 0.25
    assert one(s, subtask="arc_challenge")["baseline_source"] == "known:arc_challenge"


def test_a_group_cycle_is_refused():
    doc = v04({"a": {"acc,none": 0.5}}, group_subtasks={"a": ["b"], "b": ["a"]})
    with pytest.raises(ConfigError, match="group_subtasks.*own ancestor"):
        read_lm_eval(doc)


def test_a_directory_without_result_files_is_refused(tmp_path):
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(ConfigError, match="no result files"):
        load_scores([tmp_path])


def _scores_csv(path, **rename):
    df = pd.DataFrame(
        {
            "model": ["a", "b", "c"],
            "task": "quiz",
            "metric": "acc",
            "shots": 0,
            "value": [0.2, 0.3, 0.6],
            "n_examples": 400,
            "params": [1e6, 1e7, 1e8],
            "random_baseline": 0.25,
        }
    )
    df.rename(columns=rename).to_csv(path, index=False)
    return path


def test_a_field_under_another_name_is_named(tmp_path):
    s = load_scores([_scores_csv(tmp_path / "a.csv", params="n_params")])
    with pytest.raises(
        ConfigError, match=r"did you mean column 'n_params'\? rename it or --map n_params="
    ):
        classify(s, x="params", settings=QUICK)
    s = load_scores([_scores_csv(tmp_path / "b.csv", random_baseline="baseline")])
    reason = classify(s, x="params", settings=QUICK).skipped["reason"].iloc[0]
    assert reason.endswith(
        "(did you mean column 'baseline'? rename it or --map baseline=random_baseline)"
    )
    with pytest.raises(ConfigError, match="value.*did you mean 'score'"):
        read_csv(_scores_csv(tmp_path / "c.csv", value="score"))


def test_the_cli_reads_a_results_directory(tmp_path, capsys):
    out = tmp_path / "em"
    argv = ["emergence", str(FAMILY), "--x", "params", "--out", str(out), "--n-boot", "5"]
    assert main([*argv, "--no-plot"]) == 0
    table = pd.read_csv(out / "emergence.csv")
    assert len(table) == 7 and "score[pythia-1b]" in table.columns
    assert "7 curves classified along params; 4 skipped" in capsys.readouterr().out
