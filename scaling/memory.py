"""Per-device memory of a run on a mesh, estimated before anything compiles, and the check that
it fits the declared device memory (`mesh.device_memory_gb`) with a layout that would.

Parameters are float32 (they are also the master copy when activations are bfloat16), and so
are their gradients and AdamW's two moments: 16 bytes per parameter, each array split as
`scaling.sharding` lays it out. With fsdp > 1, XLA all-gathers one block's weights (and
reduce-scatters its gradients) at a time: that block is counted once more, whole over fsdp.

Activations kept for the backward pass follow Korthikanti et al. 2022, "Reducing Activation
Recomputation in Large Transformer Models" (arXiv:2205.05198), Sec. 4: per layer
s·b·h·(34 + 5·a·s/h) bytes at 16 bits without parallelism, and s·b·h·(10 + 24/t + 5·a·s/(h·t))
with t-way tensor parallelism (no sequence parallelism), for sequence length s, micro-batch b,
width h, a heads and d_ff = 4h. Each model family writes its layer out as terms (bytes per
token, the logical activation axis that splits them: `activation_terms` in scaling.families);
a term is divided by the ways the rule table splits its axis. gpt2's is Korthikanti's own,
for any d_ff (f): the 24·h is 8·h + 4·f. That count includes dropout masks, which the models
do not have, and the a·s² attention scores, which cuDNN's flash attention on GPU does not keep,
so it is an upper bound here. float32 activations double it. b is the batch per data-parallel
group (batch / (data·fsdp)). The embedding's output adds 2·s·b·h, and the logits and their
float32 softmax 8·s·b·v/t bytes (Korthikanti's output-layer term, in float32).

A device's memory is `mesh.device_memory_gb` when set, else what the backend reports (GPU, TPU);
CPU devices share the host's RAM (or the container's limit), so a run too large for the machine
is refused before it compiles instead of being killed by the kernel, again on every retry.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh

from scaling.config import ConfigError, ModelConfig, RunConfig
from scaling.families import get_family
from scaling.mesh import RULES, Rules, axis_sizes, check_batch, divisors, logical_to_mesh, make_mesh
from scaling.sharding import param_shapes, param_specs

GB = 1e9  # device_memory_gb is in decimal GB: below the GiB vendors quote, so a safe side
HEADROOM = 0.9  # share of device memory a plan may use: XLA's workspace, fragmentation


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device, by what holds them."""

    params: int
    grads: int
    optimizer: int
    gathered: int  # one block's weights and gradients, whole over fsdp, while in use
    activations: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.gathered + self.activations


def _split(length: int, axes, sizes: Mapping[str, int]) -> int:
    """How many ways `length` is split over mesh `axes` (1 where the mesh does not divide it)."""
    ways = math.prod(sizes[a] for a in (() if axes is None else np.atleast_1d(axes)))
    return ways if length % ways == 0 else 1


def _param_bytes(cfg: ModelConfig, sizes: Mapping[str, int], rules: Rules) -> tuple[int, int]:
    """(float32 bytes of one device's parameter shards, bytes of one block gathered over fsdp)."""
    shapes = param_shapes(cfg)
    specs = param_specs(cfg, sizes, rules)
    per_device = 0
    for leaf, spec in zip(jax.tree.leaves(shapes), jax.tree.leaves(specs, is_leaf=_is_spec)):
        ways = math.prod(_split(n, axes, sizes) for n, axes in zip(leaf.shape, spec))
        per_device += 4 * math.prod(leaf.shape) // ways
    block = sum(4 * math.prod(x.shape) for x in jax.tree.leaves(shapes["block_0"]))
    gathered = 2 * block // _split(cfg.n_head, "tensor", sizes)
    return per_device, gathered if sizes["fsdp"] > 1 else 0


def _is_spec(x) -> bool:
    return isinstance(x, jax.sharding.PartitionSpec)


def activation_bytes(
    cfg: RunConfig, sizes: Mapping[str, int], rules: Rules = RULES, batch: int | None = None
) -> int:
    """Activations kept for the backward pass, per device (Korthikanti et al. 2022, eq. 2)."""
    m = cfg.model
    s, h, v = m.seq_len, m.d_model, m.vocab_size
    batch = cfg.train.batch_size if batch is None else batch
    b = batch / _split(batch, logical_to_mesh(("batch",), rules)[0], sizes)
    ways = lambda axis, length: _split(length, logical_to_mesh((axis,), rules)[0], sizes)
    terms = get_family(m.family).activation_terms(m)
    per_layer = s * b * sum(bytes_ / ways(axis, length) for bytes_, axis, length in terms)
    scale = 2 if m.dtype == "float32" else 1  # the terms count 16-bit elements
    logits = 8 * s * b * v / ways("act_vocab", v)
    return int(scale * (m.n_layer * per_layer + 2 * s * b * h) + logits)


def plan(cfg: RunConfig, mesh_or_sizes: Mesh | Mapping[str, int], rules: Rules = RULES):
    """The MemoryPlan of `cfg` on a mesh (or on {axis: size}, without devices)."""
    sizes = axis_sizes(mesh_or_sizes)
    params, gathered = _param_bytes(cfg.model, sizes, rules)
    return MemoryPlan(
        params=params,
        grads=params,
        optimizer=2 * params,
        gathered=gathered,
        activations=activation_bytes(cfg, sizes, rules),
    )


