"""`scaling finetune RUN_DIR`: fine-tune a finished run (its last checkpoint, or --step N) on a
task's training items and score it on the task's test items (scaling.finetune).

    scaling finetune runs/zoo/s1-1e+05-0123456789ab --task largest_of_4 --examples 64
    scaling finetune runs/zoo/0123456789ab --task task.json --examples 32 --epochs 5 --step 200
    scaling finetune runs/zoo/s1-... --task pairs.jsonl --examples 100 --test-file test.jsonl
    scaling finetune runs/zoo/s1-... --task add3 --examples 64 --init scratch  # the baseline

The fine-tune is a run like any other, in <out>/<label>-<run id> (out: <runs-dir>/finetune by
default): running the command again resumes it after a kill, or skips it when it is done.
Every default is FinetuneConfig's (scaling/finetune_config.py).
"""

from __future__ import annotations

import sys

from experiments import launch_config
from scaling.config import ConfigError, build
from scaling.finetune_config import FinetuneConfig

FLAGS = {  # flag: (FinetuneConfig field, type, help)
    "--task": ("task", str, "built-in task, BIG-bench task.json, or .jsonl of prompt/completion"),
    "--examples": ("examples", int, "training items to fine-tune on"),
    "--epochs": ("epochs", int, "passes over them"),
    "--learning-rate-mult": ("learning_rate_mult", float, "peak LR / the parent's peak LR"),
    "--batch-size": ("batch_size", int, "items per step"),
    "--warmup": ("warmup", float, "share of the steps spent warming up"),
    "--seed": ("seed", int, "which training items and their order"),
    "--init": ("init", str, "pretrained (the parent's weights) or scratch (random init)"),
    "--test-fraction": ("test_fraction", float, "share of a fixed list's inputs held out"),
    "--test-file": ("test_file", str, "test items of a task.json / .jsonl task, instead"),
    "--test-items": ("test_items", int, "test items scored (at most)"),
    "--split-seed": ("split_seed", int, "seed of the train/test split and test draw"),
}


def cmd_finetune(args) -> int:
    from experiments import finetune_design, plan, runner, store
    from experiments.executors import check_packages
    from experiments.sweep import RunSpec, run_id

    fields = {
        field: getattr(args, flag[2:].replace("-", "_"))
        for flag, (field, _, _) in FLAGS.items()
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    ft = build(FinetuneConfig, fields, "finetune")
    launch = launch_config.resolve(None, args)
    check_packages(wandb=launch.wandb)
    parent = finetune_design.find_parent(args.parent, "PARENT")
    if args.step is not None and args.step < 1:
        raise ConfigError("--step", f"{args.step} is not a step", "give a checkpoint step >= 1")
    name, cfg, design = finetune_design.one(parent, ft, args.step or 0, "finetune")
    rate = launch.flops_per_s or plan.assumed_flops_per_s(here=True)
    plan.check_duration([(name, cfg)], rate, args.yes)
    runner.preflight([cfg], here=True)
    out = args.out or store.join(args.runs_dir, "finetune")
    task = runner.Task(RunSpec(run_id(cfg), name, cfg, design), out, runner.Launch.of(launch))
    result = runner.work(task)
    if not runner.is_lead():
        return 0  # process 0 reports
    if result["result"] not in (store.DONE, runner.SKIPPED):
        print(f"run {task.url()}: {result['result']} {result.get('message', '')}", file=sys.stderr)
        return 1
    test = store.status(task.url())["test"]
    print(
        f"run {task.url()}: {test['metric']} {test['accuracy']:.4f} "
        f"(error {test['error']:.4f}) on {test['n_items']} test items"
    )
    return 0


def add_parser(sub) -> None:
    f = sub.add_parser("finetune", help="fine-tune a finished run on a task, score its test items")
    f.add_argument("parent", help="the run's directory, runs/<sweep>/<label>-<run id>")
    f.add_argument("--step", type=int, help="the parent's checkpoint (default: its last)")
    for flag, (_, kind, text) in FLAGS.items():
        f.add_argument(flag, type=kind, help=text, required=flag in ("--task", "--examples"))
    f.add_argument("--runs-dir", default="runs")
    f.add_argument("--out", help="directory of fine-tunes the run goes in (<runs-dir>/finetune)")
    f.add_argument("--yes", action="store_true", help="train a run estimated at over 30 days")
    launch_config.add_flags(f, executors=False)
    f.set_defaults(func=cmd_finetune)
