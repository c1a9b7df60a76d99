"""Executors: where runs execute. One interface, `map(fn, tasks)` → the results as they finish.

  * `local`  this process for one worker (per-run progress bars); otherwise a pool of worker
             processes (spawned: JAX does not survive fork), each pinned to its own share of the
             CPU cores and, with devices_per_worker, its own accelerators.
  * `ray`    tasks on a Ray cluster (`address`, or a local one started here), each asking for
             CPUs, GPUs or a TPU slice; a task whose worker dies is retried by Ray.
  * `slurm`  a SLURM job array through submitit (resources, time limit); a job preempted or out
             of time is requeued and resumes from its last checkpoint. cluster="local"/"debug"
             runs the same path without SLURM (tests).
  * `tpu`    Cloud TPU slices made with tpu/launch.py (create, install): each slice trains one
             run at a time on all its workers at once, started by `launch.py run --wait`.

None of them decides who trains what: every task claims its run in the store first, so a task
executed twice, or by two launchers at once, trains the run once. Module-level imports stay
light: a spawned worker must set its device environment before JAX is imported.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import pickle
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from experiments import store

LAUNCH = Path(__file__).resolve().parent.parent / "tpu" / "launch.py"
TASKS_DIR = ".tasks"  # in the sweep directory: pickled tasks and their results, for remote runs
# The optional packages a flag needs: flag → (module, the setup.cfg extra that installs it).
OPTIONAL = {
    "--wandb": ("wandb", "wandb"),
    "--executor ray": ("ray", "cluster"),
    "--executor slurm": ("submitit", "cluster"),
}


def check_packages(executor: str = "local", wandb: str = "") -> None:
    """Raise ConfigError when a package the launch needs is not installed: once, at launch,
    rather than as the same failure inside every run."""
    import importlib.util

    from scaling.config import ConfigError

    for flag in (f"--executor {executor}", "--wandb" if wandb else ""):
        module, extra = OPTIONAL.get(flag, (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise ConfigError(
                flag, f"needs the {module} package, not installed", f"pip install -e '.[{extra}]'"
            )


def _lost(task, error: BaseException) -> dict:
    """The result of a task whose worker died before it could report."""
    spec = task.spec
    return {"run_id": spec.run_id, "name": spec.name, "result": "lost", "message": repr(error)}


def slots(workers: int, cores: list[int], devices_per_worker: int) -> list[dict]:
    """Each worker's share: a disjoint slice of the cores and of the device ids."""
    per = max(1, len(cores) // workers)
    return [
        {
            "cores": cores[i * per : (i + 1) * per] or cores,
            "devices": list(range(i * devices_per_worker, (i + 1) * devices_per_worker)),
        }
        for i in range(workers)
    ]


def _pin(queue) -> None:
    """Pool initializer: take a slot, pin to its cores and devices, before JAX is imported."""
    slot = queue.get()
    os.sched_setaffinity(0, slot["cores"])
    if slot["devices"]:
        visible = ",".join(map(str, slot["devices"]))
        os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["TPU_VISIBLE_CHIPS"] = visible


@dataclass
class LocalExecutor:
    workers: int = 1
    devices_per_worker: int = 0

    def map(self, fn: Callable, tasks: list) -> Iterator[dict]:
        if self.workers == 1:
            yield from map(fn, tasks)
            return
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for slot in slots(self.workers, sorted(os.sched_getaffinity(0)), self.devices_per_worker):
            queue.put(slot)
        with cf.ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_pin, initargs=(queue,)
        ) as pool:
            futures = {pool.submit(fn, t): t for t in tasks}
            for future in cf.as_completed(futures):
                try:  # a killed worker breaks the pool: its runs are reclaimed by a relaunch
                    yield future.result()
                except cf.process.BrokenProcessPool as e:
                    yield _lost(futures[future], e)


@dataclass
class RayExecutor:
    address: str = ""  # "" starts a local cluster; "auto" or "ray://host:10001" joins one
    num_cpus: float = 1
    num_gpus: float = 0
    resources: dict = field(default_factory=dict)  # e.g. {"TPU": 4} for a v4-8 host
    max_retries: int = 2  # re-executions after a worker or node dies

    def map(self, fn: Callable, tasks: list) -> Iterator[dict]:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address or None, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(fn).options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            resources=self.resources,
            max_retries=self.max_retries,
        )
        refs = {remote.remote(t): t for t in tasks}
        waiting = list(refs)
        while waiting:
            (ready,), waiting = ray.wait(waiting, num_returns=1)
            try:
                yield ray.get(ready)
            except ray.exceptions.RayError as e:  # retries exhausted
                yield _lost(refs[ready], e)


