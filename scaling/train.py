"""The training loop: AdamW, a learning-rate schedule (scaling.schedules), gradient clipping, one
jitted step, held-out loss, metrics.jsonl, orbax checkpoints, exact resume.

A run killed at any point resumes from its last checkpoint and ends with the same parameters
as an uninterrupted run: batch i is a pure function of (seed, i), the learning rate is a pure
function of the step, and metrics logged after the last checkpoint are dropped on resume (they
are recomputed identically). A checkpoint that does not restore (a save cut short, a truncated
file) is moved aside and the previous one is used. A cooldown branch (`train.init_from`) starts
from its stable parent's checkpoint at its decay start and is then the same as a whole wsd run.
A non-finite training loss stops the run with `Diverged`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from scaling import data, distributed, memory, sharding
from scaling.config import ConfigError, ModelConfig, RunConfig, TrainConfig
from scaling.flops import flops_per_token
from scaling.mesh import logical_sharding
from scaling.model import apply_with_aux, init_params, mup_ratio
from scaling.schedules import decay_start, learning_rate

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"

CORRUPT_DIR = "corrupt_checkpoints"


class Diverged(RuntimeError):
    """The training loss became NaN or infinite: retrying the same config gives the same."""


NOT_DECAYED = ("bias", "scale")  # biases and norm gains


def decayed(path: str) -> bool:
    """Whether weight decay applies to the parameter at `path` (its last name): matrices
    (kernels, embeddings, the position table, a readout or router), not biases or norm gains,
    as in GPT-2 / nanoGPT. By name, not by rank: gpt2's fused q/k/v bias is 3-D."""
    return path.rsplit("/", 1)[-1] not in NOT_DECAYED


def optimizer(beta1: float, beta2: float, weight_decay: float, grad_clip: float):
    """AdamW without its learning rate: the step multiplies by -lr itself, so that one compiled
    step serves every token budget (the schedule's length is not baked into the program).
    Weight decay on the parameters `decayed` names."""
    mask = lambda p: jax.tree_util.tree_map_with_path(lambda k, _: decayed(k[-1].key), p)
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.scale_by_adam(b1=beta1, b2=beta2),
        optax.add_decayed_weights(weight_decay, mask=mask),
    )


def optimizer_args(t: TrainConfig) -> tuple:
    """The optimizer's hyperparameters as a hashable tuple: a static argument of train_step."""
    return (t.beta1, t.beta2, t.weight_decay, t.grad_clip)


class MaskedBatch(NamedTuple):
    """Windows whose loss counts only some targets (fine-tuning: the completion's tokens)."""

    tokens: jax.Array  # (batch, width + 1) token ids
    weights: jax.Array  # (batch, width): 1 where tokens[:, 1:] is a target, else 0


def losses(params, cfg: ModelConfig, batch):
    """(mean next-token cross-entropy in nats per token over a (batch, seq_len+1) window, the
    model family's auxiliary loss: a routed MLP's load balancing, 0 for a dense family). A
    MaskedBatch averages over its weighted targets only."""
    tokens = batch.tokens if isinstance(batch, MaskedBatch) else batch
    logits, aux = apply_with_aux(params, cfg, tokens[:, :-1])
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
    if not isinstance(batch, MaskedBatch):
        return nll.mean(), aux
    return (nll * batch.weights).sum() / jnp.maximum(batch.weights.sum(), 1.0), aux


def loss_fn(params, cfg: ModelConfig, batch):
    """The cross-entropy: what is reported and evaluated."""
    return losses(params, cfg, batch)[0]


def objective(params, cfg: ModelConfig, batch):
    """(what training descends: cross-entropy + auxiliary loss, the cross-entropy)."""
    cross_entropy, aux = losses(params, cfg, batch)
    return cross_entropy + aux, cross_entropy


def lr_multipliers(params, cfg: ModelConfig):
    """Each parameter's learning rate relative to the schedule's: under µP the hidden matrices
    (every Dense kernel) take mup_ratio = base_width/d_model, everything else 1."""
    ratio = mup_ratio(cfg)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: ratio if path[-1].key == "kernel" else 1.0, params
    )


