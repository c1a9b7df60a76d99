"""Where and how a sweep runs: the `launch:` section of a sweep file, overridden by flags.

    launch:
      executor: slurm              # local | ray | slurm | tpu
      gpus_per_run: 1
      slurm: {partition: gpu, account: my-lab, qos: high, time_min: 240}
      max_attempts: 5

The section is built and validated by scaling.config.build like a run config (unknown keys get
a did-you-mean), and a flag given on the command line wins over it (`--workers 4`). None of it
is part of a run's identity: the same runs train wherever they are launched.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

from scaling.config import ConfigError, build

EXECUTORS = ("local", "ray", "slurm", "tpu")


@dataclass(frozen=True)
class SlurmConfig:
    partition: str = ""
    account: str = ""
    qos: str = ""
    time_min: int = 60  # the job's time limit
    folder: str = "slurm"  # submitit's logs, pickles and batch scripts


@dataclass(frozen=True)
class LaunchConfig:
    executor: str = "local"
    workers: int = 1  # local: parallel worker processes
    ray_address: str = ""  # ray: cluster address (empty: start one)
    cpus_per_run: int = 1  # ray/slurm
    gpus_per_run: int = 0  # ray/slurm; local: per worker
    tpu: int = 0  # ray: TPU chips per run
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    slices: tuple[str, ...] = ()  # tpu: TPU VM / slice names
    zone: str = ""  # tpu
    project: str = ""  # tpu: Google Cloud project (empty: gcloud's)
    max_attempts: int = 3  # claims of a run before it stays failed
    stale_after: float = 300.0  # seconds without a heartbeat before a run may be taken over
    tensorboard: bool = True
    wandb: str = ""  # W&B project; empty: off
    flops_per_s: float = 0.0  # a run's sustained FLOP/s, for the time check (0: experiments.plan's)

    def validate(self, where: str = "launch") -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(
                f"{where}.executor",
                f"unknown executor {self.executor!r}",
                f"use one of {EXECUTORS}",
            )
        for name in ("workers", "cpus_per_run", "max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}", "must be >= 1", "use a positive integer")
        for name in ("gpus_per_run", "tpu"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}", "must be >= 0", "use 0 for none")
        if not 0 <= self.flops_per_s < math.inf:  # a flag may be nan or inf
            raise ConfigError(f"{where}.flops_per_s", "must be >= 0", "e.g. 3e14 (0: assumed)")
        if self.stale_after <= 0:
            raise ConfigError(f"{where}.stale_after", "must be > 0", "use e.g. 300 (seconds)")
        if self.slurm.time_min < 1:
            raise ConfigError(f"{where}.slurm.time_min", "must be >= 1", "use e.g. 60 (minutes)")
        if self.executor == "tpu" and not (self.slices and self.zone):
            raise ConfigError(
                f"{where}.slices" if not self.slices else f"{where}.zone",
                "the tpu executor runs on named TPU slices in one zone",
                "make them with tpu/launch.py create/install, then give --slices A,B --zone Z",
            )


# Flags that override a field of the section: argparse dest -> dotted field path. Their
# argparse default is None, so "not given" is told apart from a value.
FLAGS = {
    "executor": "executor",
    "workers": "workers",
    "ray_address": "ray_address",
    "cpus_per_run": "cpus_per_run",
    "gpus_per_run": "gpus_per_run",
    "tpu": "tpu",
    "slurm_partition": "slurm.partition",
    "slurm_account": "slurm.account",
    "slurm_qos": "slurm.qos",
    "timeout_min": "slurm.time_min",
    "slurm_folder": "slurm.folder",
    "slices": "slices",
    "zone": "zone",
    "project": "project",
    "max_attempts": "max_attempts",
    "stale_after": "stale_after",
    "wandb": "wandb",
    "flops_per_s": "flops_per_s",
}


def resolve(section, args: argparse.Namespace | None = None) -> LaunchConfig:
    """The launch settings: the sweep file's `launch:` section (None: defaults), each flag that
    was given on the command line replacing its field."""
    cfg = build(LaunchConfig, section if section is not None else {}, "launch")
    flags = vars(args) if args is not None else {}
    for dest, path in FLAGS.items():
        value = flags.get(dest)
        if value is None:
            continue
        if dest == "slices":
            value = tuple(s for s in value.split(",") if s)
        cfg = _replace(cfg, path.split("."), value)
    if flags.get("no_tensorboard"):
        cfg = dataclasses.replace(cfg, tensorboard=False)
    cfg.validate()
    return cfg


def _replace(cfg, path: list[str], value):
    head, *rest = path
    new = _replace(getattr(cfg, head), rest, value) if rest else value
    return dataclasses.replace(cfg, **{head: new})


def add_flags(p: argparse.ArgumentParser, executors: bool = True) -> None:
    """The launch flags; every default None (the sweep file's `launch:` or LaunchConfig's)."""
    d = LaunchConfig()
    p.add_argument(
        "--max-attempts",
        type=int,
        help=f"claims of a run before it stays failed ({d.max_attempts})",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        help=f"seconds without a heartbeat before a run may be taken over ({d.stale_after:g})",
    )
    p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard events")
    p.add_argument("--wandb", metavar="PROJECT", help="also log to Weights & Biases")
    p.add_argument(
        "--flops-per-s",
        type=float,
        help="sustained FLOP/s of a run's devices, for the time check (default: assumed)",
    )
    if not executors:
        return
    p.add_argument("--executor", choices=EXECUTORS, help="where runs train (local)")
    p.add_argument("--workers", type=int, help="local: parallel worker processes (1)")
    p.add_argument("--ray-address", help="ray: cluster address (default: start one)")
    p.add_argument("--cpus-per-run", type=int, help="ray/slurm: CPUs per run (1)")
    p.add_argument("--gpus-per-run", type=int, help="GPUs per run; local: per worker (0)")
    p.add_argument("--tpu", type=int, help="ray: TPU chips per run (0)")
    p.add_argument("--slurm-partition")
    p.add_argument("--slurm-account")
    p.add_argument("--slurm-qos")
    p.add_argument("--slurm-folder", help="slurm: submitit logs and scripts (slurm)")
    p.add_argument("--timeout-min", type=int, help="slurm: time limit per job in minutes (60)")
    p.add_argument("--slices", help="tpu: TPU VM / slice names, comma-separated")
    p.add_argument("--zone", help="tpu: the slices' zone")
    p.add_argument("--project", help="tpu: Google Cloud project (default: gcloud's)")
