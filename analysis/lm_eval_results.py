"""lm-evaluation-harness results files (v0.3 and v0.4) as tidy scores (analysis.scores).

The v0.4 file, as lm_eval/evaluator.py and loggers/evaluation_tracker.py write it:

    results          {task or group: {"alias", "samples" (or "sample_len"), "acc,none": v,
                      "acc_stderr,none": se or "N/A", ...}}: metric keys are "metric,filter"
    groups           the group rows again (only groups that aggregate their subtasks)
    group_subtasks   {group: [child, ...], task: []}: a child may itself be a group
    configs          {task: {num_fewshot, doc_to_choice, ...}}   versions, n-shot {task: k}
    higher_is_better {task or group: {metric: bool}}   n-samples {task: {original, effective}}
    config           {model, model_args, model_num_parameters, model_revision, model_sha, ...}
    date, model_name, model_name_sanitized, ...

v0.3: results {task: {metric: v, metric_stderr: se}}, versions, config {model_args,
num_fewshot}. lm-eval writes `<out>/<model_name_sanitized>/results_<timestamp>.json`.

What becomes of it, one row per model x task x metric:
- model: the name in model_args (peft=, delta=, pretrained=, model=, path=, engine=, lm-eval's
  own order), '@revision' appended for a checkpoint. The revision is model_args' revision= or
  step= (this project's adapter: path=RUN_DIR,step=N), else config.model_revision; "main" is
  no revision. Columns model_name, revision, step (and tokens where a revision says it, as
  OLMo's "step1000-tokens4B" does) keep them apart.
- params: config.model_num_parameters (lm-eval writes -1 when it does not know).
- task: the top-level group of a subtask (mmlu for mmlu_astronomy, not mmlu_stem), subtask:
  the task itself, group: its direct parent. A group's own row is marked aggregate=True: it
  averages its subtasks, so the emergence classifier counts those data once.
- n_examples: n-samples effective (else original), else the row's samples / sample_len; a
  group's from its subtasks. A stderr of "N/A" is NaN, or for a success rate with a count
  lm-eval's sqrt(p(1-p)/(n-1)). Bookkeeping keys (alias, samples, sample_len, ...) are never
  metrics.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.inputs import json_document, json_section
from analysis.scores import PROPORTION_METRICS, tidy
from scaling.config import ConfigError

NOT_METRICS = {"alias", "samples", "sample_len", "name", "task", "group", " "}
NAME_KEYS = ("peft", "delta", "pretrained", "model", "path", "engine")  # lm-eval's order
STEP = re.compile(r"step[_-]?(\d+)", re.IGNORECASE)
TOKENS = re.compile(r"tokens(\d+(?:\.\d+)?)([KMBT])\b", re.IGNORECASE)
SCALE = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
STAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2})(\.\d+)?")


def _args(config: dict) -> dict[str, str]:
    """config.model_args ('k=v,k=v' or an object) as a dict of strings."""
    args = config.get("model_args") or ""
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    pairs = (part.partition("=") for part in str(args).split(","))
    return {k.strip(): v.strip() for k, _, v in pairs if k.strip() and v.strip()}


def _tokens_seen(config: dict) -> float:
    """config.tokens_seen: the training tokens behind the checkpoint (this project's adapter)."""
    n = config.get("tokens_seen")
    return float(n) if isinstance(n, int | float) and not isinstance(n, bool) and n > 0 else np.nan


def model_identity(d: dict, path: Path | None, where: str) -> dict:
    """model, model_name, revision, step, tokens and params of one results file."""
    config = json_section(d, "config", where)
    args = _args(config)
    name = next((args[k] for k in NAME_KEYS if args.get(k)), "") or d.get("model_name") or ""
    if not name and path:  # <out>/<model_name_sanitized>/results_<timestamp>.json
        name = path.parent.name if path.stem.startswith("results") else path.stem
    name = str(name or "model").rstrip("/").split("/")[-1]
    revision = args.get("revision") or (f"step{args['step']}" if args.get("step") else "")
    revision = str(revision or config.get("model_revision") or "")
    revision = "" if revision == "main" else revision
    step = args.get("step") or (m[1] if (m := STEP.search(revision)) else None)
    tokens = TOKENS.search(revision)
    n = config.get("model_num_parameters")
    return {
        "model": f"{name}@{revision}" if revision else name,
        "model_name": name,
        "revision": revision,
        "step": float(step) if step is not None and str(step).isdigit() else np.nan,
        "tokens": float(tokens[1]) * SCALE[tokens[2].upper()] if tokens else _tokens_seen(config),
        "params": float(n) if isinstance(n, int | float) and n > 0 else np.nan,
    }


def _lineage(name: str, parent: dict, where: str) -> list[str]:
    """name's groups, innermost first (a task in two groups counts in the first listed)."""
    out = []
    while name in parent:
        name = parent[name]
        if name in out:
            raise ConfigError(
                f"{where}.group_subtasks",
                f"{name!r} is its own ancestor",
                "give the file as the harness wrote it",
            )
        out.append(name)
    return out


def _count(name: str, metrics: dict, samples_of: dict, where: str) -> float:
    """Examples a task was scored on: n-samples effective/original, else samples/sample_len."""
    ns = json_section(samples_of, name, f"{where}.n-samples")
    for n in (ns.get("effective"), ns.get("original"), metrics.get("samples"),
              metrics.get("sample_len")):  # fmt: skip
        if isinstance(n, int | float) and not isinstance(n, bool) and n > 0:
            return float(n)
    return np.nan


def _metrics(metrics: dict, v04: bool):
    """(metric, filter, value, stderr) of a results entry; bookkeeping keys skipped."""
    for key, value in metrics.items():
        metric, comma, filt = key.partition(",")
        if (
            metric in NOT_METRICS
            or metric.endswith("_stderr")
            or (v04 and not comma)
            or isinstance(value, bool)
            or not isinstance(value, int | float)
        ):
            continue
        yield metric, filt, value, metrics.get(f"{metric}_stderr" + (f",{filt}" if comma else ""))


def _stderr(se, metric: str, p: float, n: float) -> float:
    """The file's stderr; for "N/A" on a success rate with n > 1 examples, lm-eval's own
    sqrt(p(1-p)/(n-1)); else NaN."""
    if isinstance(se, int | float) and not isinstance(se, bool):
        return float(se)
    if metric in PROPORTION_METRICS and n > 1 and 0 <= p <= 1:
        return math.sqrt(p * (1 - p) / (n - 1))
    return np.nan


def _layout(d: dict, where: str, entries: dict) -> dict[str, dict]:
    """Where each results entry sits (task, subtask, group, aggregate) and what it was scored
    on (shots, n_examples, n_choices); a group takes its leaves' shots and choices when they
    agree, and their summed count when it has none of its own."""
    subtasks = json_section(d, "group_subtasks", where)
    parent = {}
    for g in subtasks:
        for child in json_section(subtasks, g, f"{where}.group_subtasks", list):
            parent.setdefault(child, g)
    groups = {g for g in subtasks if subtasks[g]} | set(json_section(d, "groups", where))
    lineage = {n: _lineage(n, parent, where) for n in entries}
    leaves = [n for n in entries if n not in groups]
    configs, n_shot = json_section(d, "configs", where), json_section(d, "n-shot", where)
    samples_of = json_section(d, "n-samples", where)
    count = {n: _count(n, entries[n], samples_of, where) for n in entries}
    config = {n: json_section(configs, n, f"{where}.configs") for n in leaves}
    shots = {n: n_shot.get(n, config[n].get("num_fewshot")) for n in leaves}
    choices = {n: c.get("doc_to_choice") for n, c in config.items()}
    choices = {n: len(c) for n, c in choices.items() if isinstance(c, list)}
    default_shots = json_section(d, "config", where).get("num_fewshot")
    out = {}
    for name in entries:
        below = [n for n in leaves if name in lineage[n]] if name in groups else [name]
        n = count[name] if count[name] > 0 else float(np.nansum([count[c] for c in below]))
        k = _one_value(below, shots)
        out[name] = {
            "task": (lineage[name] or [name])[-1],
            "subtask": name if lineage[name] else "",
            "group": (lineage[name] or [""])[0],
            "aggregate": name in groups,
            "shots": next(s for s in (k, default_shots, 0) if s is not None),
            "n_examples": n if n > 0 else np.nan,
            "n_choices": _one_value(below, choices) or np.nan,
        }
    return out


def _one_value(names, of: dict):
    """The one value `of` gives the names in `names`, else None."""
    values = {of[n] for n in names if n in of}
    return values.pop() if len(values) == 1 else None


def read_lm_eval(source, *, model: str | None = None) -> pd.DataFrame:
    """lm-evaluation-harness results JSON (path or dict) -> tidy scores (module docstring).
    `model` overrides the model name read from the file."""
    d, path, where = json_document(source, "an lm-eval results JSON")
    results = json_section(d, "results", where)
    if not results:
        raise ConfigError(f"{where}.results", "missing or empty", "give an lm-eval results JSON")
    who = model_identity(d, path, where) | ({"model": model} if model else {})
    who["source"] = str(path) if path else ""
    better = json_section(d, "higher_is_better", where)
    entries = {name: json_section(results, name, f"{where}.results") for name in results}
    v04 = any("," in k for m in entries.values() for k in m)
    rows = []
    for name, place in _layout(d, where, entries).items():
        hib = json_section(better, name, f"{where}.higher_is_better")
        for metric, filt, value, se in _metrics(entries[name], v04):
            rows.append(
                who
                | place
                | {
                    "metric": metric if filt in ("", "none") else f"{metric}:{filt}",
                    "value": float(value),
                    "stderr": _stderr(se, metric, value, place["n_examples"]),
                    "higher_is_better": hib.get(metric, np.nan),
                }
            )
    return tidy(pd.DataFrame(rows), where)


def written_at(path: Path) -> float:
    """When lm-eval wrote a results file: the timestamp in its name (results_<ISO time>.json),
    else the file's `date`; -inf if it gives neither (oldest)."""
    m = STAMP.search(path.name)
    if m:
        t = datetime.strptime(m[1], "%Y-%m-%dT%H-%M-%S").replace(tzinfo=UTC)
        return t.timestamp() + float(m[2] or 0)
    date = json_document(path, "an lm-eval results JSON")[0].get("date")
    return float(date) if isinstance(date, int | float) and not isinstance(date, bool) else -np.inf


def keep_newest(frames: dict[Path, pd.DataFrame]) -> pd.DataFrame:
    """Concatenate files' scores ({path: scores}); where several files score the same model on
    the same task and shots (a re-run), the newest file's rows are kept, all of them and
    nothing older."""
    order = sorted(frames, key=lambda p: (written_at(p), str(p)))
    scores = pd.concat([frames[p].assign(_file=rank) for rank, p in enumerate(order)])
    keys = ["model", "task", "subtask", "shots"]
    newest = scores.groupby(keys, dropna=False)["_file"].transform("max")
    return scores[scores["_file"] == newest].drop(columns="_file").reset_index(drop=True)


def checkpoint_families(scores: pd.DataFrame) -> pd.DataFrame:
    """Curves of checkpoint series hold fixed what does not vary along them (as
    analysis.project_scores does for token budgets): where a revision holds several models (a
    suite such as Pythia, every size at each step), one curve per revision, across sizes; else
    one curve per model that has several revisions, across its checkpoints (--x step). The
    design's name is appended to the family ("pythia, step1000"); a model at one revision
    stays in its family."""
    if "revision" not in scores or not (scores["revision"].fillna("") != "").any():
        return scores
    rev = scores["revision"].fillna("").astype(str)
    name = scores.get("model_name", scores["model"]).astype(str)
    has = rev != ""
    if name[has].groupby(rev[has]).nunique().max() >= 2:
        curve, on = rev, has
    else:
        series = rev[has].groupby(name[has]).nunique()
        curve, on = name, has & name.isin(series.index[series >= 2])
    family = scores["family"].astype(str)
    named = np.where(family == "all", curve, family + ", " + curve)
    return scores.assign(family=np.where(on, named, family))
