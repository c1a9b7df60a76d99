"""Fine-tuning (scaling.finetune, `scaling finetune`, the sweep's finetune design): two tiny zoo
models fine-tuned on a built-in task at three example counts; bit-identical reruns, exact
resume, the loss on completion tokens only, disjoint train and test items, one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import yaml

from evaluation.likelihood import continuation_logprobs
from experiments import finetune_design, store
from experiments.cli import main
from experiments.sweep import expand, run_id
from scaling.config import ConfigError
from scaling.finetune import batch_rows, finetune
from scaling.finetune_config import FinetuneConfig
from scaling.finetune_data import rows, split, zero_shot
from scaling.model import init_params
from scaling.train import MaskedBatch, loss_fn, read_metrics

ENV = os.environ | {"JAX_PLATFORMS": "cpu"}
TASK = "largest_of_4"
# Fine-tunes of a few steps each: 4 items a batch, 2 epochs, 16 test items.
QUICK = {"task": TASK, "batch_size": 4, "epochs": 2, "test_items": 16}


def zoo_sweep(name: str = "zoo") -> dict:
    """Two zoo rungs, 24 steps each: parents to fine-tune."""
    return {
        "name": name,
        "base": {
            "model": {"seq_len": 64},
            "data": {"synthetic_chars": 100_000},
            "train": {"tokens": 24 * 8 * 64, "batch_size": 8, "warmup_steps": 4},
            "eval": {"tasks": [TASK], "shots": [0], "n_examples": 8},
        },
        "grid": {"model": ["s0", "s1"]},
    }


def run_cli(*args: str) -> int:
    return main([*args])


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The runs directory holding a finished sweep `zoo` of two tiny parents."""
    root = tmp_path_factory.mktemp("ft")
    path = root / "zoo.yaml"
    path.write_text(yaml.safe_dump(zoo_sweep()))
    code = run_cli("sweep", str(path), "--runs-dir", str(root / "runs"), "--no-report",
                   "--no-tensorboard")  # fmt: skip
    assert code == 0
    return root / "runs"


def ft_sweep(zoo, name: str, **axes) -> dict:
    return {"name": name, "finetune": {"parents": str(zoo / "zoo"), **QUICK, **axes}}


def test_two_sizes_at_three_example_counts_rerun_bit_identical(zoo, tmp_path):
    spec = ft_sweep(zoo, "ft", examples=[4, 8, 16])
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = ("sweep", str(path), "--no-report", "--no-tensorboard")
    assert run_cli(*args, "--runs-dir", str(zoo)) == 0
    results = pd.read_parquet(zoo / "ft" / "results.parquet")  # CSV: `correct` as a number
    acc = results[results.metric == "acc"]
    assert sorted(acc.examples) == [4, 4, 8, 8, 16, 16] and set(acc.model) == {"s0", "s1"}
    assert (acc.init == "pretrained").all() and (acc.n_items == 16).all()
    assert np.allclose(acc.error, 1 - acc.accuracy) and np.allclose(acc.accuracy, acc.value)
    parents = pd.read_csv(zoo / "zoo" / "results.csv").drop_duplicates("run_id")
    for col in ("params_non_embedding", "tokens", "flops_detailed"):  # the parent's N, D, C
        assert set(acc[col]) == set(parents[col])
    correct = np.array([[int(c) for c in row] for row in acc.correct])  # per test item
    assert correct.shape == (6, 16) and np.allclose(1 - correct.mean(1), acc.error)
    # One of them again, by `scaling finetune` elsewhere: the same run id, the same numbers.
    (row,) = acc[(acc.model == "s1") & (acc.examples == 8)].itertuples()
    parent = str(zoo / "zoo" / row.parent_run_id)
    out = tmp_path / "again"
    args = ("--task", TASK, "--examples", "8", "--batch-size", "4", "--epochs", "2")
    assert run_cli("finetune", parent, *args, "--test-items", "16", "--out", str(out)) == 0
    (again,) = store.run_dirs(str(out))
    assert store.run_id_of(again) == row.run_id
    assert store.status(again)["test"]["accuracy"] == row.accuracy
    assert store.status(again)["heldout_loss"] == row.loss


