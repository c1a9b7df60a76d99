"""`scaling eval SWEEP_DIR --harness lm-eval --tasks T1,T2 [--checkpoints]`: lm-evaluation-harness
tasks on every finished run of a sweep (or every saved checkpoint), with our model as lm-eval's
(evaluation.harness).

For each run and checkpoint step, each task is one `lm_eval.simple_evaluate` call, whose output
goes two places:
- lm-eval's v0.4 results JSON, <run>/lm_eval/results_<step>.json (results_<step>_<n>shot.json
  with --shots), tasks merged into the file as they finish: results, configs, versions, n-shot,
  higher_is_better, n-samples, group_subtasks, and config with model_num_parameters (our total
  parameters), model_revision "step<N>" (Pythia's naming) and tokens_seen, so that
  analysis.importers.read_lm_eval and `scaling emergence` read it like any published file;
- the run's eval.jsonl, one row per (task, metric) in the schema `scaling eval` writes (task,
  metric, shots, value, stderr, n_examples, random_baseline, higher_is_better, step,
  tokens_seen, eval_key), plus harness "lm-eval", harness_task (the name asked for) and group
  (a subtask's top-level group). A group's own aggregate rows stay in the JSON only, so that
  the results table counts each subtask once. Metric names are lm-eval's (acc, acc_norm,
  word_perplexity, exact_match, ...; a filter other than "none" as metric:filter). A
  multiple-choice task's random_baseline is the mean of 1/choices over its documents.

A (step, task, eval_key) already in eval.jsonl is skipped, so a re-run does only what is
missing; eval_key names the harness, its version, the shots and the limit.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from importlib.metadata import version
from pathlib import Path

import jax
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
from lm_eval.utils import handle_non_serializable
from tqdm.auto import tqdm

from evaluation.harness import ScalingLM
from experiments import store
from experiments.lm_eval_model import load_params, model_info, read_run
from scaling.config import ConfigError, MeshConfig
from scaling.mesh import make_mesh
from scaling.train import checkpoint_manager

HARNESS = "lm-eval"
RESULTS_DIR = "lm_eval"
SECTIONS = ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples")
CHOICE_METRICS = ("acc", "acc_norm")


def task_manager(tasks: tuple[str, ...], include_path: str | None) -> TaskManager:
    """lm-eval's task index: --include-path alone when it holds every task asked for (indexing
    lm-eval's own 10,000+ tasks takes half a minute), else lm-eval's tasks too. An unknown
    task is a one-line error before any run is read."""
    if include_path is not None and not Path(include_path).is_dir():
        raise ConfigError("--include-path", f"not a directory: {include_path}", "give a folder")
    if include_path is not None:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(local.match_tasks([t]) for t in tasks):
            return local
    manager = TaskManager(include_path=include_path)
    for task in tasks:
        if not manager.match_tasks([task]):
            close = difflib.get_close_matches(task, manager.all_tasks, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "see `lm_eval ls tasks`"
            raise ConfigError("--tasks", f"unknown lm-eval task {task!r}", hint)
    return manager


def settings_key(shots: int | None, limit: int | None) -> str:
    """12 hex digits naming how lm-eval tasks were run (not which)."""
    settings = {"harness": HARNESS, "version": version("lm_eval"), "shots": shots, "limit": limit}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _number(x) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def _baselines(samples: dict) -> dict[str, float]:
    """Chance accuracy of each multiple-choice task: the mean of 1/choices over its documents."""
    return {
        name: sum(1 / len(s["arguments"]) for s in docs) / len(docs)
        for name, docs in samples.items()
        if docs and docs[0].get("arguments") and len(docs[0]["arguments"]) > 1
    }


def eval_rows(out: dict, baselines: dict, asked: str) -> list[dict]:
    """simple_evaluate's output as eval.jsonl rows (see the module docstring)."""
    groups = out.get("group_subtasks", {})
    parent = {sub: g for g, subs in groups.items() for sub in subs}
    rows = []
    for name, metrics in out["results"].items():
        if groups.get(name):  # a group's aggregate over its subtasks
            continue
        top = name
        while top in parent:
            top = parent[top]
        better = out["higher_is_better"].get(name, {})
        for key, value in metrics.items():
            metric, comma, filt = key.partition(",")
            if not comma or metric.endswith("_stderr") or math.isnan(_number(value)):
                continue  # name, alias, sample_len; stderr goes with its metric
            rows.append(
                {
                    "task": name,
                    "metric": metric if filt == "none" else f"{metric}:{filt}",
                    "shots": int(out["n-shot"].get(name) or 0),
                    "value": float(value),
                    "stderr": _number(metrics.get(f"{metric}_stderr,{filt}")),
                    "n_examples": out["n-samples"].get(name, {}).get("effective"),
                    "random_baseline": baselines.get(name, math.nan)
                    if metric in CHOICE_METRICS
                    else math.nan,
                    "higher_is_better": bool(better.get(metric, True)),
                    "harness": HARNESS,
                    "harness_task": asked,
                    "group": top if top != name else "",
                }
            )
    return rows