@partial(jax.jit, static_argnames=("cfg", "opt"), donate_argnums=(0,))
def train_step(state, batch, lr, cfg: ModelConfig, opt: tuple):
    (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(state["params"], cfg, batch)
    updates, opt_state = optimizer(*opt).update(grads, state["opt_state"], state["params"])
    params = jax.tree.map(
        lambda p, u, m: p - lr * m * u, state["params"], updates, lr_multipliers(updates, cfg)
    )
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


def checkpoint_manager(run_dir: Path, t: TrainConfig) -> ocp.CheckpointManager:
    """Keeps the newest keep_checkpoints checkpoints plus every step of save_steps for good."""
    keep = ocp.checkpoint_managers.LatestN(t.keep_checkpoints)
    if t.save_steps:
        keep = ocp.checkpoint_managers.AnyPreservationPolicy(
            [keep, ocp.checkpoint_managers.CustomSteps(list(t.save_steps))]
        )
    options = ocp.CheckpointManagerOptions(preservation_policy=keep, create=True)
    return ocp.CheckpointManager(
        (run_dir / CHECKPOINT_DIR).absolute(),
        options=options,
        item_handlers=ocp.StandardCheckpointHandler(),  # so that item_metadata reads the tree
    )


def placement(cfg: RunConfig, mesh: Mesh | None = None) -> tuple[Mesh, dict]:
    """The run's device mesh (cfg.mesh over all devices) and the shardings of its train state.
    Refuses, before anything compiles, a batch that does not split over the mesh and a state
    that does not fit the devices' memory (scaling.memory). Given a mesh (evaluation on other
    devices), the shardings on that one, unchecked."""
    mesh = mesh or memory.fitting_mesh(cfg)
    shapes = jax.eval_shape(lambda: initial_state(cfg))
    return mesh, sharding.state_shardings(shapes, sharding.param_shardings(cfg.model, mesh))


def restore(manager: ocp.CheckpointManager, cfg: RunConfig, step: int, state_sh=None):
    """The state saved at `step`, laid out by `state_sh` whatever mesh saved it (default: one
    device)."""
    shapes = jax.eval_shape(lambda: initial_state(cfg))
    if state_sh is None:
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state_sh = jax.tree.map(lambda _: one, shapes)
    target = sharding.with_shardings(shapes, state_sh)
    return manager.restore(step, args=ocp.args.StandardRestore(target))


def restore_latest(manager: ocp.CheckpointManager, cfg: RunConfig, run_dir: Path, state_sh):
    """(state, step) of the newest checkpoint that restores, or (None, 0) when none does. One
    that fails is moved to corrupt_checkpoints/ (kept for a post-mortem, and out of the way of
    the save that will write its step again) and the previous one is tried."""
    for step in sorted(manager.all_steps(), reverse=True):
        check_layout(manager, cfg, run_dir, step)
        try:
            return restore(manager, cfg, step, state_sh), step
        except Exception as e:  # orbax/tensorstore raise many types for a damaged checkpoint
            warnings.warn(
                f"{run_dir}: checkpoint {step} does not restore ({e!r}); trying older",
                stacklevel=2,
            )
            if distributed.is_main_process():  # every process finds it damaged; one moves it
                aside = run_dir / CORRUPT_DIR / f"{step}-{time.time_ns()}"
                aside.parent.mkdir(exist_ok=True)
                shutil.move(run_dir / CHECKPOINT_DIR / str(step), aside)
            distributed.sync_processes(f"checkpoint {step} moved aside")
            manager.reload()
    return None, 0


def _paths(tree) -> set[str]:
    return {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_layout(manager: ocp.CheckpointManager, cfg: RunConfig, run_dir: Path, step: int):
    """Refuse a checkpoint whose parameter tree is not this code's (written by a version whose
    model named its parameters otherwise): it is not damaged, so it must not be moved aside
    and the run silently restarted. Metadata that does not read is left to restore."""
    try:
        saved = _paths(manager.item_metadata(step).tree["params"])
    except Exception:  # a damaged checkpoint: restore_latest moves it aside
        return
    ours = _paths(jax.eval_shape(lambda: initial_state(cfg))["params"])
    if saved != ours:
        theirs, mine = sorted(saved - ours) or ["nothing"], sorted(ours - saved) or ["nothing"]
        raise ConfigError(
            f"{run_dir / CHECKPOINT_DIR / str(step)}",
            f"holds another parameter layout: {theirs[0]} where this code has {mine[0]} "
            f"({len(saved ^ ours)} paths differ)",
            "resume it with the code version that wrote it, or move checkpoints/ away to restart",
        )


def saved_steps(run_dir: Path) -> list[int]:
    """The steps of another run's checkpoints, read without writing anything there."""
    options = ocp.CheckpointManagerOptions(create=False)  # reads only: saves nothing
    manager = ocp.CheckpointManager((run_dir / CHECKPOINT_DIR).absolute(), options=options)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def restore_from(parent: Path, cfg: RunConfig, step: int, state_sh):
    """The state another run (in `parent`, read only) saved at `step`, laid out by state_sh."""
    options = ocp.CheckpointManagerOptions(create=False)  # reads only: saves nothing
    manager = ocp.CheckpointManager((parent / CHECKPOINT_DIR).absolute(), options=options)
    try:
        if step not in manager.all_steps():
            raise FileNotFoundError(
                f"{parent} has no checkpoint at step {step} (it has {sorted(manager.all_steps())})"
                ": train that run first"
            )
        return restore(manager, cfg, step, state_sh)
    finally:
        manager.close()


def branch_point(cfg: RunConfig, run_dir: Path, parent: Path, state_sh):
    """(state, step) of a cooldown branch's start: its stable parent's checkpoint (in `parent`)
    at the decay start, with the parent's metrics up to that step copied so that the branch's
    curve is whole."""
    step = decay_start(cfg.train, cfg.steps)
    state = restore_from(parent, cfg, step, state_sh)
    every = {"train": cfg.train.log_every, "heldout": cfg.train.eval_every}
    rows = [  # the rows a whole run logs: not those of the parent's last step, if off cadence
        r for r in read_metrics(parent) if r["step"] <= step and r["step"] % every[r["split"]] == 0
    ]
    if distributed.is_main_process():
        (run_dir / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return state, step


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric rows logged after `last_step` (they came after the checkpoint we resume)."""
    if path.exists():
        rows = [
            r for r in path.read_text().splitlines() if r and json.loads(r)["step"] <= last_step
        ]
        path.write_text("".join(r + "\n" for r in rows))


def write_metrics(run_dir: Path, row: dict, on_log: Callable[[dict], None] | None) -> None:
    """Append a row to metrics.jsonl and hand it to on_log; process 0 writes the logs (every
    process checkpoints)."""
    if not distributed.is_main_process():
        return
    with (run_dir / METRICS_FILE).open("a") as f:
        f.write(json.dumps(row) + "\n")
    if on_log is not None:
        on_log(row)


@dataclass
class TrainResult:
    params: dict
    steps: int
    resumed_from: int
    final_heldout_loss: float
    unique_tokens: int  # the distinct train tokens drawn from (scaling.data.unique_token_count)


@dataclass(frozen=True)
class Steps:
    """What the step loop (run_steps) needs from a kind of run: pretraining (train) or
    fine-tuning (scaling.finetune). `t` gives the cadences and the learning-rate schedule."""

    t: TrainConfig
    total: int
    tokens_per_step: int  # for the logged tokens/s
    batch: Callable[[int], object]  # the global batch of (0-based) step i
    step: Callable  # (state, batch, lr) -> (state, stats): the jitted train step
    heldout: Callable[[dict], float]  # params -> held-out loss
    log: Callable[[dict], None]  # writes one metrics row


def run_steps(
    steps: Steps, state, start: int, manager: ocp.CheckpointManager, on_step=None
) -> tuple[dict, float]:
    """Steps start..total: log the training loss every log_every steps, the held-out loss every
    eval_every, checkpoint every checkpoint_every (and at save_steps and the end); returns the
    final state and the last held-out loss. A checkpoint save in flight finishes whatever
    happens, and the manager is closed."""
    t, total = steps.t, steps.total
    heldout_loss = float("nan")
    clock, window_start = time.perf_counter(), start
    try:  # on any exception, let a checkpoint save in flight finish
        for step in range(start, total):
            lr = learning_rate(t, total, step)
            state, stats = steps.step(state, steps.batch(step), jnp.float32(lr))
            done = step + 1
            if done % t.log_every == 0 or done == total:
                jax.block_until_ready(state)  # the loss can be ready before the update is
                elapsed = time.perf_counter() - clock
                loss = float(stats["loss"])
                if not math.isfinite(loss):
                    raise Diverged(f"training loss {loss} at step {done}")
                steps.log(
                    {
                        "step": done,
                        "split": "train",
                        "loss": loss,
                        "lr": lr,
                        "grad_norm": float(stats["grad_norm"]),
                        "tokens_per_s": (done - window_start) * steps.tokens_per_step / elapsed,
                    }
                )
                clock, window_start = time.perf_counter(), done
            if done % t.eval_every == 0 or done == total:
                heldout_loss = steps.heldout(state["params"])
                steps.log({"step": done, "split": "heldout", "loss": heldout_loss})
            if done % t.checkpoint_every == 0 or done == total or done in t.save_steps:
                manager.save(done, args=ocp.args.StandardSave(state), force=True)
            if on_step is not None:
                on_step(done, state["params"])
    finally:
        manager.wait_until_finished()
        manager.close()
    if start == total and total > 0:  # already finished: report the stored final loss
        heldout_loss = steps.heldout(state["params"])
    return state, heldout_loss


def train(
    cfg: RunConfig,
    run_dir: Path,
    on_step: Callable[[int, dict], None] | None = None,
    on_log: Callable[[dict], None] | None = None,
    parent_dir: Path | None = None,
) -> TrainResult:
    """Train (or resume) the run in `run_dir`; returns the final parameters and held-out loss.

    on_step(done_steps, params) is called after every step with the device parameters (for
    evaluation during training, heartbeats, progress bars); on_log(row) with every metrics row
    as it is written (for TensorBoard, W&B, the run's status). parent_dir: a cooldown branch's
    stable run directory, by default the sibling named by train.init_from (the run store finds
    it under its label: experiments.store.locate)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    corpus = data.load_corpus(cfg.data)
    t, m, d, total = cfg.train, cfg.model, cfg.data, cfg.steps
    data.check_fits(corpus, m.seq_len, d.unique_tokens)
    per_token = flops_per_token(m)
    opt = optimizer_args(t)
    mesh, state_sh = placement(cfg)
    step_fn = sharding.shard_train_step(train_step, mesh, state_sh)
    eval_fn = sharding.shard_eval_loss(eval_loss, mesh, state_sh["params"])
    heldout = distributed.global_array(
        data.heldout_batches(corpus.heldout, t.batch_size, m.seq_len, t.eval_batches),
        logical_sharding(mesh, (None, "batch", "length")),
    )
    manager = checkpoint_manager(run_dir, t)
    state, start = restore_latest(manager, cfg, run_dir, state_sh)
    if state is None and t.init_from:
        parent = parent_dir or run_dir.parent / t.init_from
        state, start = branch_point(cfg, run_dir, parent, state_sh)
    elif state is None:  # each device creates only its shards; the same values on any mesh
        state = sharding.init_sharded(lambda: initial_state(cfg), state_sh)
    if distributed.is_main_process():
        truncate_metrics(run_dir / METRICS_FILE, start)

    def rows(step: int, which):  # this process's rows of global batch `step`
        return data.train_batch(
            corpus.train, t.seed, step, t.batch_size, m.seq_len, which, d.sampling, d.unique_tokens
        )

    def log(row: dict) -> None:
        tokens = row["step"] * t.batch_size * m.seq_len
        row |= {
            "tokens": tokens,
            "flops_6n": per_token.six_n * tokens,
            "flops_detailed": per_token.detailed * tokens,
            "bpb": corpus.bits_per_byte(row["loss"]),
        }
        write_metrics(run_dir, row, on_log)

    steps = Steps(
        t,
        total,
        t.batch_size * m.seq_len,
        lambda step: distributed.process_batch(rows, step, mesh, (t.batch_size, m.seq_len + 1)),
        lambda state, batch, lr: step_fn(state, batch, lr, m, opt),
        lambda params: float(eval_fn(params, heldout, m)),
        log,
    )
    state, heldout_loss = run_steps(steps, state, start, manager, on_step)
    unique = data.unique_token_count(len(corpus.train), m.seq_len, d.sampling, d.unique_tokens)
    return TrainResult(distributed.fetch(state["params"]), total, start, heldout_loss, unique)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    return [json.loads(r) for r in path.read_text().splitlines() if r] if path.exists() else []
