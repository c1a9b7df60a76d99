"""Importers of published and project results into the tidy score table (analysis.scores):
lm-evaluation-harness JSON (v0.3 and v0.4), BIG-bench score files, ad-hoc CSVs, and this
project's results table (analysis.project_scores); `load_scores` detects the format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.inputs import require_columns
from analysis.project_scores import from_project
from analysis.scores import fill_n_examples, resolve_baselines, tidy
from scaling.config import ConfigError


def _lm_eval_model(d: dict, path: Path | None) -> str:
    """Model name from config.model_args 'pretrained=org/name,...' (or model_name, file stem)."""
    cfg = d.get("config") or {}
    args = cfg.get("model_args") or ""
    if isinstance(args, dict):
        args = ",".join(f"{k}={v}" for k, v in args.items())
    for part in str(args).split(","):
        key, _, val = part.partition("=")
        if key.strip() == "pretrained" and val:
            return val.strip().rstrip("/").split("/")[-1]
    return d.get("model_name") or (path.stem if path else "model")


def read_lm_eval(source, *, model: str | None = None) -> pd.DataFrame:
    """lm-evaluation-harness results JSON (path or dict) -> tidy scores.

    v0.3: {"results": {task: {metric: v, metric_stderr: se}}, "versions", "config":
    {"num_fewshot", "model_args"}}. v0.4 adds "n-shot", "configs" (num_fewshot, doc_to_choice),
    "higher_is_better", "n-samples" and "group_subtasks"; metric keys are "metric,filter".
    A subtask listed under a group in group_subtasks becomes (task=group, subtask=name).
    Model size, tokens and FLOPs are not in these files: add them with `attach_models`."""
    path = None if isinstance(source, dict) else Path(source)
    d = source if path is None else json.loads(path.read_text())
    if "results" not in d:
        raise ConfigError(str(path or "lm_eval"), "no 'results' key", "give an lm-eval JSON")
    model = model or _lm_eval_model(d, path)
    parent = {s: g for g, subs in (d.get("group_subtasks") or {}).items() for s in subs}
    configs, n_shot = d.get("configs") or {}, d.get("n-shot") or {}
    default_shots = (d.get("config") or {}).get("num_fewshot")
    rows = []
    for name, metrics in d["results"].items():
        cfg = configs.get(name) or {}
        shots = n_shot.get(name, cfg.get("num_fewshot", default_shots))
        choices = cfg.get("doc_to_choice")
        samples = (d.get("n-samples") or {}).get(name) or {}
        hib = (d.get("higher_is_better") or {}).get(name) or {}
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            se = metrics.get(f"{metric}_stderr" + (f",{filt}" if filt else ""))
            rows.append(
                {
                    "model": model,
                    "task": parent.get(name, name),
                    "subtask": name if name in parent else "",
                    "shots": 0 if shots is None else shots,
                    "metric": metric if filt in ("", "none") else f"{metric}:{filt}",
                    "value": float(value),
                    "stderr": float(se) if isinstance(se, (int, float)) else np.nan,
                    "n_examples": samples.get("effective", np.nan),
                    "n_choices": len(choices) if isinstance(choices, list) else np.nan,
                    "higher_is_better": hib.get(metric, np.nan),
                }
            )
    return tidy(pd.DataFrame(rows), str(path or "lm_eval"))


def read_bigbench(source) -> pd.DataFrame:
    """BIG-bench score file scores_<family>_<size>.json (path or dict) -> tidy scores.

    Each `scores` entry gives one row per score_dict metric; subtask_description 'task:sub'
    splits into task and subtask. The preferred score's low_score is BIG-bench's chance level
    (its normalised score is 100·(s - low)/(high - low)) and becomes its random_baseline;
    other metrics get theirs from task info. model: total_params -> params, non_embedding_params,
    flop_matched_non_embedding_params (kept as a column)."""
    path = None if isinstance(source, dict) else Path(source)
    d = source if path is None else json.loads(path.read_text())
    where = str(path or "bigbench")
    if "scores" not in d or "model" not in d:
        raise ConfigError(where, "no 'scores'/'model' keys", "give a BIG-bench scores_*.json")
    m = d["model"]
    stem = path.stem.split("_") if path else []
    family = m.get("model_family") or (stem[1] if len(stem) > 2 else "bigbench")
    size = m.get("model_name") or (stem[-1] if stem else "model")
    task_name = (d.get("task") or {}).get("task_name")
    rows = []
    for s in d["scores"]:
        task, _, sub = str(s.get("subtask_description") or task_name).partition(":")
        for metric, value in s["score_dict"].items():
            preferred = metric == s.get("preferred_score")
            rows.append(
                {
                    "model": f"{family} {size}",
                    "family": family,
                    "params": m.get("total_params"),
                    "non_embedding_params": m.get("non_embedding_params"),
                    "flop_matched_non_embedding_params": m.get("flop_matched_non_embedding_params"),
                    "task": task,
                    "subtask": sub,
                    "shots": s.get("number_of_shots"),
                    "metric": metric,
                    "value": value,
                    "random_baseline": s.get("low_score") if preferred else np.nan,
                    "higher_is_better": (
                        float(s["high_score"] > s["low_score"]) if preferred else np.nan
                    ),
                }
            )
    return tidy(pd.DataFrame(rows), where)


def read_csv(path, mapping: dict[str, str] | None = None, defaults: dict | None = None):
    """A CSV (or parquet) -> tidy scores: columns renamed by `mapping` {source: schema name},
    constant columns from `defaults` (e.g. {"shots": 0}). This project's results table
    (recognised by run_id and flops_detailed columns) goes through `from_project`."""
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if {"run_id", "flops_detailed"} <= set(df.columns) and not mapping:
        return from_project(df)
    df = df.rename(columns=mapping or {})
    for col, value in (defaults or {}).items():
        df[col] = df[col].fillna(value) if col in df.columns else value
    return tidy(df, str(path))


def attach_models(scores: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Fill family/params/non_embedding_params/tokens/flops (and any other column of `models`)
    from a per-model table keyed by `model`; values already in `scores` win."""
    require_columns(models, ["model"], "models")
    info = models.assign(model=models["model"].astype(str)).drop_duplicates("model")
    info = info.set_index("model")
    out = scores.copy()
    for col in info.columns:
        looked_up = out["model"].map(info[col])
        if col not in out.columns:
            out[col] = looked_up
        elif col == "family":
            out[col] = out[col].where(out[col] != "all", looked_up.fillna("all"))
        else:
            out[col] = out[col].fillna(looked_up)
    return out


def detect_format(path) -> str:
    """'lm_eval' | 'bigbench' | 'table' from a file's suffix and top-level JSON keys."""
    path = Path(path)
    if path.suffix != ".json":
        return "table"
    keys = json.loads(path.read_text()).keys()
    if {"scores", "model"} <= keys:
        return "bigbench"
    if "results" in keys:
        return "lm_eval"
    raise ConfigError(str(path), f"unknown JSON layout (keys {sorted(keys)})", "see scaling -h")


def load_scores(
    paths,
    *,
    mapping: dict[str, str] | None = None,
    defaults: dict | None = None,
    models: pd.DataFrame | None = None,
    task_info: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Read every input (format by detect_format), concatenate, attach model metadata, resolve
    baselines and fill n_examples: the frame `analysis.emergence.classify` takes."""
    readers = {"lm_eval": read_lm_eval, "bigbench": read_bigbench}
    frames = []
    for p in paths:
        if not Path(p).exists():
            raise ConfigError("INPUT", f"no such file: {p}", "check the path")
        fmt = detect_format(p)
        frames.append(readers[fmt](p) if fmt in readers else read_csv(p, mapping, defaults))
    scores = pd.concat(frames, ignore_index=True)
    if models is not None:
        scores = attach_models(scores, models)
    return fill_n_examples(resolve_baselines(scores, task_info))
