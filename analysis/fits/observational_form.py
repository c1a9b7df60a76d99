"""`scaling fit observational`: the registry entry of observational scaling
(analysis.fits.observational) - reading its inputs, the models x benchmarks matrix, its flags
and figures.

INPUT is a long table (one row per model x task, the score in `value`: the tidy schema of
analysis.scores, e.g. /work/shared/data/pythia_evals), a wide one (one row per model, one
column per benchmark), lm-evaluation-harness result JSON (a file, or a directory searched for
*.json; read by analysis.importers.load_scores), or a sweep directory. --models FILE adds
family, params, tokens or FLOPs per model (analysis.importers.attach_models).

A benchmark is a task (or column) name or a glob over them, whose scores are averaged per
model (hendrycksTest-* for MMLU's 57 subjects), optionally with :METRIC in a long table.
"""

from __future__ import annotations

import difflib
import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.fits.base import FitForm, FitRequest
from analysis.fits.columns import require
from analysis.fits.observational import (
    Scores,
    Settings,
    drop_incomplete,
    fit_observational,
    holdout_mask,
)
from analysis.fits.pipeline import Tables, load_tables
from analysis.importers import attach_models, load_scores
from analysis.inputs import read_table
from analysis.observational_plots import plot_backtest, plot_capabilities, plot_link
from analysis.scores import fill_n_examples, numeric, resolve_baselines
from scaling.config import ConfigError

RESULTS = ("results.parquet", "results.csv")


def _load(path: Path, options: dict) -> Tables:
    """A table, a sweep directory, or lm-eval JSON (a file, or a directory without a results
    table), with --models attached."""
    models = read_table(options["models"], "--models") if options.get("models") else None
    if path.is_dir() and not any((path / n).exists() for n in RESULTS):
        jsons = sorted(path.rglob("*.json"))
        if not jsons:
            raise ConfigError("INPUT", f"no results table or *.json in {path}", "give a table")
        table = load_scores(jsons, models=models)
    elif path.suffix == ".json":
        table = load_scores([path], models=models)
    else:
        table = load_tables(path, ("runs",)).runs
        table = attach_models(table, models) if models is not None else table
    return Tables(table, table, {"runs": str(path)})


def _scale_role(o: dict) -> str:
    """Compute C (--c, or 6 N D from --n and --d; the project's default), or N alone with
    only --n (a table without tokens: families then compare at equal size, not compute)."""
    return "n" if o.get("n") and not (o.get("c") or o.get("d")) else "c"


