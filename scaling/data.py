"""Corpora and batches.

Text is tokenized by the run's tokenizer (`data.tokenizer`, scaling.tokenizer; bytes by default).
Documents end in the tokenizer's EOS token, or, for bytes (which have none), are joined by a blank
line into one stream. The held-out split's measured bytes per token turn its loss into bits per
byte. A training batch is `batch_size` windows of seq_len+1 tokens at positions drawn from
`default_rng([seed, step])`, so batch i is a pure function of (data, seed, i) and a resumed run
sees exactly the batches an uninterrupted one would. The last `heldout_fraction` of the stream is
the held-out split, never trained on.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaling import tokenizer
from scaling.config import DEFAULT_TASKS, ConfigError, DataConfig
from scaling.task_suite import TASKS, WORDS
from scaling.tasks import solved, training_example

DOC_SEPARATOR = "\n\n"


def run_tokenizer(cfg: DataConfig) -> tokenizer.Tokenizer:
    """The run's tokenizer, which evaluation encodes prompts with: the one place that knows where
    a corpus keeps it."""
    return tokenizer.load(cfg.tokenizer)


@dataclass(frozen=True)
class Corpus:
    train: np.ndarray  # token ids
    heldout: np.ndarray
    tokenizer: tokenizer.Tokenizer = tokenizer.ByteTokenizer()
    heldout_tokens_per_byte: float = 1.0  # measured on the held-out split's text

    def bits_per_byte(self, nats_per_token: float) -> float:
        return tokenizer.bits_per_byte(nats_per_token, self.heldout_tokens_per_byte)


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
        if not path.is_file():
            raise ConfigError(
                f"data.paths[{i}]",
                f"file not found: {name}",
                "give an existing .txt or .jsonl path",
            )
        if path.suffix == ".jsonl":
            for line_no, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    if jsonl_field not in row:
                        raise ConfigError(
                            "data.jsonl_field",
                            f"{name}:{line_no} has no field {jsonl_field!r}",
                            f"set data.jsonl_field to one of {sorted(row)}",
                        )
                    docs.append(str(row[jsonl_field]))
        else:
            docs.append(path.read_text())
    return docs


@functools.lru_cache(maxsize=4)
def load_corpus(cfg: DataConfig) -> Corpus:
    """Tokenized train and held-out splits (cached: every run of a sweep shares them).

    Bytes keep the blank-line-joined stream (the held-out split is its tail, one byte a token);
    a subword tokenizer encodes each document and ends it with EOS, and the held-out split is the
    last `heldout_fraction` of the documents, whose bytes per token are measured."""
    tok = tokenizer.load(cfg.tokenizer)
    if cfg.corpus == "synthetic":
        text = synthetic_text(cfg.synthetic_chars, cfg.task_fraction, cfg.seed, cfg.tasks)
        docs = text.split(DOC_SEPARATOR)
    else:
        docs = read_documents(cfg.paths, cfg.jsonl_field)
    if tok.eos_id is None:
        tokens = tok.encode(DOC_SEPARATOR.join(docs))
        n_heldout = int(len(tokens) * cfg.heldout_fraction)
        cut = len(tokens) - n_heldout
        return Corpus(tokens[:cut], tokens[cut:], tok)
    n_heldout = max(1, int(len(docs) * cfg.heldout_fraction))
    split = len(docs) - n_heldout
    train, heldout = (_encode_documents(tok, part) for part in (docs[:split], docs[split:]))
    return Corpus(train, heldout, tok, 1 / tokenizer.bytes_per_token(tok, docs[split:]))


def _encode_documents(tok: tokenizer.Tokenizer, docs: list[str]) -> np.ndarray:
    """One stream of token ids, each document followed by EOS (uint16 where the ids fit)."""
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    eos = np.array([tok.eos_id], dtype=dtype)
    parts = [p for ids in tok.encode_batch(docs) for p in (ids.astype(dtype), eos)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


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
