"""Multi-host jobs: where this process sits (explicit arguments, SCALING_* variables, SLURM, a TPU
VM), starting jax.distributed, and arrays spread over processes (each building its own rows,
gathered whole where needed).

Separate from the layout (`scaling.mesh`, `scaling.sharding`), which is the same for one process
or many: only start-up and the movement of host data differ.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from scaling.config import ConfigError
from scaling.mesh import RULES, Rules, batch_sharding

ENV_COORDINATOR = "SCALING_COORDINATOR"
ENV_NUM_PROCESSES = "SCALING_NUM_PROCESSES"
ENV_PROCESS_ID = "SCALING_PROCESS_ID"
ENV_CLUSTER = "SCALING_CLUSTER"  # "tpu": let jax find the TPU VM's workers itself
ENV_PORT = "SCALING_COORDINATOR_PORT"


@dataclass(frozen=True)
class Cluster:
    """Where this process sits in a multi-process job, and how that was found out."""

    source: str  # "single" | "explicit" | "env" | "slurm" | "tpu"
    num_processes: int = 1
    process_id: int = 0
    coordinator: str | None = None  # host:port of process 0
    local_device_ids: tuple[int, ...] | None = None  # one GPU per process under SLURM


def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of a SLURM node list: 'gpu[01-03,07],login1' → gpu01 gpu02 gpu03 gpu07 login1.

    Ranges keep their zero padding; several bracket groups in one name ('r[1-2]n[1-2]') expand
    to their product, in SLURM's order.
    """
    hosts = []
    for name in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", nodelist):
        expansions = [""]
        for literal, group in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", name):
            choices = [literal + item for item in _expand_ranges(group)] if group else [literal]
            expansions = [head + tail for head in expansions for tail in choices]
        hosts += expansions
    return hosts


def _expand_ranges(group: str) -> list[str]:
    items = []
    for part in group.split(","):
        lo, _, hi = part.partition("-")
        if not hi:
            items.append(lo)
            continue
        if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
            raise ValueError(f"bad range {part!r} in a SLURM node list")
        items += [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    return items


def _int_env(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(name, f"not an integer: {env[name]!r}", "set it to a number") from None


def detect_cluster(
    env: Mapping[str, str] | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Cluster:
    """This process's place in the job, from (in order) explicit arguments, the SCALING_*
    variables, SLURM's variables, or a TPU VM (SCALING_CLUSTER=tpu, set by tpu/launch.py, or
    GKE's TPU_WORKER_HOSTNAMES); a single process otherwise."""
    env = os.environ if env is None else env
    if num_processes is not None:
        return _explicit("explicit", coordinator, num_processes, process_id or 0)
    if ENV_NUM_PROCESSES in env:
        return _explicit(
            "env",
            env.get(ENV_COORDINATOR),
            _int_env(env, ENV_NUM_PROCESSES),
            _int_env(env, ENV_PROCESS_ID) if ENV_PROCESS_ID in env else 0,
        )
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        return _slurm(env)
    if env.get(ENV_CLUSTER) == "tpu" or "TPU_WORKER_HOSTNAMES" in env:
        return Cluster("tpu")
    return Cluster("single")


def _explicit(source: str, coordinator, num_processes: int, process_id: int) -> Cluster:
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ConfigError(
            ENV_PROCESS_ID,
            f"process {process_id} of {num_processes}",
            f"use a process id in 0..{num_processes - 1}",
        )
    if num_processes > 1 and not coordinator:
        raise ConfigError(
            ENV_COORDINATOR, "missing for a multi-process job", "set it to host:port of process 0"
        )
    return Cluster(source, num_processes, process_id, coordinator if num_processes > 1 else None)


def _slurm(env: Mapping[str, str]) -> Cluster:
    ntasks, procid = _int_env(env, "SLURM_NTASKS"), _int_env(env, "SLURM_PROCID")
    if ntasks == 1:
        return Cluster("single")
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodelist:
        raise ConfigError(
            "SLURM_JOB_NODELIST", "not set in a multi-task job", "launch the tasks with srun"
        )
    # The same port on every task without talking to each other: a fixed one, or one derived
    # from the job id (jax's own convention) so that two jobs on a node do not collide.
    job = _int_env(env, "SLURM_JOB_ID") if "SLURM_JOB_ID" in env else 0
    port = env.get(ENV_PORT) or str(61440 + job % 4096)
    # One GPU per task: the task's GPU among the node's, unless SLURM already bound the task to
    # a single GPU (--gpus-per-task=1: it is then the task's only, local device 0).
    bound = "," not in env.get("CUDA_VISIBLE_DEVICES", ",")
    local = (_int_env(env, "SLURM_LOCALID"),) if "SLURM_LOCALID" in env and not bound else None
    return Cluster("slurm", ntasks, procid, f"{expand_nodelist(nodelist)[0]}:{port}", local)


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Cluster:
    """Start jax.distributed for a multi-process job (before any other jax call); a no-op for a
    single process. Returns where this process sits."""
    cluster = detect_cluster(env, coordinator, num_processes, process_id)
    if cluster.source == "tpu":
        jax.distributed.initialize()  # the TPU VM's metadata names the workers
    elif cluster.num_processes > 1:
        jax.distributed.initialize(
            cluster.coordinator,
            cluster.num_processes,
            cluster.process_id,
            local_device_ids=list(cluster.local_device_ids) if cluster.local_device_ids else None,
        )
    return cluster


def fetch(tree):
    """Whole numpy copies of a tree of (possibly multi-host) arrays, on every process: what
    jax.device_get gives on one host, where an array spread over hosts cannot be got."""
    return multihost_utils.process_allgather(tree, tiled=True)


def is_main_process() -> bool:
    """Whether this process writes logs, metrics and reports (process 0)."""
    return jax.process_index() == 0


def sync_processes(name: str) -> None:
    """Wait until every process of a multi-process job gets here (a no-op for one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def process_rows(sharding: NamedSharding, global_shape: Sequence[int]) -> np.ndarray:
    """The batch rows this process's devices hold, in the order
    jax.make_array_from_process_local_data expects them (ascending, each row once)."""
    rows = set()
    for index in sharding.addressable_devices_indices_map(tuple(global_shape)).values():
        rows.update(range(global_shape[0])[index[0]])
    return np.array(sorted(rows), dtype=np.int64)


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A jax.Array laid out by `sharding` from an array every process holds whole (small inputs:
    the held-out windows); each device takes its part."""
    return jax.make_array_from_process_local_data(sharding, x, x.shape)


def process_batch(
    rows_fn: Callable[[int, np.ndarray], np.ndarray],
    step: int,
    mesh: Mesh,
    global_shape: Sequence[int],
    rules: Rules = RULES,
) -> jax.Array:
    """Global batch `step` as one jax.Array, each process building only its own rows:
    rows_fn(step, rows) returns those rows of the global batch. Every process runs the same
    rows_fn, so the global array is the single-host batch whatever the process count."""
    sharding = batch_sharding(mesh, rules)
    rows = process_rows(sharding, global_shape)
    return jax.make_array_from_process_local_data(sharding, rows_fn(step, rows), global_shape)
