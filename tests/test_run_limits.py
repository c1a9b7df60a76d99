"""Runs that cannot be trained are refused before anything compiles (issue 21, part 5): a state
larger than the devices' memory (on CPU, the host's RAM), an estimated time beyond
plan.MAX_RUN_DAYS unless --yes, more eval items than a task has; and the work before training
shows progress once it takes a second."""

import time

import pytest
import yaml

from evaluation.task_suite import TASKS
from evaluation.tasks import TaskError, eval_examples
from experiments import plan, runner, store
from experiments.cli import main
from experiments.executors import LocalExecutor
from experiments.sweep import expand
from experiments.tracking import progress
from scaling.config import ConfigError, run_config

TINY = {"n_layer": 1, "d_model": 32, "n_head": 2, "d_ff": 64, "seq_len": 64}
RUN = {
    "model": TINY,
    "data": {"synthetic_chars": 20_000},
    "train": {"tokens": 8 * 64 * 4, "batch_size": 8},
    "eval": {"tasks": ["add2"], "shots": [0], "n_examples": 5},
}
WIDE = {**RUN, "model": {**TINY, "d_model": 2**20, "n_head": 4}}  # 1M wide: 35 TB of weights
LONG = {**RUN, "train": {**RUN["train"], "tokens": 1e18}}
QUIET = runner.Launch(tensorboard=False, show_progress=False)


def cli(tmp_path, monkeypatch, capsys, *argv) -> tuple[int, str]:
    """`scaling ...` in tmp_path, training refused: (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "execute_run", pytest.fail)
    code = main(list(argv))
    return code, capsys.readouterr().err


def write(tmp_path, name: str, tree: dict) -> str:
    (tmp_path / name).write_text(yaml.safe_dump(tree))
    return name


def test_a_model_larger_than_memory_is_refused_before_compiling(tmp_path, monkeypatch, capsys):
    config = write(tmp_path, "wide.yaml", WIDE)
    code, err = cli(tmp_path, monkeypatch, capsys, "train", config, "--yes")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "GB per device" in err
    sweep = write(tmp_path, "s.yaml", {"name": "wide", "base": WIDE, "grid": {"train.seed": [0]}})
    code, err = cli(tmp_path, monkeypatch, capsys, "sweep", sweep, "--yes")
    assert code == 2 and err.startswith("scaling: error: run 0: mesh: needs"), err
    assert not (tmp_path / "runs").exists()


def test_a_worker_elsewhere_refuses_it_once_without_retries(tmp_path):
    """Runs that train in other processes are checked on their own devices: the refusal is a
    failure with its reason, not retried."""
    tight = {**RUN, "mesh": {"device_memory_gb": 1e-6}}
    sweep = expand({"name": "tight", "base": tight, "grid": {"train.seed": [0]}})
    outcome = runner.run_sweep(sweep, str(tmp_path), LocalExecutor(), QUIET, here=False)
    (message,) = outcome.failed.values()
    assert "ConfigError" in message and "GB per device" in message and "attempts: 1" in message
    (run_dir,) = store.run_dirs(str(tmp_path / "tight"))
    status = store.status(run_dir)
    assert status["state"] == store.FAILED and status["retryable"] is False
    assert store.attempts(run_dir) == [1]


def test_a_run_longer_than_the_limit_needs_yes(tmp_path, monkeypatch, capsys):
    config = write(tmp_path, "long.yaml", LONG)
    code, err = cli(tmp_path, monkeypatch, capsys, "train", config)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "days on one device at 3.5e+10 FLOP/s (more than 30)" in err and "--yes" in err
    sweep = write(tmp_path, "s.yaml", {"name": "long", "base": LONG, "grid": {"train.seed": [0]}})
    code, err = cli(tmp_path, monkeypatch, capsys, "sweep", sweep)
    assert code == 2 and "run 0: train.tokens: 1e+18 tokens take" in err, err
    assert not (tmp_path / "runs").exists()
    cfg = run_config(LONG)
    plan.check_duration([("long", cfg)], plan.CPU_FLOPS_PER_S, yes=True)  # --yes: no refusal
    plan.check_duration([("long", cfg)], 1e30)  # the device's --flops-per-s: it fits
    with pytest.raises(ConfigError, match="--flops-per-s: must be > 0"):
        plan.check_duration([("long", cfg)], float("nan"))


def test_the_assumed_throughput_is_the_cpu_here_and_an_accelerator_elsewhere():
    assert plan.assumed_flops_per_s(here=True) == plan.CPU_FLOPS_PER_S  # the tests run on CPU
    assert plan.assumed_flops_per_s(here=False) == plan.ACCELERATOR_FLOPS_PER_S


def test_more_eval_items_than_a_task_has_fail_fast_and_name_the_most():
    started = time.perf_counter()
    with pytest.raises(TaskError, match=r"add2 has (\d+) distinct test items, fewer than 1000000"):
        eval_examples(TASKS["add2"], 1_000_000, 0)
    assert time.perf_counter() - started < 10
    # items come in draw order: a smaller n is a prefix of a larger one, as before
    assert eval_examples(TASKS["add2"], 50, 0) == eval_examples(TASKS["add2"], 100, 0)[:50]


def test_work_before_training_shows_progress_once_it_takes_a_second(capsys):
    with progress(2, "checking data and prompts", "check") as bar:
        bar.update()
    assert capsys.readouterr().err == ""  # quick: nothing shown
    with progress(2, "checking data and prompts", "check") as bar:
        time.sleep(1.6)  # one long step: the bar appears while it runs
        assert "checking data and prompts" in capsys.readouterr().err
        bar.update(2)
