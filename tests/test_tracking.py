"""Metrics and few-shot scores reach TensorBoard event files and, in offline mode with no network,
Weights & Biases, one W&B run per run (grouped by sweep, tagged, resumable); a missing optional
package is reported once at launch."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tensorboard_scalars, tiny_run

from experiments import tracking
from experiments.cli import main
from experiments.sweep import run_id
from scaling.config import run_config


@pytest.mark.slow
def test_metrics_and_scores_go_to_tensorboard_and_to_wandb_offline(tmp_path):
    pytest.importorskip("wandb")
    base = tiny_run(20, eval={"shots": [0], "n_examples": 5, "tasks": ["add2"], "every_steps": 10})
    sweep = tmp_path / "tracked.yaml"
    sweep.write_text(yaml.safe_dump({"name": "tracked", "base": base, "grid": {"train.seed": [0]}}))
    env = os.environ | {"JAX_PLATFORMS": "cpu", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)
    cmd = [sys.executable, "-m", "experiments", "sweep", str(sweep), "--no-report"]
    cmd += ["--runs-dir", str(tmp_path / "runs"), "--wandb", "scaling-test"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_dir,) = glob.glob(f"{tmp_path}/runs/tracked/*/")
    rid = run_id(run_config(json.loads(Path(run_dir, "config.json").read_text())))
    assert Path(run_dir).name == f"0-{rid}"  # <name in the sweep>-<run id>
    rows = [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]
    heldout = [r for r in rows if r["split"] == "heldout"]
    scores = [json.loads(line) for line in Path(run_dir, "eval.jsonl").read_text().splitlines()]
    assert {r["step"] for r in scores} == {10, 20}  # during training and at the end

    logged = tensorboard_scalars(run_dir)
    assert logged["heldout/loss"] == pytest.approx({r["step"]: r["loss"] for r in heldout})
    for metric in ("exact_match", "logprob"):
        expected = {r["step"]: r["value"] for r in scores if r["metric"] == metric}
        assert logged[f"eval/add2/{metric}/0shot"] == pytest.approx(expected, rel=1e-6)

    # W&B offline: the run's log holds every held-out loss and score as a (key, JSON value)
    # record, and the run record its id, group and tags.
    (wandb_log,) = glob.glob(f"{run_dir}/wandb/offline-run-*/run-{rid}.wandb")
    data = Path(wandb_log).read_bytes()
    for key, value in [("heldout/loss", r["loss"]) for r in heldout] + [
        (tracking.eval_tag(r), r["value"]) for r in scores
    ]:
        texts = {json.dumps(value), json.dumps(int(value)) if value == int(value) else ""}
        record = bytes([len(key)]) + key.encode() + b"\x82\x01"  # W&B writes 0.0 as 0
        assert any(record + bytes([len(t)]) + t.encode() in data for t in texts if t), key
    for text in ("tracked", "L2-d32", f"tokens={20 * 8 * 64}"):
        assert text.encode() in data


def test_a_wandb_run_is_the_run_in_its_sweep_group_and_resumes(monkeypatch, tmp_path):
    """Every attempt of a run opens the same W&B run: id = run id, resume allowed."""
    wandb = pytest.importorskip("wandb")
    calls = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(kwargs))
    cfg = run_config(tiny_run(20) | {"name": "s3-400000"})
    run_dir = tmp_path / "runs" / "demo" / f"s3-400000-{run_id(cfg)}"
    for _ in range(2):  # a first attempt and a retry
        tracking.wandb_run(cfg, run_dir, "proj")
    assert calls[0] == calls[1]
    assert calls[0]["id"] == run_id(cfg) and calls[0]["resume"] == "allow"
    assert calls[0]["group"] == "demo" and calls[0]["project"] == "proj"
    assert calls[0]["tags"] == ["L2-d32", f"tokens={20 * 8 * 64}"]
    assert calls[0]["name"] == "s3-400000" and calls[0]["config"] == cfg.to_dict()


def test_eval_tags_name_task_metric_and_shots():
    row = {"task": "python_functions", "metric": "pass@1:greedy", "shots": 3}
    assert tracking.eval_tag(row) == "eval/python_functions/pass_1_greedy/3shot"
    scalars = []
    sink = tracking.Scalars()
    sink.log = lambda values, step: scalars.append((step, values))
    sink.log_eval([{"task": "add2", "metric": "exact_match", "shots": 0, "value": 0.5, "step": 7}])
    assert scalars == [(7, {"eval/add2/exact_match/0shot": 0.5})]


@pytest.mark.parametrize(
    "argv, flag, module, extra",
    [
        (["sweep", "SWEEP", "--wandb", "p"], "--wandb", "wandb", "wandb"),
        (["sweep", "SWEEP", "--executor", "ray"], "--executor ray", "ray", "cluster"),
        (["sweep", "SWEEP", "--executor", "slurm"], "--executor slurm", "submitit", "cluster"),
        (["train", "CONFIG", "--wandb", "p"], "--wandb", "wandb", "wandb"),
    ],
)
def test_a_missing_optional_package_fails_once_at_launch(
    argv, flag, module, extra, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    sweep, config = tmp_path / "s.yaml", tmp_path / "c.yaml"
    sweep.write_text(
        yaml.safe_dump({"name": "s", "base": tiny_run(20), "grid": {"train.seed": [0]}})
    )
    config.write_text(yaml.safe_dump(tiny_run(20)))
    argv = [{"SWEEP": str(sweep), "CONFIG": str(config)}.get(a, a) for a in argv]
    assert main([*argv, "--runs-dir", str(tmp_path / "runs")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"scaling: error: {flag}: needs the {module} package, not installed; "
        f"fix: pip install -e '.[{extra}]'"
    )
    assert not (tmp_path / "runs").exists()  # nothing was trained or even claimed