def _one(zoo, **fields):
    (parent,) = [
        finetune_design.find_parent(d, "parent")
        for d in store.run_dirs(str(zoo / "zoo"))
        if "s0-" in d
    ]
    _, cfg, design = finetune_design.one(parent, FinetuneConfig(**QUICK | fields), 0, "ft")
    return cfg, design


class Crash(Exception):
    pass


def test_an_interrupted_fine_tune_resumes_and_ends_the_same(zoo, tmp_path):
    cfg, design = _one(zoo, examples=10, checkpoint_every=2)  # 3 steps an epoch, 1 short
    parent = Path(design["parent_dir"])
    whole = finetune(cfg, tmp_path / "whole", parent_dir=parent)

    def crash_at_5(step, params):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        finetune(cfg, tmp_path / "split", crash_at_5, parent_dir=parent)
    resumed = finetune(cfg, tmp_path / "split", parent_dir=parent)
    assert resumed.resumed_from == 4 and resumed.steps == 6
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.final_heldout_loss == whole.final_heldout_loss
    # nothing lost, nothing logged twice (tokens/s aside: a wall-clock rate)
    timeless = lambda d: [{k: v for k, v in r.items() if k != "tokens_per_s"}  # noqa: E731
                          for r in read_metrics(d)]  # fmt: skip
    assert timeless(tmp_path / "split") == timeless(tmp_path / "whole")


def test_batches_visit_every_item_once_an_epoch():
    ft = FinetuneConfig(task=TASK, examples=10, batch_size=4, epochs=2)
    for epoch in range(2):
        seen = np.concatenate([batch_rows(ft, epoch * 3 + i) for i in range(3)])
        assert sorted(seen) == list(range(10))
    assert not np.array_equal(batch_rows(ft, 0), batch_rows(ft, 3))  # reshuffled


def test_the_loss_counts_completion_tokens_only(zoo):
    cfg, design = _one(zoo, examples=4)
    s = split(cfg.finetune)
    tok = cfg.data.run_tokenizer()
    tokens, weights = rows(s.task, s.train, tok, cfg.model.seq_len)
    params = init_params(cfg.model, 0)  # any parameters: what is scored is the question
    loss = jax.jit(loss_fn, static_argnames="cfg")
    pairs = [(zero_shot(s.task, ex), ex.answer + s.task.answer_suffix) for ex in s.train]
    logprobs = continuation_logprobs(params, cfg.model, tok, pairs)
    for i, logprob in enumerate(logprobs):
        one = float(loss(params, cfg.model, MaskedBatch(tokens[i : i + 1], weights[i : i + 1])))
        # the mean over the completion's tokens of what the evaluation scores
        assert one * weights[i].sum() == pytest.approx(-logprob, rel=1e-5)
        padded = tokens[i : i + 1].copy()
        padded[0, int(np.nonzero(weights[i])[0].max()) + 2 :] = 7  # the padding after it
        assert float(loss(params, cfg.model, MaskedBatch(padded, weights[i : i + 1]))) == one


def test_train_and_test_items_never_share_an_input(tmp_path):
    built_in = split(FinetuneConfig(task=TASK, examples=300, test_items=300))
    train, test = {e.input for e in built_in.train}, {e.input for e in built_in.test}
    assert len(train) == 300 and len(test) == 300 and not train & test
    assert all(built_in.task.is_test_item(e) for e in built_in.test)
    fewer = split(FinetuneConfig(task=TASK, examples=16, test_items=300))
    assert fewer.train == built_in.train[:16] and fewer.test == built_in.test  # nested
    pairs = tmp_path / "pairs.jsonl"
    lines = [{"prompt": f"q{i % 25} ->", "completion": f" a{i}"} for i in range(30)]  # 5 twice
    pairs.write_text("".join(json.dumps(p) + "\n" for p in lines))
    fixed = split(FinetuneConfig(task=str(pairs), examples=20, test_fraction=0.2))
    train, test = {e.input for e in fixed.train}, {e.input for e in fixed.test}
    assert len(test) == 5 and not train & test
    with pytest.raises(ConfigError, match="finetune.examples.*fewer than 40"):
        split(FinetuneConfig(task=str(pairs), examples=40))
    task_json = tmp_path / "task.json"
    examples = [{"input": f"{i} + 1 =", "target": str(i + 1)} for i in range(40)]
    task_json.write_text(json.dumps({"name": "inc", "examples": examples}))
    bigbench = split(FinetuneConfig(task=str(task_json), examples=30, test_fraction=0.25))
    assert len(bigbench.test) == 10 and not {e.input for e in bigbench.train} & {
        e.input for e in bigbench.test
    }
    held_out = tmp_path / "test.jsonl"
    held_out.write_text(json.dumps({"prompt": "q3 ->", "completion": " a3"}) + "\n")
    with pytest.raises(ConfigError, match="finetune.test_file: 1 inputs are in both"):
        split(FinetuneConfig(task=str(pairs), examples=4, test_file=str(held_out)))


