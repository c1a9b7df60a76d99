"""Run directories are named <label>-<run_id>, readable in a listing, while the run id stays the
run's identity; the bare <run_id> directories of earlier versions are still found, so an old
sweep is resumed (finished runs skipped) and its stable runs still seed cooldown branches."""

import os

import pytest
import yaml
from conftest import tiny_run

from experiments import executors, runner, store
from experiments.cli import main
from experiments.collect import collect
from experiments.plan import status_table
from experiments.sweep import expand, run_id
from scaling.config import run_config

RID, OTHER = "0123456789ab", "fedcba987654"
QUIET = runner.Launch(show_progress=False, tensorboard=False)


def test_directory_names_are_readable_and_end_with_the_run_id():
    assert store.dir_name(RID, "s3-400000") == f"s3-400000-{RID}"
    assert store.dir_name(RID, " model=a b/c ") == f"model_a_b_c-{RID}"
    assert store.dir_name(RID, "") == store.dir_name(RID, "///") == RID
    assert len(store.dir_name(RID, "x" * 500)) == store.LABEL_MAX + 1 + len(RID)
    for name in (f"s3-400000-{RID}", RID, f"{OTHER}-{RID}"):
        assert store.run_id_of(f"runs/demo/{name}/") == RID
    assert store.run_id_of("runs/single/my-run") == "my-run"  # a --run-dir of one's choosing


@pytest.mark.parametrize("root", ["memory://run-dirs", "local"])
def test_a_run_is_found_under_any_label_or_its_bare_id(root, tmp_path):
    sweep_dir = store.join(tmp_path if root == "local" else f"{root}/{tmp_path.name}", "demo")
    assert store.locate(sweep_dir, RID, "s3") == store.join(sweep_dir, f"s3-{RID}")  # new
    store.claim_config(store.join(sweep_dir, RID), {"a": 1})  # written by an earlier version
    assert store.locate(sweep_dir, RID, "s3") == store.join(sweep_dir, RID)
    store.claim_config(store.join(sweep_dir, f"old-name-{OTHER}"), {"a": 2})
    assert store.locate(sweep_dir, OTHER, "renamed") == store.join(sweep_dir, f"old-name-{OTHER}")
    assert [store.run_id_of(d) for d in store.run_dirs(sweep_dir)] == [RID, OTHER]


def test_a_single_run_gets_a_readable_directory_or_its_old_one(tmp_path):
    cfg = run_config(tiny_run(20))
    task = runner.single_task(cfg, None, str(tmp_path), QUIET)
    tokens = cfg.train.tokens
    assert task.url() == str(tmp_path / "single" / f"L2-d32-{tokens}-{run_id(cfg)}")
    assert task.spec.run_id == run_id(cfg)
    (tmp_path / "single" / run_id(cfg)).mkdir(parents=True)  # trained before readable names
    assert runner.single_task(cfg, None, str(tmp_path), QUIET).url().endswith(f"/{run_id(cfg)}")
    assert runner.single_task(cfg, "x/mine", str(tmp_path), QUIET).url() == "x/mine"


def finished(run_dir, spec) -> None:
    """A run as the previous version left it when done: config, status, eval rows."""
    store.claim_config(run_dir, spec.config.to_dict())
    store.write_eval(run_dir, [{"task": "add2", "shots": 0, "metric": "exact_match", "value": 0.1}])
    store.set_status(run_dir, store.DONE, steps=spec.config.steps, heldout_loss=2.0)


def test_a_sweep_of_the_previous_version_is_resumed_not_retrained(tmp_path):
    sweep = expand({"name": "old", "base": tiny_run(20), "grid": {"train.seed": [0, 1]}})
    sweep_dir = tmp_path / "runs" / "old"
    for spec in sweep.runs:
        finished(str(sweep_dir / spec.run_id), spec)
    outcome = runner.run_sweep(sweep, str(tmp_path / "runs"), executors.LocalExecutor(), QUIET)
    ids = [s.run_id for s in sweep.runs]
    assert outcome.skipped == ids and not outcome.done and not outcome.failed
    assert sorted(d for d in os.listdir(sweep_dir) if (sweep_dir / d).is_dir()) == sorted(ids)
    results, _ = collect(sweep_dir)
    assert sorted(results.run_id) == sorted(ids)
    table = status_table(str(sweep_dir), {s.run_id: s.name for s in sweep.runs})
    assert list(table.run_id) == ids and list(table.state) == ["done", "done"]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bare id", "label"])
def test_cooldown_branches_find_their_stable_run_in_either_layout(layout, tmp_path):
    spec = {
        "name": "wsd",
        "base": tiny_run(20),
        "grid": {"train.tokens": [10 * 8 * 64, 20 * 8 * 64]},
        "cooldown": {"decay_fraction": 0.2},
    }
    sweep = expand(spec)
    (stable,), branches = sweep.stages()
    sweep_dir = tmp_path / "runs" / "wsd"
    old = str(sweep_dir / stable.run_id) if layout == "bare id" else ""  # a previous version's
    assert runner.work(runner.Task(stable, str(sweep_dir), QUIET, old))["result"] == store.DONE
    assert store.locate(str(sweep_dir), stable.run_id).endswith(
        stable.run_id if old else f"/{stable.name}-{stable.run_id}"
    )
    outcome = runner.run_sweep(sweep, str(tmp_path / "runs"), executors.LocalExecutor(), QUIET)
    assert outcome.skipped == [stable.run_id] and not outcome.failed
    assert sorted(outcome.done) == sorted(b.run_id for b in branches)
    for b in branches:
        status = store.status(store.locate(str(sweep_dir), b.run_id))
        assert status["state"] == store.DONE and status["resumed_from_step"] > 0
        assert store.locate(str(sweep_dir), b.run_id).endswith(f"/{b.name}-{b.run_id}")


@pytest.mark.slow
def test_scaling_train_writes_a_readable_directory_and_a_rerun_skips_it(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run(10)))
    args = ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-tensorboard"]
    assert main(args) == 0
    cfg = run_config(tiny_run(10))
    (run_dir,) = (tmp_path / "runs" / "single").iterdir()
    assert run_dir.name == f"L2-d32-{cfg.train.tokens}-{run_id(cfg)}"
    assert f"run {run_dir}: held-out loss" in capsys.readouterr().out
    assert main(args) == 0 and store.attempts(str(run_dir)) == [1]  # found, not retrained
