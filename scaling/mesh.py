"""The device mesh, the table from logical axis names to mesh axes, the shardings it gives batches
and other named arrays, and `constrain`, by which the model pins its activations to the table.

Parallelism is one table (`RULES`) from the logical axis names the model families give their
parameters (`scaling.model.logical_axes`) and activations to the mesh axes `data`, `fsdp` and
`tensor`, in the style of MaxText and Levanter. Data parallelism splits the batch over `data`; FSDP
(ZeRO-3) additionally splits the batch over `fsdp` and stores each parameter and its Adam
moments split over `fsdp` (along `embed`, the embedding along `vocab`), all-gathered by XLA
where used; tensor parallelism (Megatron) splits heads, the MLP's hidden units and the
vocabulary over `tensor`. The model code never names a mesh axis: it names the logical axes
of its activations with `constrain`, which only a sharded step (`scaling.sharding`) turns into
constraints.

This module needs neither the model nor any device, so the model can import `constrain` and
memory planning can use the table; `scaling.sharding` applies it to the model's parameters.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.config import ConfigError, MeshConfig, RunConfig

MESH_AXES = ("data", "fsdp", "tensor")

MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]

RULES: Rules = (
    # Parameters. The embedding is tied: splitting its vocab rows over `tensor` makes the
    # output projection vocab-parallel (Megatron), so the (batch, length, vocab) logits, the
    # largest activation of a small model, are split too. Its FSDP split is over rows as well,
    # not over `embed`: with embed on fsdp, XLA could not move the lookup's output from
    # embed-split to batch-split without an "involuntary full rematerialization" (a full copy
    # per device; measured on data=2 × fsdp=2 × tensor=2), and a row split saves the same.
    ("vocab", ("tensor", "fsdp")),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),  # grouped-query attention's key/value heads (llama, moe)
    ("kv", None),
    ("mlp", "tensor"),
    ("seq", None),
    # The experts of a routed MLP (moe), stored split over fsdp like any weight, gathered per
    # block where used (ZeRO-3); their units split over tensor by `mlp`. Expert parallelism
    # proper, tokens sent by all-to-all to the devices that hold their experts, would need an
    # axis of its own and a sparse dispatch (scaling.families.moe).
    ("expert", "fsdp"),
    # Activations (the names the model passes to `constrain`).
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
)


# ---------------------------------------------------------------------------------------------
# Mesh


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def mesh_shape(mesh_cfg: MeshConfig, n_devices: int) -> dict[str, int]:
    """Sizes of the mesh axes for `n_devices`, with the one -1 axis resolved.

    `data`, `fsdp` and `tensor` are sizes within one slice; with `slices` > 1 the mesh's data
    axis is slices·data, slice-major, so that only data-parallel gradient reductions cross the
    slow links between slices (DCN) and FSDP/tensor collectives stay inside a slice (ICI).
    """
    mesh_cfg.validate()
    if n_devices % mesh_cfg.slices:
        raise ConfigError(
            "mesh.slices",
            f"{n_devices} devices do not split into {mesh_cfg.slices} equal slices",
            f"use one of {divisors(n_devices)}",
        )
    per_slice = n_devices // mesh_cfg.slices
    sizes = {name: getattr(mesh_cfg, name) for name in MESH_AXES}
    for name, size in sizes.items():
        if size != -1 and per_slice % size:
            raise ConfigError(
                f"mesh.{name}",
                f"{size} does not divide the {per_slice} devices of a slice",
                f"use one of {divisors(per_slice)}",
            )
    known = math.prod(size for size in sizes.values() if size != -1)
    free = [name for name, size in sizes.items() if size == -1]
    if free and per_slice % known == 0:
        sizes[free[0]] = per_slice // known
    if math.prod(sizes.values()) != per_slice or min(sizes.values()) < 1:
        explicit = " × ".join(f"{n}={sizes[n]}" for n in MESH_AXES if sizes[n] != -1)
        raise ConfigError(
            "mesh",
            f"{explicit} does not match the {per_slice} devices of a slice",
            "make data·fsdp·tensor equal the device count, or set one axis to -1",
        )
    sizes["data"] *= mesh_cfg.slices
    return sizes


def make_mesh(mesh_cfg: MeshConfig, devices: Sequence | None = None) -> Mesh:
    """The ('data', 'fsdp', 'tensor') mesh over `devices` (default: all devices of the job).

    Axes are Auto (GSPMD propagation from the in/out shardings and constraints), not jax's
    newer explicit sharding-in-types mode, which would require every op to agree on shardings.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    slices = mesh_cfg.slices
    if slices > 1 and hasattr(devices[0], "slice_index"):  # TPU multi-slice
        per_slice = (shape["data"] // slices, shape["fsdp"], shape["tensor"])
        array = mesh_utils.create_hybrid_device_mesh(per_slice, (slices, 1, 1), devices)
    elif slices > 1:  # e.g. GPU nodes: a process's (node's) devices form one slice
        ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
        array = np.asarray(ordered).reshape(tuple(shape.values()))
    else:  # topology-aware on TPU, a plain reshape elsewhere
        array = mesh_utils.create_device_mesh(tuple(shape.values()), devices)
    return Mesh(array, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def axis_sizes(mesh_or_sizes: Mesh | Mapping[str, int]) -> dict[str, int]:
    """{axis: size} of a Mesh, or a plain mapping (to plan a layout without the devices)."""
    sizes = dict(mesh_or_sizes.shape if isinstance(mesh_or_sizes, Mesh) else mesh_or_sizes)
    return {name: sizes.get(name, 1) for name in MESH_AXES}


# ---------------------------------------------------------------------------------------------
# Logical axis names → mesh axes


def _mesh_axes_tuple(axes: MeshAxes) -> tuple[str, ...]:
    return () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)


def logical_to_mesh(spec: Sequence[str | None], rules: Rules = RULES) -> P:
    """PartitionSpec over mesh axes for a spec of logical names, by the first rule of each name.

    A mesh axis is used at most once per array: a later dimension whose rule names an axis
    already taken is replicated (as in flax.linen.logical_to_mesh_axes).
    """
    table = dict(reversed(rules))  # first rule wins
    used: set[str] = set()
    out = []
    for name in spec:
        if name is None:
            out.append(None)
            continue
        if name not in table:
            raise ValueError(f"no sharding rule for logical axis {name!r}; add one to the rules")
        axes = tuple(a for a in _mesh_axes_tuple(table[name]) if a not in used)
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return P(*out)


def fit_spec(
    spec: P, shape: Sequence[int], sizes: Mapping[str, int], what: str = "array"
) -> tuple[P, list[str]]:
    """`spec` with every dimension split only as far as its length allows.

    For each dimension keep the longest prefix of its mesh axes whose sizes multiply to a
    divisor of the length; a note names each dimension that lost an axis (replicated there).
    """
    fitted, notes = [], []
    for dim, (length, axes) in enumerate(zip(shape, tuple(spec) + (None,) * len(shape))):
        wanted = _mesh_axes_tuple(axes)
        kept = list(wanted)
        while kept and length % math.prod(sizes[a] for a in kept):
            kept.pop()
        if len(kept) < len(wanted):
            dropped = "×".join(f"{a}={sizes[a]}" for a in wanted[len(kept) :])
            notes.append(f"{what} dim {dim} (length {length}) not split over {dropped}")
        fitted.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return P(*fitted), notes


def logical_sharding(mesh: Mesh, names: Sequence[str | None], rules: Rules = RULES):
    """NamedSharding of an array whose axes have these logical names (no divisibility fit)."""
    return NamedSharding(mesh, logical_to_mesh(names, rules))


def batch_sharding(mesh: Mesh, rules: Rules = RULES) -> NamedSharding:
    """A (batch, seq_len+1) token batch: rows split over the batch axes, windows whole."""
    return logical_sharding(mesh, ("batch", "length"), rules)


def batch_ways(mesh_or_sizes: Mesh | Mapping[str, int], rules: Rules = RULES) -> int:
    """Into how many parts a batch splits: the product of the mesh axes of `batch`."""
    sizes = axis_sizes(mesh_or_sizes)
    return math.prod(sizes[a] for a in _mesh_axes_tuple(logical_to_mesh(("batch",), rules)[0]))


def check_batch(
    cfg: RunConfig, mesh_or_sizes: Mesh | Mapping[str, int], rules: Rules = RULES
) -> None:
    """The batch must split evenly over its mesh axes (else every device would hold it all)."""
    ways = batch_ways(mesh_or_sizes, rules)
    if cfg.train.batch_size % ways:
        raise ConfigError(
            "train.batch_size",
            f"{cfg.train.batch_size} does not split over data·fsdp = {ways} devices",
            f"use a multiple of {ways}, or a mesh whose data·fsdp divides the batch",
        )


# ---------------------------------------------------------------------------------------------
# Activations


_LAYOUT: contextvars.ContextVar[tuple[Mesh, Rules] | None] = contextvars.ContextVar(
    "scaling_layout", default=None
)


@contextlib.contextmanager
def activation_layout(mesh: Mesh, rules: Rules = RULES):
    """While tracing inside this context, `constrain` places activations on `mesh`."""
    token = _LAYOUT.set((mesh, rules))
    try:
        yield
    finally:
        _LAYOUT.reset(token)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Pin activation `x` to the layout its logical axis names give, e.g.
    constrain(h, ("batch", "length", "act_mlp")); x itself outside a sharded step.

    This is what the model calls, rather than flax's nn.with_logical_constraint: flax's needs a
    global mesh in context, under which flax 0.12's DenseGeneral re-runs its boxed initializer
    for a shape check and constrains the flattened kernel with the 3-D spec (an error)."""
    layout = _LAYOUT.get()
    if layout is None:
        return x
    mesh, rules = layout
    spec, _ = fit_spec(logical_to_mesh(names, rules), x.shape, axis_sizes(mesh))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