def results_path(run_dir, step: int, shots: int | None) -> str:
    suffix = "" if shots is None else f"_{shots}shot"
    return store.join(str(run_dir), RESULTS_DIR, f"results_{step}{suffix}.json")


def write_results(path: str, out: dict) -> None:
    """Merge one evaluation's results into the JSON file at `path` (tasks side by side)."""
    old = store.read_json(path, {})
    merged = old | out
    for section in (*SECTIONS, "group_subtasks"):
        merged[section] = old.get(section, {}) | out.get(section, {})
    text = json.dumps(merged, indent=2, default=handle_non_serializable, ensure_ascii=False)
    store.write_atomic(path, text + "\n")


def _done(run_dir) -> set[tuple]:
    rows = store.read_eval(run_dir)
    return {(r["step"], r["harness_task"], r["eval_key"]) for r in rows if "harness_task" in r}


def _evaluate_task(lm, run_dir, step, task, shots, limit, manager) -> list[dict]:
    out = simple_evaluate(
        model=lm,
        tasks=[task],
        num_fewshot=shots,
        limit=limit,
        task_manager=manager,
        log_samples=True,  # for the multiple-choice baselines; not written
    )
    baselines = _baselines(out.pop("samples", {}))
    out["model_name"] = str(run_dir)  # as lm_eval names a model given by path
    out["config"] |= {"model": "scaling", "model_args": f"path={run_dir},step={step}"}
    write_results(results_path(run_dir, step, shots), out)
    return eval_rows(out, baselines, task)


def evaluate_run(run_dir, options: dict, checkpoints: bool, manager, mesh) -> tuple[int, int]:
    """lm-eval tasks on one finished run (each checkpoint with `checkpoints`); returns the
    (step, task, shots) evaluated and skipped."""
    cfg = read_run(run_dir)
    steps = [cfg.steps]
    if checkpoints:
        with checkpoint_manager(Path(run_dir), cfg.train) as saved:
            steps = sorted(saved.all_steps())
    evaluated = skipped = 0
    state = store.status(run_dir)["state"]
    for step in steps:
        lm = None
        for shots in options["shots"]:
            key = settings_key(shots, options["limit"])
            todo = [t for t in options["tasks"] if (step, t, key) not in _done(run_dir)]
            skipped += len(options["tasks"]) - len(todo)
            for task in todo:
                if lm is None:
                    params, _ = load_params(run_dir, cfg, step, mesh)
                    lm = ScalingLM(
                        params,
                        cfg.model,
                        cfg.data.run_tokenizer(),
                        batch_size=cfg.eval.batch_size,
                        mesh=mesh,
                        info=model_info(run_dir, cfg, step),
                    )
                store.set_status(run_dir, state, evaluating={"step": step, "tasks": [task]})
                rows = _evaluate_task(lm, run_dir, step, task, shots, options["limit"], manager)
                tokens = step * cfg.train.batch_size * cfg.model.seq_len
                new = [r | {"step": step, "tokens_seen": tokens, "eval_key": key} for r in rows]
                store.write_eval(run_dir, store.read_eval(run_dir) + new)
                store.set_status(run_dir, state, evaluating=None)
                evaluated += 1
    return evaluated, skipped


def evaluate_sweep(sweep_dir: Path, options: dict, checkpoints: bool = False) -> dict:
    """evaluate_run over every finished run of a sweep. options: tasks, shots (a tuple of shot
    counts, (None,) for each task's own), limit (examples per task or None), include_path."""
    manager = task_manager(options["tasks"], options["include_path"])
    mesh = make_mesh(MeshConfig(), jax.local_devices())  # data-parallel over this host
    runs = store.run_dirs(str(sweep_dir))
    finished = [d for d in runs if store.status(d)["state"] == store.DONE]
    totals = {"runs": len(finished), "not_finished": len(runs) - len(finished)}
    totals |= {"evaluated": 0, "skipped": 0}
    for run_dir in tqdm(finished, desc=f"lm-eval {sweep_dir.name}", unit="run"):
        evaluated, skipped = evaluate_run(run_dir, options, checkpoints, manager, mesh)
        totals["evaluated"] += evaluated
        totals["skipped"] += skipped
    return totals
