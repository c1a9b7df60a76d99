"""Fine-tuning: a run's checkpoint (or, init: scratch, its architecture from a random init)
trained on a task's items and scored on its test items (scaling.finetune_config,
scaling.finetune_data).

A fine-tune is a run like any other: its run config is the parent's model, data and eval
sections, its `finetune` section, and a train section derived from both (finetune_run_config),
so the step, optimizer, learning-rate schedule, checkpoints, exact resume and metrics.jsonl are
those of pretraining (scaling.train.run_steps). Only the batches differ: batch i of epoch e
holds items order[i·b:(i+1)·b] of order = default_rng([seed, e]).permutation(examples), a pure
function of (seed, step), so a resumed fine-tune takes exactly the steps an uninterrupted one
would; the loss counts completion tokens only (scaling.train.MaskedBatch). The held-out loss
logged is the same masked loss on the test items.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from evaluation.evaluate import score
from scaling import distributed, sharding
from scaling.config import RunConfig, TrainConfig
from scaling.finetune_config import SCRATCH, FinetuneConfig
from scaling.finetune_data import PRIMARY_METRIC, Split, rows, split, test_eval, test_prompts
from scaling.mesh import batch_sharding, logical_sharding
from scaling.train import (
    METRICS_FILE,
    MaskedBatch,
    Steps,
    TrainResult,
    checkpoint_manager,
    eval_loss,
    initial_state,
    optimizer,
    optimizer_args,
    placement,
    restore_from,
    restore_latest,
    run_steps,
    train_step,
    truncate_metrics,
    write_metrics,
)


def finetune_run_config(parent: RunConfig, parent_id: str, step: int, ft: FinetuneConfig):
    """The run config of fine-tuning run `parent_id` (config `parent`) from its checkpoint at
    `step` (0 for init: scratch) with `ft`: the parent's model, data, eval and mesh, ft with
    the parent filled in, and the train section that fine-tuning steps by (FinetuneConfig's
    docstring: peak learning rate, warmup, cosine decay to zero, batch size, steps)."""
    per_step = parent.train.batch_size * parent.model.seq_len
    ft = dataclasses.replace(ft, parent=parent_id, parent_step=step, parent_tokens=step * per_step)
    p = parent.train
    train = TrainConfig(
        tokens=ft.steps * ft.batch_size * parent.model.seq_len,
        batch_size=ft.batch_size,
        learning_rate=ft.learning_rate_mult * p.learning_rate,
        min_lr_ratio=0.0,
        warmup_steps=round(ft.warmup * ft.steps),
        schedule="cosine",
        weight_decay=p.weight_decay,
        beta1=p.beta1,
        beta2=p.beta2,
        grad_clip=p.grad_clip,
        log_every=ft.log_every,
        eval_every=ft.log_every,
        checkpoint_every=ft.checkpoint_every,
        seed=ft.seed,
    )
    eval_cfg = dataclasses.replace(parent.eval, every_steps=0)  # the test items are its eval
    cfg = dataclasses.replace(parent, train=train, eval=eval_cfg, finetune=ft)
    cfg.validate()
    return cfg


def _starting_state(cfg: RunConfig, parent_dir: Path, state_sh):
    """The parent's parameters at parent_step with a fresh AdamW state, or a random init."""
    if cfg.finetune.init == SCRATCH:
        return sharding.init_sharded(lambda: initial_state(cfg), state_sh)
    params = restore_from(parent_dir, cfg, cfg.finetune.parent_step, state_sh)["params"]
    opt = optimizer(*optimizer_args(cfg.train))
    fresh = jax.jit(opt.init, out_shardings=state_sh["opt_state"])
    return {"params": params, "opt_state": fresh(params)}


def batch_rows(ft: FinetuneConfig, step: int) -> np.ndarray:
    """Which training items make batch `step` (the module docstring); the last batch of an
    epoch may be short."""
    epoch, i = divmod(step, ft.steps_per_epoch)
    order = np.random.default_rng([ft.seed, epoch]).permutation(ft.examples)
    return order[i * ft.batch_size : (i + 1) * ft.batch_size]


def _padded(tokens: np.ndarray, weights: np.ndarray, which: np.ndarray, n: int):
    """Rows `which` in a batch of n rows; the rest zero-weight padding."""
    t = np.zeros((n, tokens.shape[1]), tokens.dtype)
    w = np.zeros((n, weights.shape[1]), weights.dtype)
    t[: len(which)], w[: len(which)] = tokens[which], weights[which]
    return t, w


