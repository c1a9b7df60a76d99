"""Corpora and batches.

Text is tokenized by the run's tokenizer (`data.tokenizer`, scaling.tokenizer; bytes by default).
Documents end in the tokenizer's EOS token, or, for bytes (which have none), are joined by a blank
line into one stream. The held-out split's measured bytes per token turn its loss into bits per
byte. The last `heldout_fraction` of the stream is the held-out split, never trained on. A corpus
of token shards (`corpus: tokens`, written by `scaling prepare`) is memory-mapped instead: its
train and val splits are scaling.shards.SplitReaders, which batches read like arrays.

A training batch is `batch_size` windows of seq_len+1 tokens, a pure function of (data, seed,
step), so a resumed run sees exactly the batches an uninterrupted one would and each host of a
multi-host job can build only its own rows. Two samplings (`data.sampling`):
- random: start positions drawn from `default_rng([seed, step])` anywhere in the stream;
- epochs: the stream cut into non-overlapping windows (window k: tokens [k·T, k·T + T + 1),
  T = seq_len, so every token is predicted once), visited in a fresh permutation every epoch,
  from `default_rng([seed, epoch])`: global window g = step·batch_size + row is window
  order[g mod n] of epoch g div n. No window repeats within an epoch, and unique tokens × epochs
  equals the tokens trained exactly (`unique_tokens`).
`data.unique_tokens` keeps a run to the first tokens of the train split (0: all).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.task_suite import TASKS, WORDS
from evaluation.tasks import solved, training_example
from scaling import shards, tokenizer
from scaling.config_io import json_type, read_input
from scaling.data_config import DEFAULT_TASKS, DataConfig
from scaling.shards import DOC_SEPARATOR
from scaling.typed import ConfigError

RANDOM, EPOCHS = "random", "epochs"


@dataclass(frozen=True)
class Corpus:
    train: np.ndarray | shards.SplitReader  # token ids: in memory, or memory-mapped shards
    heldout: np.ndarray | shards.SplitReader
    tokenizer: tokenizer.Tokenizer = tokenizer.ByteTokenizer()
    heldout_tokens_per_byte: float = 1.0  # measured on the held-out split's text

    def bits_per_byte(self, nats_per_token: float) -> float:
        return tokenizer.bits_per_byte(nats_per_token, self.heldout_tokens_per_byte)


def synthetic_text(
    n_chars: int, task_fraction: float, seed: int, tasks: tuple[str, ...] = DEFAULT_TASKS
) -> str:
    """Prose from a tiny grammar mixed with blocks of task demonstrations, deterministic in seed.

    A task document is 4-10 solved items of one of `tasks` (generated built-ins), formatted as
    k-shot prompts are (evaluation.tasks.solved), so larger models (which fit more of this text)
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
    """Tokenized train and held-out splits (cached: every run of a sweep shares them).

    Bytes keep the blank-line-joined stream (the held-out split is its tail, one byte a token);
    a subword tokenizer encodes each document and ends it with EOS, and the held-out split is the
    last `heldout_fraction` of the documents, whose bytes per token are measured. Token shards
    are opened, not read: their val split is the held-out split, their manifest gives its bytes
    per token."""
    if cfg.corpus == "tokens":
        return _token_corpus(cfg.path)
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


def _token_corpus(path: str) -> Corpus:
    manifest = shards.read_manifest(path)
    tok = tokenizer.load(shards.tokenizer_spec(path, manifest))
    train, val = (shards.SplitReader(path, split, manifest) for split in shards.SPLITS)
    return Corpus(train, val, tok, 1 / manifest["splits"]["val"]["bytes_per_token"])


def _encode_documents(tok: tokenizer.Tokenizer, docs: list[str]) -> np.ndarray:
    """One stream of token ids, each document followed by EOS (uint16 where the ids fit)."""
    eos = np.array([tok.eos_id])
    return shards.document_stream(tok.encode_batch(docs), eos, shards.token_dtype(tok.vocab_size))


