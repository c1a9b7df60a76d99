"""`scaling eval SWEEP_DIR`: evaluate a sweep's finished runs (or all their checkpoints) on any
tasks and prompting settings; each run's own eval settings, with the flags given overriding.

    scaling eval runs/demo --tasks add2,navigate,path/to/task.json --shots 0,1,3
    scaling eval runs/demo --checkpoints                   # emergence over training
    scaling eval runs/demo --tasks composite1 --chain-of-thought --samples 5
"""

from __future__ import annotations

from pathlib import Path

from scaling.config import ConfigError


def _list(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v)
        except ValueError:
            raise ConfigError(
                "--list", f"cannot read {text!r} as {kind.__name__}s", "write e.g. 0,1,3"
            ) from None

    return parse


OVERRIDES = {  # flag: (EvalConfig field, parser, help)
    "--tasks": ("tasks", _list(str), "comma-separated task names or task.json paths"),
    "--shots": ("shots", _list(int), "comma-separated shot counts, e.g. 0,1,3"),
    "--n-examples": ("n_examples", int, "test examples per task"),
    "--samples": ("samples", int, "samples per item for pass@k and self-consistency"),
    "--temperatures": ("temperatures", _list(float), "sampling temperatures for pass@k"),
    "--pass-k": ("pass_k", _list(int), "k values of pass@k"),
    "--seed": ("seed", int, "seed of test items and exemplars"),
}


def cmd_eval(args) -> int:
    from experiments.sweep_eval import evaluate_sweep

    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError("SWEEP_DIR", f"not a directory: {sweep_dir}", "give runs/<sweep>")
    overrides = {
        field: getattr(args, flag[2:].replace("-", "_"))
        for flag, (field, _, _) in OVERRIDES.items()
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    for flag, field, value in (
        ("chain_of_thought", "chain_of_thought", True),
        ("pack_shots", "pack_shots", True),
        ("no_instruction", "instruction", False),
    ):
        if getattr(args, flag):
            overrides[field] = value
    totals = evaluate_sweep(sweep_dir, overrides, checkpoints=args.checkpoints)
    print(
        f"eval {sweep_dir.name}: {totals['runs']} finished runs ({totals['not_finished']} not "
        f"finished, left out); {totals['evaluated']} (checkpoint, task) evaluated, "
        f"{totals['skipped']} already there"
    )
    return 0


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a sweep's runs (or checkpoints) on tasks")
    e.add_argument("sweep_dir", help="the sweep's run directory, runs/<sweep name>")
    for flag, (_, parse, text) in OVERRIDES.items():
        e.add_argument(flag, type=parse, help=text)
    e.add_argument("--checkpoints", action="store_true", help="every saved checkpoint")
    e.add_argument("--chain-of-thought", action="store_true", help="also CoT prompting")
    e.add_argument("--pack-shots", action="store_true", help="as many shots as fit")
    e.add_argument("--no-instruction", action="store_true", help="leave out task_prefix")
    e.set_defaults(func=cmd_eval)
