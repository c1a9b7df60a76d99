"""`scaling eval SWEEP_DIR`: evaluate a sweep's finished runs (or all their checkpoints) on any
tasks and prompting settings; each run's own eval settings, with the flags given overriding.

    scaling eval runs/demo --tasks add2,navigate,path/to/task.json --shots 0,1,3
    scaling eval runs/demo --checkpoints                   # emergence over training
    scaling eval runs/demo --tasks composite1 --chain-of-thought --samples 5
    scaling eval runs/demo --harness lm-eval --tasks lambada_openai,my_task --include-path tasks/
"""

from __future__ import annotations

from importlib.util import find_spec
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


SCALING_ONLY = (  # flags of our own harness, refused with --harness lm-eval
    *("samples", "temperatures", "pass_k", "seed"),
    *("chain_of_thought", "pack_shots", "no_instruction"),
)


def _lm_eval_options(args) -> dict:
    """The settings of `--harness lm-eval`; a flag of our own harness is refused."""
    for name in SCALING_ONLY:
        if getattr(args, name) not in (None, False):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(flag, "applies to --harness scaling only", "drop it")
    if not args.tasks:
        raise ConfigError("--tasks", "required with --harness lm-eval", "e.g. --tasks arc_easy")
    if find_spec("lm_eval") is None:
        raise ConfigError(
            "--harness", "lm-evaluation-harness is not installed", "pip install 'scaling[lmeval]'"
        )
    return {
        "tasks": args.tasks,
        "shots": args.shots or (None,),
        "limit": args.n_examples,
        "include_path": args.include_path,
    }


def cmd_eval(args) -> int:
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError("SWEEP_DIR", f"not a directory: {sweep_dir}", "give runs/<sweep>")
    if args.harness == "lm-eval":
        options = _lm_eval_options(args)
        from experiments.sweep_lm_eval import evaluate_sweep as evaluate_lm_eval

        return _report(sweep_dir, evaluate_lm_eval(sweep_dir, options, args.checkpoints))
    if args.include_path is not None:
        raise ConfigError("--include-path", "applies to --harness lm-eval only", "drop it")
    from experiments.sweep_eval import evaluate_sweep

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
    return _report(sweep_dir, evaluate_sweep(sweep_dir, overrides, checkpoints=args.checkpoints))


def _report(sweep_dir: Path, totals: dict) -> int:
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
    e.add_argument(
        "--harness",
        choices=("scaling", "lm-eval"),
        default="scaling",
        help="our few-shot harness, or lm-evaluation-harness tasks (--tasks are lm-eval's; "
        "--shots sets num_fewshot, --n-examples its limit)",
    )
    e.add_argument("--include-path", help="lm-eval: a folder of your own task YAML files")
    e.set_defaults(func=cmd_eval)
