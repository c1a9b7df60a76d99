"""`scaling` command line: train a run or a sweep, report on it, fit laws, classify emergence.

    scaling train CONFIG.yaml [--run-dir DIR]
    scaling sweep SWEEP.yaml [--runs-dir runs] [--reports-dir reports] [--no-report]
    scaling report SWEEP_DIR [--out DIR]
    scaling fit chinchilla|isoflop|envelope|kaplan INPUT [--n COL --d COL | --c COL ...] --out DIR
    scaling emergence INPUT... [--x flops|params|...] [--family COL] --out DIR

Bad input (unknown keys, wrong types, impossible shapes, missing files) is reported on one line
naming the field and the fix, with exit code 2, before anything is compiled.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from experiments import cli_emergence, cli_fit
from scaling.config import ConfigError

EXIT_BAD_INPUT = 2


def _enable_compilation_cache() -> None:
    """Reuse XLA executables across processes: tiny models spend most of their time compiling."""
    import jax

    cache = os.environ.get("SCALING_JAX_CACHE", str(Path.home() / ".cache" / "scaling-jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def cmd_train(args) -> int:
    from experiments import runner
    from experiments.sweep import read_yaml, run_id
    from scaling.config import run_config

    cfg = run_config(read_yaml(args.config, "config"))
    runner.preflight([cfg])
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.runs_dir) / "single" / run_id(cfg)
    status = runner.execute_run(cfg, run_dir)
    print(f"run {run_dir}: held-out loss {status['heldout_loss']:.4f} nats/token")
    return 0


def cmd_sweep(args) -> int:
    from experiments import runner
    from experiments.sweep import load_sweep

    sweep = load_sweep(args.sweep)
    runs_dir = Path(args.runs_dir)
    print(f"sweep {sweep.name}: {len(sweep.runs)} runs -> {runs_dir / sweep.name}")
    started = time.time()
    outcome = runner.run_sweep(sweep, runs_dir)
    print(
        f"trained {len(outcome.done)}, already done {len(outcome.skipped)}, "
        f"failed {len(outcome.failed)} in {time.time() - started:.0f} s"
    )
    for message in outcome.failed.values():
        print(f"  failed: {message}", file=sys.stderr)
    if not args.no_report:
        _report(runs_dir / sweep.name, Path(args.reports_dir) / sweep.name)
    return 1 if outcome.failed else 0


def cmd_report(args) -> int:
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(
            "SWEEP_DIR", f"not a directory: {sweep_dir}", "give runs/<sweep> of a sweep you ran"
        )
    _report(sweep_dir, Path(args.out) if args.out else Path("reports") / sweep_dir.name)
    return 0


def _report(sweep_dir: Path, out_dir: Path) -> None:
    from analysis.report import write_report
    from experiments.collect import collect

    results, curves = collect(sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(results, curves, out_dir)
    print(f"results table: {sweep_dir / 'results.csv'}")
    print(f"report: {out_dir / 'report.md'}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scaling", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train and evaluate one run from a run config (YAML)")
    t.add_argument("config", help="run config: model/data/train/eval sections")
    t.add_argument("--run-dir", help="run directory (default: <runs-dir>/single/<run_id>)")
    t.add_argument("--runs-dir", default="runs")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser(
        "sweep", help="run a sweep file end to end: train, evaluate, collect, report"
    )
    s.add_argument("sweep", help="sweep file (YAML): name, base, grid")
    s.add_argument("--runs-dir", default="runs", help="runs go to <runs-dir>/<sweep name>/")
    s.add_argument("--reports-dir", default="reports", help="report goes to <reports-dir>/<name>/")
    s.add_argument("--no-report", action="store_true", help="train only; report later")
    s.set_defaults(func=cmd_sweep)

    r = sub.add_parser("report", help="collect a sweep's results and write fits, tables, plots")
    r.add_argument("sweep_dir", help="the sweep's run directory, runs/<sweep name>")
    r.add_argument("--out", help="report directory (default: reports/<sweep name>)")
    r.set_defaults(func=cmd_report)

    cli_fit.add_parser(sub)
    cli_emergence.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _enable_compilation_cache()
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"scaling: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
