"""What the sharding tests share between pytest (one device) and their worker subprocesses
(8 simulated devices, or 2 processes of 2): one model whose every sharded axis splits on
these meshes, deterministic batches, and a few steps of scaling.train.train_step.

A worker must import this module only after setting XLA_FLAGS (it imports jax)."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from scaling.config import ModelConfig, RunConfig, TrainConfig
from scaling.train import initial_state, optimizer_args

# heads 4, d_ff 256, d_model 64 and vocab 256 all split over tensor=2 and fsdp up to 8.
MODEL = ModelConfig(n_layer=2, d_model=64, n_head=4, d_ff=256, seq_len=64)
CFG = RunConfig(model=MODEL, train=TrainConfig(batch_size=8))
OPT = optimizer_args(CFG.train)
LR = np.float32(1e-3)
STEPS = 5
TEXT = np.frombuffer(b" ".join(b"the quick brown fox %d jumps" % i for i in range(3000)), np.uint8)
TESTS = Path(__file__).parent


def rows(step: int, which: np.ndarray) -> np.ndarray:
    """Rows `which` of batch `step`, a pure function of the step (as scaling.data's batches)."""
    starts = np.random.default_rng([0, step]).integers(0, len(TEXT) - MODEL.seq_len - 1, 8)
    return np.stack([TEXT[s : s + MODEL.seq_len + 1] for s in starts[which]]).astype(np.int32)


def batch(step: int) -> np.ndarray:
    return rows(step, np.arange(CFG.train.batch_size))


def state0():
    """The initial state as scaling.sharding.init_sharded makes it on any mesh: jitted (eager
    initialisation differs from jitted in the last bit of some weights)."""
    return jax.jit(lambda: initial_state(CFG))()


def train(step_fn, state, steps, batch_fn=batch):
    """(state, losses) after `steps` = range of step numbers."""
    losses = []
    for step in steps:
        state, stats = step_fn(state, batch_fn(step), LR, MODEL, OPT)
        losses.append(float(stats["loss"]))
    return state, losses


def heldout() -> np.ndarray:
    """Two batches to evaluate on, stacked as scaling.train.eval_loss takes them."""
    return np.stack([batch(100), batch(101)])


@functools.cache
def _reference():
    from scaling.train import eval_loss, train_step

    state, losses = train(train_step, state0(), range(STEPS))
    return losses, float(eval_loss(state["params"], heldout(), MODEL))


def reference_losses() -> list[float]:
    """The losses of scaling.train.train_step on one device: what every layout must give."""
    return _reference()[0]


def reference_eval() -> float:
    """scaling.train.eval_loss on `heldout()` after the reference steps."""
    return _reference()[1]


def use_compilation_cache() -> None:
    """The cache pytest's conftest uses: reruns skip XLA compiles."""
    cache = os.environ.get("SCALING_JAX_CACHE", str(Path.home() / ".cache" / "scaling-jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_worker(script: str, *args: str, devices: int, env: dict | None = None):
    """Start tests/<script> with `devices` simulated CPU devices (XLA_FLAGS must be set before
    jax is imported, so this needs its own process)."""
    worker_env = os.environ | {
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    return subprocess.Popen(
        [sys.executable, str(TESTS / script), *args],
        env=worker_env | (env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def results_of(procs, timeout: float) -> list[tuple[dict, str]]:
    """(the JSON each worker printed last, its stderr); fails with the stderr of a worker that
    failed, and then ends the others (one left waiting for a dead peer would hang)."""
    try:
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode:
                raise AssertionError(f"worker failed ({proc.returncode}):\n{err[-4000:]}")
            results.append((json.loads(out.strip().splitlines()[-1]), err))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
