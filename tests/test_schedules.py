"""Schedules, WSD cooldown branches (exact), checkpoint fallback, divergence."""

import dataclasses

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import tiny_run

from scaling.config import ConfigError, run_config
from scaling.schedules import decay_start, learning_rate
from scaling.train import (
    CHECKPOINT_DIR,
    CORRUPT_DIR,
    Diverged,
    checkpoint_manager,
    initial_state,
    read_metrics,
    train,
)


def cfg(steps: int, **train):
    return run_config(tiny_run(steps, **train))


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_wsd_is_constant_then_cools_down_to_the_floor():
    t = cfg(100, schedule="wsd", decay_fraction=0.2, learning_rate=1.0, min_lr_ratio=0.1).train
    const = dataclasses.replace(t, schedule="constant")
    lrs = [learning_rate(t, 100, s) for s in range(101)]
    assert decay_start(t, 100) == 80
    assert lrs[:80] == [learning_rate(const, 100, s) for s in range(80)]  # the stable phase
    assert lrs[4] == lrs[79] == 1.0 and lrs[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[80:], lrs[81:]))
    # 1-sqrt: half the decay is done within the first quarter of the cooldown
    assert lrs[85] == pytest.approx(0.1 + 0.9 * (1 - 0.5))


def test_a_cooldown_branch_equals_a_whole_wsd_run(tmp_path):
    """The stable run keeps checkpoints at both decay starts (16, 32) through rotation; the
    branch from step 32 ends bit-identical to a 40-step wsd run trained from scratch."""
    stable = cfg(32, schedule="constant", save_steps=[16, 32], keep_checkpoints=1)
    train(stable, tmp_path / "sweep" / "stable")
    kept = sorted(int(p.name) for p in (tmp_path / "sweep" / "stable" / CHECKPOINT_DIR).iterdir())
    assert kept == [16, 32]
    whole = train(cfg(40, schedule="wsd"), tmp_path / "whole")
    branch = train(cfg(40, schedule="wsd", init_from="stable"), tmp_path / "sweep" / "branch")
    assert branch.resumed_from == 32
    _same(whole.params, branch.params)
    assert branch.final_heldout_loss == whole.final_heldout_loss
    steps = [(r["step"], r["split"]) for r in read_metrics(tmp_path / "sweep" / "branch")]
    assert steps == [(r["step"], r["split"]) for r in read_metrics(tmp_path / "whole")]


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    c = cfg(40)
    whole = train(c, tmp_path / "run")
    latest = tmp_path / "run" / CHECKPOINT_DIR / "40"
    for f in (p for p in latest.rglob("*") if p.is_file() and p.stat().st_size > 0):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.warns(UserWarning, match="checkpoint 40 does not restore"):
        resumed = train(c, tmp_path / "run")
    assert resumed.resumed_from == 30
    _same(whole.params, resumed.params)
    assert (tmp_path / "run" / CORRUPT_DIR).is_dir()


def test_a_checkpoint_of_another_parameter_layout_is_refused_and_kept(tmp_path):
    """Written by a version whose model named its parameters otherwise: not damage, so it is
    neither moved aside nor silently replaced by a run from scratch."""
    c = cfg(40)
    state = initial_state(c)
    attn = state["params"]["block_0"]["attn"]
    attn["query"] = attn.pop("qkv")  # an older layout
    manager = checkpoint_manager(tmp_path / "run", c.train)
    manager.save(20, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    manager.close()
    with pytest.raises(
        ConfigError, match=r"another parameter layout: .*query.* where this code has .*qkv"
    ):
        train(c, tmp_path / "run")
    assert (tmp_path / "run" / CHECKPOINT_DIR / "20").is_dir()
    assert not (tmp_path / "run" / CORRUPT_DIR).exists()


def test_a_diverging_run_stops_with_the_reason(tmp_path):
    with pytest.raises(Diverged, match="training loss (nan|inf)"):
        train(cfg(20, learning_rate=1e9, warmup_steps=0), tmp_path / "nan")
