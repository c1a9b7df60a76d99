"""How the parameters and the optimizer state of a run are split over a mesh, and the jitted train
and eval steps that keep them so (their batches placed by `scaling.mesh.batch_sharding`).

Each parameter's PartitionSpec comes from its logical axis names (`scaling.model.logical_axes`)
through the rule table of `scaling.mesh`. A dimension that the mesh axes do not divide (tiny
models: d_model=32 on fsdp=64) is replicated instead, and `layout_notes` says so. The layout
never changes the numbers: every mesh gives the losses of one device (to float rounding).
Multi-host start-up and cross-process arrays are in `scaling.distributed`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling import model
from scaling.config import ModelConfig
from scaling.mesh import (
    RULES,
    Rules,
    activation_layout,
    axis_sizes,
    batch_sharding,
    fit_spec,
    logical_sharding,
    logical_to_mesh,
)

# ---------------------------------------------------------------------------------------------
# Parameters and optimizer state


def _is_spec(x) -> bool:
    return isinstance(x, P)


@functools.cache
def param_shapes(cfg: ModelConfig):
    """ShapeDtypeStructs of the parameters (traced once per model shape, nothing computed)."""
    return jax.eval_shape(functools.partial(model.init_params, cfg, 0))


@functools.cache
def _logical_axes(cfg: ModelConfig):
    return model.logical_axes(cfg)


def _param_layout(cfg: ModelConfig, sizes: Mapping[str, int], rules: Rules):
    """(tree of fitted PartitionSpecs, notes on replicated dimensions)."""
    shapes = param_shapes(cfg)
    named, treedef = jax.tree_util.tree_flatten_with_path(_logical_axes(cfg), _is_spec)
    specs, notes = [], []
    for (path, names), leaf in zip(named, jax.tree.leaves(shapes)):
        spec, why = fit_spec(
            logical_to_mesh(names, rules), leaf.shape, sizes, jax.tree_util.keystr(path)
        )
        specs.append(spec)
        notes += why
    return jax.tree.unflatten(treedef, specs), notes


def param_specs(
    cfg: ModelConfig, mesh_or_sizes: Mesh | Mapping[str, int], rules: Rules = RULES
) -> dict:
    """The mesh PartitionSpec of every parameter (no devices needed: used by memory planning)."""
    return _param_layout(cfg, axis_sizes(mesh_or_sizes), rules)[0]


def layout_notes(
    cfg: ModelConfig, mesh_or_sizes: Mesh | Mapping[str, int], rules: Rules = RULES
) -> list[str]:
    """One line per parameter dimension replicated because the mesh does not divide it."""
    return _param_layout(cfg, axis_sizes(mesh_or_sizes), rules)[1]


def param_shardings(cfg: ModelConfig, mesh: Mesh, rules: Rules = RULES) -> dict:
    """NamedSharding of every parameter, from the model's logical axis names and `rules`."""
    return jax.tree.map(
        lambda spec: NamedSharding(mesh, spec), param_specs(cfg, mesh, rules), is_leaf=_is_spec
    )


def state_shardings(state_shape, param_shardings: dict):
    """Shardings of a train state {params, opt_state}: every subtree shaped like the parameters
    (the params, Adam's mu and nu) follows the parameters; everything else (step counts) is
    replicated."""
    params_def = jax.tree.structure(param_shardings)
    mesh = jax.tree.leaves(param_shardings)[0].mesh
    replicated = NamedSharding(mesh, P())
    like_params = lambda node: jax.tree.structure(node) == params_def
    return jax.tree.map(
        lambda node: param_shardings if like_params(node) else replicated,
        state_shape,
        is_leaf=like_params,
    )


def with_shardings(shapes, shardings):
    """ShapeDtypeStructs carrying target shardings: orbax restores straight onto that layout
    (any mesh, whatever mesh the checkpoint was saved from)."""
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )


# ---------------------------------------------------------------------------------------------
# Sharded steps


def jit_sharded(
    fn: Callable, mesh: Mesh, in_shardings, out_shardings, rules: Rules = RULES, **jit_kwargs
) -> Callable:
    """jax.jit of `fn` whose outputs keep the given shardings (so a donated state comes back in
    its own layout), traced under `activation_layout(mesh, rules)` so that the model's
    `constrain` calls take effect. `fn` is the plain Python function (a jitted function's
    `__wrapped__`); jit_kwargs are static_argnames, donate_argnums, ..."""

    @functools.wraps(fn)  # keeps the signature: static_argnames map to positions
    def traced(*args, **kwargs):
        with activation_layout(mesh, rules):
            return fn(*args, **kwargs)

    return jax.jit(traced, in_shardings=in_shardings, out_shardings=out_shardings, **jit_kwargs)


def shard_train_step(train_step: Callable, mesh: Mesh, state_sh, rules: Rules = RULES):
    """scaling.train.train_step(state, batch, lr, cfg, opt) on `mesh`: the state keeps
    `state_sh` and is donated, the batch is split by `batch_sharding`, lr and the metrics are
    replicated."""
    replicated = NamedSharding(mesh, P())
    return jit_sharded(
        getattr(train_step, "__wrapped__", train_step),
        mesh,
        in_shardings=(state_sh, batch_sharding(mesh, rules), replicated),
        out_shardings=(state_sh, replicated),
        rules=rules,
        static_argnames=("cfg", "opt"),
        donate_argnums=(0,),
    )


def shard_eval_loss(eval_loss: Callable, mesh: Mesh, params_sh, rules: Rules = RULES):
    """scaling.train.eval_loss(params, batches, cfg) on `mesh`: batches (n, batch, seq_len+1)
    split like training batches, the loss replicated."""
    return jit_sharded(
        getattr(eval_loss, "__wrapped__", eval_loss),
        mesh,
        in_shardings=(params_sh, logical_sharding(mesh, (None, "batch", "length"), rules)),
        out_shardings=NamedSharding(mesh, P()),
        rules=rules,
        static_argnames=("cfg",),
    )


def init_sharded(init_fn: Callable[[], dict], shardings):
    """Run `init_fn` (e.g. lambda: initial_state(cfg)) so that every device creates only its own
    shards: the full state never has to fit on one device. jax's partitionable threefry gives
    the same values on every layout, those of jax.jit(init_fn)() on one device (an eager,
    unjitted init can differ from them in the last bit of a weight)."""
    return jax.jit(init_fn, out_shardings=shardings)()