def _heldout_batches(tokens: np.ndarray, weights: np.ndarray, batch: int):
    """The test rows as (n_batches, batch, ...) arrays, the last batch padded."""
    n = -(-len(tokens) // batch)
    padded = _padded(tokens, weights, np.arange(len(tokens)), n * batch)
    return [x.reshape(n, batch, *x.shape[1:]) for x in padded]


def finetune(
    cfg: RunConfig, run_dir: Path, on_step=None, on_log=None, parent_dir: Path | None = None
) -> TrainResult:
    """Fine-tune (or resume fine-tuning) the run in `run_dir` from the parent in `parent_dir`
    (read only; not read with init: scratch); the callbacks are those of scaling.train.train."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ft, t, m = cfg.finetune, cfg.train, cfg.model
    s = split(ft)
    tok = cfg.data.run_tokenizer()
    train_tokens, train_weights = rows(s.task, s.train, tok, m.seq_len)
    test_tokens, test_weights = rows(s.task, s.test, tok, m.seq_len)
    opt = optimizer_args(t)
    mesh, state_sh = placement(cfg)
    step_fn = sharding.shard_train_step(train_step, mesh, state_sh)
    eval_fn = sharding.shard_eval_loss(eval_loss, mesh, state_sh["params"])
    stacked = logical_sharding(mesh, (None, "batch", "length"))
    heldout = MaskedBatch(
        *(
            distributed.global_array(x, stacked)
            for x in _heldout_batches(test_tokens, test_weights, t.batch_size)
        )
    )
    manager = checkpoint_manager(run_dir, t)
    state, start = restore_latest(manager, cfg, run_dir, state_sh)
    if state is None:
        state = _starting_state(cfg, parent_dir, state_sh)
    if distributed.is_main_process():
        truncate_metrics(run_dir / METRICS_FILE, start)

    def batch(step: int) -> MaskedBatch:
        rows_of = _padded(train_tokens, train_weights, batch_rows(ft, step), t.batch_size)
        return MaskedBatch(*(distributed.global_array(x, batch_sharding(mesh)) for x in rows_of))

    def log(row: dict) -> None:
        write_metrics(run_dir, row | {"examples_seen": examples_seen(ft, row["step"])}, on_log)

    width = train_tokens.shape[1] - 1
    steps = Steps(
        t,
        cfg.steps,
        t.batch_size * width,
        batch,
        lambda state, b, lr: step_fn(state, b, lr, m, opt),
        lambda params: float(eval_fn(params, heldout, m)),
        log,
    )
    state, heldout_loss = run_steps(steps, state, start, manager, on_step)
    targets = int(train_weights.sum())  # the completion tokens the loss counts
    return TrainResult(distributed.fetch(state["params"]), cfg.steps, start, heldout_loss, targets)


def examples_seen(ft: FinetuneConfig, steps: int) -> int:
    """Training items read in the first `steps` steps (an epoch's last batch may be short)."""
    epochs, rest = divmod(steps, ft.steps_per_epoch)
    return epochs * ft.examples + min(rest * ft.batch_size, ft.examples)


def score_test(params, cfg: RunConfig) -> tuple[list[dict], list[dict], dict]:
    """The fine-tuned parameters on the test items, zero-shot as the evaluation scores them:
    (one row per metric as in eval.jsonl, one row per item with every metric's value, the
    headline: the task's primary metric as accuracy, error = 1 - accuracy, n_items)."""
    s: Split = split(cfg.finetune)
    tok = cfg.data.run_tokenizer()
    scored = score(params, cfg.model, tok, test_prompts(s, tok), test_eval(cfg, len(s.test)))
    scored = [r for r in scored if "item_values" in r]  # not corpus-level BLEU
    items = [
        {"item": i, "input": ex.input} | {r["metric"]: r["item_values"][i] for r in scored}
        for i, ex in enumerate(s.test)
    ]
    rows = [{k: v for k, v in r.items() if k != "item_values"} for r in scored]
    primary = next(r for r in rows if r["metric"] == PRIMARY_METRIC[s.task.kind])
    headline = {
        "metric": primary["metric"],
        "accuracy": primary["value"],
        "error": 1.0 - primary["value"],
        "n_items": primary["n_examples"],
    }
    return rows, items, headline