def check_fits(corpus: Corpus, seq_len: int, unique_tokens: int = 0) -> None:
    """Both splits must hold at least one window of seq_len+1 tokens, and a run kept to its
    first unique_tokens at least one window within them."""
    for split in ("train", "heldout"):
        n = len(getattr(corpus, split))
        if n < seq_len + 1:
            raise ConfigError(
                "model.seq_len",
                f"{seq_len} needs {seq_len + 1} tokens but the {split} split has {n}",
                "lower model.seq_len or give more data",
            )
    if unique_tokens > len(corpus.train):
        raise ConfigError(
            "data.unique_tokens",
            f"{unique_tokens} > the {len(corpus.train)} tokens of the train split",
            "lower it, or 0 for all of them",
        )
    if 0 < unique_tokens < seq_len + 1:
        raise ConfigError(
            "data.unique_tokens",
            f"{unique_tokens} is less than one window of {seq_len + 1} tokens",
            "raise it, or 0 for all of them",
        )


def unique_token_count(n_tokens: int, seq_len: int, sampling: str = RANDOM, limit: int = 0) -> int:
    """The distinct train tokens a run draws from: random, the first `limit` (0: all n_tokens);
    epochs, the tokens its whole windows predict, n_windows·seq_len. Epochs trained = the
    tokens trained / this (exact in epochs sampling; the expected passes in random)."""
    if sampling == EPOCHS:
        return epoch_windows(n_tokens, seq_len, limit) * seq_len
    return limit or n_tokens


def epoch_windows(n_tokens: int, seq_len: int, limit: int = 0) -> int:
    """Non-overlapping windows of seq_len+1 tokens (sharing their edge token) in the first
    `limit` tokens (0: all n_tokens)."""
    return (min(limit or n_tokens, n_tokens - 1)) // seq_len


@functools.lru_cache(maxsize=2)  # the current epoch and the next: a batch may straddle them
def epoch_order(seed: int, epoch: int, n_windows: int) -> np.ndarray:
    """The order of the windows in `epoch`: a permutation from default_rng([seed, epoch]),
    4 bytes a window (uint32 while it fits), computed once per epoch."""
    order = np.arange(n_windows, dtype=np.uint32 if n_windows < 2**32 else np.int64)
    np.random.default_rng([seed, epoch]).shuffle(order)
    return order


@functools.lru_cache(maxsize=4)  # train_batch asks for the next batch's starts ahead of it
def window_starts(
    n_tokens: int, seed: int, step: int, batch_size: int, seq_len: int, sampling: str, limit: int
) -> np.ndarray:
    """Start positions of the windows of batch `step` (see the module docstring); read-only,
    as the cache shares it."""
    if sampling == EPOCHS:
        n = epoch_windows(n_tokens, seq_len, limit)
        epochs, index = np.divmod(step * batch_size + np.arange(batch_size), n)
        windows = [epoch_order(seed, int(e), n)[i] for e, i in zip(epochs, index)]
        starts = np.asarray(windows, np.int64) * seq_len
    else:
        rng = np.random.default_rng([seed, step])
        starts = rng.integers(0, (limit or n_tokens) - seq_len, size=batch_size)
    starts.setflags(write=False)
    return starts


def train_batch(
    tokens,
    seed: int,
    step: int,
    batch_size: int,
    seq_len: int,
    rows=None,
    sampling: str = RANDOM,
    unique_tokens: int = 0,
):
    """Batch `step`: (batch_size, seq_len+1) int32 windows, a pure function of (seed, step).
    `rows` selects some rows of it (a host of a multi-host job builds only its own). `tokens`
    is an array or a SplitReader; each window is one slice of it, and a reader is asked to
    start reading batch step+1 (SplitReader.prefetch), which overlaps the train step."""

    def starts(i: int) -> np.ndarray:
        found = window_starts(len(tokens), seed, i, batch_size, seq_len, sampling, unique_tokens)
        return found if rows is None else found[rows]

    batch = np.stack([tokens[s : s + seq_len + 1] for s in starts(step)]).astype(np.int32)
    if hasattr(tokens, "prefetch"):
        tokens.prefetch(starts(step + 1), seq_len + 1)
    return batch


def heldout_batches(tokens, batch_size: int, seq_len: int, n_batches: int):
    """Fixed windows spread evenly over the held-out split (the same at every evaluation)."""
    n_windows = batch_size * n_batches
    starts = np.linspace(0, len(tokens) - seq_len - 1, n_windows).astype(np.int64)
    windows = np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int32)
    return windows.reshape(n_batches, batch_size, seq_len + 1)
