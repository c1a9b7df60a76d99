#!/usr/bin/env python3
"""Cloud TPU VMs and pod slices for scaling runs: create one, install this checkout on every
worker, start a run or a sweep on all workers at once, stream its log, stop it, delete the slice.

    python tpu/launch.py create  NAME --zone Z --accelerator-type v4-32 [--queued] [--spot]
    python tpu/launch.py install NAME --zone Z [--git URL --ref REF]
    python tpu/launch.py run     NAME --zone Z [--job JOB] [--env K=V] [--wait] -- train run.yaml
    python tpu/launch.py run     NAME --zone Z --job demo -- sweep experiments/configs/demo.yaml
    python tpu/launch.py logs    NAME --zone Z [--job JOB] [--worker N]
    python tpu/launch.py stop    NAME --zone Z [--job JOB]
    python tpu/launch.py delete  NAME --zone Z [--queued]

Every subcommand takes --dry-run (print the exact commands, run nothing) and --project. All
workers of a slice run the same command; jax.distributed finds the slice's workers itself
(SCALING_CLUSTER=tpu tells scaling.distributed.initialize_distributed to let it), process 0
writes the run directory, and checkpoints need a directory every worker sees (--runs-dir on a
shared mount such as a gcsfuse bucket or Filestore).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

JAX_VERSION = "0.10.2"  # the jax pin of setup.cfg; jax[tpu] adds the matching libtpu
PYTHON_VERSION = "3.11"  # setup.cfg's python_requires; TPU VM images ship 3.10, so uv fetches it
LIBTPU_INDEX = "https://storage.googleapis.com/jax-releases/libtpu_releases.html"
REMOTE_DIR = "~/scaling"
ARCHIVE = "scaling.tar.gz"


@dataclass(frozen=True)
class Generation:
    cores_per_chip: int  # the accelerator type's number counts TensorCores (v4, v5p) or chips
    single_host_chips: int  # slices up to this many chips are one VM
    chips_per_host: int  # in multi-host slices
    version: str  # default TPU VM runtime image


GENERATIONS = {
    "v4": Generation(2, 4, 4, "tpu-ubuntu2204-base"),
    "v5p": Generation(2, 4, 4, "v2-alpha-tpuv5"),
    "v5litepod": Generation(1, 8, 4, "v2-alpha-tpuv5-lite"),
    "v6e": Generation(1, 8, 4, "v2-alpha-tpuv6e"),
}
ALIASES = {"v5e": "v5litepod"}


@dataclass(frozen=True)
class Topology:
    accelerator_type: str  # as gcloud spells it
    chips: int
    hosts: int  # TPU VM workers: one jax process each
    devices: int  # jax devices in all (one per chip: v4 and v5p run their two cores as one)
    version: str


def topology(accelerator_type: str) -> Topology:
    """Chips, workers and jax devices of an accelerator type such as v4-32 or v5e-16."""
    match = re.fullmatch(r"([a-z0-9]+)-(\d+)", accelerator_type)
    family = match and ALIASES.get(match[1], match[1])
    if not match or family not in GENERATIONS:
        raise SystemExit(
            f"launch.py: error: unknown accelerator type {accelerator_type!r}; "
            f"use one of {sorted(GENERATIONS) + sorted(ALIASES)} with a size, e.g. v4-32"
        )
    gen, count = GENERATIONS[family], int(match[2])
    chips = max(1, count // gen.cores_per_chip)
    hosts = 1 if chips <= gen.single_host_chips else chips // gen.chips_per_host
    return Topology(f"{family}-{count}", chips, hosts, chips, gen.version)


def _where(args) -> list[str]:
    return ["--zone", args.zone] + (["--project", args.project] if args.project else [])


def _ssh(args, command: str, worker: str = "all") -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, *_where(args)] + [
        f"--worker={worker}",
        "--command",
        command,
    ]


def create(args) -> list[list[str]]:
    topo = topology(args.accelerator_type)
    version = args.version or topo.version
    spot = ["--spot"] if args.spot else []
    if args.queued:  # waits in a queue for capacity instead of failing when there is none
        return [
            ["gcloud", "compute", "tpus", "queued-resources", "create", args.name]
            + ["--node-id", args.name, *_where(args)]
            + ["--accelerator-type", topo.accelerator_type, "--runtime-version", version, *spot],
            _queued_state(args),
        ]
    return [
        ["gcloud", "compute", "tpus", "tpu-vm", "create", args.name, *_where(args)]
        + ["--accelerator-type", topo.accelerator_type, "--version", version, *spot]
    ]


def _queued_state(args) -> list[str]:
    return ["gcloud", "compute", "tpus", "queued-resources", "describe", args.name] + [
        *_where(args),
        "--format",
        "value(state.state)",
    ]


def install(args) -> list[list[str]]:
    """This checkout (tracked and untracked, not ignored files) or a git ref, on every worker,
    in a venv with jax[tpu]."""
    setup = (
        f"cd {REMOTE_DIR} && python3 -m pip install -q --user uv"
        f" && ~/.local/bin/uv venv -q --python {PYTHON_VERSION} .venv"
        f" && ~/.local/bin/uv pip install -q --python .venv/bin/python -e ."
        f" 'jax[tpu]=={JAX_VERSION}' -f {LIBTPU_INDEX}"
    )
    if args.git:
        fetch = f"rm -rf {REMOTE_DIR} && git clone -q {shlex.quote(args.git)} {REMOTE_DIR}"
        fetch += f" && git -C {REMOTE_DIR} checkout -q {shlex.quote(args.ref)}"
        return [_ssh(args, f"set -e; {fetch} && {setup}")]
    archive = f"/tmp/{args.name}-{ARCHIVE}"
    unpack = f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR} && tar -xzf ~/{ARCHIVE} -C {REMOTE_DIR}"
    return [
        ["bash", "-c", f"git ls-files -z -co --exclude-standard | tar -czf {archive} --null -T -"],
        ["gcloud", "compute", "tpus", "tpu-vm", "scp", archive, f"{args.name}:~/{ARCHIVE}"]
        + [*_where(args), "--worker=all"],
        _ssh(args, f"set -e; {unpack} && {setup}"),
    ]


def _log(job: str) -> str:
    return f"{REMOTE_DIR}/logs/{job}.log"


def run(args) -> list[list[str]]:
    """The `scaling` command on every worker, detached (it outlives the ssh session), its
    output in logs/JOB.log and its process group id in logs/JOB.pid on each worker. With
    --wait the ssh session stays until the command ends on every worker, and fails if it
    failed on any (how experiments.executors.TpuExecutor runs a task on a slice)."""
    if not args.command:
        raise SystemExit(
            "launch.py: error: give the scaling command after --, e.g. -- train x.yaml"
        )
    env = " ".join(shlex.quote(kv) for kv in ["SCALING_CLUSTER=tpu", *args.env])
    command = shlex.join([".venv/bin/scaling", *args.command])
    job = args.job
    wait = " wait $!;" if args.wait else ""
    start = (  # braces: only the command goes to the background, not the cd before it
        f"cd {REMOTE_DIR} && mkdir -p logs && {{ {env} setsid nohup {command}"
        f" > logs/{job}.log 2>&1 < /dev/null & echo $! > logs/{job}.pid;{wait} }}"
    )
    return [_ssh(args, start)]


def logs(args) -> list[list[str]]:
    """Follow one worker's log (worker 0 runs process 0, the one that logs metrics)."""
    return [_ssh(args, f"tail -n +1 -F {_log(args.job)}", worker=str(args.worker))]


def stop(args) -> list[list[str]]:
    pid = f"{REMOTE_DIR}/logs/{args.job}.pid"
    return [_ssh(args, f"test -f {pid} && kill -- -$(cat {pid}) || true")]


def delete(args) -> list[list[str]]:
    if args.queued:  # --force deletes the TPU VM the queued resource made, too
        return [
            ["gcloud", "compute", "tpus", "queued-resources", "delete", args.name]
            + [*_where(args), "--force", "--quiet"]
        ]
    return [["gcloud", "compute", "tpus", "tpu-vm", "delete", args.name, *_where(args), "--quiet"]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)

    def action(name, fn, help):
        a = sub.add_parser(name, help=help)
        a.add_argument("name", help="TPU VM / slice name")
        a.add_argument("--zone", required=True, help="e.g. us-central2-b (v4), us-west4-a (v5e)")
        a.add_argument("--project", help="Google Cloud project (default: gcloud's)")
        a.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
        a.set_defaults(build=fn)
        return a

    c = action("create", create, "create a TPU VM or pod slice")
    c.add_argument("--accelerator-type", required=True, help="v4-8, v4-32, v5e-16, v6e-8, ...")
    c.add_argument("--version", help="runtime image (default: the generation's base image)")
    c.add_argument("--queued", action="store_true", help="queue for capacity (queued resource)")
    c.add_argument("--spot", action="store_true", help="preemptible spot capacity")
    i = action("install", install, "copy this checkout (or clone --git) to every worker")
    i.add_argument("--git", help="clone this repository URL instead of copying the checkout")
    i.add_argument("--ref", default="main", help="with --git: branch, tag or commit")
    r = action("run", run, "start `scaling ...` on every worker (a run or a sweep)")
    r.add_argument("--job", default="scaling", help="name of the log and pid files")
    r.add_argument("--env", action="append", default=[], help="K=V for the run, repeatable")
    r.add_argument("--wait", action="store_true", help="stay until it ends; fail if it fails")
    r.epilog = "then -- and the scaling arguments, e.g. -- train run.yaml --run-dir /mnt/r."
    lg = action("logs", logs, "stream a worker's log")
    lg.add_argument("--job", default="scaling")
    lg.add_argument("--worker", type=int, default=0)
    s = action("stop", stop, "stop the job on every worker")
    s.add_argument("--job", default="scaling")
    d = action("delete", delete, "delete the slice")
    d.add_argument("--queued", action="store_true", help="it was created with --queued")
    return p


def execute(commands: list[list[str]], queued_state: list[str] | None) -> None:
    for command in commands:
        if command == queued_state:  # poll until the queued resource's slice exists
            while (state := subprocess.check_output(command, text=True).strip()) != "ACTIVE":
                print(f"queued resource: {state or 'unknown'}; waiting", file=sys.stderr)
                time.sleep(30)
            continue
        subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser().parse_args(argv[:cut])
    args.command = argv[cut + 1 :]
    commands = args.build(args)
    if args.action == "create":
        topo = topology(args.accelerator_type)
        workers = f"{topo.hosts} worker{'s' if topo.hosts > 1 else ''}"
        print(f"# {topo.accelerator_type}: {topo.chips} chips, {workers}, {topo.devices} devices")
    for command in commands:
        print(shlex.join(command))
    if not args.dry_run:
        queued = _queued_state(args) if args.action == "create" and args.queued else None
        try:
            execute(commands, queued)
        except subprocess.CalledProcessError as e:
            print(f"launch.py: error: exit status {e.returncode} of {e.cmd[:6]}", file=sys.stderr)
            return e.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
