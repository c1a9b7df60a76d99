"""What a run reports while it trains: a progress bar, a heartbeat in the run store (step, loss,
tokens/s, which `scaling status` shows), TensorBoard event files in <run_dir>/tensorboard/, and,
with `--wandb PROJECT`, Weights & Biases (WANDB_MODE=offline works with no network).

Provenance recorded with each finished run: git commit, package versions, device kind/count.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import time
from pathlib import Path

from tqdm.auto import tqdm

from experiments import store

TENSORBOARD_DIR = "tensorboard"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


class Tracker:
    """The train loop's on_step / on_log callbacks for one run; a context manager."""

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
        self.tb = None
        if launch.tensorboard:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / TENSORBOARD_DIR), flush_secs=10)
        self.wandb = None
        if launch.wandb:
            import wandb

            self.wandb = wandb.init(
                project=launch.wandb,
                name=cfg.name or run_dir.name,
                id=f"{run_dir.name}-a{claim.attempt}",
                dir=str(run_dir),
                config=cfg.to_dict(),
                reinit="create_new",
            )

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
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(key, value, row["step"])
        if self.wandb is not None:
            self.wandb.log(scalars, step=row["step"])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if exc[0] else 0)


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
