"""`scaling` command line: train a run or a sweep, report on it, fit laws, classify emergence.

    scaling train CONFIG.yaml [key=value ...] [--run-dir DIR]
    scaling plan SWEEP.yaml [key=value ...] [--flops-per-s F]
    scaling sweep SWEEP.yaml [key=value ...] [--executor local|ray|slurm|tpu] [--workers N]
    scaling config show CONFIG.yaml|SWEEP.yaml [key=value ...] [--run NAME]
    scaling status SWEEP.yaml|SWEEP_DIR [--runs-dir runs]
    scaling report SWEEP_DIR [--out DIR]
    scaling finetune RUN_DIR --task T --examples K [--epochs E] [--step N] [--init scratch]
    scaling fit chinchilla|isoflop|envelope|kaplan INPUT [--n COL --d COL | --c COL ...] --out DIR
    scaling emergence INPUT... [--x flops|params|...] [--family COL] --out DIR
    scaling prepare SOURCES... --out DIR [--tokenizer T] [--val FILES... | --val-fraction F]
    scaling export RUN_DIR OUT [--step N] [--format hf|npz]
    scaling import-hf HF_DIR OUT_RUN_DIR [--seq-len N] [--tokens N]

Bad input (unknown keys, wrong types, impossible shapes, missing files) is reported on one line
naming the field and the fix, with exit code 2, before anything is compiled. Overrides are
dotted field paths set on top of the file (`train.learning_rate=3e-4 model=s3`), typed and
validated like the file itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from evaluation.tasks import TaskError
from experiments import (
    cli_config,
    cli_emergence,
    cli_eval,
    cli_export,
    cli_finetune,
    cli_fit,
    cli_prepare,
    launch_config,
)
from experiments.executors import check_packages
from experiments.launch_config import LaunchConfig
from scaling.config import ConfigError

EXIT_BAD_INPUT = 2


def _enable_compilation_cache() -> None:
    """Reuse XLA executables across processes: tiny models spend most of their time compiling."""
    import jax

    cache = os.environ.get("SCALING_JAX_CACHE", str(Path.home() / ".cache" / "scaling-jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def cmd_train(args) -> int:
    from experiments import runner, store
    from scaling.config_io import load_run_config

    cfg = load_run_config(args.config, args.overrides)
    launch = launch_config.resolve(None, args)
    check_packages(wandb=launch.wandb)
    _check_duration([(args.config, cfg)], launch, args.yes, here=True)
    runner.preflight([cfg], here=True)
    task = runner.single_task(cfg, args.run_dir, args.runs_dir, runner.Launch.of(launch))
    run_dir = Path(task.run_dir)
    result = runner.work(task)
    if not runner.is_lead():
        return 0  # process 0 reports
    status = store.status(run_dir)
    if result["result"] not in (store.DONE, runner.SKIPPED):
        print(f"run {run_dir}: {result['result']} {result.get('message', '')}", file=sys.stderr)
        return 1
    print(f"run {run_dir}: held-out loss {status['heldout_loss']:.4f} nats/token")
    return 0


def _executor(cfg: LaunchConfig):
    from experiments import executors

    resources = {"TPU": cfg.tpu} if cfg.tpu else {}
    if cfg.executor == "ray":
        return executors.RayExecutor(
            address=cfg.ray_address,
            num_cpus=cfg.cpus_per_run,
            num_gpus=cfg.gpus_per_run,
            resources=resources,
        )
    if cfg.executor == "tpu":
        return executors.TpuExecutor(cfg.slices, cfg.zone, cfg.project)
    if cfg.executor == "slurm":
        slurm = cfg.slurm
        return executors.SlurmExecutor(
            folder=slurm.folder,
            partition=slurm.partition,
            timeout_min=slurm.time_min,
            cpus_per_task=cfg.cpus_per_run,
            gpus_per_node=cfg.gpus_per_run,
            extra={k: v for k, v in (("account", slurm.account), ("qos", slurm.qos)) if v},
        )
    return executors.LocalExecutor(workers=cfg.workers, devices_per_worker=cfg.gpus_per_run)


def cmd_plan(args) -> int:
    from experiments.plan import format_plan, plan_table
    from experiments.sweep import load_sweep

    sweep = load_sweep(args.sweep, yes=True, overrides=args.overrides)
    print(format_plan(sweep, plan_table(sweep, args.flops_per_s)))
    return 0


def cmd_sweep(args) -> int:
    from experiments import runner
    from experiments.sweep import load_sweep

    sweep = load_sweep(args.sweep, yes=args.yes, overrides=args.overrides)
    cfg = launch_config.resolve(sweep.launch, args)
    check_packages(cfg.executor, cfg.wandb)
    runs_dir, launch = args.runs_dir, runner.Launch.of(cfg)
    collective = runner.multiprocess()
    here = collective or (cfg.executor == "local" and cfg.workers == 1)  # trains in this process
    _check_duration([(r.name, r.config) for r in sweep.runs], cfg, args.yes, here)
    if collective and (cfg.executor != "local" or cfg.workers != 1):
        raise ConfigError(
            "--executor",
            "the processes of one jax.distributed job train each run together, as one worker",
            "drop --executor/--workers here, or launch single-process workers through them",
        )
    if not runner.is_lead():
        runner.follow(sweep, runs_dir, launch)
        return 0
    executor = runner.Collective(sweep.runs) if collective else _executor(cfg)
    print(f"sweep {sweep.name}: {len(sweep.runs)} runs -> {runs_dir}/{sweep.name} ({cfg.executor})")
    started = time.time()
    try:
        outcome = runner.run_sweep(sweep, runs_dir, executor, launch, here)
    finally:
        if collective:
            executor.close()  # the other processes stop following
    print(
        f"trained {len(outcome.done)}, already done {len(outcome.skipped)}, "
        f"failed {len(outcome.failed)}, held elsewhere {len(outcome.busy)} "
        f"in {time.time() - started:.0f} s"
    )
    for message in outcome.failed.values():
        print(f"  failed: {message}", file=sys.stderr)
    for message in outcome.busy.values():
        print(f"  not finished here: {message}", file=sys.stderr)
    if not args.no_report and outcome.done + outcome.skipped:
        _report(Path(runs_dir) / sweep.name, Path(args.reports_dir) / sweep.name)
    return 1 if outcome.failed or outcome.busy else 0


def _check_duration(runs, cfg: LaunchConfig, yes: bool, here: bool) -> None:
    """Refuse a run estimated to take longer than plan.MAX_RUN_DAYS, unless --yes."""
    from experiments import plan

    plan.check_duration(runs, cfg.flops_per_s or plan.assumed_flops_per_s(here), yes)


def cmd_task(args) -> int:
    from experiments import runner, store
    from experiments.executors import run_task

    result = run_task(args.task_url)
    return 0 if result["result"] in (store.DONE, runner.SKIPPED) else 1


def cmd_status(args) -> int:
    from experiments.plan import status_table
    from experiments.store import join
    from experiments.sweep import load_sweep

    if Path(args.sweep).is_dir():
        sweep_dir, names = args.sweep, None
    else:  # a sweep file; load_sweep says what is wrong with any other path
        sweep = load_sweep(args.sweep, yes=True, overrides=args.overrides)
        sweep_dir, names = join(args.runs_dir, sweep.name), {r.run_id: r.name for r in sweep.runs}
    table = status_table(sweep_dir, names)
    counts = table.state.value_counts().to_dict() if len(table) else {}
    print(f"{sweep_dir}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    if len(table):
        print(table.to_string(index=False))
    return 0


def cmd_report(args) -> int:
    from experiments.store import run_dirs

    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir() or not run_dirs(str(sweep_dir)):
        raise ConfigError(
            "SWEEP_DIR", f"no runs in {sweep_dir}", "give runs/<sweep> of a sweep you ran"
        )
    _report(sweep_dir, Path(args.out) if args.out else Path("reports") / sweep_dir.name)
    return 0


def _report(sweep_dir: Path, out_dir: Path) -> None:
    import pandas as pd

    from analysis.report import write_report
    from experiments.collect import FAILED_CSV, collect

    results, curves = collect(sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(results, curves, out_dir)
    failed = pd.read_csv(sweep_dir / FAILED_CSV, dtype=str).fillna("")
    if len(failed):  # the analysis leaves them out; the report says which and why
        lines = "".join(f"- {r.name} ({r.run_id}): {r.error}\n" for r in failed.itertuples())
        with (out_dir / "report.md").open("a") as f:
            f.write(f"\n## Runs left out of the analysis (failed)\n\n{lines}")
    print(f"results table: {sweep_dir / 'results.csv'}")
    print(f"report: {out_dir / 'report.md'}")


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="set a field on top of the file: train.learning_rate=3e-4 model=s3 "
        "grid.train.tokens=[1e6,3e6]",
    )


def parser(fit_forms: bool = True) -> argparse.ArgumentParser:
    """The command line; fit_forms=False leaves out the per-form options of `scaling fit`, whose
    registry imports JAX and matplotlib (2 s), when the command is not `fit`."""
    p = argparse.ArgumentParser(prog="scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=cli_config.version())
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train and evaluate one run from a run config (YAML)")
    t.add_argument("config", help="run config: model/data/train/eval sections")
    _overrides(t)
    t.add_argument("--run-dir", help="run directory (default: <runs-dir>/single/<name>-<run_id>)")
    t.add_argument("--runs-dir", default="runs")
    t.add_argument("--yes", action="store_true", help="train a run estimated at over 30 days")
    launch_config.add_flags(t, executors=False)
    t.set_defaults(func=cmd_train)

    pl = sub.add_parser("plan", help="print a sweep's runs with size, FLOPs, memory and time")
    pl.add_argument("sweep", help="sweep file (YAML)")
    _overrides(pl)
    pl.add_argument(
        "--flops-per-s", type=float, default=35e9, help="sustained FLOP/s of one device"
    )
    pl.set_defaults(func=cmd_plan)

    s = sub.add_parser(
        "sweep", help="run a sweep file end to end: train, evaluate, collect, report"
    )
    s.add_argument("sweep", help="sweep file (YAML): name, base, grid / zip / isoflop")
    _overrides(s)
    s.add_argument("--runs-dir", default="runs", help="runs go to <runs-dir>/<sweep name>/")
    s.add_argument("--reports-dir", default="reports", help="report goes to <reports-dir>/<name>/")
    s.add_argument("--no-report", action="store_true", help="train only; report later")
    s.add_argument(
        "--yes",
        action="store_true",
        help="launch a design of more than 256 runs, or runs estimated at over 30 days",
    )
    launch_config.add_flags(s)  # each overrides the sweep file's `launch:` section
    s.set_defaults(func=cmd_sweep)

    tk = sub.add_parser("task", help="execute one task a remote executor sent (internal)")
    tk.add_argument("task_url", help="the pickled task, in <sweep_dir>/.tasks/")
    tk.set_defaults(func=cmd_task)

    st = sub.add_parser("status", help="table of a sweep's runs: state, step, loss, ETA")
    st.add_argument("sweep", help="sweep file (YAML) or its run directory runs/<name>")
    _overrides(st)
    st.add_argument("--runs-dir", default="runs")
    st.set_defaults(func=cmd_status)

    r = sub.add_parser("report", help="collect a sweep's results and write fits, tables, plots")
    r.add_argument("sweep_dir", help="the sweep's run directory, runs/<sweep name>")
    r.add_argument("--out", help="report directory (default: reports/<sweep name>)")
    r.set_defaults(func=cmd_report)

    cli_config.add_parser(sub)
    cli_eval.add_parser(sub)
    cli_finetune.add_parser(sub)
    cli_fit.add_parser(sub, fit_forms)
    cli_emergence.add_parser(sub)
    cli_prepare.add_parser(sub)
    cli_export.add_parser(sub)
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Arguments, with `key=value` overrides allowed after the options too (argparse alone
    takes positionals only before them)."""
    argv = sys.argv[1:] if argv is None else argv
    p = parser(fit_forms="fit" in argv)
    args, rest = p.parse_known_args(argv)
    late = [a for a in rest if "=" in a and not a.startswith("-")]
    if rest != late or (late and not hasattr(args, "overrides")):
        p.error(f"unrecognized arguments: {' '.join(a for a in rest if a not in late) or late[0]}")
    if late:
        args.overrides = [*args.overrides, *late]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    _enable_compilation_cache()
    try:
        # multi-host: before any other jax call
        if args.command in ("train", "sweep", "task", "finetune"):
            from scaling.distributed import initialize_distributed

            initialize_distributed()
        return args.func(args)
    except (ConfigError, TaskError) as e:
        print(f"scaling: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
