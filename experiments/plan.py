"""What a sweep will cost before it starts (`scaling plan`) and where it stands (`scaling status`).

Estimates, per run:
  * memory: scaling.memory's plan on one device (parameters, gradients, AdamW's moments and the
    activations kept for the backward pass, after Korthikanti et al. 2022).
  * time: detailed training FLOPs (scaling.flops) / the device's sustained FLOP/s, by default
    35 GFLOP/s: half the ~70 GFLOP/s float32 matmul peak measured on the 2-core CPU machines
    (bench/), tiny models reaching about that share. Give your accelerator's with --flops-per-s.
A cooldown branch costs only its cooldown steps; the compute saved against training every
budget from scratch is printed with the totals.

`scaling train` and `scaling sweep` refuse a run whose estimated time exceeds MAX_RUN_DAYS
unless given --yes (tokens: 1e30 is a typo, not a plan). The throughput is --flops-per-s when
given, else CPU_FLOPS_PER_S for runs on this machine's CPU and, for runs on an accelerator or
elsewhere, ACCELERATOR_FLOPS_PER_S, an optimistic figure: only runs absurd on any device are
refused without being told the device.
"""

from __future__ import annotations

import math
import time

import pandas as pd

from experiments import store
from experiments.sweep import Sweep
from scaling import memory
from scaling.config import ConfigError, RunConfig
from scaling.flops import flops_per_token, param_counts
from scaling.schedules import decay_start

CPU_FLOPS_PER_S = 35e9
# Half the dense bf16 peak of an H100 (989 TFLOP/s), above what training sustains on one device.
ACCELERATOR_FLOPS_PER_S = 5e14
MAX_RUN_DAYS = 30
STALE_S = 300.0  # shown as stale: no heartbeat for this long (runner.Launch.stale_after)


def memory_bytes(cfg: RunConfig) -> float:
    return memory.plan(cfg, {"data": 1, "fsdp": 1, "tensor": 1}).total


def steps_trained(cfg: RunConfig) -> int:
    """Steps a run trains itself: a cooldown branch starts at its parent's decay start."""
    return cfg.steps - (decay_start(cfg.train, cfg.steps) if cfg.train.init_from else 0)


def flops_spent(cfg: RunConfig) -> float:
    """Detailed FLOPs of the steps a run trains itself."""
    per_step = cfg.train.batch_size * cfg.model.seq_len
    return flops_per_token(cfg.model).detailed * steps_trained(cfg) * per_step


def assumed_flops_per_s(here: bool) -> float:
    """Sustained FLOP/s of one device when none is given (see the module docstring); `here`:
    the runs train in this process, whose backend says whether that is a CPU."""
    if here:
        import jax

        if jax.default_backend() == "cpu":
            return CPU_FLOPS_PER_S
    return ACCELERATOR_FLOPS_PER_S


def check_rate(flops_per_s: float) -> float:
    if not math.isfinite(flops_per_s) or flops_per_s <= 0:
        raise ConfigError("--flops-per-s", f"must be > 0, got {flops_per_s}", "e.g. 3e14")
    return flops_per_s


def check_duration(runs, flops_per_s: float, yes: bool = False) -> None:
    """ConfigError for the first (name, config) whose estimated time on one device at
    flops_per_s exceeds MAX_RUN_DAYS, unless `yes`."""
    check_rate(flops_per_s)
    for name, cfg in runs:
        days = flops_spent(cfg) / flops_per_s / 86400
        if days > MAX_RUN_DAYS and not yes:
            raise ConfigError(
                f"run {name}: train.tokens",
                f"{cfg.train.tokens:.3g} tokens take an estimated {days:.3g} days on one device "
                f"at {flops_per_s:.3g} FLOP/s (more than {MAX_RUN_DAYS})",
                "lower train.tokens or the model size, give your device's --flops-per-s, "
                "or pass --yes to launch it anyway",
            )


def plan_table(sweep: Sweep, flops_per_s: float = CPU_FLOPS_PER_S) -> pd.DataFrame:
    check_rate(flops_per_s)
    rows = []
    for spec in sweep.runs:
        cfg = spec.config
        per_token = flops_per_token(cfg.model).detailed
        flops = flops_spent(cfg)
        rows.append(
            {
                "run": spec.name,
                "run_id": spec.run_id,
                "role": spec.design.get("role", ""),
                "params": param_counts(cfg.model).non_embedding,
                "tokens": cfg.tokens_trained,
                "steps": cfg.steps,
                "flops": per_token * cfg.tokens_trained,
                "flops_spent": flops,
                "memory_gb": memory_bytes(cfg) / 1e9,
                "time_s": flops / flops_per_s,
            }
        )
    return pd.DataFrame(rows)


def format_plan(sweep: Sweep, table: pd.DataFrame) -> str:
    shown = table.assign(
        params=table.params.map("{:,}".format),
        tokens=table.tokens.map("{:,}".format),
        flops=table.flops.map("{:.2e}".format),
        flops_spent=table.flops_spent.map("{:.2e}".format),
        memory_gb=table.memory_gb.map("{:.3f}".format),
        time_s=table.time_s.map("{:.1f}".format),
    )
    lines = [
        f"sweep {sweep.name}: {len(table)} runs",
        shown.to_string(index=False),
        f"total: {table.flops_spent.sum():.3e} FLOPs, {table.time_s.sum() / 3600:.2f} h on one "
        f"device, peak memory {table.memory_gb.max():.3f} GB per run",
    ]
    runs = table[table.role != "stable"]
    if (table.role == "branch").any():
        saved = 1 - table.flops_spent.sum() / runs.flops.sum()
        lines.append(
            f"cooldown branching: {table.flops_spent.sum():.3e} FLOPs instead of "
            f"{runs.flops.sum():.3e} for separate runs ({saved:.0%} saved)"
        )
    return "\n".join(lines)


def status_table(sweep_dir, names: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run: state, step, loss, tokens/s, ETA, attempts, worker, error. `names`
    (run id → name) adds the runs of a sweep file that have not started."""
    dirs = {store.run_id_of(d): d for d in store.run_dirs(sweep_dir)}
    rows, now = [], time.time()
    for rid in dict.fromkeys([*(names or {}), *dirs]):
        url = dirs.get(rid)
        status = store.status(url) if url else {"state": store.PENDING}
        owner = (store.owner(url) if url else None) or {}
        state, steps = status["state"], status.get("steps") or owner.get("steps")
        step = steps if state == store.DONE else owner.get("step", 0)
        eta = ""
        if state == store.RUNNING and owner and store.owner_dead(owner, STALE_S, now):
            state = "stale"  # its worker is gone: the next launch reclaims it
        elif state == store.RUNNING and owner.get("tokens_per_s") and steps:
            cfg = store.read_json(store.join(url, store.CONFIG))
            per_step = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
            eta = f"{(steps - step) * per_step / owner['tokens_per_s']:.0f}s"
        loss = status.get("heldout_loss", owner.get("heldout_loss", owner.get("train_loss")))
        rows.append(
            {
                "run": (names or {}).get(rid, ""),
                "run_id": rid,
                "state": state,
                "step": f"{step}/{steps}" if steps else "",
                "loss": f"{loss:.4f}" if loss is not None else "",
                "tok/s": f"{owner['tokens_per_s']:.0f}" if owner.get("tokens_per_s") else "",
                "eta": eta,
                "attempts": len(store.attempts(url)) if url else 0,
                "error": (status.get("error") or "")[:60],
            }
        )
    return pd.DataFrame(rows)