def memory_report(
    cfg: RunConfig,
    mesh_or_sizes: Mesh | Mapping[str, int],
    device_memory_bytes: float | None = None,
    rules: Rules = RULES,
) -> dict:
    """The plan as a small table for printing: mesh, GB per device by kind, total, capacity."""
    sizes = axis_sizes(mesh_or_sizes)
    p = plan(cfg, sizes, rules)
    row = {"mesh": " × ".join(f"{k}={v}" for k, v in sizes.items())}
    for name in ("params", "grads", "optimizer", "gathered", "activations", "total"):
        row[f"{name}_gb"] = round(getattr(p, name) / GB, 3)
    capacity = device_memory(cfg) if device_memory_bytes is None else device_memory_bytes
    if capacity:
        row["device_gb"] = round(capacity / GB, 3)
        row["fits"] = p.total <= HEADROOM * capacity
    return row


def device_memory(cfg: RunConfig, device=None) -> float | None:
    """Bytes a device offers: mesh.device_memory_gb when set, else what the backend reports
    (GPU and TPU do), else, for a CPU device, its share of the host's memory; else None (an
    unknown backend: nothing is checked)."""
    if cfg.mesh.device_memory_gb:
        return cfg.mesh.device_memory_gb * GB
    device = device or jax.local_devices()[0]  # a device of ours
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"]
    if device.platform == "cpu":  # the CPU devices of a process share its RAM
        return host_memory() / len(jax.local_devices(backend="cpu"))
    return None


CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def host_memory() -> int:
    """Bytes of RAM this process can have: the machine's, or its container's limit if lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit in CGROUP_LIMITS:
        try:
            text = Path(limit).read_text().strip()  # "max" (cgroup v2), or a huge number
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def fitting_mesh(cfg: RunConfig, devices=None) -> Mesh:
    """The run's mesh over `devices` (default: all devices of the job), refusing before
    anything compiles a batch that does not split over it and a state that does not fit the
    devices' memory (ConfigError naming the field and a layout or batch that fits)."""
    mesh = make_mesh(cfg.mesh, devices)
    check_batch(cfg, mesh)
    check_fits(cfg, mesh)
    return mesh


def _layouts(n_devices: int, cfg: RunConfig):
    """Every data × fsdp × tensor of n_devices that keeps the batch whole and splits heads,
    most communication-friendly first: less tensor, then less fsdp (more plain data)."""
    shapes = []
    for t, f in itertools.product(divisors(n_devices), repeat=2):
        if n_devices % (t * f) or cfg.model.n_head % t:
            continue
        d = n_devices // (t * f)
        if cfg.train.batch_size % (d * f) == 0:
            shapes.append({"data": d, "fsdp": f, "tensor": t})
    return sorted(shapes, key=lambda s: (s["tensor"], s["fsdp"]))


def _gb(n: float) -> str:
    return f"{n / GB:.2f} GB"


def check_fits(
    cfg: RunConfig,
    mesh_or_sizes: Mesh | Mapping[str, int],
    device_memory_bytes: float | None = None,
    rules: Rules = RULES,
) -> MemoryPlan:
    """The plan, or ConfigError when it needs more than HEADROOM of a device's memory, naming
    a mesh of the same devices that fits, else the largest batch that does.

    device_memory_bytes defaults to `device_memory(cfg)`; with none known nothing is checked.
    """
    sizes = axis_sizes(mesh_or_sizes)
    p = plan(cfg, sizes, rules)
    capacity = device_memory(cfg) if device_memory_bytes is None else device_memory_bytes
    if not capacity or p.total <= HEADROOM * capacity:
        return p
    budget = HEADROOM * capacity
    problem = (
        f"needs {_gb(p.total)} per device (params {_gb(p.params)}, grads {_gb(p.grads)}, "
        f"Adam {_gb(p.optimizer)}, fsdp gather {_gb(p.gathered)}, activations "
        f"{_gb(p.activations)}) but {HEADROOM:.0%} of {_gb(capacity)} is {_gb(budget)}"
    )
    slices = cfg.mesh.slices
    n_devices = math.prod(sizes.values())
    layouts = _layouts(n_devices // slices, cfg)
    for shape in layouts:
        candidate = dict(shape, data=shape["data"] * slices)
        if candidate != sizes and plan(cfg, candidate, rules).total <= budget:
            raise ConfigError(
                "mesh", problem, f"shard more: {_mesh_fields(candidate, slices)} fits"
            )
    # No layout fits this batch: the largest batch any layout fits, this mesh first on ties.
    options = [sizes] + [dict(x, data=x["data"] * slices) for x in layouts]
    best = max(options, key=lambda shape: _largest_batch(cfg, shape, budget, rules))
    batch = _largest_batch(cfg, best, budget, rules)
    if batch:
        mesh = "" if best == sizes else f" with {_mesh_fields(best, slices)}"
        raise ConfigError(
            "train.batch_size",
            problem,
            f"lower train.batch_size to {batch}{mesh} (and more steps for the same tokens)",
        )
    raise ConfigError(
        "mesh", problem, f"the model does not fit on {n_devices} such devices: add devices"
    )


def _mesh_fields(sizes: Mapping[str, int], slices: int) -> str:
    """The MeshConfig fields of a layout (whose data axis spans all slices)."""
    fields = dict(sizes, data=sizes["data"] // slices)
    return ", ".join(f"mesh.{k}={v}" for k, v in fields.items())


def _largest_batch(cfg: RunConfig, sizes: Mapping[str, int], budget: float, rules: Rules):
    """The largest multiple of data·fsdp below the configured batch that fits, or 0."""
    step = sizes["data"] * sizes["fsdp"]
    params = plan(cfg, sizes, rules)
    fixed = params.total - params.activations
    for batch in range(cfg.train.batch_size - step, 0, -step):
        if fixed + activation_bytes(cfg, sizes, rules, batch) <= budget:
            return batch
    return 0
