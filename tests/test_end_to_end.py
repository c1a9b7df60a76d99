"""A micro sweep through every layer: train, evaluate, collect, fit, report; then a re-run."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.report import FILES
from experiments.cli import main

MICRO = {
    "name": "micro",
    "base": {
        "model": {"seq_len": 64},
        "data": {"synthetic_chars": 100_000},
        "train": {"batch_size": 8, "warmup_steps": 5, "eval_every": 10, "checkpoint_every": 20},
        "eval": {
            "shots": [1],
            "n_examples": 20,
            "tasks": ["add2", "copy_letters", "largest_of_4"],
            "every_steps": 20,  # also at the midpoint: emergence over training
        },
    },
    "grid": {"model": ["s0", "s1", "s2"], "train.tokens": [20480]},
}


@pytest.mark.slow
def test_micro_sweep_end_to_end(tmp_path, capsys):
    sweep_file = tmp_path / "micro.yaml"
    sweep_file.write_text(yaml.safe_dump(MICRO))
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    args = ["sweep", str(sweep_file), "--runs-dir", str(runs), "--reports-dir", str(reports)]
    assert main(args) == 0
    assert "trained 3, already done 0, failed 0" in capsys.readouterr().out

    sweep_dir = runs / "micro"
    run_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(run_dirs) == 3
    for run_dir in run_dirs:
        for name in ("config.json", "status.json", "metrics.jsonl", "eval.jsonl", "checkpoints"):
            assert (run_dir / name).exists(), name
        assert json.loads((run_dir / "status.json").read_text())["state"] == "done"

    results = pd.read_parquet(sweep_dir / "results.parquet")
    # runs × (add2, copy_letters: exact match, edit distance, logprob; largest_of_4: acc,
    # acc_norm, brier, logprob)
    assert len(results) == 3 * (3 + 3 + 4)
    over_training = pd.read_csv(sweep_dir / "eval_over_training.csv")
    assert set(over_training["step"]) == {20} and len(over_training) == len(results)
    assert (over_training["tokens_seen"] == 20 * 8 * 64).all()
    for column in (
        "params_total",
        "params_non_embedding",
        "params_embedding",
        "tokens",
        "flops_6n",
        "flops_detailed",
        "loss",
        "task",
        "metric",
        "value",
    ):
        assert results[column].notna().all(), column
    assert (results["flops_detailed"] > results["flops_6n"]).all()  # tiny models: attention, logits
    # Byte tokens: bits per byte is the loss in bits; the report names the tokenizer.
    assert (results["tokenizer"] == "bytes").all()
    assert np.allclose(results["loss_bpb"], results["loss"] / np.log(2), rtol=1e-3)
    pd.testing.assert_frame_equal(
        results, pd.read_csv(sweep_dir / "results.csv"), check_dtype=False
    )

    report = reports / "micro"
    for name in FILES:
        assert (report / name).stat().st_size > 0, name
    assert "nats per token of the `bytes` tokenizer" in (report / "report.md").read_text()
    fits = json.loads((report / "fits.json").read_text())
    assert "frontier" in json.dumps(fits)
    emergence = pd.read_csv(report / "emergence.csv")
    with_chance_level = results[results["random_baseline"].notna()]
    assert len(emergence) == with_chance_level.groupby(["task", "metric"]).ngroups == 5

    # A re-run trains nothing and reports again.
    assert main(args) == 0
    assert "trained 0, already done 3, failed 0" in capsys.readouterr().out


def test_console_script_rejects_bad_sweep_before_compiling(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**MICRO, "grid": {"model": ["s0"], "train.tokenz": [1]}}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments",
            "sweep",
            str(bad),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "scaling: error: run s0-1: train.tokenz: unknown key; fix: did you mean 'tokens'?"
    ]
    assert not (tmp_path / "runs").exists()
