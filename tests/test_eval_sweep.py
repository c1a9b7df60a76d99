"""`scaling eval` over a sweep: checkpoints evaluated once, re-runs resume, interruptions leave
a record and no half-evaluated task."""

import pytest
from conftest import tensorboard_scalars

from experiments import store, sweep_eval
from experiments.cli import main
from scaling.train import train


@pytest.fixture
def sweep_dir(tiny_cfg, tmp_path):
    sweep = tmp_path / "runs" / "tiny"
    run_dir = sweep / "r0"
    train(tiny_cfg, run_dir)  # 40 steps, checkpoints at 30 and 40 kept
    store.claim_config(str(run_dir), tiny_cfg.to_dict())
    store.set_status(str(run_dir), store.DONE)
    (sweep / "r1").mkdir()  # an unfinished run: left out
    store.claim_config(str(sweep / "r1"), tiny_cfg.to_dict())
    return sweep


def test_checkpoints_are_evaluated_once_and_reruns_resume(sweep_dir, capsys):
    args = ["eval", str(sweep_dir), "--tasks", "add2", "--n-examples", "5", "--checkpoints"]
    assert main(args) == 0
    assert "1 finished runs (1 not finished" in capsys.readouterr().out
    rows = store.read_eval(str(sweep_dir / "r0"))
    assert sorted({r["step"] for r in rows}) == [30, 40]
    assert {r["tokens_seen"] for r in rows} == {30 * 8 * 64, 40 * 8 * 64}
    logged = tensorboard_scalars(sweep_dir / "r0")  # beside the run's training curves
    for r in rows:
        assert logged[f"eval/add2/{r['metric']}/{r['shots']}shot"][r["step"]] == pytest.approx(
            r["value"]
        )
    assert main(args) == 0
    assert "0 (checkpoint, task) evaluated, 2 already there" in capsys.readouterr().out
    assert main([*args[:3], "add2,largest_of_4", *args[4:]]) == 0
    assert "2 (checkpoint, task) evaluated, 2 already there" in capsys.readouterr().out
    assert len(store.read_eval(str(sweep_dir / "r0"))) == len(rows) + 2 * 4  # 4 MC metrics
    assert "evaluating" not in store.status(str(sweep_dir / "r0"))


def test_an_interrupted_evaluation_leaves_a_record_and_whole_tasks(sweep_dir, monkeypatch):
    real = sweep_eval.evaluate
    calls = []

    def dies_on_second_task(params, cfg, ecfg, tok):
        calls.append(ecfg.tasks)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill between tasks
        return real(params, cfg, ecfg, tok)

    monkeypatch.setattr(sweep_eval, "evaluate", dies_on_second_task)
    overrides = {"tasks": ("add2", "largest_of_4"), "n_examples": 5}
    with pytest.raises(KeyboardInterrupt):
        sweep_eval.evaluate_sweep(sweep_dir, overrides)
    run = str(sweep_dir / "r0")
    assert store.status(run)["evaluating"] == {"step": 40, "tasks": ["add2", "largest_of_4"]}
    assert {r["task"] for r in store.read_eval(run)} == {"add2"}
    monkeypatch.setattr(sweep_eval, "evaluate", real)
    totals = sweep_eval.evaluate_sweep(sweep_dir, overrides)
    assert (totals["evaluated"], totals["skipped"]) == (1, 1)
    assert "evaluating" not in store.status(run)