def test_bad_fine_tunes_are_one_line_and_exit_code_2(zoo, tmp_path, capsys):
    (parent,) = [d for d in store.run_dirs(str(zoo / "zoo")) if "s0-" in d]
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(store.read_text(store.join(parent, "config.json")))
    cases = {
        "unknown task 'nope'": (parent, "--task", "nope", "--examples", "4"),
        "fewer than 100000": (parent, "--task", "reversed_words", "--examples", "100000"),
        "is pending, not finished": (str(unfinished), "--task", TASK, "--examples", "4"),
        "no checkpoint at step 3": (parent, "--task", TASK, "--examples", "4", "--step", "3"),
        "warmup": (parent, "--task", TASK, "--examples", "4", "--warmup", "5"),
    }
    for message, args in cases.items():
        code = run_cli("finetune", *args, "--runs-dir", str(tmp_path / "runs"))
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    with pytest.raises(ConfigError, match="sweep.grid: does not go with a finetune design"):
        expand(ft_sweep(zoo, "x", examples=4) | {"grid": {"train.seed": [0]}})
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_the_run_id_names_the_parent_checkpoint_and_init(zoo):
    ids = {
        run_id(_one(zoo, examples=4, **fields)[0])
        for fields in ({}, {"init": "scratch"}, {"seed": 1}, {"learning_rate_mult": 0.5})
    }
    assert len(ids) == 4
    cfg, _ = _one(zoo, examples=4, init="scratch")
    assert cfg.finetune.parent_tokens == 0 and cfg.finetune.parent_step == 0


@pytest.mark.slow
def test_kill_9_a_fine_tuning_sweep_then_relaunch(zoo, tmp_path):
    """A real kill -9 of `scaling sweep` on a finetune design; the relaunch finishes every run
    with the numbers of an uninterrupted sweep, no metrics row twice."""
    spec = ft_sweep(zoo, "killed", examples=[64], epochs=4, checkpoint_every=4)
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(spec))
    cmd = [sys.executable, "-m", "experiments", "sweep", str(path), "--no-report",
           "--no-tensorboard", "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, sweep_dir = time.time() + 300, tmp_path / "runs" / "killed"
    while time.time() < deadline and not list(sweep_dir.glob("*/checkpoints/8")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert subprocess.run(cmd, env=ENV, capture_output=True).returncode == 0
    assert run_cli("sweep", str(path), "--no-report", "--no-tensorboard", "--runs-dir",
                   str(tmp_path / "ref")) == 0  # fmt: skip
    resumed = [store.status(d)["resumed_from_step"] for d in store.run_dirs(str(sweep_dir))]
    assert max(resumed) >= 4  # the killed run went on from its checkpoint
    for run_dir in store.run_dirs(str(sweep_dir)):
        status = store.status(run_dir)
        ref = store.locate(str(tmp_path / "ref" / "killed"), store.run_id_of(run_dir))
        assert status["state"] == "done" and status["test"] == store.status(ref)["test"]
        steps = [(r["step"], r["split"]) for r in store.read_jsonl(f"{run_dir}/metrics.jsonl")]
        assert len(steps) == len(set(steps))
        losses = lambda d: [r["loss"] for r in store.read_jsonl(f"{d}/metrics.jsonl")]  # noqa: E731
        assert losses(run_dir) == losses(ref)
