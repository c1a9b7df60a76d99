"""The training loop: AdamW, warmup + cosine, gradient clipping, one jitted step, held-out loss,
metrics.jsonl, orbax checkpoints, exact resume.

A run killed at any point resumes from its last checkpoint and ends with the same parameters
as an uninterrupted run: batch i is a pure function of (seed, i), the learning rate is a pure
function of the step, and metrics logged after the last checkpoint are dropped on resume (they
are recomputed identically).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp

from scaling import data
from scaling.config import ModelConfig, RunConfig, TrainConfig
from scaling.flops import flops_per_token
from scaling.model import apply, init_params

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"


def learning_rate(t: TrainConfig, total_steps: int, step: int) -> float:
    """Linear warmup to t.learning_rate, then cosine decay to min_lr_ratio·learning_rate."""
    if step < t.warmup_steps:
        return t.learning_rate * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, total_steps - t.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return t.learning_rate * (t.min_lr_ratio + (1 - t.min_lr_ratio) * cosine)


def optimizer(beta1: float, beta2: float, weight_decay: float, grad_clip: float):
    """AdamW without its learning rate: the step multiplies by -lr itself, so that one compiled
    step serves every token budget (the schedule's length is not baked into the program).
    Weight decay applies to matrices only (kernels and embeddings), as in GPT-2 / nanoGPT."""
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.scale_by_adam(b1=beta1, b2=beta2),
        optax.add_decayed_weights(
            weight_decay, mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)
        ),
    )


def optimizer_args(t: TrainConfig) -> tuple:
    """The optimizer's hyperparameters as a hashable tuple: a static argument of train_step."""
    return (t.beta1, t.beta2, t.weight_decay, t.grad_clip)


def loss_fn(params, cfg: ModelConfig, batch):
    """Mean next-token cross-entropy in nats per token over a (batch, seq_len+1) window."""
    logits = apply(params, cfg, batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


@partial(jax.jit, static_argnames=("cfg", "opt"), donate_argnums=(0,))
def train_step(state, batch, lr, cfg: ModelConfig, opt: tuple):
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], cfg, batch)
    updates, opt_state = optimizer(*opt).update(grads, state["opt_state"], state["params"])
    params = jax.tree.map(lambda p, u: p - lr * u, state["params"], updates)
    return {"params": params, "opt_state": opt_state}, {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
    }


@partial(jax.jit, static_argnames=("cfg",))
def eval_loss(params, batches, cfg: ModelConfig):
    return jax.lax.map(lambda b: loss_fn(params, cfg, b), batches).mean()


def initial_state(cfg: RunConfig):
    params = init_params(cfg.model, cfg.train.seed)
    return {"params": params, "opt_state": optimizer(*optimizer_args(cfg.train)).init(params)}


def checkpoint_manager(run_dir: Path, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager((run_dir / CHECKPOINT_DIR).absolute(), options=options)


def restore_latest(manager: ocp.CheckpointManager, cfg: RunConfig):
    """(state, step) of the newest checkpoint, or (None, 0) when there is none."""
    step = manager.latest_step()
    if step is None:
        return None, 0
    target = jax.eval_shape(lambda: initial_state(cfg))
    return manager.restore(step, args=ocp.args.StandardRestore(target)), step


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric rows logged after `last_step` (they came after the checkpoint we resume)."""
    if path.exists():
        rows = [
            r for r in path.read_text().splitlines() if r and json.loads(r)["step"] <= last_step
        ]
        path.write_text("".join(r + "\n" for r in rows))


@dataclass
class TrainResult:
    params: dict
    steps: int
    resumed_from: int
    final_heldout_loss: float


def train(
    cfg: RunConfig, run_dir: Path, on_step: Callable[[int], None] | None = None
) -> TrainResult:
    """Train (or resume) the run in `run_dir`; returns the final parameters and held-out loss."""
    run_dir.mkdir(parents=True, exist_ok=True)
    corpus = data.load_corpus(cfg.data)
    data.check_fits(corpus, cfg.model.seq_len)
    t, m, total = cfg.train, cfg.model, cfg.steps
    per_token = flops_per_token(m)
    opt = optimizer_args(t)
    heldout = jnp.asarray(
        data.heldout_batches(corpus.heldout, t.batch_size, m.seq_len, t.eval_batches)
    )
    metrics_path = run_dir / METRICS_FILE
    manager = checkpoint_manager(run_dir, t.keep_checkpoints)
    state, start = restore_latest(manager, cfg)
    if state is None:
        state = initial_state(cfg)
    _truncate_metrics(metrics_path, start)

    def log(row: dict) -> None:
        tokens = row["step"] * t.batch_size * m.seq_len
        row |= {
            "tokens": tokens,
            "flops_6n": per_token.six_n * tokens,
            "flops_detailed": per_token.detailed * tokens,
            "bpb": data.nats_to_bits_per_byte(row["loss"]),
        }
        with metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    heldout_loss = float("nan")
    clock, window_start = time.perf_counter(), start
    try:  # on any exception, let a checkpoint save in flight finish
        for step in range(start, total):
            batch = data.train_batch(corpus.train, t.seed, step, t.batch_size, m.seq_len)
            lr = learning_rate(t, total, step)
            state, stats = train_step(state, batch, jnp.float32(lr), m, opt)
            done = step + 1
            if done % t.log_every == 0 or done == total:
                jax.block_until_ready(state)  # the loss can be ready before the update is
                elapsed = time.perf_counter() - clock
                log(
                    {
                        "step": done,
                        "split": "train",
                        "loss": float(stats["loss"]),
                        "lr": lr,
                        "grad_norm": float(stats["grad_norm"]),
                        "tokens_per_s": (done - window_start) * t.batch_size * m.seq_len / elapsed,
                    }
                )
                clock, window_start = time.perf_counter(), done
            if done % t.eval_every == 0 or done == total:
                heldout_loss = float(eval_loss(state["params"], heldout, m))
                log({"step": done, "split": "heldout", "loss": heldout_loss})
            if done % t.checkpoint_every == 0 or done == total:
                manager.save(done, args=ocp.args.StandardSave(state))
            if on_step is not None:
                on_step(done)
    finally:
        manager.wait_until_finished()
        manager.close()
    if start == total and total > 0:  # already finished: report the stored final loss
        heldout_loss = float(eval_loss(state["params"], heldout, m))
    return TrainResult(jax.device_get(state["params"]), total, start, heldout_loss)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    return [json.loads(r) for r in path.read_text().splitlines() if r] if path.exists() else []
