"""Fine-tunes of finished runs, one (`scaling finetune`) or a design of them (a sweep file's
`finetune:` section):

    name: zoo-ft
    finetune:
      parents: runs/zoo              # a sweep directory (its finished runs), or a list of run
                                     # directories, or of runs/<sweep>/<run id>
      step: 0                        # the parents' checkpoint (default, or 0: the final one)
      task: largest_of_4             # built-in, path/to/task.json, or pairs.jsonl
      examples: [16, 32, 64, 128]    # a list is an axis; every FinetuneConfig field may be one
      seed: [0, 1]
      init: [pretrained, scratch]    # scratch: the same architecture from a random init

Every parent × point of the axes is one run, in the sweep's own directory; the parents'
checkpoints are only read. The fields are those of scaling.finetune_config.FinetuneConfig
(parent, parent_step and parent_tokens come from the parent).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
from pathlib import Path

from experiments import store
from scaling.config import ConfigError, RunConfig, build, run_config
from scaling.finetune import finetune_run_config
from scaling.finetune_config import SCRATCH, FinetuneConfig
from scaling.finetune_data import source, split
from scaling.train import saved_steps

FROM_PARENT = ("parent", "parent_step", "parent_tokens")
FIELDS = tuple(f.name for f in dataclasses.fields(FinetuneConfig) if f.name not in FROM_PARENT)
KEYS = ("parents", "step", *FIELDS)
ROLE = "finetune"
SHORT = {"examples": "k", "epochs": "e", "learning_rate_mult": "lr", "seed": "s"}


@dataclasses.dataclass(frozen=True)
class Parent:
    dir: str  # absolute path of the run directory
    run_id: str
    config: RunConfig


def find_parent(path: str, where: str) -> Parent:
    """The finished run in directory `path` (or `runs/<sweep>/<run id>`, whatever its label)."""
    run_dir = Path(path)
    if not (run_dir / store.CONFIG).exists() and store.RUN_ID.fullmatch(run_dir.name):
        run_dir = Path(store.locate(str(run_dir.parent), run_dir.name))
    if not (run_dir / store.CONFIG).exists():
        raise ConfigError(
            where,
            f"no run at {path} (no config.json there)",
            "give a run directory runs/<sweep>/<label>-<run id>, or runs/<sweep>/<run id>",
        )
    state = store.status(str(run_dir))["state"]
    if state != store.DONE:
        raise ConfigError(
            where,
            f"run {run_dir} is {state}, not finished",
            "finish it first (launch its sweep again), or fine-tune a finished run",
        )
    cfg = run_config(store.read_json(store.join(str(run_dir), store.CONFIG)))
    if cfg.finetune.task:
        raise ConfigError(where, f"run {run_dir} is itself a fine-tune", "give a pretrained run")
    return Parent(str(run_dir.resolve()), store.run_id_of(str(run_dir)), cfg)


def _parents(given, where: str) -> list[Parent]:
    """A sweep directory's finished runs (cooldown stable runs aside: their branches are the
    runs), or each of a list of run directories."""
    if isinstance(given, str) and Path(given).is_dir() and store.run_dirs(given):
        dirs = [
            d
            for d in store.run_dirs(given)
            if store.read_json(store.join(d, store.DESIGN), {}).get("role") != "stable"
        ]
        return [find_parent(d, f"{where} ({d})") for d in dirs]
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list) or not given or not all(isinstance(p, str) for p in given):
        raise ConfigError(
            where,
            f"expected a sweep directory or a list of run directories, got {given!r}",
            "write e.g. `parents: runs/zoo`",
        )
    return [find_parent(p, f"{where}[{i}]") for i, p in enumerate(given)]


@functools.lru_cache(maxsize=256)
def _saved(run_dir: str) -> list[int]:
    """A finished run's checkpoint steps (they no longer change), read once per process."""
    return saved_steps(Path(run_dir))


def parent_step(parent: Parent, step: int, where: str) -> int:
    """The checkpoint step to fine-tune: `step`, or the parent's last (0); it must be saved."""
    step = step or parent.config.steps
    saved = _saved(parent.dir)
    if step not in saved:
        raise ConfigError(
            where,
            f"{parent.dir} has no checkpoint at step {step}",
            f"choose one of its checkpoints {saved}",
        )
    return step


def label(parent: Parent, ft: FinetuneConfig) -> str:
    """`s1-1e+05-largest_of_4-k64-e3-lr0.3-s0` (and `-scratch`): the parent's name, the task
    and the fine-tune's main settings."""
    name = parent.config.name or parent.run_id
    settings = "-".join(f"{short}{getattr(ft, f):g}" for f, short in SHORT.items())
    scratch = "-scratch" if ft.init == SCRATCH else ""
    return f"{name}-{source(ft.task).name}-{settings}{scratch}"


def one(parent: Parent, ft: FinetuneConfig, step: int, where: str):
    """(name, run config, design) of fine-tuning `parent` with ft; ConfigError naming `where`
    when the task, its items or a field is wrong."""
    step = 0 if ft.init == SCRATCH else parent_step(parent, step, f"{where}.step")
    try:
        cfg = finetune_run_config(parent.config, parent.run_id, step, ft)
        split(cfg.finetune)  # the task exists and has enough training items
    except ConfigError as e:
        raise e.within(where) from None
    name = label(parent, cfg.finetune)
    design = {"role": ROLE, "parent_dir": parent.dir, "parent_run_id": parent.run_id}
    return name, dataclasses.replace(cfg, name=name), design


def expand(section, where: str = "sweep.finetune") -> list[tuple[str, RunConfig, dict]]:
    """The runs of a `finetune:` section (module docstring): every parent × axis point."""
    if not isinstance(section, dict):
        raise ConfigError(where, "expected a mapping", "give parents, task and examples")
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], KEYS, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"use only {list(KEYS)}"
        raise ConfigError(f"{where}.{unknown[0]}", "unknown key", fix)
    for key in ("parents", "task", "examples"):
        if key not in section:
            raise ConfigError(f"{where}.{key}", "missing", "give parents, task and examples")
    step = section.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ConfigError(f"{where}.step", f"{step!r} is not a step", "give a step >= 0")
    axes = []
    for key in (k for k in FIELDS if k in section):
        values = section[key] if isinstance(section[key], list) else [section[key]]
        if not values:
            raise ConfigError(f"{where}.{key}", "an empty list", "give it at least one value")
        axes.append([(key, v) for v in values])
    parents = _parents(section["parents"], f"{where}.parents")  # after the cheap checks
    runs = []
    for parent, point in itertools.product(parents, itertools.product(*axes)):
        ft = build(FinetuneConfig, dict(point), where)
        runs.append(one(parent, ft, step, where))
    return runs