def _specs(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _task_keys(table: pd.DataFrame) -> pd.Series:
    """A long table's task names: the subtask where there is one (lm-eval v0.4 groups)."""
    if "subtask" not in table.columns:
        return table["task"].astype(str)
    sub = table["subtask"].fillna("").astype(str)
    return sub.where(sub != "", table["task"].astype(str))


def _matching(names, pattern: str, flag: str) -> list[str]:
    hits = [k for k in names if fnmatch.fnmatchcase(k, pattern)]
    if not hits:
        close = difflib.get_close_matches(pattern, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"{len(names)} known"
        raise ConfigError(flag, f"no task or column matches {pattern!r}", hint)
    return hits


def _long_scores(table, model_col: str, spec: str, metric: str | None, flag: str):
    """(score per model, examples per model) of one benchmark spec PATTERN[:METRIC] of a long
    table: the mean over matching tasks; examples J^2 / sum(1/n_i) (the binomial variance of
    a mean of J accuracies)."""
    pattern, _, own = spec.partition(":")
    keys = _task_keys(table)
    rows = table[keys.isin(_matching(sorted(keys.unique()), pattern, flag))]
    if "metric" in rows.columns:
        metrics = sorted(rows["metric"].astype(str).unique())
        chosen = own or metric or (metrics[0] if len(metrics) == 1 else None)
        if chosen not in metrics:
            raise ConfigError(
                flag, f"{pattern!r} has metric(s) {', '.join(metrics)}",
                f"pass --metric NAME or {pattern}:METRIC",
            )  # fmt: skip
        rows = rows[rows["metric"].astype(str) == chosen]
    key = pd.DataFrame({"model": rows[model_col].astype(str), "task": keys[rows.index]})
    if key.duplicated().any():
        m, t = key[key.duplicated()].iloc[0]
        raise ConfigError(
            flag, f"several rows for model {m!r}, task {t!r} (shots? runs?)",
            "select one with --filter, e.g. --filter shots=0",
        )  # fmt: skip
    tidy = {"metric": chosen if "metric" in rows else "acc", "stderr": np.nan,
            "n_examples": np.nan, "subtask": "", "shots": 0, "task": key["task"]}  # fmt: skip
    rows = fill_n_examples(rows.assign(**{c: v for c, v in tidy.items() if c not in rows}))
    per = pd.DataFrame({"model": key["model"], "value": rows["value"].astype(float),
                        "inv_n": 1 / rows["n_examples"].astype(float)})  # fmt: skip
    g = per.groupby("model")
    return g["value"].mean(), g.size() ** 2 / g["inv_n"].sum(min_count=1)


def _matrix(table: pd.DataFrame, r: FitRequest):
    """(per-model frame of family and scale, benchmark matrix frame, target, its examples)."""
    o, cols = r.options, r.columns
    model_col, family_col = o.get("model_col") or "model", o.get("family") or "family"
    scale_col = cols.c if _scale_role(o) == "c" else cols.n
    for flag, col in (("--model-col", model_col), ("--family", family_col)):
        require(table, flag, col)
    models = table.groupby(table[model_col].astype(str), sort=False)[[family_col, scale_col]]
    info = models.first()
    long = {"task", "value"} <= set(table.columns)
    if not long and table[model_col].duplicated().any():
        raise ConfigError(
            "--model-col", f"{model_col!r} repeats in a wide table", "one row a model"
        )
    target, metric = o["target"], o.get("metric")
    if long:
        keys = sorted(_task_keys(table).unique())
        y, n = _long_scores(table, model_col, target, metric, "--target")
        own = set(_matching(keys, target.partition(":")[0], "--target"))
        if metric and "metric" in table.columns:  # default: the other tasks with that metric
            keys = sorted(_task_keys(table)[table["metric"].astype(str) == metric].unique())
        specs = _specs(o.get("benchmarks")) or [k for k in keys if k not in own]
        X = {s: _long_scores(table, model_col, s, metric, "--benchmarks")[0] for s in specs}
    else:
        wide = table.set_index(table[model_col].astype(str))
        names = [c for c in wide.columns if c not in (model_col, family_col, scale_col)]
        pick = lambda s, flag: numeric(wide[_matching(names, s, flag)], names, flag).mean(axis=1)
        y, specs = pick(target, "--target"), _specs(o.get("benchmarks"))
        if not specs:
            raise ConfigError(
                "--benchmarks", "a wide table needs its benchmark columns named",
                "e.g. --benchmarks MMLU,ARC-C,HellaSwag,Winogrande",
            )  # fmt: skip
        X = {s: pick(s, "--benchmarks") for s in specs}
        n = pd.Series(np.nan, index=y.index)
    if target in specs:
        raise ConfigError("--benchmarks", f"holds the target {target!r}", "leave it out")
    if o.get("n_examples"):
        n = pd.Series(float(o["n_examples"]), index=y.index)
    X = pd.DataFrame(X).reindex(info.index)
    return info, X, y.reindex(info.index), n.reindex(info.index), scale_col


def _chance(target: str, metric: str | None, given: float | None) -> float:
    """--baseline, else the target's known random baseline (analysis.scores), else 0."""
    if given is not None:
        return given
    row = pd.DataFrame({"task": [target.partition(":")[0]], "subtask": [""],
                        "metric": [target.partition(":")[2] or metric or "acc"],
                        "random_baseline": [np.nan]})  # fmt: skip
    b = float(resolve_baselines(row)["random_baseline"].iloc[0])
    return b if np.isfinite(b) else 0.0


def scores_of(table: pd.DataFrame, r: FitRequest) -> Scores:
    info, X, y, n, scale_col = _matrix(table, r)
    bad = y[(y < 0) | (y > 1)]
    if len(bad):
        raise ConfigError(
            "--target", f"{r.options['target']!r} = {bad.iloc[0]:g} for {bad.index[0]!r}: the "
            "sigmoid link needs scores in [0, 1]", "target an accuracy or rescale it",
        )  # fmt: skip
    scale = pd.to_numeric(info[scale_col], errors="coerce").to_numpy(float)
    return Scores(
        info.index.to_numpy(str), info.iloc[:, 0].astype(str).to_numpy(), np.log10(scale),
        X.to_numpy(float), y.to_numpy(float), n.to_numpy(float), tuple(X.columns),
        r.options["target"], f"log10 {'C' if _scale_role(r.options) == 'c' else 'N'}",
    )  # fmt: skip


def _settings(o: dict) -> Settings:
    _check(o)
    chance = _chance(o["target"], o.get("metric"), o.get("baseline"))
    return Settings(o.get("pcs", 3), not o.get("no_standardize"), o.get("impute_rank", 1), chance)


def _fit(table, r: FitRequest):
    o, settings = r.options, _settings(r.options)
    sc, dropped = drop_incomplete(scores_of(table, r), o.get("max_missing"))
    return fit_observational(
        sc, holdout_mask(sc, o.get("holdout"), settings), settings=settings, dropped=dropped,
        **r.boot.to_dict(),
    )  # fmt: skip


def _plot(fit, table, r: FitRequest, out):
    paths = [out("observational_capabilities"), out("observational_link")]
    plot_capabilities(fit, path=paths[0])
    plot_link(fit, path=paths[1])
    if fit.heldout.any():
        paths.append(out("observational_backtest"))
        plot_backtest(fit, path=paths[-1])
    return paths


def _arguments(p) -> None:
    g = p.add_argument_group("observational scaling")
    g.add_argument("--target", required=True, metavar="TASK[:METRIC]", help="task to forecast")
    g.add_argument(
        "--benchmarks", metavar="A,B,...",
        help="benchmarks for the capability measures: tasks or columns, globs averaged "
        "(hendrycksTest-*), TASK:METRIC in a long table (default: every other one)",
    )  # fmt: skip
    g.add_argument("--family", metavar="COL", default="family", help="model family (family)")
    g.add_argument("--model-col", metavar="COL", default="model", help="model name (model)")
    g.add_argument("--metric", help="metric of every task without :METRIC (a long table)")
    g.add_argument("--models", metavar="FILE", help="table: model, family, params, tokens, ...")
    g.add_argument("--pcs", type=int, default=3, help="capability measures K (default 3)")
    g.add_argument(
        "--no-standardize", action="store_true",
        help="centre the benchmarks only (the paper's code) instead of z-scores",
    )  # fmt: skip
    g.add_argument("--impute-rank", type=int, default=1, help="rank of the imputation (1)")
    g.add_argument(
        "--max-missing", type=int, metavar="K",
        help="leave out models missing more than K benchmarks (default half of them)",
    )  # fmt: skip
    g.add_argument("--baseline", type=float, help="the target's chance level (default: known)")
    g.add_argument("--n-examples", type=float, metavar="N", help="examples of the target task")
    g.add_argument(
        "--holdout", metavar="SPEC",
        help="backtest: largest[:K] (each family's K largest), above:C (scale above C) or "
        "pc1:F (the fraction F with the largest PC1)",
    )  # fmt: skip


def _check(o: dict) -> None:
    for key, low in {"pcs": 1, "impute_rank": 1, "max_missing": 0}.items():
        flag, v = f"--{key.replace('_', '-')}", o.get(key)
        if v is not None and v < low:
            raise ConfigError(flag, f"must be >= {low}, got {v}", f"e.g. {flag} {max(low, 1)}")
    b = o.get("baseline")
    if b is not None and not 0 <= b < 1:
        raise ConfigError("--baseline", f"must be in [0, 1), got {b}", "e.g. --baseline 0.25")


FORM = FitForm(
    name="observational",
    summary="Ruan et al. 2024: observational scaling, a target task from benchmark PCs "
    "across model families",
    details="Principal components of a models x benchmarks table (z-scored; missing scores "
    "imputed by iterative rank-1 PCA, models missing more than half left out), each family's "
    "line of them in log10 compute (--c, or 6 N D; with only --n, log10 N), and a sigmoid link "
    "y = b + (1 - b) sigmoid(alpha + beta . S) to --target (b up to its chance level). "
    "--holdout backtests: it forecasts the held-out models' target from their benchmarks and "
    "from their compute, with prediction intervals (bootstrap over models within families, "
    "link scatter, binomial noise of the target's examples), and reports coverage and MAE; "
    "a target the link predicts no better than the mean, leaving each model out, is forecast "
    "flat (the models' mean). INPUT may also be lm-eval JSON, a file or a directory (--models "
    "adds family and size), or a wide table (a column per benchmark, named by --benchmarks) "
    "(analysis/fits/observational.py). Writes observational_capabilities.png, "
    "observational_link.png and, with --holdout, observational_backtest.png.",
    roles=lambda o: {_scale_role(o)},
    tables=lambda o: ("runs",),
    n_params=lambda o: o.get("pcs", 3) + 2,
    fit=_fit,
    plot=_plot,
    add_arguments=_arguments,
    holdout=lambda o: "use --holdout largest|above:C|pc1:F (its own backtest)",
    load=_load,
    reads_loss=False,
)
