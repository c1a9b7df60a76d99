"""Shared fixtures. Tests share a few tiny model shapes so that XLA compiles each only once."""

import glob
import os
import struct
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


QUICK_EVAL = {"shots": [0], "n_examples": 10, "tasks": ["add2"]}


def tiny_run(steps: int = 40, eval: dict = QUICK_EVAL, **train) -> dict:
    """The raw config of a run small enough to train in seconds: `steps` steps of 8×64 tokens
    of the TINY shape, logging every 5 and checkpointing every 10 steps."""
    return {
        "model": TINY,
        "data": {"synthetic_chars": 200_000},
        "train": {
            "tokens": steps * 8 * 64,
            "batch_size": 8,
            "warmup_steps": 5,
            "log_every": 5,
            "eval_every": 10,
            "checkpoint_every": 10,
            "eval_batches": 2,
        }
        | train,
        "eval": eval,
    }


@pytest.fixture(scope="session")
def bpe(tmp_path_factory):
    """A 512-id byte-level BPE trained on the documents of the synthetic corpus."""
    from scaling import tokenizer
    from scaling.data import synthetic_text

    docs = synthetic_text(60_000, 0.5, seed=0).split("\n\n")
    path = tokenizer.train_bpe(docs, 512, tmp_path_factory.mktemp("bpe") / "tokenizer.json")
    return tokenizer.load(str(path))


@pytest.fixture
def tiny_cfg():
    """40 steps of the TINY shape, evaluated 1-shot on the default tasks."""
    return run_config(tiny_run(eval={"shots": [1], "n_examples": 20, "instruction": False}))


def tensorboard_scalars(run_dir) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} read back from a run's event files (TFRecord framing, Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = {}
    for path in glob.glob(f"{run_dir}/tensorboard/events.out.tfevents.*"):
        data, at = Path(path).read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4  # length, its crc, the record, its crc
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars
