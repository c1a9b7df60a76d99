#!/usr/bin/env python3
"""Submit a scaling run or sweep as a multi-node GPU job on SLURM (tpu/slurm/train.sbatch):
one task per GPU, every node's tasks seeing all of its GPUs.

    python tpu/slurm/submit.py --nodes 2 --gpus-per-node 8 [--partition P] [--time 4:00:00] \\
        [--dry-run] -- train run.yaml

Prints the sbatch command (and runs it unless --dry-run). Run it from the project checkout.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "train.sbatch"


def sbatch_command(args, scaling_args: list[str]) -> list[str]:
    flags = {
        "job-name": args.job_name,
        "nodes": args.nodes,
        "ntasks-per-node": args.gpus_per_node,  # one process per GPU
        "gpus-per-node": args.gpus_per_node,
        "cpus-per-task": args.cpus_per_task,
        "partition": args.partition,
        "account": args.account,
        "time": args.time,
    }
    options = [f"--{k}={v}" for k, v in flags.items() if v is not None]
    return ["sbatch", *options, str(TEMPLATE), *scaling_args]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="submit.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--gpus-per-node", type=int, required=True)
    p.add_argument("--cpus-per-task", type=int, help="default: the template's")
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--time", help="wall-clock limit, e.g. 24:00:00 (default: the template's)")
    p.add_argument("--job-name", default="scaling")
    p.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    p.epilog = "then -- and the scaling arguments, e.g. -- train run.yaml."
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser().parse_args(argv[:cut])
    if not argv[cut + 1 :]:
        raise SystemExit("submit.py: error: give the scaling command after --, e.g. -- train x")
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise SystemExit("submit.py: error: --nodes and --gpus-per-node must be >= 1")
    command = sbatch_command(args, argv[cut + 1 :])
    print(shlex.join(command))
    if not args.dry_run:
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
