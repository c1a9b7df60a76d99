"""`lm_eval --model scaling --model_args path=RUN_DIR[,step=N][,data=D,fsdp=F,tensor=T]`: a
trained run as an lm-evaluation-harness model (evaluation.harness.ScalingLM over the run's
parameters and tokenizer).

The checkpoint is the run's final step unless `step` names another saved one; it is restored
onto a mesh of this host's devices, data·fsdp·tensor (default: all of them data-parallel,
scaling.mesh). lm-eval's `--batch_size` (or `batch_size` in model_args, which wins) sets the rows
per forward pass; `max_gen_toks` the default generation budget. lm-eval finds the name
`scaling` through experiments.lm_eval_plugin.
"""

from __future__ import annotations

from pathlib import Path

import jax

from evaluation.harness import DEFAULT_BATCH, ScalingLM, register_model, simple_parse_args_string
from experiments import store
from scaling.config import ConfigError, MeshConfig, RunConfig, run_config
from scaling.flops import param_counts
from scaling.mesh import make_mesh
from scaling.train import checkpoint_manager, placement, restore


def read_run(path) -> RunConfig:
    """The config of the run in directory `path` (a path or URL)."""
    raw = store.read_json(store.join(str(path), store.CONFIG))
    if raw is None:
        raise ConfigError("model_args.path", f"no {store.CONFIG} in {path}", "give a run directory")
    return run_config(raw)


def load_params(path, cfg: RunConfig, step: int | None, mesh) -> tuple[dict, int]:
    """(params, step) of the run's checkpoint at `step` (default: its final step), laid out on
    `mesh` as training lays them out."""
    manager = checkpoint_manager(Path(path), cfg.train)
    try:
        steps = sorted(manager.all_steps())
        step = cfg.steps if step is None else int(step)
        if step not in steps:
            raise ConfigError(
                "model_args.step",
                f"no checkpoint of step {step} in {path}",
                f"use one of {steps}" if steps else "train the run first",
            )
        return restore(manager, cfg, step, placement(cfg, mesh)[1])["params"], step
    finally:
        manager.close()


def model_info(path, cfg: RunConfig, step: int) -> dict:
    """What lm-eval's results JSON says about the model, as HFLM fills it in (config.*)."""
    return {
        "model_num_parameters": param_counts(cfg.model).total,
        "model_dtype": cfg.model.dtype,
        "model_revision": f"step{step}",  # Pythia's name for a checkpoint
        "model_sha": store.run_id_of(str(path)),
        "tokens_seen": step * cfg.train.batch_size * cfg.model.seq_len,
    }


@register_model("scaling")
class RunLM(ScalingLM):
    """A run directory's checkpoint as an lm-eval model (see the module docstring)."""

    def __init__(
        self,
        path: str,
        step: int | None = None,
        batch_size: int | str = DEFAULT_BATCH,
        data: int = -1,
        fsdp: int = 1,
        tensor: int = 1,
        max_gen_toks: int = 256,
        device: str | None = None,  # lm-eval's; jax places the model on the mesh
        max_batch_size: int | None = None,  # lm-eval's, for batch_size=auto
    ):
        cfg = read_run(path)
        mesh = make_mesh(MeshConfig(data=data, fsdp=fsdp, tensor=tensor), jax.local_devices())
        params, step = load_params(path, cfg, step, mesh)
        if not str(batch_size).isdigit():  # "auto", "auto:4": our default
            batch_size = max_batch_size or DEFAULT_BATCH
        super().__init__(
            params,
            cfg.model,
            cfg.data.run_tokenizer(),
            batch_size=int(batch_size),
            mesh=mesh,
            max_gen_toks=max_gen_toks,
            info=model_info(path, cfg, step),
        )

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        """model_args win over lm-eval's own flags (its --batch_size defaults to 1)."""
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**(extra | dict(arg_dict)))

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)
