"""Train-step throughput: tokens/s, achieved GFLOP/s, and "MFU" against a matmul peak measured
in the same process.

    python bench/train_step.py [--steps 30] [--peak-size 2048]

The peak is the best float32 (or --dtype) square matmul rate JAX reaches on this backend, so
the ratio says how much of what the hardware does for the simplest kernel the whole train step
achieves. Model FLOPs are the detailed Chinchilla count (scaling.flops); the 6N figure is
printed beside it.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from scaling import data, zoo
from scaling.config import run_config
from scaling.flops import flops_per_token, param_counts
from scaling.train import initial_state, optimizer_args, train_step

CONFIGS = {  # two fixed shapes: a demo-sized model and the largest demo rung at a longer context
    "s4 (L2 d64, T128, B8)": ({**zoo.shape("s4"), "seq_len": 128}, 8),
    "s6 (L4 d128, T256, B16)": ({**zoo.shape("s6"), "seq_len": 256}, 16),
}


def matmul_peak(size: int, dtype, repeats: int = 10) -> float:
    """Best observed FLOP/s of a jitted size×size matmul."""
    a = jnp.ones((size, size), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def step_rate(model: dict, batch_size: int, steps: int, dtype: str) -> dict:
    cfg = run_config(
        {
            "model": {**model, "dtype": dtype},
            "train": {"batch_size": batch_size},
            "data": {"synthetic_chars": 200_000},
        }
    )
    corpus = data.load_corpus(cfg.data)
    state = initial_state(cfg)
    opt = optimizer_args(cfg.train)
    batches = [
        data.train_batch(corpus.train, 0, i, batch_size, cfg.model.seq_len)
        for i in range(steps + 1)
    ]
    state, stats = train_step(state, batches[0], np.float32(1e-3), cfg.model, opt)  # compile
    jax.block_until_ready(state)
    start = time.perf_counter()
    for batch in batches[1:]:
        state, stats = train_step(state, batch, np.float32(1e-3), cfg.model, opt)
    jax.block_until_ready(state)
    tokens_per_s = steps * batch_size * cfg.model.seq_len / (time.perf_counter() - start)
    per_token = flops_per_token(cfg.model)
    return {
        "params": param_counts(cfg.model).total,
        "tokens_per_s": tokens_per_s,
        "gflops": tokens_per_s * per_token.detailed / 1e9,
        "gflops_6n": tokens_per_s * per_token.six_n / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--peak-size", type=int, default=2048)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    device = jax.devices()[0]
    peak = matmul_peak(args.peak_size, jnp.dtype(args.dtype)) / 1e9
    print(f"device: {device.platform} {device.device_kind} × {jax.device_count()}")
    print(f"{args.dtype} matmul peak ({args.peak_size}²): {peak:.1f} GFLOP/s")
    print(f"{'model':<26}{'params':>10}{'tokens/s':>12}{'GFLOP/s':>10}{'6N GFLOP/s':>12}{'MFU':>8}")
    for name, (model, batch_size) in CONFIGS.items():
        r = step_rate(model, batch_size, args.steps, args.dtype)
        print(
            f"{name:<26}{r['params']:>10,}{r['tokens_per_s']:>12,.0f}{r['gflops']:>10.1f}"
            f"{r['gflops_6n']:>12.1f}{r['gflops'] / peak:>8.1%}"
        )


if __name__ == "__main__":
    main()
