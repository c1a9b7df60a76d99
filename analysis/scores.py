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
tasks in KNOWN_BASELINES (matched on the task or the subtask: arc_easy in lm-eval's group
ai2_arc). Only accuracy-like metrics (PROPORTION_METRICS) get a baseline from
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
# Columns the importers and resolvers add beside SCHEMA (never a user's look-alike of a field)
DERIVED = ["model_name", "revision", "step", "group", "aggregate", "n_choices", "source",
           "baseline_source", "n_source"]  # fmt: skip
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
    "ai2_arc": 1 / 4,
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


# higher_is_better as bools, 0/1 and their spellings in CSVs (True == 1 and False == 0 as keys)
SPELLED = {True: 1.0, False: 0.0, "True": 1.0, "False": 0.0, "true": 1.0, "false": 0.0}
INFO_NUMERIC = ["random_baseline", "n_choices", "n_examples"]  # of a task_info table


def numeric(df: pd.DataFrame, columns, where: str) -> pd.DataFrame:
    """df with `columns` (those it has) as floats; a value that is not a number (blank is NaN)
    is a ConfigError naming the column and the first such row."""
    out = df.copy()
    for col in [c for c in columns if c in out.columns]:
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
    return out


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
    out = numeric(out, [*NUMERIC, "shots", "random_baseline"], where)
    known = out["metric"].map(metric_name).map(METRIC_DIRECTION)
    hib = out["higher_is_better"].map(SPELLED)
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
        info = numeric(task_info, INFO_NUMERIC, "task_info")
        info = info.assign(task=info["task"].astype(str))
        if "higher_is_better" in info.columns:
            info["higher_is_better"] = info["higher_is_better"].map(SPELLED)
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
        hit = out[["task", "subtask"]].map(lambda t, p=pattern: fnmatch.fnmatchcase(t, p))
        hit = hit.any(axis=1)
        fill(pd.Series(baseline, index=out.index), f"known:{pattern}", is_prop & hit)
    out["baseline_source"] = source
    return out
