"""Execute runs: one run (train, then evaluate) and a sweep of them, one after another.

Re-running skips finished runs and resumes unfinished ones from their last checkpoint. A run
that fails is marked failed with its traceback and the sweep goes on to the next run.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from experiments import store
from experiments.sweep import RunSpec, Sweep
from scaling import data
from scaling.config import RunConfig
from scaling.evaluate import check_prompts_fit, evaluate
from scaling.train import train


def preflight(configs: list[RunConfig]) -> None:
    """Everything that can be checked before compiling: data present and long enough, prompts
    fit the context. Raises ConfigError naming the field."""
    for cfg in configs:
        data.check_fits(data.load_corpus(cfg.data), cfg.model.seq_len)
        check_prompts_fit(cfg.model, cfg.eval)


def execute_run(cfg: RunConfig, run_dir: Path, show_progress: bool = True) -> dict:
    """Train (or resume) and evaluate one run; returns its final status record."""
    if store.status(run_dir)["state"] == store.DONE:
        return store.status(run_dir)
    store.claim_config(run_dir, cfg.to_dict())
    started = time.time()
    store.set_status(run_dir, store.RUNNING, started=started, steps=cfg.steps)
    try:
        with tqdm(
            total=cfg.steps,
            desc=cfg.name or run_dir.name,
            unit="step",
            leave=False,
            disable=not show_progress,
        ) as bar:
            result = train(cfg, run_dir, on_step=lambda s: bar.update(s - bar.n))
        eval_started = time.time()
        store.write_eval(run_dir, evaluate(result.params, cfg.model, cfg.eval))
        finished = time.time()
    except Exception as e:
        store.set_status(
            run_dir,
            store.FAILED,
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
        )
        raise
    store.set_status(
        run_dir,
        store.DONE,
        heldout_loss=result.final_heldout_loss,
        resumed_from_step=result.resumed_from,
        train_s=eval_started - started,
        eval_s=finished - eval_started,
        finished=finished,
    )
    return store.status(run_dir)


@dataclass
class SweepOutcome:
    done: list[str]
    skipped: list[str]
    failed: dict[str, str]


def run_sweep(sweep: Sweep, runs_dir: Path, show_progress: bool = True) -> SweepOutcome:
    """Run every run of the sweep that is not done yet, in order, with a progress bar."""
    preflight([spec.config for spec in sweep.runs])
    outcome = SweepOutcome([], [], {})
    sweep_dir = runs_dir / sweep.name
    with tqdm(sweep.runs, desc=f"sweep {sweep.name}", unit="run", disable=not show_progress) as bar:
        for spec in bar:
            bar.set_postfix_str(spec.name)
            _run_one(spec, sweep_dir / spec.run_id, outcome, show_progress)
    return outcome


def _run_one(spec: RunSpec, run_dir: Path, outcome: SweepOutcome, show_progress: bool) -> None:
    if store.status(run_dir)["state"] == store.DONE:
        outcome.skipped.append(spec.run_id)
        return
    try:
        execute_run(spec.config, run_dir, show_progress)
        outcome.done.append(spec.run_id)
    except Exception as e:  # recorded in status.json; the sweep goes on
        outcome.failed[spec.run_id] = f"{spec.name}: {type(e).__name__}: {e}"
