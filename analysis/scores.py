"""One tidy table of evaluation scores, random baselines, and importers into it.

Emergence analysis compares score-vs-scale curves across model families whose results come in
different shapes: this project's results table, lm-evaluation-harness JSON (v0.3 and v0.4),
BIG-bench score files, and ad-hoc CSVs. Every importer returns the same tidy frame, one row per
(model, task, subtask, shots, metric), with the columns of SCHEMA (extra columns such as a loss
or an alternative FLOPs count are kept, so that they can serve as the x axis):

    model, family             names; `family` groups the sizes of one model family
    params, non_embedding_params, tokens, flops    the scale of the model (NaN if unknown)
    task, subtask, shots, metric, value            one score ("" when a task has no subtasks)
    stderr, n_examples        its sampling uncertainty (either may be NaN; see below)
    random_baseline           the score of random guessing (NaN if unknown: never assumed 0)
    higher_is_better          the metric's direction (NaN if unknown)

Random baselines are resolved in this order, and the source is kept in `baseline_source`:
the row's own value; a user file (`task_info`: task[, subtask][, metric], random_baseline
and/or n_choices); task metadata on the row (`n_choices` -> 1/n_choices; BIG-bench
`target_scores` via `baseline_from_target_scores`); the nominal choice counts of well-known
tasks in KNOWN_BASELINES. Only accuracy-like metrics (PROPORTION_METRICS) get a baseline from
choice counts: the chance level of a perplexity or a Brier score is not 1/#choices.

Sampling uncertainty. lm-evaluation-harness reports the standard error of an accuracy,
sqrt(p(1-p)/(n-1)), but not the number of examples; `fill_n_examples` inverts it
(n = p(1-p)/stderr^2 + 1) and takes the median over the models evaluated on the same
(task, subtask, shots), so that exact binomial tests can be used even for models scoring 0.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.inputs import require_columns
from scaling.config import ConfigError

SCHEMA = [
    "model",
    "family",
    "params",
    "non_embedding_params",
    "tokens",
    "flops",
    "task",
    "subtask",
    "shots",
    "metric",
    "value",
    "stderr",
    "n_examples",
    "random_baseline",
    "higher_is_better",
]
REQUIRED = ["model", "task", "metric", "value", "shots"]
NUMERIC = ["params", "non_embedding_params", "tokens", "flops", "value", "stderr", "n_examples"]

# Direction of the metrics we know; a metric not listed here needs a higher_is_better column.
METRIC_DIRECTION = {
    **dict.fromkeys(
        [
            "acc",
            "acc_norm",
            "exact_match",
            "em",
            "exact_str_match",
            "multiple_choice_grade",
            "mc1",
            "mc2",
            "f1",
            "bleu",
            "rouge1",
            "rouge2",
            "rougeL",
            "log_likelihood",
            "logprob",
            "normalized_aggregate_score",
            "pass@1",
        ],
        True,
    ),
    **dict.fromkeys(
        [
            "ppl",
            "perplexity",
            "word_perplexity",
            "byte_perplexity",
            "bits_per_byte",
            "brier_score",
            "calibration_multiple_choice_brier_score",
            "edit_distance",
            "token_edit_distance",
            "likelihood_difference",
            "pct_stereotype",
            "expected_calibration_error",
        ],
        False,
    ),
}
# Success rates over examples: a score is k/n, so exact binomial tests and a chance level of
# 1/#choices apply. Continuous metrics (log-likelihood, edit distance, Brier) use stderr only.
PROPORTION_METRICS = frozenset(
    ["acc", "acc_norm", "exact_match", "em", "exact_str_match", "multiple_choice_grade", "mc1"]
)
# Nominal chance accuracy of well-known tasks (fnmatch patterns, first match wins). LAMBADA's
# accuracy is exact prediction of the last word, with no candidates to guess among: 0.
# ARC mixes 3-, 4- and 5-choice questions (mostly 4), hence "nominal".
KNOWN_BASELINES = {
    "lambada*": 0.0,
    "piqa": 1 / 2,
    "winogrande": 1 / 2,
    "wsc": 1 / 2,
    "wsc273": 1 / 2,
    "boolq": 1 / 2,
    "copa": 1 / 2,
    "arc_easy": 1 / 4,
    "arc_challenge": 1 / 4,
    "sciq": 1 / 4,
    "logiqa": 1 / 4,
    "hellaswag": 1 / 4,
    "openbookqa": 1 / 4,
    "hendrycksTest-*": 1 / 4,
    "mmlu*": 1 / 4,
}


def metric_name(metric: str) -> str:
    """'exact_match:strict-match' -> 'exact_match' (lm-eval v0.4 filters follow a colon)."""
    return str(metric).split(":", 1)[0]


def tidy(df: pd.DataFrame, where: str = "scores") -> pd.DataFrame:
    """df with every SCHEMA column (missing optional ones as NaN / "" / the family "all"),
    numeric columns coerced, higher_is_better filled from METRIC_DIRECTION where known.

    Raises ConfigError for a missing required column or a non-numeric value."""
    require_columns(df, REQUIRED, where)
    out = df.copy()
    for col in SCHEMA:
        if col not in out.columns:
            out[col] = {"family": "all", "subtask": ""}.get(col, np.nan)
    out["subtask"] = out["subtask"].fillna("").astype(str)
    for col in ("model", "family", "task", "metric"):
        out[col] = out[col].astype(str)
    for col in [*NUMERIC, "shots", "random_baseline"]:
        v = pd.to_numeric(out[col], errors="coerce")
        bad = v.isna() & out[col].notna() & (out[col].astype(str).str.strip() != "")
        if bad.any():
            i = out.index[bad][0]
            raise ConfigError(
                f"{where}.{col}",
                f"{int(bad.sum())} non-numeric value(s) (first: row {i!r} = {out.at[i, col]!r})",
                "correct those rows or map another column onto it",
            )
        out[col] = v.astype(float)
    known = out["metric"].map(metric_name).map(METRIC_DIRECTION)
    # bools, 0/1 and their spellings in CSVs (True == 1 and False == 0 as dict keys)
    spelled = {True: 1.0, False: 0.0, "True": 1.0, "False": 0.0, "true": 1.0, "false": 0.0}
    hib = out["higher_is_better"].map(spelled)
    out["higher_is_better"] = hib.fillna(known.astype(float))
    return out[SCHEMA + [c for c in out.columns if c not in SCHEMA]].reset_index(drop=True)


def fill_n_examples(scores: pd.DataFrame) -> pd.DataFrame:
    """Fill missing n_examples of proportion metrics from stderr (see module docstring)."""
    out = scores.copy()
    p, se = out["value"], out["stderr"]
    usable = out["metric"].map(metric_name).isin(PROPORTION_METRICS) & (p > 0) & (p < 1) & (se > 0)
    out["_n"] = np.where(usable, p * (1 - p) / se**2 + 1, np.nan)
    keys = ["task", "subtask", "shots"]
    typical = out.groupby(keys, dropna=False)["_n"].transform("median").round()
    missing = out["n_examples"].isna() & out["metric"].map(metric_name).isin(PROPORTION_METRICS)
    out["n_source"] = np.where(out["n_examples"].notna(), "row", "")
    out.loc[missing & typical.notna(), "n_source"] = "stderr"
    out["n_examples"] = out["n_examples"].where(~missing, typical)
    return out.drop(columns="_n")


def baseline_from_target_scores(examples: list[dict]) -> float:
    """Expected multiple_choice_grade of uniform guessing over a BIG-bench task's examples:
    the mean over examples of the mean target score of their choices (1/#choices for 0/1)."""
    per_example = [np.mean(list(ex["target_scores"].values())) for ex in examples]
    if not per_example:
        raise ConfigError("task.examples", "no example has target_scores", "give a MC task")
    return float(np.mean(per_example))


def read_bigbench_task(path) -> pd.DataFrame:
    """Task info (task, subtask, metric, random_baseline, n_examples) from a BIG-bench task.json
    with multiple-choice `target_scores`, for `resolve_baselines(task_info=...)`."""
    d = json.loads(Path(path).read_text())
    name = d.get("name", Path(path).parent.name)
    examples = [ex for ex in d.get("examples", []) if "target_scores" in ex]
    return pd.DataFrame(
        [
            {
                "task": name,
                "subtask": "",
                "metric": "multiple_choice_grade",
                "random_baseline": baseline_from_target_scores(examples),
                "n_examples": len(examples),
            }
        ]
    )


def _match_info(scores: pd.DataFrame, info: pd.DataFrame, col: str) -> pd.Series:
    """Value of info[col] for each scores row, matching on the key columns info has."""
    info = info.dropna(subset=[col])
    keys = [k for k in ("task", "subtask", "metric") if k in info.columns]
    if "subtask" in keys:
        info = info.assign(subtask=info["subtask"].fillna("").astype(str))
    merged = scores[keys].merge(info[[*keys, col]].drop_duplicates(keys), on=keys, how="left")
    return pd.Series(merged[col].to_numpy(float), index=scores.index)


def resolve_baselines(scores: pd.DataFrame, task_info: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fill random_baseline (row > task_info > n_choices > KNOWN_BASELINES) and record the source
    in `baseline_source`; rows left without one keep NaN (the classifier skips them by name).
    task_info may also carry n_examples and higher_is_better, which fill missing values."""
    out = scores.copy()
    source = pd.Series(np.where(out["random_baseline"].notna(), "row", ""), index=out.index)
    is_prop = out["metric"].map(metric_name).isin(PROPORTION_METRICS)

    def fill(values: pd.Series, name: str, mask=True) -> None:
        take = out["random_baseline"].isna() & values.notna() & mask
        out.loc[take, "random_baseline"] = values[take]
        source[take] = name

    if task_info is not None:
        require_columns(task_info, ["task"], "task_info")
        info = task_info.assign(task=task_info["task"].astype(str))
        if "random_baseline" in info.columns:
            fill(_match_info(out, info, "random_baseline"), "task_info")
        if "n_choices" in info.columns:
            fill(1 / _match_info(out, info, "n_choices"), "task_info:n_choices", is_prop)
        for col in ("n_examples", "higher_is_better"):
            if col in info.columns:
                out[col] = out[col].fillna(_match_info(out, info, col))
    if "n_choices" in out.columns:
        fill(1 / pd.to_numeric(out["n_choices"], errors="coerce"), "n_choices", is_prop)
    for pattern, baseline in KNOWN_BASELINES.items():
        hit = out["task"].map(lambda t, p=pattern: fnmatch.fnmatchcase(t, p))
        fill(pd.Series(baseline, index=out.index), f"known:{pattern}", is_prop & hit)
    out["baseline_source"] = source
    return out


def _model_labels(runs: pd.DataFrame) -> pd.Series:
    """Model name, plus '@<tokens>' where one model was trained at several token budgets, or the
    run_id where that is still ambiguous (so that every run is one point of a curve)."""
    label = runs["model"].astype(str)
    label = label.where(~label.duplicated(keep=False), label + "@" + runs["tokens"].map(_si))
    return label.where(~label.duplicated(keep=False), runs["run_id"].astype(str))


def _si(v: float) -> str:
    """1234567 -> '1.23M'."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def from_project(results: pd.DataFrame, flops_col: str = "flops_detailed") -> pd.DataFrame:
    """This project's results table (experiments.collect) -> tidy scores. family = sweep,
    flops = `flops_col` (both FLOPs conventions and the final loss are kept as columns)."""
    require_columns(
        results,
        ["run_id", "model", "params_total", "params_non_embedding", "tokens", flops_col],
        "results",
    )
    runs = results.drop_duplicates("run_id")
    label = dict(zip(runs["run_id"], _model_labels(runs), strict=True))
    out = results.assign(
        model=results["run_id"].map(label),
        family=results["sweep"].astype(str) if "sweep" in results.columns else "all",
        params=results["params_total"],
        non_embedding_params=results["params_non_embedding"],
        flops=results[flops_col],
    )
    return tidy(out, "results")


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
