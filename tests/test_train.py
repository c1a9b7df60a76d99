import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import yaml

from scaling import data
from scaling.train import (
    decayed,
    eval_loss,
    initial_state,
    learning_rate,
    read_metrics,
    train,
    train_step,
)


def test_schedule_warms_up_then_decays_to_the_floor():
    t = dataclasses.replace(
        __import__("scaling.config").config.TrainConfig(),
        warmup_steps=10,
        learning_rate=1.0,
        min_lr_ratio=0.1,
    )
    lrs = [learning_rate(t, 100, s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert learning_rate(t, 100, 100) == pytest.approx(0.1)


def test_train_step_lowers_the_loss_on_a_fixed_batch(tiny_cfg):
    corpus = data.load_corpus(tiny_cfg.data)
    batch = data.train_batch(corpus.train, 0, 0, 8, tiny_cfg.model.seq_len)
    state = initial_state(tiny_cfg)
    opt = (0.9, 0.95, 0.0, 1.0)
    first = float(eval_loss(state["params"], batch[None], tiny_cfg.model))
    for _ in range(30):
        state, stats = train_step(state, batch, np.float32(3e-3), tiny_cfg.model, opt)
    last = float(eval_loss(state["params"], batch[None], tiny_cfg.model))
    assert first > 5.0 and last < first - 1.5  # starts near ln(256) = 5.55


def _assert_same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class Crash(Exception):
    pass


def test_crash_then_resume_equals_an_uninterrupted_run(tiny_cfg, tmp_path):
    whole = train(tiny_cfg, tmp_path / "whole")

    def crash_at_25(step, params):
        if step == 25:
            raise Crash

    with pytest.raises(Crash):
        train(tiny_cfg, tmp_path / "split", on_step=crash_at_25)
    resumed = train(tiny_cfg, tmp_path / "split")
    assert resumed.resumed_from == 20  # the last checkpoint before the crash
    _assert_same_params(whole.params, resumed.params)
    assert resumed.final_heldout_loss == whole.final_heldout_loss
    # metrics logged after the checkpoint were dropped and recomputed, never duplicated
    steps = [(r["step"], r["split"]) for r in read_metrics(tmp_path / "split")]
    assert steps == [(r["step"], r["split"]) for r in read_metrics(tmp_path / "whole")]
    assert all(r["tokens"] == r["step"] * 8 * 64 for r in read_metrics(tmp_path / "whole"))


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_cfg, tmp_path):
    """A real kill -9 of `scaling train` in the middle of training."""
    cfg = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, tokens=200 * 8 * 64)
    )
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict()))))
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "experiments", "train", str(config), "--run-dir", str(run_dir)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"JAX_PLATFORMS": "cpu"},
    )
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "50").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "running"  # killed, not finished
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done" and 50 <= status["resumed_from_step"] < 200
    whole = train(cfg, tmp_path / "whole")
    assert status["heldout_loss"] == whole.final_heldout_loss
    _assert_same_params(whole.params, train(cfg, run_dir).params)  # restores the final ckpt


def test_weight_decay_applies_to_matrices_not_biases_or_gains():
    """By name, not rank: gpt2's fused q/k/v bias is 3-D but a bias."""
    assert decayed("block_0/attn/qkv/kernel") and decayed("wpe") and decayed("lm_head")
    assert not decayed("block_0/attn/qkv/bias") and not decayed("ln_f/scale")
