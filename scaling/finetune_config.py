"""A fine-tune's config (`finetune:`), the section of a run config that makes a run a fine-tune
of another run (its parent) on a task. Validated with the rest of the run config
(scaling.config.RunConfig); what needs the task's items (examples available, rows that fit the
context) is checked by scaling.finetune_data before anything compiles."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scaling.typed import ConfigError, require_positive

PRETRAINED, SCRATCH = "pretrained", "scratch"


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tune the parent's parameters (init: pretrained), or the same architecture from a
    random init (init: scratch, the from-scratch baseline of Hernandez et al. 2021's effective
    data transferred), on `examples` training items of `task` for `epochs` epochs, then score
    the task's test items. Empty `task`: the run is not a fine-tune.

    task: a built-in task name (evaluation.task_suite), a BIG-bench task.json (file or directory),
    or a .jsonl of {"prompt": ..., "completion": ...} lines (scaling.finetune_data says how
    each is split into disjoint train and test items).

    Optimisation: AdamW with the parent's betas, weight decay and gradient clipping and a fresh
    state; peak learning rate = learning_rate_mult × the parent's peak learning rate, linear
    warmup over the first `warmup` share of the steps, then cosine decay to zero; batches of
    batch_size items, each epoch a fresh permutation of the items (numpy default_rng([seed,
    epoch])). steps = epochs × ceil(examples / batch_size).

    Defaults, from the study in bench/RESULTS.md ("scaling finetune: the defaults"): zoo
    models s0 and s2 pretrained on the synthetic corpus, fine-tuned with 16 and 128 examples,
    2 seeds, 200 test items. On largest_of_4 the mean test error fell with the learning rate
    up to a multiplier of 1 (0.1: 0.67, 0.3: 0.61, 1: 0.48, 3: 0.48 at 5 epochs) and with
    epochs (1: 0.60, 0.55, 0.48 at 2, 3, 5); on navigate the same setting was best (error
    0.21; 0.3: 0.49, 3: 0.23). So learning_rate_mult 1 (the pretraining peak: 3 did no
    better and risks more) and 5 epochs, the top of the 2-5 range that fine-tuning practice
    recommends (8 epochs gained 0.02 more on these small, undertrained models; raise it for
    such models). A large, well-trained parent usually wants a smaller multiplier: try 0.3.
    batch_size 8 and warmup 0.1 (Hugging Face's usual warmup_ratio) were not varied.

    parent, parent_step, parent_tokens: the parent's run id, the checkpoint step fine-tuned
    and the tokens the parent had seen by then; filled in from the parent (scaling finetune,
    the sweep's finetune design), so that the run id names the parent and its checkpoint."""

    task: str = ""
    examples: int = 0
    epochs: int = 5
    learning_rate_mult: float = 1.0
    batch_size: int = 8
    warmup: float = 0.1  # share of the steps spent warming up
    seed: int = 0  # which training items (the first `examples` of a seeded draw) and their order
    init: str = PRETRAINED  # pretrained | scratch
    parent: str = ""
    parent_step: int = 0
    parent_tokens: int = 0
    # Test items: a fixed list's share held out by a permutation seeded by split_seed (or all
    # of test_file); at most test_items of them are scored (a generated task draws that many).
    test_fraction: float = 0.2
    test_file: str = ""
    test_items: int = 200
    split_seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 50

    def validate(self, where: str = "finetune") -> None:
        if not self.task:
            changed = [
                f.name
                for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(FinetuneConfig(), f.name)
            ]
            if changed:
                raise ConfigError(
                    f"{where}.{changed[0]}",
                    "set without finetune.task",
                    "name the task to fine-tune on, or drop the finetune section",
                )
            return
        require_positive(
            self,
            ("examples", "epochs", "batch_size", "test_items", "log_every", "checkpoint_every"),
            where,
        )
        if self.learning_rate_mult <= 0:
            raise ConfigError(f"{where}.learning_rate_mult", "must be > 0", "use e.g. 0.3")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(
                f"{where}.warmup",
                f"{self.warmup} not in [0, 1): it is the share of the steps",
                "use e.g. 0.1",
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"{where}.test_fraction", "not in (0, 1)", "use e.g. 0.2")
        if self.init not in (PRETRAINED, SCRATCH):
            raise ConfigError(
                f"{where}.init", f"unknown init {self.init!r}", f"use {PRETRAINED} or {SCRATCH}"
            )
        for name in ("seed", "split_seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}", "must be >= 0", "use e.g. 0")
        if not self.parent:
            raise ConfigError(
                f"{where}.parent", "empty", "fine-tune a run: scaling finetune PARENT_RUN_DIR"
            )
        if self.init == PRETRAINED and self.parent_step < 1:
            raise ConfigError(
                f"{where}.parent_step", "must be >= 1", "name a checkpoint step of the parent"
            )

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.examples // self.batch_size)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch
