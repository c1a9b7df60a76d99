"""Importers of published and project results into the tidy score table (analysis.scores):
lm-evaluation-harness JSON (v0.3 and v0.4), BIG-bench score files, ad-hoc CSVs, and this
project's results table (analysis.project_scores); `load_scores` detects the format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.inputs import read_table, require_columns
from analysis.project_scores import from_project
from analysis.scores import NUMERIC, fill_n_examples, numeric, resolve_baselines, tidy
from scaling.config import ConfigError
from scaling.config_io import json_type, load_json


def _document(source, kind: str) -> tuple[dict, Path | None, str]:
    """(the JSON object, its path or None, the name errors give it) of a path or a dict."""
    path = None if isinstance(source, dict) else Path(source)
    where = str(path) if path else kind
    d = source if path is None else load_json(path, "INPUT")
    if not isinstance(d, dict):
        raise ConfigError(where, f"holds a JSON {json_type(d)}, not an object", f"give {kind}")
    return d, path, where


def _section(d: dict, key, where: str, kind: type = dict):
    """d[key] when it is a JSON object (or list); absent or null is an empty one. Anything else
    is a ConfigError naming the field: the file is not what the harness or BIG-bench writes."""
    value = d.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise ConfigError(
            f"{where}.{key}",
            f"is a JSON {json_type(value)}, not {'an object' if kind is dict else 'a list'}",
            "give the file as the harness or BIG-bench wrote it",
        )
    return value


def _lm_eval_model(d: dict, path: Path | None, where: str) -> str:
    """Model name from config.model_args 'pretrained=org/name,...' (or model_name, file stem)."""
    args = _section(d, "config", where).get("model_args") or ""
    if isinstance(args, dict):
        args = ",".join(f"{k}={v}" for k, v in args.items())
    for part in str(args).split(","):
        key, _, val = part.partition("=")
        if key.strip() == "pretrained" and val:
            return val.strip().rstrip("/").split("/")[-1]
    return str(d.get("model_name") or (path.stem if path else "model"))


def read_lm_eval(source, *, model: str | None = None) -> pd.DataFrame:
    """lm-evaluation-harness results JSON (path or dict) -> tidy scores.

    v0.3: {"results": {task: {metric: v, metric_stderr: se}}, "versions", "config":
    {"num_fewshot", "model_args"}}. v0.4 adds "n-shot", "configs" (num_fewshot, doc_to_choice),
    "higher_is_better", "n-samples" and "group_subtasks"; metric keys are "metric,filter".
    A subtask listed under a group in group_subtasks becomes (task=group, subtask=name).
    Model size, tokens and FLOPs are not in these files: add them with `attach_models`."""
    d, path, where = _document(source, "an lm-eval results JSON")
    results = _section(d, "results", where)
    if not results:
        raise ConfigError(f"{where}.results", "missing or empty", "give an lm-eval results JSON")
    model = model or _lm_eval_model(d, path, where)
    groups = _section(d, "group_subtasks", where)
    parent = {s: g for g in groups for s in _section(groups, g, f"{where}.group_subtasks", list)}
    configs, n_shot = _section(d, "configs", where), _section(d, "n-shot", where)
    samples_of, better = _section(d, "n-samples", where), _section(d, "higher_is_better", where)
    default_shots = _section(d, "config", where).get("num_fewshot")
    rows = []
    for name in results:
        metrics = _section(results, name, f"{where}.results")
        cfg = _section(configs, name, f"{where}.configs")
        shots = n_shot.get(name, cfg.get("num_fewshot", default_shots))
        choices = cfg.get("doc_to_choice")
        samples = _section(samples_of, name, f"{where}.n-samples")
        hib = _section(better, name, f"{where}.higher_is_better")
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
    return tidy(pd.DataFrame(rows), where)


def read_bigbench(source) -> pd.DataFrame:
    """BIG-bench score file scores_<family>_<size>.json (path or dict) -> tidy scores.

    Each `scores` entry gives one row per score_dict metric; subtask_description 'task:sub'
    splits into task and subtask. The preferred score's low_score is BIG-bench's chance level
    (its normalised score is 100·(s - low)/(high - low)) and becomes its random_baseline;
    other metrics get theirs from task info. model: total_params -> params, non_embedding_params,
    flop_matched_non_embedding_params (kept as a column)."""
    d, path, where = _document(source, "a BIG-bench scores_*.json")
    if "scores" not in d or "model" not in d:
        raise ConfigError(where, "no 'scores'/'model' keys", "give a BIG-bench scores_*.json")
    m = _section(d, "model", where)
    stem = path.stem.split("_") if path else []
    family = m.get("model_family") or (stem[1] if len(stem) > 2 else "bigbench")
    size = m.get("model_name") or (stem[-1] if stem else "model")
    task_name = _section(d, "task", where).get("task_name")
    rows = []
    for i, s in enumerate(_section(d, "scores", where, list)):
        at = f"{where}.scores[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(at, f"is a JSON {json_type(s)}, not an object", "fix the file")
        task, _, sub = str(s.get("subtask_description") or task_name).partition(":")
        preferred = s.get("preferred_score")
        scores = _section(s, "score_dict", at)
        if not scores or (preferred in scores and not _chance_levels(s)):
            raise ConfigError(
                at,
                "no score_dict, or no numeric low_score/high_score for its preferred_score",
                "give the file as BIG-bench wrote it",
            )
        for metric, value in scores.items():
            chosen = metric == preferred
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
                    "random_baseline": s["low_score"] if chosen else np.nan,
                    "higher_is_better": float(s["high_score"] > s["low_score"])
                    if chosen
                    else np.nan,
                }
            )
    return tidy(pd.DataFrame(rows), where)


def _chance_levels(s: dict) -> bool:
    """Whether a BIG-bench score entry gives its preferred score's low and high as numbers."""
    levels = (s.get("low_score"), s.get("high_score"))
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in levels)


def read_csv(path, mapping: dict[str, str] | None = None, defaults: dict | None = None):
    """A CSV (or parquet) -> tidy scores: columns renamed by `mapping` {source: schema name},
    constant columns from `defaults` (e.g. {"shots": 0}). This project's results table
    (recognised by run_id and flops_detailed columns) goes through `from_project`."""
    path = Path(path)
    df = read_table(path, "INPUT")
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
    models = numeric(models, NUMERIC, "models")
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
    keys = _document(path, "an lm-eval or BIG-bench JSON")[0].keys()
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
        fmt = detect_format(p)
        frame = readers[fmt](p) if fmt in readers else read_csv(p, mapping, defaults)
        if frame.empty:
            raise ConfigError(str(p), "holds no scores", "give a file with at least one row")
        frames.append(frame)
    scores = pd.concat(frames, ignore_index=True)
    if models is not None:
        scores = attach_models(scores, models)
    return fill_n_examples(resolve_baselines(scores, task_info))
