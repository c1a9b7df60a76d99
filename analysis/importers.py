"""Importers of published and project results into the tidy score table (analysis.scores):
lm-evaluation-harness JSON (v0.3 and v0.4, analysis.lm_eval_results), BIG-bench score files,
ad-hoc CSVs, and this project's results table (analysis.project_scores); `load_scores` detects
the format and takes files or directories of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.inputs import json_document, json_section, read_table, require_columns
from analysis.lm_eval_results import checkpoint_families, keep_newest, read_lm_eval
from analysis.project_scores import from_project
from analysis.scores import NUMERIC, fill_n_examples, numeric, resolve_baselines, tidy
from scaling.config import ConfigError
from scaling.config_io import json_type

__all__ = ["attach_models", "load_scores", "read_bigbench", "read_csv", "read_lm_eval"]
# The result files a directory contributes: lm-eval's results_<timestamp>.json (results.json
# in v0.3) and BIG-bench's scores_<family>_<size>.json, at any depth.
RESULT_FILES = ("results*.json", "scores_*.json")


def read_bigbench(source) -> pd.DataFrame:
    """BIG-bench score file scores_<family>_<size>.json (path or dict) -> tidy scores.

    Each `scores` entry gives one row per score_dict metric; subtask_description 'task:sub'
    splits into task and subtask. The preferred score's low_score is BIG-bench's chance level
    (its normalised score is 100·(s - low)/(high - low)) and becomes its random_baseline;
    other metrics get theirs from task info. model: total_params -> params, non_embedding_params,
    flop_matched_non_embedding_params (kept as a column). A task's own entry beside entries of
    its subtasks is their mean (BIG-bench's aggregate): marked aggregate=True."""
    d, path, where = json_document(source, "a BIG-bench scores_*.json")
    if "scores" not in d or "model" not in d:
        raise ConfigError(where, "no 'scores'/'model' keys", "give a BIG-bench scores_*.json")
    m = json_section(d, "model", where)
    stem = path.stem.split("_") if path else []
    family = m.get("model_family") or (stem[1] if len(stem) > 2 else "bigbench")
    size = m.get("model_name") or (stem[-1] if stem else "model")
    task_name = json_section(d, "task", where).get("task_name")
    rows = []
    for i, s in enumerate(json_section(d, "scores", where, list)):
        at = f"{where}.scores[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(at, f"is a JSON {json_type(s)}, not an object", "fix the file")
        task, _, sub = str(s.get("subtask_description") or task_name).partition(":")
        preferred = s.get("preferred_score")
        scores = json_section(s, "score_dict", at)
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
    df = pd.DataFrame(rows)
    if len(df):
        df["aggregate"] = (df["subtask"] == "") & df["task"].isin(
            df.loc[df["subtask"] != "", "task"]
        )
    return tidy(df, where)


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
    from a per-model table keyed by `model`: a score row's model, else its model_name (so one
    line gives every checkpoint of a model its size); values already in `scores` win."""
    require_columns(models, ["model"], "models")
    models = numeric(models, NUMERIC, "models")
    info = models.assign(model=models["model"].astype(str)).drop_duplicates("model")
    info = info.set_index("model")
    out = scores.copy()
    names = out["model_name"] if "model_name" in out else pd.Series(np.nan, index=out.index)
    for col in info.columns:
        looked_up = out["model"].map(info[col]).fillna(names.map(info[col]))
        if col not in out.columns:
            out[col] = looked_up
        elif col == "family":
            out[col] = out[col].where(out[col] != "all", looked_up.fillna("all"))
        else:
            out[col] = out[col].fillna(looked_up)
    return out


def result_files(paths) -> list[Path]:
    """The inputs as files: a directory stands for every RESULT_FILES match below it, sorted
    (a directory of lm-eval output: <out>/<model>/results_<timestamp>.json)."""
    files = []
    for p in map(Path, paths):
        if not p.is_dir():
            files.append(p)
            continue
        found = sorted({f for pattern in RESULT_FILES for f in p.rglob(pattern) if f.is_file()})
        if not found:
            raise ConfigError(
                str(p),
                f"a directory with no result files ({' or '.join(RESULT_FILES)}) below it",
                "give lm-eval or BIG-bench result files, or a directory holding them",
            )
        files += found
    return files


def detect_format(path) -> str:
    """'lm_eval' | 'bigbench' | 'table' from a file's suffix and top-level JSON keys."""
    path = Path(path)
    if path.suffix != ".json":
        return "table"
    keys = json_document(path, "an lm-eval or BIG-bench JSON")[0].keys()
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
    """Read every input (a file, or a directory of result files; format by detect_format),
    concatenate (lm-eval files re-run on the same model, task and shots: the newest wins),
    attach model metadata, give checkpoint series their curves, resolve baselines and fill
    n_examples: the frame `analysis.emergence.classify` takes."""
    readers = {"lm_eval": read_lm_eval, "bigbench": read_bigbench}
    frames, lm_eval = [], {}
    for p in result_files(paths):
        fmt = detect_format(p)
        frame = readers[fmt](p) if fmt in readers else read_csv(p, mapping, defaults)
        if frame.empty:
            raise ConfigError(str(p), "holds no scores", "give a file with at least one row")
        if fmt == "lm_eval":
            lm_eval[p] = frame
        else:
            frames.append(frame)
    if lm_eval:
        frames.append(keep_newest(lm_eval))
    scores = pd.concat(frames, ignore_index=True)
    if models is not None:
        scores = attach_models(scores, models)
    return fill_n_examples(resolve_baselines(checkpoint_families(scores), task_info))
