"""How a run is laid out over devices: the mesh, the logical→mesh rule table, sharded steps and
multi-host start-up.

Parallelism is one table (`RULES`) from the logical axis names the model gives its parameters
(`scaling.model.logical_axes`) and activations to the mesh axes `data`, `fsdp` and `tensor`,
in the style of MaxText and Levanter. Data parallelism splits the batch over `data`; FSDP
(ZeRO-3) additionally splits the batch over `fsdp` and stores each parameter and its Adam
moments split over `fsdp` (along `embed`, the embedding along `vocab`), all-gathered by XLA
where used; tensor parallelism (Megatron) splits heads, the MLP's hidden units and the
vocabulary over `tensor`. The model code never names a mesh axis: it names the logical axes
of its activations with `constrain`, which only a sharded step turns into constraints.

A dimension that the mesh axes do not divide (tiny models: d_model=32 on fsdp=64) is
replicated instead, and `layout_notes` says so. The layout never changes the numbers: every
mesh gives the losses of one device (to float rounding).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jax
import numpy as np
from jax.experimental import mesh_utils, multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.config import ConfigError, MeshConfig, ModelConfig, RunConfig

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
    ("kv", None),
    ("mlp", "tensor"),
    ("seq", None),
    # Activations (the names the model passes to `constrain`).
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
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


def _is_spec(x) -> bool:
    return isinstance(x, P)


@functools.cache
def param_shapes(cfg: ModelConfig):
    """ShapeDtypeStructs of the parameters (traced once per model shape, nothing computed)."""
    from scaling.model import init_params  # model imports config only

    return jax.eval_shape(functools.partial(init_params, cfg, 0))


@functools.cache
def _logical_axes(cfg: ModelConfig):
    from scaling.model import logical_axes

    return logical_axes(cfg)


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


def logical_sharding(mesh: Mesh, names: Sequence[str | None], rules: Rules = RULES):
    """NamedSharding of an array whose axes have these logical names (no divisibility fit)."""
    return NamedSharding(mesh, logical_to_mesh(names, rules))


def batch_sharding(mesh: Mesh, rules: Rules = RULES) -> NamedSharding:
    """A (batch, seq_len+1) token batch: rows split over the batch axes, windows whole."""
    return logical_sharding(mesh, ("batch", "length"), rules)


def check_batch(
    cfg: RunConfig, mesh_or_sizes: Mesh | Mapping[str, int], rules: Rules = RULES
) -> None:
    """The batch must split evenly over its mesh axes (else every device would hold it all)."""
    sizes = axis_sizes(mesh_or_sizes)
    ways = math.prod(sizes[a] for a in _mesh_axes_tuple(logical_to_mesh(("batch",), rules)[0]))
    if cfg.train.batch_size % ways:
        raise ConfigError(
            "train.batch_size",
            f"{cfg.train.batch_size} does not split over data·fsdp = {ways} devices",
            f"use a multiple of {ways}, or a mesh whose data·fsdp divides the batch",
        )


def with_shardings(shapes, shardings):
    """ShapeDtypeStructs carrying target shardings: orbax restores straight onto that layout
    (any mesh, whatever mesh the checkpoint was saved from)."""
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )


# ---------------------------------------------------------------------------------------------
# Sharded steps


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


# ---------------------------------------------------------------------------------------------
# Multi-host

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
