"""A sweep survives kill -9, concurrent launchers and a diverging run; it runs the same through
Ray and submitit. Every test launches real runs of one tiny shape (compiled once, cached)."""

import os
import signal
import stat
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from conftest import tiny_run

from experiments import executors, runner, store
from experiments.cli import main
from experiments.sweep import expand

pytestmark = pytest.mark.slow
ENV = os.environ | {"JAX_PLATFORMS": "cpu"}


def spec(name: str, grid: dict, steps: int = 40) -> dict:
    return {"name": name, "base": tiny_run(steps), "grid": grid}


def launch(tmp_path, sweep: dict, *args, wait=True):
    path = tmp_path / f"{sweep['name']}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    cmd = [sys.executable, "-m", "experiments", "sweep", str(path), "--no-report"]
    cmd += ["--runs-dir", str(tmp_path / "runs"), "--no-tensorboard", *args]
    if not wait:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def statuses(sweep_dir):
    return {d: store.status(d) for d in store.run_dirs(sweep_dir)}


def test_kill_9_a_worker_then_relaunch_completes_without_losing_work(tmp_path):
    sweep = spec("killed", {"train.seed": [0, 1, 2]}, steps=120)
    proc = launch(tmp_path, sweep, "--workers", "2", wait=False)
    sweep_dir, victim, deadline = tmp_path / "runs" / "killed", None, time.time() + 180
    while victim is None and time.time() < deadline:  # a worker that has saved checkpoint 20
        for run_dir in store.run_dirs(sweep_dir):
            if os.path.exists(f"{run_dir}/checkpoints/20"):
                victim = store.owner(run_dir)
        time.sleep(0.05)
    os.kill(victim["pid"], signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0  # the broken pool's runs were not finished

    done_before = {d for d, s in statuses(sweep_dir).items() if s["state"] == "done"}
    again = launch(tmp_path, sweep, "--workers", "2")
    assert again.returncode == 0, again.stderr
    after = statuses(sweep_dir)
    assert all(s["state"] == "done" for s in after.values()) and len(after) == 3
    assert f"already done {len(done_before)}" in again.stdout
    resumed = [s["resumed_from_step"] for d, s in after.items() if d not in done_before]
    assert max(resumed) >= 20  # the killed run went on from its checkpoint
    for run_dir in after:
        steps = [(r["step"], r["split"]) for r in store.read_jsonl(f"{run_dir}/metrics.jsonl")]
        assert len(steps) == len(set(steps))  # nothing logged twice


def test_two_launchers_at_once_train_every_run_once(tmp_path):
    sweep = spec("twice", {"train.seed": [0, 1, 2, 3]})
    procs = [launch(tmp_path, sweep, wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    trained = [int(o.split("trained ")[1].split(",")[0]) for o in outs]
    assert sum(trained) == 4, outs
    # each waits for the runs the other holds: both report the sweep complete, exit 0
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("failed 0, held elsewhere 0" in o for o in outs), outs
    for run_dir, status in statuses(tmp_path / "runs" / "twice").items():
        assert status["state"] == "done" and store.attempts(run_dir) == [1]


def test_a_diverging_run_fails_with_its_reason_and_the_others_finish(tmp_path):
    sweep = spec("nan", {"train.learning_rate": [0.003, 1e9]}, steps=20)
    sweep["base"]["train"]["warmup_steps"] = 0
    result = launch(tmp_path, sweep)
    assert result.returncode == 1
    assert "failed: 1e+09: Diverged: training loss" in result.stderr
    failed = pd.read_csv(tmp_path / "runs" / "nan" / "failed_runs.csv", dtype={"name": str})
    assert list(failed.name) == ["1e+09"] and not failed.retryable.any()
    results = pd.read_csv(tmp_path / "runs" / "nan" / "results.csv", dtype={"name": str})
    assert set(results.name) == {"0.003"}
    for column in ("git_commit", "config_hash", "packages", "device_kind", "tokens_per_s"):
        assert results[column].notna().all(), column
    status = next(s for s in statuses(tmp_path / "runs" / "nan").values() if s["state"] == "failed")
    assert status["attempt"] == 1 and "Diverged" in status["traceback"]
    report = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs" / "nan"), "--out", str(report)]) == 0
    left_out = (report / "report.md").read_text().split("Runs left out of the analysis")[1]
    assert "1e+09" in left_out and "Diverged" in left_out


def test_a_sweep_through_a_local_ray_cluster(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sweep = expand(spec("ray", {"train.seed": [0, 1]}))
        launch_opts = runner.Launch(tensorboard=False, show_progress=False)
        outcome = runner.run_sweep(sweep, str(tmp_path), executors.RayExecutor(), launch_opts)
    finally:
        ray.shutdown()
    assert len(outcome.done) == 2 and not outcome.failed
    pids = {s["provenance"]["pid"] for s in statuses(tmp_path / "ray").values()}
    assert os.getpid() not in pids  # trained in Ray's worker processes


def test_submitit_debug_executor_and_the_slurm_batch_script(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    sweep = expand(spec("slurm", {"train.seed": [0]}))
    debug = executors.SlurmExecutor(folder=str(tmp_path / "submitit"), cluster="debug")
    outcome = runner.run_sweep(
        sweep, str(tmp_path / "runs"), debug, runner.Launch(tensorboard=False)
    )
    assert len(outcome.done) == 1
    # The SLURM path up to sbatch, with a stand-in sbatch that records the batch script.
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/array.sh\necho Submitted batch job 42\n')
    (fake.parent / "srun").write_text("#!/bin/sh\n")  # submitit checks that it exists
    for tool in fake.parent.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    slurm = executors.SlurmExecutor(
        folder=str(tmp_path / "slurm"),
        partition="gpu",
        timeout_min=30,
        gpus_per_node=1,
        array_parallelism=2,
    )
    jobs = slurm.submit(
        runner.work,
        [
            runner.Task(s, "x", runner.Launch())
            for s in expand(spec("s", {"train.seed": [0, 1, 2]})).runs
        ],
    )
    script = (tmp_path / "array.sh").read_text()
    assert len(jobs) == 3 and jobs[0].job_id == "42_0"
    for line in (
        "--array=0-2%2",
        "--partition=gpu",
        "--time=30",
        "--gpus-per-node=1",
        "--signal=USR2@90",
    ):
        assert f"#SBATCH {line}" in script, line


def test_a_refused_run_is_counted_listed_and_fails_the_launch(tmp_path, capsys):
    """A run whose directory holds another run's config is neither trained nor dropped: the
    summary counts it failed, failed_runs.csv and the report list it, the exit code is 1."""
    sweep = spec("refusal", {"train.seed": [0, 1]}, steps=10)
    path = tmp_path / "refusal.yaml"
    path.write_text(yaml.safe_dump(sweep))
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    victim = expand(sweep).runs[1]
    foreign = store.locate(str(runs / "refusal"), victim.run_id, victim.name)
    store.claim_config(foreign, victim.config.to_dict() | {"train": {"seed": 99}})
    args = ["sweep", str(path), "--runs-dir", str(runs), "--reports-dir", str(reports)]
    assert main([*args, "--no-tensorboard"]) == 1
    out, err = capsys.readouterr()
    assert "trained 1, already done 0, failed 1" in out and "holds a different run" in err
    failed = pd.read_csv(runs / "refusal" / "failed_runs.csv")
    assert failed["run_id"].tolist() == [victim.run_id]
    assert victim.run_id in (reports / "refusal" / "report.md").read_text()
    assert store.attempts(foreign) == []  # never claimed, so never retried


def test_a_nan_in_a_config_is_the_same_run_again(tmp_path):
    cfg = {"train": {"learning_rate": float("nan")}, "name": "x"}
    store.claim_config(str(tmp_path), cfg)
    store.claim_config(str(tmp_path), cfg)  # NaN != NaN in Python, yet this is the same run


def test_a_run_killed_five_times_in_a_row_still_finishes_bit_identical(tmp_path):
    """Preemption is not failure: five kill -9s of the same run (max_attempts 2) leave it
    claimable, and the sixth launch finishes it with the losses of an uninterrupted run."""
    sweep = spec("preempted", {"train.seed": [0]}, steps=120)
    sweep_dir, last = tmp_path / "runs" / "preempted", 0
    for _ in range(5):
        proc = launch(tmp_path, sweep, "--max-attempts", "2", wait=False)
        deadline = time.time() + 120
        while time.time() < deadline:  # a checkpoint beyond the last kill's, then kill -9
            (run_dir,) = store.run_dirs(sweep_dir) or [None]
            found = (
                (sweep_dir / run_dir.rsplit("/", 1)[-1]).glob("checkpoints/*") if run_dir else ()
            )
            saved = [int(c.name) for c in found if c.name.isdigit()]  # finished saves only
            if saved and max(saved) > last:
                last = max(saved)
                os.kill(store.owner(run_dir)["pid"], signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.kill()
        proc.communicate(timeout=60)
    assert last < 120
    finished = launch(tmp_path, sweep, "--max-attempts", "2")
    assert finished.returncode == 0, finished.stderr
    (run_dir,) = store.run_dirs(sweep_dir)
    assert store.status(run_dir)["state"] == "done" and len(store.attempts(run_dir)) == 6
    (tmp_path / "ref").mkdir()
    reference = launch(tmp_path / "ref", sweep)
    assert reference.returncode == 0, reference.stderr
    (ref_dir,) = store.run_dirs(tmp_path / "ref" / "runs" / "preempted")
    losses = [{(r["step"], r["split"]): r["loss"] for r in store.read_jsonl(f"{d}/metrics.jsonl")}
              for d in (run_dir, ref_dir)]  # fmt: skip
    assert losses[0] == losses[1]
