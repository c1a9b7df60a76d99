"""What a run reports while it trains: a progress bar, a heartbeat in the run store (step, loss,
tokens/s, which `scaling status` shows), TensorBoard event files in <run_dir>/tensorboard/, and,
with `--wandb PROJECT`, Weights & Biases (WANDB_MODE=offline works with no network).

Scalars: `train/<metric>` and `heldout/loss` (and `heldout/bpb`, …) at their step, and every
few-shot score as `eval/<task>/<metric>/<k>shot` at the step of the checkpoint it scored (every
eval.every_steps during training, the final step, and `scaling eval` afterwards, TensorBoard
only). The shot count is part of the tag, not the step, because the step is the training step
the curves share; characters TensorBoard refuses in a tag become '_' (pass@1:greedy →
pass_1_greedy), and W&B gets the very same keys.

One W&B run per run, whatever the attempt: its id is the run id with resume="allow", so a retry
or a resumed run continues it; grouped by sweep (the sweep directory's name), tagged with the
shape label (s3) and the token budget (tokens=400000), the run config as its config.

Provenance recorded with each finished run: git commit, package versions, device kind/count.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

from experiments import store

TENSORBOARD_DIR = "tensorboard"
_WRITERS = itertools.count()
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
TAG_UNSAFE = re.compile(r"[^-/\w.]")  # tensorboardX replaces these in a tag with '_'


@contextlib.contextmanager
def progress(total: int, desc: str, unit: str = "step", show: bool = True):
    """A progress bar for work before training (corpus, prompts) that appears only once it has
    taken a second, and then moves every second (elapsed time) even while one long step runs."""
    bar = tqdm(total=total, desc=desc, unit=unit, delay=1, leave=False, disable=not show)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1):
            bar.update(0)  # redraws once the delay has passed

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield bar
    finally:
        stop.set()
        ticker.join()
        bar.close()


def eval_tag(row: dict) -> str:
    """The scalar name of an eval row: eval/<task>/<metric>/<k>shot (module docstring)."""
    return TAG_UNSAFE.sub("_", f"eval/{row['task']}/{row['metric']}/{row['shots']}shot")


def tensorboard_writer(run_dir):
    """A new event file in <run_dir>/tensorboard/. tensorboardX names it by the second and the
    host alone, so two writers opened within one second (a quick resume, `scaling eval` going
    from one checkpoint to the next) would write the same file, the second erasing the first:
    the suffix (process id, a counter) keeps every file apart."""
    from tensorboardX import SummaryWriter

    suffix = f".{os.getpid()}.{next(_WRITERS)}"
    return SummaryWriter(
        str(Path(run_dir) / TENSORBOARD_DIR), flush_secs=10, filename_suffix=suffix
    )


def wandb_tags(cfg) -> list[str]:
    """What a sweep's runs are told apart by in W&B: shape label and token budget."""
    from scaling.families import label

    return [label(cfg.model), f"tokens={cfg.train.tokens}"]


def wandb_run(cfg, run_dir: Path, project: str):
    """The run's W&B run (module docstring), created or continued."""
    import wandb

    from experiments.sweep import run_id

    return wandb.init(
        project=project,
        group=run_dir.parent.name,
        name=cfg.name or run_dir.name,
        id=run_id(cfg),
        resume="allow",
        tags=wandb_tags(cfg),
        dir=str(run_dir),
        config=cfg.to_dict(),
        reinit="create_new",
    )


class Scalars:
    """Where a run's numbers go besides its own files: TensorBoard and W&B, each optional; a
    context manager that closes them."""

    def __init__(self, tb=None, wandb=None):
        self.tb, self.wandb = tb, wandb

    def log(self, scalars: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(key, value, step)
        if self.wandb is not None and scalars:
            self.wandb.log(scalars, step=step)

    def log_eval(self, rows: list[dict]) -> None:
        """Eval rows (each with its step: experiments.sweep_eval.annotate) as eval/ scalars."""
        by_step = {}
        for row in rows:
            if isinstance(row.get("value"), int | float):
                by_step.setdefault(row["step"], {})[eval_tag(row)] = row["value"]
        for step, scalars in sorted(by_step.items()):
            self.log(scalars, step)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if exc[0] else 0)


class Tracker:
    """The train loop's on_step / on_log callbacks and the evaluation's on_eval for one run; a
    context manager, to be left after the final evaluation so that its scores are logged."""

    def __init__(self, cfg, run_dir: Path, claim: store.Claim, launch):
        self.cfg, self.claim, self.heartbeat_s = cfg, claim, launch.heartbeat_s
        self.progress = {"step": 0, "steps": cfg.steps}
        self.last_beat = 0.0
        self.bar = tqdm(
            total=cfg.steps,
            desc=cfg.name or run_dir.name,
            unit="step",
            leave=False,
            disable=not launch.show_progress,
        )
        self.scalars = Scalars(
            tensorboard_writer(run_dir) if launch.tensorboard else None,
            wandb_run(cfg, run_dir, launch.wandb) if launch.wandb else None,
        )
        self.on_eval = self.scalars.log_eval

    def on_step(self, done: int, params) -> None:
        self.bar.update(done - self.bar.n)
        self.progress["step"] = done
        if time.time() - self.last_beat >= self.heartbeat_s or done == self.cfg.steps:
            self.claim.heartbeat(**self.progress)  # raises LostClaim if we were replaced
            self.last_beat = time.time()

    def on_log(self, row: dict) -> None:
        split = row["split"]
        self.progress[f"{split}_loss"] = row["loss"]
        if "tokens_per_s" in row:
            self.progress["tokens_per_s"] = row["tokens_per_s"]
        scalars = {
            f"{split}/{k}": v
            for k, v in row.items()
            if k not in ("step", "split") and isinstance(v, int | float)
        }
        self.scalars.log(scalars, row["step"])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.scalars.__exit__(*exc)


def git_commit() -> str:
    """HEAD of the checkout this code runs from, '+dirty' when it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        run = lambda *a: subprocess.run(
            ["git", *a], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        return run("rev-parse", "HEAD") + ("+dirty" if run("status", "--porcelain") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict:
    import jax

    devices = jax.devices()
    return {
        "git_commit": git_commit(),
        "packages": {p: importlib.metadata.version(p) for p in PACKAGES},
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "host": store.HOST,
        "pid": os.getpid(),
    }
