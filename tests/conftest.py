"""Shared fixtures. Tests share a few tiny model shapes so that XLA compiles each only once."""

import os
from pathlib import Path

import jax
import pytest

jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("SCALING_JAX_CACHE", str(Path.home() / ".cache" / "scaling-jax")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from scaling.config import run_config  # noqa: E402

TINY = {"n_layer": 2, "d_model": 32, "n_head": 2, "d_ff": 64, "seq_len": 64}


@pytest.fixture
def tiny_cfg():
    """A run small enough to train in a second or two: 40 steps of 8×64 tokens."""
    return run_config(
        {
            "model": TINY,
            "data": {"synthetic_chars": 200_000},
            "train": {
                "tokens": 40 * 8 * 64,
                "batch_size": 8,
                "warmup_steps": 5,
                "log_every": 5,
                "eval_every": 10,
                "checkpoint_every": 10,
                "eval_batches": 2,
            },
            "eval": {"shots": [1], "n_examples": 20, "instruction": False},
        }
    )
