"""Execute runs: claim a run in the store, train (or resume) and evaluate it, record the outcome;
and a sweep of them through an executor (experiments.executors).

`work(task)` is all an executor runs, in whichever process or machine: the run store decides
who trains what (experiments.store), so executors only need to call it. Re-running a sweep skips
finished runs and resumes unfinished ones from their last checkpoint. A run that fails is marked
failed with its reason and traceback and the sweep goes on; a retryable failure is retried until
it has failed `max_attempts` times, a divergence (NaN loss) or a config error is not. An attempt
whose worker was killed or lost its heartbeat is not a failure: the run is taken over and resumed
(up to store.LOST_ATTEMPTS such attempts). Cooldown branches run
after their stable parents (a second stage). The results table is re-collected as runs finish.

A multi-process jax job (a TPU pod slice, a multi-node SLURM job: `jax.distributed` is
initialised) is one worker whose processes must issue the same collectives in the same order,
so only process 0 decides: it claims each run and broadcasts the verdict, every process trains
it, and only process 0 heartbeats, evaluates and records the outcome. In a sweep, process 0
runs the loop below (`Collective` executor) and the other processes `follow` it run by run.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.tasks import TaskError
from experiments import store
from experiments.preflight import preflight
from experiments.sweep import RunSpec, Sweep, normalize, run_id
from scaling.config import ConfigError, RunConfig

SKIPPED, BUSY, LOST = "skipped", "busy", "lost"  # outcomes besides store.DONE and store.FAILED


@dataclass(frozen=True)
class Launch:
    """How runs are executed; the same for every run of a launch."""

    stale_after: float = 300.0  # seconds without a heartbeat before a run may be reclaimed
    max_attempts: int = 3  # failed attempts of one run before it stays failed (kills don't count)
    heartbeat_s: float = 10.0
    tensorboard: bool = True
    wandb: str = ""  # W&B project; empty: off
    show_progress: bool = True

    @classmethod
    def of(cls, cfg) -> Launch:
        """The settings of a launch_config.LaunchConfig (a sweep's launch: section and flags)."""
        return cls(cfg.stale_after, cfg.max_attempts, tensorboard=cfg.tensorboard, wandb=cfg.wandb)


@dataclass(frozen=True)
class Task:
    spec: RunSpec
    sweep_dir: str
    launch: Launch
    run_dir: str = ""  # a directory chosen by hand (`scaling train --run-dir`); "": store.locate

    def url(self) -> str:
        """The run's directory: found in the sweep directory under any label or an old bare id
        (store.locate), so every executor and every retry maps the run to the same one."""
        return self.run_dir or store.locate(self.sweep_dir, self.spec.run_id, self.spec.name)


def single_task(cfg: RunConfig, run_dir: str | None, runs_dir: str, launch: Launch) -> Task:
    """`scaling train`'s run: in run_dir when given, else in <runs_dir>/single/ as
    `<name>-<run_id>`, the name being the config's or its shape and token budget."""
    from scaling.families import label

    rid = run_id(cfg)
    name = cfg.name or f"{label(cfg.model)}-{cfg.train.tokens}"
    single = store.join(runs_dir, "single")
    url = run_dir or store.locate(single, rid, name)
    return Task(RunSpec(rid, name, cfg), str(Path(url).parent), launch, str(url))


def local_dir(url: str) -> Path:
    """Training writes checkpoints with orbax and metrics with plain files: a filesystem path."""
    if "://" in url and not url.startswith("file://"):
        raise ConfigError(
            "--runs-dir",
            f"training needs a local or shared filesystem, got {url}",
            "keep runs on a filesystem (a mounted bucket works); object stores hold the store only",
        )
    return Path(url.removeprefix("file://"))


def execute_run(cfg: RunConfig, run_dir: Path, claim: store.Claim | None, launch: Launch) -> dict:
    """Train (or resume) and evaluate one claimed run; returns its final status record. With
    claim None (process k > 0 of a multi-process job) train along and write nothing."""
    from experiments.sweep_eval import record, record_finetune
    from experiments.tracking import Tracker, provenance
    from scaling import distributed
    from scaling.finetune import finetune
    from scaling.train import train

    lead = claim is not None
    if lead:
        store.claim_config(run_dir, cfg.to_dict(), normalize)
    started = time.time()
    every = cfg.eval.every_steps

    init_from = cfg.train.init_from  # a cooldown branch's stable run: a sibling directory
    parent = local_dir(store.locate(run_dir.parent, init_from)) if init_from else None
    tuned = bool(cfg.finetune.task)
    if tuned:  # a fine-tune's parent: where its design found it
        parent = local_dir(store.read_json(store.join(run_dir, store.DESIGN))["parent_dir"])
    # Open until the final evaluation is recorded: its scores go to TensorBoard and W&B too.
    with Tracker(cfg, run_dir, claim, launch) if lead else contextlib.nullcontext() as tracker:

        def on_step(done: int, params) -> None:
            if lead:
                tracker.on_step(done, params)
            if every and done % every == 0 and done < cfg.steps:  # emergence over training
                params = distributed.fetch(params)  # a collective: every process takes part
                if lead:
                    record(run_dir, cfg, cfg.eval, params, done, tracker.on_eval)

        fit = finetune if tuned else train
        result = fit(cfg, run_dir, on_step, tracker.on_log if lead else None, parent)
        if not lead:
            return {}
        eval_started = time.time()
        test = None  # a fine-tune's score on its test items: metric, accuracy, error, n_items
        if tuned:
            test = record_finetune(run_dir, cfg, result.params, tracker.on_eval)
        else:
            record(run_dir, cfg, cfg.eval, result.params, cfg.steps, tracker.on_eval)
    finished = time.time()
    trained_tokens = (result.steps - result.resumed_from) * cfg.train.batch_size * cfg.model.seq_len
    claim.finish(
        store.DONE,
        steps=cfg.steps,
        heldout_loss=result.final_heldout_loss,
        resumed_from_step=result.resumed_from,
        train_s=eval_started - started,
        eval_s=finished - eval_started,
        tokens_per_s=trained_tokens / max(eval_started - started, 1e-9),
        unique_tokens=result.unique_tokens,
        finished=finished,
        provenance=provenance(),
        test=test,
    )
    return store.status(run_dir)


def worker_id() -> str:
    import os

    return f"{store.HOST}:{os.getpid()}"


def multiprocess() -> bool:
    """Whether this process is one of several of a jax.distributed job."""
    import jax

    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_lead() -> bool:
    """Whether this process claims, records and reports: the only one, or process 0."""
    import jax

    return not multiprocess() or jax.process_index() == 0


def _broadcast(value: int) -> int:
    """Process 0's value, on every process (a collective: all must call it, in the same order)."""
    import numpy as np
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


# What process 0 tells the others about a run: train it, or why not.
VERDICTS = (None, SKIPPED, store.FAILED, BUSY)


def work(task: Task) -> dict:
    """Claim the task's run and execute it; never raises, returns an outcome record. In a
    multi-process job every process calls this with the same task: process 0 claims."""
    spec, launch = task.spec, task.launch
    url = task.url()
    outcome = {"run_id": spec.run_id, "name": spec.name}
    collective, lead = multiprocess(), is_lead()
    claim, verdict = None, None
    if lead:
        try:
            claim, verdict = _claim(task, url)
        except store.ClaimRefused as e:  # the directory holds another run: never retried
            verdict = store.FAILED
            outcome |= {"message": str(e), "retryable": False, "refused": True}
        except Exception as e:  # recorded by the sweep (the run directory may not be ours)
            verdict, outcome["message"] = store.FAILED, f"{type(e).__name__}: {e}"
    if collective:
        verdict = VERDICTS[_broadcast(VERDICTS.index(verdict))]
    if verdict is not None:
        return outcome | {"result": verdict}
    try:
        execute_run(spec.config, local_dir(url), claim, launch)
    except store.LostClaim as e:
        return outcome | {"result": LOST, "message": str(e)}
    except Exception as e:  # recorded in status.json; the sweep goes on
        from scaling.train import Diverged

        message = f"{type(e).__name__}: {e}"
        retryable = not isinstance(e, Diverged | ConfigError | TaskError)
        if lead:
            claim.finish(
                store.FAILED, error=message, traceback=traceback.format_exc(), retryable=retryable
            )
        return outcome | {"result": store.FAILED, "message": message, "retryable": retryable}
    return outcome | {"result": store.DONE}


def _claim(task: Task, url: str) -> tuple[store.Claim | None, str | None]:
    """(our claim, None), or (None, why the run is not ours to train)."""
    spec, launch = task.spec, task.launch
    store.claim_config(url, spec.config.to_dict(), normalize)  # first: a done run must match too
    if store.status(url)["state"] == store.DONE:
        return None, SKIPPED
    store.write_atomic(store.join(url, store.DESIGN), json.dumps(spec.design))
    claim = store.claim(url, worker_id(), launch.stale_after, launch.max_attempts)
    if claim is None:  # done or failed by now, or in a live worker's hands
        state = store.status(url)["state"]
        return None, {store.DONE: SKIPPED, store.FAILED: store.FAILED}.get(state, BUSY)
    return claim, None


@dataclass
class Collective:
    """The executor of process 0 of a multi-process job: each task runs on all processes at
    once. It sends the others each run's position in the sweep (they `follow`), then -1."""

    runs: list[RunSpec]

    def map(self, fn, tasks: list) -> Iterator[dict]:
        position = {spec.run_id: i for i, spec in enumerate(self.runs)}
        for task in tasks:
            _broadcast(position[task.spec.run_id])
            yield fn(task)

    def close(self) -> None:
        _broadcast(-1)


def follow(sweep: Sweep, runs_dir, launch: Launch) -> None:
    """Process k > 0 of a multi-process job: train whatever run process 0 sends, until -1."""
    sweep_dir = store.join(runs_dir, sweep.name)
    while (i := _broadcast(0)) >= 0:
        result = work(Task(sweep.runs[i], sweep_dir, launch))
        if result["result"] == store.FAILED and result.get("retryable"):
            # Not a failure every process meets alike (a divergence, a bad config): process 0
            # may be waiting in a collective for this one. End the job; a relaunch resumes.
            raise SystemExit(
                f"{sweep.runs[i].name} failed on this process: {result['message']}; "
                "ending the job (relaunch it to resume)"
            )


@dataclass
class SweepOutcome:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    busy: dict[str, str] = field(default_factory=dict)  # held by another live worker, or lost


def run_sweep(
    sweep: Sweep, runs_dir, executor, launch: Launch = Launch(), here: bool = False
) -> SweepOutcome:
    """Run every unfinished run of the sweep through `executor`, stable runs before their
    cooldown branches; retryable failures are relaunched while attempts remain. `here`: the
    executor trains in this process (see preflight)."""
    from tqdm.auto import tqdm

    from experiments.collect import collect

    preflight([spec.config for spec in sweep.runs], here, launch.show_progress)
    sweep_dir = store.join(runs_dir, sweep.name)
    outcome = SweepOutcome()
    bar = tqdm(
        total=len(sweep.runs),
        desc=f"sweep {sweep.name}",
        unit="run",
        disable=not launch.show_progress,
    )
    store.write_atomic(store.join(sweep_dir, store.REFUSED), "{}")  # this launch's refusals
    for stage in sweep.stages():
        pending = _ready(stage, sweep_dir, outcome)
        last = {}
        for _ in range(launch.max_attempts):
            retry = set()
            for result in executor.map(work, [Task(s, sweep_dir, launch) for s in pending]):
                last[result["run_id"]] = result
                if _record(result, outcome, sweep_dir, launch):
                    retry.add(result["run_id"])
                else:
                    bar.update()
                if result["result"] in (store.DONE, store.FAILED):
                    collect(sweep_dir, quiet=True)  # the tables grow as runs finish
            pending = [s for s in pending if s.run_id in retry]
            if not pending:
                break
        for spec in pending:  # still failing after this launch's last attempt: never dropped
            message = last[spec.run_id].get("message", "failed")
            outcome.failed[spec.run_id] = f"{spec.name}: {message} (retries used up here)"
            bar.update()
    _await_others(outcome, sweep_dir, launch)
    bar.close()
    return outcome


def _await_others(outcome: SweepOutcome, sweep_dir: str, launch: Launch) -> None:
    """Wait for the runs other live workers hold (another launcher of the same sweep), so that
    this launch reports the sweep as it ends: done elsewhere counts as done (exit 0), failed as
    failed; a holder that dies meanwhile leaves its run busy (relaunch to resume it)."""
    held = dict(outcome.busy)
    while held:
        for rid, why in list(held.items()):
            url = store.locate(sweep_dir, rid)
            state, record = store.status(url)["state"], store.owner(url)
            if state == store.DONE:
                outcome.skipped.append(rid)
            elif state == store.FAILED:
                outcome.failed[rid] = f"{why.split(':')[0]}: {store.status(url).get('error')}"
            elif record is None or store.owner_dead(record, launch.stale_after):
                del held[rid]  # stays busy: nobody trains it now
                continue
            else:
                continue
            del held[rid], outcome.busy[rid]
        if held:
            time.sleep(launch.heartbeat_s / 5)


def _ready(stage: list[RunSpec], sweep_dir: str, outcome: SweepOutcome) -> list[RunSpec]:
    """The stage's runs whose stable parent (if any) is done; the others fail with the reason."""
    ready = []
    for spec in stage:
        parent = spec.config.train.init_from
        if parent and store.status(store.locate(sweep_dir, parent))["state"] != store.DONE:
            outcome.failed[spec.run_id] = f"{spec.name}: stable run {parent} did not finish"
        else:
            ready.append(spec)
    return ready


def _record(result: dict, outcome: SweepOutcome, sweep_dir: str, launch: Launch) -> bool:
    """Book one result; True when it failed and will be retried."""
    rid, kind = result["run_id"], result["result"]
    if kind == store.DONE:
        outcome.done.append(rid)
    elif kind == SKIPPED:
        outcome.skipped.append(rid)
    elif kind in (BUSY, LOST):
        outcome.busy[rid] = f"{result['name']}: {result.get('message', 'held by a live worker')}"
    elif result.get("refused"):
        outcome.failed[rid] = f"{result['name']}: {result['message']}"
        refused = store.read_json(store.join(sweep_dir, store.REFUSED), {})
        refused[rid] = {"name": result["name"], "error": result["message"]}
        store.write_atomic(store.join(sweep_dir, store.REFUSED), json.dumps(refused, indent=1))
    else:
        url = store.locate(sweep_dir, rid, result["name"])
        attempts = store.attempts(url)
        if store.claimable(url, launch.stale_after, launch.max_attempts, attempts):
            return True
        error = result.get("message") or store.status(url).get("error") or "failed"
        failed = store.failures(url, attempts)
        outcome.failed[rid] = (
            f"{result['name']}: {error} (attempts: {len(attempts)}, failed {failed})"
        )
    return False
