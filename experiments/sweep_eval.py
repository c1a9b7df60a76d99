"""Evaluate a sweep after training: every finished run, or every saved checkpoint of every run
(emergence over training), on any tasks and prompting settings.

Rows are appended to each run's eval.jsonl with the checkpoint `step`, the tokens seen by then
and an `eval_key` (a hash of the settings other than the task list), and a (step, task,
eval_key) already there is skipped, so a re-run only does what is missing. Each task's rows are
written in one atomic replace, and status.json names the (step, tasks) under evaluation until
they are done: a kill leaves no half-evaluated task and a record of what was in flight.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from evaluation.evaluate import check_prompts_fit, evaluate
from evaluation.task_suite import expand_all, resolve
from experiments import store
from scaling.config import EvalConfig, RunConfig, run_config
from scaling.finetune import score_test
from scaling.finetune_data import test_eval
from scaling.train import checkpoint_manager, restore


def eval_key(ecfg: EvalConfig) -> str:
    """12 hex digits naming the evaluation settings other than the task list."""
    settings = dataclasses.asdict(ecfg)
    settings.pop("tasks")
    settings.pop("every_steps")  # when to evaluate, not how
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def annotate(rows: list[dict], cfg: RunConfig, ecfg: EvalConfig, step: int) -> list[dict]:
    """Eval rows with the step, the tokens trained by then and the settings key."""
    tokens = step * cfg.train.batch_size * cfg.model.seq_len
    return [r | {"step": step, "tokens_seen": tokens, "eval_key": eval_key(ecfg)} for r in rows]


def _done(rows: list[dict], cfg: RunConfig) -> set[tuple]:
    """(step, task, eval_key) already evaluated; rows from before steps were recorded count as
    the final step under the run's own settings."""
    return {_key(r, cfg) for r in rows}


def pending(run_dir, cfg: RunConfig, ecfg: EvalConfig, step: int) -> list[str]:
    """The tasks of ecfg not yet recorded at `step` under these settings."""
    have = _done(store.read_eval(run_dir), cfg)
    todo = expand_all(ecfg.tasks)  # a BIG-bench parent task: its subtasks
    return [t for t in todo if (step, resolve(t).name, eval_key(ecfg)) not in have]


def record(
    run_dir,
    cfg: RunConfig,
    ecfg: EvalConfig,
    params,
    step: int,
    on_rows: Callable[[list[dict]], None] | None = None,
) -> int:
    """Evaluate `params` at `step` on the tasks not yet recorded (a resumed run passes the
    steps after its checkpoint again), one atomic write per task; returns the tasks done.
    The runner calls this every eval.every_steps during training and once at the end.
    on_rows(rows) gets each task's rows once they are stored (TensorBoard, W&B)."""
    todo = pending(run_dir, cfg, ecfg, step)
    rows = store.read_eval(run_dir)
    tok = cfg.data.run_tokenizer()
    for task in todo:
        one = dataclasses.replace(ecfg, tasks=(task,))
        new = annotate(evaluate(params, cfg.model, one, tok), cfg, ecfg, step)
        rows += new
        store.write_eval(run_dir, rows)
        if on_rows is not None:
            on_rows(new)
    return len(todo)


def record_finetune(
    run_dir, cfg: RunConfig, params, on_rows: Callable[[list[dict]], None] | None = None
) -> dict:
    """Score a fine-tune on its test items (scaling.finetune.score_test): its rows replace any
    of the same (step, task, eval_key) in eval.jsonl, one row per item goes to
    store.TEST_ITEMS (for a bootstrap over items); returns the headline (metric, accuracy,
    error, n_items) for status.json's `test`."""
    scored, items, headline = score_test(params, cfg)
    new = annotate(scored, cfg, test_eval(cfg, headline["n_items"]), cfg.steps)
    ours = {(r["step"], r["task"], r["eval_key"]) for r in new}
    kept = [r for r in store.read_eval(run_dir) if _key(r, cfg) not in ours]
    store.write_atomic(
        store.join(run_dir, store.TEST_ITEMS), "".join(json.dumps(r) + "\n" for r in items)
    )
    store.write_eval(run_dir, kept + new)
    if on_rows is not None:
        on_rows(new)
    return headline


def _key(row: dict, cfg: RunConfig) -> tuple:
    return row.get("step", cfg.steps), row["task"], row.get("eval_key", eval_key(cfg.eval))


def evaluate_run(run_dir: Path, overrides: dict, checkpoints: bool = False) -> tuple[int, int]:
    """Evaluate one finished run with its eval settings updated by `overrides`; returns the
    (step, task) pairs (evaluated, skipped). Scores also go to the run's TensorBoard events,
    beside its training curves."""
    from experiments.tracking import Scalars, tensorboard_writer

    cfg = run_config(store.read_json(store.join(run_dir, store.CONFIG)))
    ecfg = dataclasses.replace(cfg.eval, **overrides)
    ecfg.validate()
    check_prompts_fit(cfg.model, ecfg, cfg.data.run_tokenizer())  # before reading checkpoints
    manager = checkpoint_manager(run_dir, cfg.train)
    try:
        # one event file for every checkpoint's scores
        with Scalars(tensorboard_writer(run_dir)) as scalars:
            return _evaluate_steps(run_dir, cfg, ecfg, manager, checkpoints, scalars)
    finally:
        manager.close()


def _evaluate_steps(run_dir, cfg, ecfg, manager, checkpoints, scalars) -> tuple[int, int]:
    steps = sorted(manager.all_steps()) if checkpoints else [cfg.steps]
    evaluated = skipped = 0
    state = store.status(run_dir)["state"]
    for step in steps:
        todo = pending(run_dir, cfg, ecfg, step)
        skipped += len(expand_all(ecfg.tasks)) - len(todo)
        if not todo:
            continue
        params = restore(manager, cfg, step)["params"]
        store.set_status(run_dir, state, evaluating={"step": step, "tasks": todo})
        evaluated += record(run_dir, cfg, ecfg, params, step, scalars.log_eval)
        store.set_status(run_dir, state, evaluating=None)
    return evaluated, skipped


def evaluate_sweep(sweep_dir: Path, overrides: dict, checkpoints: bool = False) -> dict:
    """evaluate_run over every finished run of a sweep, with a progress bar."""
    for task in expand_all(overrides.get("tasks", ())):  # a bad task file fails before any run
        resolve(task)
    runs = [Path(d) for d in store.run_dirs(str(sweep_dir))]
    finished = [d for d in runs if store.status(d)["state"] == store.DONE]
    totals = {"runs": len(finished), "not_finished": len(runs) - len(finished)}
    totals |= {"evaluated": 0, "skipped": 0}
    for run_dir in tqdm(finished, desc=f"eval {sweep_dir.name}", unit="run"):
        evaluated, skipped = evaluate_run(run_dir, overrides, checkpoints)
        totals["evaluated"] += evaluated
        totals["skipped"] += skipped
    return totals
