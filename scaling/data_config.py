"""The training data's config (`data:`): which corpus, tokenizer and sampling a run uses.
Validated with the rest of the run config (scaling.config.RunConfig)."""

from __future__ import annotations

from dataclasses import dataclass

from evaluation.task_suite import TASKS
from scaling import shards
from scaling.tokenizer import load as load_tokenizer
from scaling.typed import ConfigError

# The tasks a default run learns from its corpus and is evaluated on (evaluation.task_suite).
DEFAULT_TASKS = (
    "add2",
    "add3",
    "sub2",
    "cycle_letters",
    "reversed_words",
    "copy_letters",
    "largest_of_4",
    "navigate",
)


@dataclass(frozen=True)
class DataConfig:
    """Training text: the embedded synthetic corpus, the user's own .txt / .jsonl files, or the
    token shards of `scaling prepare` (corpus: tokens, path: the shard directory).

    sampling: "random" windows at positions drawn per step (the default), or "epochs": every
    epoch a fresh permutation of the non-overlapping windows, each seen once (scaling.data).
    unique_tokens: train on the first this many tokens of the train split only (0: all of it),
    for data-constrained studies; the results table gives the unique tokens and epochs."""

    corpus: str = "synthetic"  # "synthetic" | "files" | "tokens"
    paths: tuple[str, ...] = ()
    path: str = ""  # corpus tokens: the shard directory
    tokenizer: str = (
        "bytes"  # "bytes" | a tokenizer.json | a SentencePiece .model (scaling.tokenizer)
    )
    jsonl_field: str = "text"
    synthetic_chars: int = 2_000_000
    task_fraction: float = 0.5  # share of synthetic documents that are task demonstrations
    tasks: tuple[str, ...] = DEFAULT_TASKS  # built-in tasks demonstrated in the corpus
    heldout_fraction: float = 0.05
    sampling: str = "random"  # "random" | "epochs"
    unique_tokens: int = 0
    seed: int = 0

    def run_tokenizer(self):
        """The run's tokenizer: token shards carry their own, other corpora use data.tokenizer."""
        if self.corpus == "tokens":
            return shards.load_tokenizer(self.path)
        return load_tokenizer(self.tokenizer)

    def validate(self, where: str = "data") -> None:
        if self.corpus not in ("synthetic", "files", "tokens"):
            raise ConfigError(
                f"{where}.corpus",
                f"unknown corpus {self.corpus!r}",
                "use 'synthetic', 'files' (with data.paths) or 'tokens' (with data.path)",
            )
        if self.corpus == "files" and not self.paths:
            raise ConfigError(
                f"{where}.paths",
                "empty while corpus is 'files'",
                "list .txt or .jsonl files in data.paths",
            )
        if self.corpus == "tokens":
            if not self.path:
                raise ConfigError(
                    f"{where}.path",
                    "empty while corpus is 'tokens'",
                    "give a `scaling prepare` --out",
                )
            shards.check_tokenizer(self.path, self.tokenizer, where)
        if self.sampling not in ("random", "epochs"):
            raise ConfigError(
                f"{where}.sampling", f"unknown sampling {self.sampling!r}", "use random|epochs"
            )
        if self.unique_tokens < 0:
            raise ConfigError(f"{where}.unique_tokens", "must be >= 0", "use 0 for all tokens")
        if self.corpus == "synthetic" and self.synthetic_chars < 10_000:
            raise ConfigError(
                f"{where}.synthetic_chars",
                f"{self.synthetic_chars} is too small",
                "use at least 10000",
            )
        for name in self.tasks:
            if name not in TASKS or TASKS[name].sample is None:
                generated = sorted(n for n, t in TASKS.items() if t.sample is not None)
                raise ConfigError(
                    f"{where}.tasks", f"no generated task {name!r}", f"choose from {generated}"
                )
        if self.corpus == "synthetic" and self.task_fraction > 0 and not self.tasks:
            raise ConfigError(
                f"{where}.tasks", "empty while task_fraction > 0", "name tasks or set it to 0"
            )
        if not 0.0 <= self.task_fraction <= 1.0:
            raise ConfigError(
                f"{where}.task_fraction",
                f"{self.task_fraction} not in [0, 1]",
                "use a fraction between 0 and 1",
            )
        if not 0.0 < self.heldout_fraction < 0.5:
            raise ConfigError(
                f"{where}.heldout_fraction",
                f"{self.heldout_fraction} not in (0, 0.5)",
                "use e.g. 0.05",
            )
