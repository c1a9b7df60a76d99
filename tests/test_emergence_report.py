import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.emergence_report import write_emergence
from analysis.emergence_stats import Settings
from experiments.cli_emergence import add_parser
from scaling.config import ConfigError

PYTHIA = Path("/work/shared/data/pythia_evals/pythia_evals_final.csv")
X = np.geomspace(1e18, 1e22, 6)
CURVES = {
    "flat": [0.25, 0.26, 0.24, 0.25, 0.26, 0.25],
    "smooth": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "jump": [0.25, 0.25, 0.26, 0.25, 0.7, 0.9],
}


def scores():
    return pd.DataFrame(
        [
            {
                "model": f"{fam}{i}",
                "family": fam,
                "task": task,
                "subtask": "",
                "metric": "acc",
                "shots": 0,
                "flops": X[i] * (2 if fam == "b" else 1),
                "value": v,
                "stderr": np.nan,
                "n_examples": 500,
                "random_baseline": 0.25,
                "higher_is_better": 1.0,
            }
            for fam in ("a", "b")
            for task, vs in CURVES.items()
            for i, v in enumerate(vs)
        ]
    )


def test_write_emergence(tmp_path):
    s = write_emergence(scores(), tmp_path, holdout_largest=2, settings=Settings(n_boot=50))
    table = pd.read_csv(tmp_path / "emergence.csv", keep_default_na=False)
    assert {
        "task",
        "metric",
        "family",
        "class",
        "random_baseline",
        "threshold_lo",
        "threshold_hi",
        "linearity",
        "breakthroughness",
        "forecast",
        "score[a0]",
        "score[b5]",
    } <= set(table.columns)
    got = {(r["family"], r["task"]): r["class"] for r in table.to_dict("records")}
    assert got == {
        (f, t): c
        for f in "ab"
        for t, c in (("flat", "flat"), ("smooth", "smooth"), ("jump", "emergent"))
    }
    counts = pd.read_csv(tmp_path / "emergence_counts.csv")
    assert counts.set_index("family").loc["a", ["flat", "smooth", "emergent"]].tolist() == [1, 1, 1]
    md = (tmp_path / "emergence.md").read_text()
    assert "## a" in md and "## b" in md and "Holm" in md and "Backtest" in md
    tex = (tmp_path / "emergence.tex").read_text()
    assert tex.count(r"\toprule") == 2 and r"\bottomrule" in tex
    assert r"\caption{Emergence classes, a, x = flops}" in tex and "–" not in tex
    assert (tmp_path / "emergence.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "emergence_backtest.csv")) == 6 * 2
    summary = json.loads((tmp_path / "emergence.json").read_text())
    assert summary["counts"]["a"] == {"flat": 1, "smooth": 1, "emergent": 1} == s["counts"]["a"]
    by_fit = summary["backtest"]["by_fit"]  # count, error and coverage per kind of fit
    assert sum(v["n"] for v in by_fit.values()) == 12
    assert all(0 <= v["coverage"] <= 1 and v["n"] > 0 for v in by_fit.values())
    assert "inside the nominal 90% interval" in md and "parametric bootstrap replicates" in md
    assert summary["classes"]["b/jump//acc/0"] == "emergent"


def run_cli(argv):
    p = argparse.ArgumentParser(prog="scaling")
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_on_pythia(tmp_path, capsys):
    if not PYTHIA.exists():
        pytest.skip(f"{PYTHIA} not available")
    common = [
        str(PYTHIA),
        "--family",
        "model_family",
        "--map",
        "total_params=params",
        "--map",
        "approx_train_flops_6ND_total=flops",
        "--task",
        "lambada_openai",
        "--task",
        "hendrycksTest-marketing",
        "--task",
        "piqa",
    ]
    with pytest.raises(ConfigError, match="bloom-1b1"):  # OPT/BLOOM have no FLOPs
        run_cli(["emergence", *common, "--x", "flops", "--out", str(tmp_path / "f")])
    with pytest.raises(ConfigError, match="did you mean lambada_openai"):
        run_cli(
            [
                "emergence",
                str(PYTHIA),
                "--family",
                "model_family",
                "--map",
                "total_params=params",
                "--task",
                "lambada",
                "--out",
                str(tmp_path),
            ]
        )
    out = tmp_path / "p"
    assert (
        run_cli(
            [
                "emergence",
                *common,
                "--x",
                "params",
                "--holdout-largest",
                "2",
                "--n-boot",
                "50",
                "--forecast-boot",
                "200",
                "--forecast-logprob",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "emergence.csv")
    lam = table[(table["task"] == "lambada_openai") & (table["metric"] == "acc")]
    assert set(lam["family"]) == {"pythia", "pythia-deduped", "opt", "bloom"}
    assert set(lam["class"]) == {"smooth"}
    assert (out / "emergence.png").exists() and (out / "emergence_backtest.csv").exists()
    fits = pd.read_csv(out / "emergence_backtest_curves.csv").set_index(["task", "metric"])["fit"]
    assert set(fits.loc[("lambada_openai", "acc")]) == {"logprob"}  # through LAMBADA's ppl
    skipped = pd.read_csv(out / "emergence_skipped.csv")
    assert set(skipped["metric"]) == {"ppl"}  # LAMBADA perplexity: no chance level, named
    assert "curves classified along params" in capsys.readouterr().out
