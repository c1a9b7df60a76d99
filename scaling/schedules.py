"""Learning-rate schedules: a pure function of (config, total steps, step).

  * `cosine`    linear warmup, then cosine decay to min_lr_ratio·learning_rate over the rest of
                the run (Hoffmann et al. 2022 match the cosine length to the token budget).
  * `wsd`       warmup–stable–decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024): linear warmup,
                constant learning rate, then a cooldown over the last decay_fraction of the
                steps to min_lr_ratio·learning_rate with the 1-sqrt shape, which Hägele et al.
                found best among the shapes they compared.
  * `constant`  linear warmup, then constant: the stable phase of `wsd` with no cooldown. A
                cooldown branch (a `wsd` run with `init_from`) starts from a `constant` run's
                checkpoint at its decay start, because up to that step the two schedules agree.

The schedule is evaluated on the host and fed to the jitted step, so one compiled step serves
every schedule and token budget.
"""

from __future__ import annotations

import math

from scaling.config import TrainConfig


def decay_start(t: TrainConfig, total_steps: int) -> int:
    """First step of the cooldown: a `wsd` run decays over its last decay_fraction of steps;
    `cosine` decays from the end of warmup, `constant` never."""
    if t.schedule == "wsd":
        return total_steps - round(t.decay_fraction * total_steps)
    return t.warmup_steps if t.schedule == "cosine" else total_steps


def learning_rate(t: TrainConfig, total_steps: int, step: int) -> float:
    """The learning rate of `step` (0-based) in a run of total_steps steps."""
    if step < t.warmup_steps:
        return t.learning_rate * (step + 1) / t.warmup_steps
    floor = t.min_lr_ratio * t.learning_rate
    start = decay_start(t, total_steps)
    if step < start or t.schedule == "constant":
        return t.learning_rate
    progress = min(1.0, (step - start) / max(1, total_steps - start))
    if t.schedule == "cosine":
        return floor + (t.learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (t.learning_rate - floor) * (1 - math.sqrt(progress))
