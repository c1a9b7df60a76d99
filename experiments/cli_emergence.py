"""`scaling emergence`: classify published or own evaluation results by scaling shape.

    scaling emergence INPUT... --out DIR [--x flops|params|non_embedding_params|tokens|COL]
        [--family COL] [--pooled] [--holdout-largest K] [--forecast-logprob] [--forecast-boot N]
        [--map SRC=DST ...] [--set COL=VALUE ...]
        [--models FILE] [--task-info FILE] [--task NAME ...] [--metric NAME ...]
        [--groups subtasks|aggregates]

INPUT: lm-evaluation-harness JSON (v0.3/v0.4), BIG-bench scores_*.json, a directory of them
(lm-eval's output directory: every results*.json below it, the newest of re-runs), this
project's results.csv, or any CSV/parquet (tidy, or with --map renaming its columns to the
schema of analysis/scores.py). lm-eval v0.4 files give params (config.model_num_parameters)
and checkpoints (revision, step: --x step). --models adds family/params/tokens/flops per model;
--task-info adds random baselines (or n_choices), n_examples and higher_is_better per task.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from scaling.config import ConfigError


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(flag, f"expected KEY=VALUE, got {item!r}", f"e.g. {flag} a=b")
        out[key] = value
    return out


def _number(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def _select(scores, column: str, wanted: list[str] | None, flag: str):
    """Rows whose `column` is one of `wanted`; an unknown name is an error with a suggestion."""
    if not wanted:
        return scores
    known = sorted(scores[column].astype(str).unique())
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"{len(known)} known"
            raise ConfigError(flag, f"unknown {column} {name!r}", hint)
    return scores[scores[column].astype(str).isin(wanted)]


def cmd_emergence(args) -> int:
    from analysis.emergence_report import write_emergence
    from analysis.emergence_stats import Settings
    from analysis.importers import load_scores
    from analysis.inputs import read_table

    defaults = {k: _number(v) for k, v in _pairs(args.set, "--set").items()}
    scores = load_scores(
        args.inputs,
        mapping=_pairs(args.map, "--map"),
        defaults=defaults,
        models=read_table(args.models, "--models") if args.models else None,
        task_info=read_table(args.task_info, "--task-info") if args.task_info else None,
    )
    scores = _select(scores, "task", args.task, "--task")
    scores = _select(scores, "metric", args.metric, "--metric")
    x = args.x
    tuned = {
        k: getattr(args, k)
        for k in ("n_boot", "forecast_boot", "alpha", "seed")
        if getattr(args, k) is not None
    }
    summary = write_emergence(
        scores,
        Path(args.out),
        x=x,
        family=args.family,
        pooled=args.pooled,
        holdout_largest=args.holdout_largest,
        missing_x="skip" if args.skip_missing_x else "error",
        groups=args.groups,
        settings=Settings(**tuned),
        plot=not args.no_plot,
        forecast_logprob=args.forecast_logprob,
    )
    print(f"{summary['n_curves']} curves classified along {x}; {summary['n_skipped']} skipped")
    for fam, counts in summary["counts"].items():
        print(f"  {fam}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"table: {Path(args.out) / 'emergence.csv'}")
    return 0


def add_parser(subparsers) -> None:
    e = subparsers.add_parser(
        "emergence", help="classify score-vs-scale curves (flat/smooth/emergent/inverse/U)"
    )
    e.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="score files (JSON, CSV, parquet) or directories"
    )
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument(
        "--x",
        default="flops",
        help="x axis: flops, params, non_embedding_params, tokens, step (a checkpoint series), "
        "or any column (a column named *loss* is read right to left)",
    )
    e.add_argument("--family", default="family", help="column that names the model family")
    e.add_argument("--pooled", action="store_true", help="one curve across all families")
    e.add_argument(
        "--holdout-largest", type=int, default=0, metavar="K", help="backtest: hold out K largest"
    )
    e.add_argument("--map", action="append", metavar="SRC=DST", help="rename a CSV column")
    e.add_argument("--set", action="append", metavar="COL=VALUE", help="constant column")
    e.add_argument("--models", help="CSV: model, family, params, non_embedding_params, ...")
    e.add_argument("--task-info", help="CSV: task[, subtask][, metric], random_baseline, ...")
    e.add_argument("--task", action="append", help="only this task (repeatable)")
    e.add_argument("--metric", action="append", help="only this metric (repeatable)")
    e.add_argument(
        "--groups",
        choices=["subtasks", "aggregates"],
        default="subtasks",
        help="a task group (mmlu): classify its subtasks, or only its average",
    )
    e.add_argument(
        "--skip-missing-x", action="store_true", help="skip models without x (else an error)"
    )
    e.add_argument("--n-boot", type=int, help="bootstrap replicates (default: Settings)")
    e.add_argument(
        "--forecast-boot", type=int, help="bootstrap replicates of a forecast (default: Settings)"
    )
    e.add_argument(
        "--forecast-logprob",
        action="store_true",
        help="forecast accuracy through the target's log-probability (metric logprob or ppl) "
        "where the input has it",
    )
    e.add_argument("--alpha", type=float, help="test level (default: Settings)")
    e.add_argument("--seed", type=int, help="bootstrap seed (default: Settings)")
    e.add_argument("--no-plot", action="store_true", help="tables only")
    e.set_defaults(func=cmd_emergence)