class Requeueable:
    """submitit's hook for preemption and time-outs: resubmit the same task, which then claims
    its run again and resumes it from the last checkpoint."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, task):
        return self.fn(task)

    def checkpoint(self, task):
        import submitit

        return submitit.helpers.DelayedSubmission(self, task)


@dataclass
class SlurmExecutor:
    folder: str = "slurm"  # submitit's logs, pickles and batch scripts
    cluster: str = "slurm"  # "slurm"; "local" or "debug" run the same path without SLURM
    partition: str = ""
    timeout_min: int = 60
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    array_parallelism: int = 64
    max_requeues: int = 3
    extra: dict = field(default_factory=dict)  # further sbatch options, e.g. {"account": "x"}

    def submit(self, fn: Callable, tasks: list) -> list:
        import submitit

        executor = submitit.AutoExecutor(
            folder=self.folder, cluster=self.cluster, slurm_max_num_timeout=self.max_requeues
        )
        executor.update_parameters(
            name="scaling",
            timeout_min=self.timeout_min,
            cpus_per_task=self.cpus_per_task,
            gpus_per_node=self.gpus_per_node,
            slurm_array_parallelism=self.array_parallelism,
            **({"slurm_partition": self.partition} if self.partition else {}),
            **{f"slurm_{k}": v for k, v in self.extra.items()},
        )
        return executor.map_array(Requeueable(fn), tasks)

    def map(self, fn: Callable, tasks: list) -> Iterator[dict]:
        jobs = dict(zip(self.submit(fn, tasks), tasks))
        for job, task in jobs.items():
            try:
                yield job.result()
            except Exception as e:  # the job itself failed (node lost, requeues exhausted)
                yield _lost(task, e)


@dataclass
class TpuExecutor:
    """Cloud TPU VMs or pod slices, made and set up with tpu/launch.py (create, install), share
    the sweep's runs: each slice trains one run at a time, on all its workers at once (one
    jax.distributed job whose process 0 claims the run: experiments.runner). A task travels
    pickled through <sweep_dir>/.tasks/, which every worker must see (the runs directory is on
    a bucket or a shared mount anyway), and process 0 writes its result beside it. A slice lost
    mid-run (preempted) yields a lost result; its run is reclaimed and resumed later."""

    slices: tuple[str, ...]
    zone: str
    project: str = ""
    launcher: Path = LAUNCH

    def map(self, fn: Callable, tasks: list) -> Iterator[dict]:
        free = queue.Queue()
        for name in self.slices:
            free.put(name)

        def on_a_free_slice(task) -> dict:
            name = free.get()
            try:
                return self.run_on(name, fn, task)
            except Exception as e:  # the launcher itself failed: the run is not done here
                return _lost(task, e)
            finally:
                free.put(name)

        with cf.ThreadPoolExecutor(len(self.slices)) as pool:
            for future in cf.as_completed([pool.submit(on_a_free_slice, t) for t in tasks]):
                yield future.result()

    def command(self, name: str, task_url: str, job: str) -> list[str]:
        where = ["--zone", self.zone] + (["--project", self.project] if self.project else [])
        run = ["run", name, *where, "--job", job, "--wait", "--", "task", task_url]
        return [sys.executable, str(self.launcher), *run]

    def run_on(self, name: str, fn: Callable, task) -> dict:
        job = f"{task.spec.run_id}-{time.time_ns()}"
        task_url = store.join(task.sweep_dir, TASKS_DIR, f"{job}.pkl")
        store.write_atomic(task_url, pickle.dumps((fn, task)))
        ran = subprocess.run(self.command(name, task_url, job), capture_output=True, text=True)
        result = store.read_json(result_url(task_url))
        for url in (task_url, result_url(task_url)):
            store.remove(url)
        if result is None:
            return _lost(
                task, RuntimeError(f"slice {name}: exit {ran.returncode}: {ran.stderr[-2000:]}")
            )
        return result


def result_url(task_url: str) -> str:
    return task_url.removesuffix(".pkl") + ".result.json"


def run_task(task_url: str) -> dict:
    """`scaling task URL`, on every worker of a slice: the pickled (fn, task) at URL; the lead
    process writes the result beside it."""
    from experiments.runner import is_lead

    fn, task = pickle.loads(store.read_bytes(task_url))
    result = fn(task)
    if is_lead():
        store.write_atomic(result_url(task_url), json.dumps(result))
    return result
