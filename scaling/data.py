"""Tokenizer, corpora and batches.

The tokenizer is byte-level (vocab 256, no downloads), so loss in nats per token divided by ln 2
is bits per byte, a tokenizer-independent number. Documents are joined by a blank line into one
stream; a training batch is `batch_size` windows of seq_len+1 tokens at positions drawn from
`default_rng([seed, step])`, so batch i is a pure function of (data, seed, i) and a resumed run
sees exactly the batches an uninterrupted one would. The last `heldout_fraction` of the stream is
the held-out split, never trained on.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaling.config import DEFAULT_TASKS, ConfigError, DataConfig
from scaling.config_io import json_type, read_input
from scaling.task_suite import TASKS, WORDS
from scaling.tasks import solved, training_example

DOC_SEPARATOR = "\n\n"


def encode(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def decode(tokens) -> str:
    return bytes(np.asarray(tokens, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


def nats_to_bits_per_byte(nats_per_token: float) -> float:
    """Byte-level tokens: one token is one byte."""
    return nats_per_token / math.log(2)


@dataclass(frozen=True)
class Corpus:
    train: np.ndarray  # uint8 token ids
    heldout: np.ndarray


def synthetic_text(
    n_chars: int, task_fraction: float, seed: int, tasks: tuple[str, ...] = DEFAULT_TASKS
) -> str:
    """Prose from a tiny grammar mixed with blocks of task demonstrations, deterministic in seed.

    A task document is 4-10 solved items of one of `tasks` (generated built-ins), formatted as
    k-shot prompts are (scaling.tasks.solved), so larger models (which fit more of this text)
    learn more of the tasks. Half of the documents open with the task's instruction; in tasks with
    rationales, half of the documents show chains of thought.
    """
    rng = np.random.default_rng(seed)
    tasks = [TASKS[name] for name in tasks]
    docs, size = [], 0
    while size < n_chars:
        if rng.random() < task_fraction:
            task = tasks[rng.integers(len(tasks))]
            cot = task.has_rationales and rng.random() < 0.5
            items = [training_example(task, rng) for _ in range(rng.integers(4, 11))]
            body = task.few_shot_example_separator.join(solved(task, ex, cot) for ex in items)
            doc = (task.task_prefix if rng.random() < 0.5 else "") + body
        else:
            doc = " ".join(_sentence(rng) for _ in range(rng.integers(2, 7)))
        docs.append(doc)
        size += len(doc) + len(DOC_SEPARATOR)
    return DOC_SEPARATOR.join(docs)[:n_chars]


def _sentence(rng: np.random.Generator) -> str:
    words = [WORDS[i] for i in rng.integers(len(WORDS), size=rng.integers(4, 12))]
    return " ".join(words).capitalize() + "."


def read_documents(paths: tuple[str, ...], jsonl_field: str) -> list[str]:
    """Documents from .txt files (one document each) and .jsonl files (one per line)."""
    docs = []
    for i, name in enumerate(paths):
        path = Path(name)
        text = read_input(path, f"data.paths[{i}]")
        if path.suffix == ".jsonl":
            for line_no, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    docs.append(
                        _jsonl_text(line, jsonl_field, f"data.paths[{i}]", f"{name}:{line_no}")
                    )
        else:
            docs.append(text)
    if not any(docs):
        raise ConfigError("data.paths", "the files hold no text", "give non-empty text files")
    return docs


def _jsonl_text(line: str, field: str, where: str, at: str) -> str:
    """The text of one JSON Lines row (at FILE:LINE); a row that is not an object holding text
    in `field` is a ConfigError naming the file and the line."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(
            where, f"{at} is not valid JSON ({e.msg})", "write one JSON object per line"
        ) from None
    if not isinstance(row, dict):
        raise ConfigError(
            where,
            f"{at} is a JSON {json_type(row)}, not an object",
            f'write one object per line, e.g. {{"{field}": "..."}}',
        )
    if not isinstance(row.get(field), str):
        problem = f"has no field {field!r}" if field not in row else f"{field!r} is not text"
        raise ConfigError(
            "data.jsonl_field",
            f"{at} {problem}",
            f"set data.jsonl_field to one of {sorted(row)} or fix the line",
        )
    return row[field]


@functools.lru_cache(maxsize=4)
def load_corpus(cfg: DataConfig) -> Corpus:
    """Tokenized train and held-out splits (cached: every run of a sweep shares them)."""
    if cfg.corpus == "synthetic":
        text = synthetic_text(cfg.synthetic_chars, cfg.task_fraction, cfg.seed, cfg.tasks)
    else:
        text = DOC_SEPARATOR.join(read_documents(cfg.paths, cfg.jsonl_field))
    tokens = encode(text)
    n_heldout = int(len(tokens) * cfg.heldout_fraction)
    return Corpus(
        train=tokens[: len(tokens) - n_heldout], heldout=tokens[len(tokens) - n_heldout :]
    )


def check_fits(corpus: Corpus, seq_len: int) -> None:
    """Both splits must hold at least one window of seq_len+1 tokens."""
    for split in ("train", "heldout"):
        n = len(getattr(corpus, split))
        if n < seq_len + 1:
            raise ConfigError(
                "model.seq_len",
                f"{seq_len} needs {seq_len + 1} tokens but the {split} split has {n}",
                "lower model.seq_len or give more data",
            )


def train_batch(tokens: np.ndarray, seed: int, step: int, batch_size: int, seq_len: int, rows=None):
    """Batch `step`: (batch_size, seq_len+1) int32 windows, a pure function of (seed, step).
    `rows` selects some rows of it (a host of a multi-host job builds only its own)."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - seq_len, size=batch_size)
    if rows is not None:
        starts = starts[rows]
    return np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int32)


def heldout_batches(tokens: np.ndarray, batch_size: int, seq_len: int, n_batches: int):
    """Fixed windows spread evenly over the held-out split (the same at every evaluation)."""
    n_windows = batch_size * n_batches
    starts = np.linspace(0, len(tokens) - seq_len - 1, n_windows).astype(np.int64)
    windows = np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int32)
    return windows.reshape(n_batches, batch_size, seq_len + 1)
