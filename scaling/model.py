"""The model of a run, whatever its family (`model.family`, scaling.families): parameters,
logits, the auxiliary loss training adds, and cached decoding, each dispatched to the family.

Decoding reuses each layer's keys and values from a cache (`init_cache`, `decode`), so a
generated token costs one position's compute, not a pass over the whole sequence.

Every parameter is created with logical axis names (`vocab`, `embed`, `heads`, `kv`, `mlp`,
...), so that sharding is only a table mapping these names to mesh axes (scaling.mesh), never
code in the families. `logical_axes(cfg)` returns the names for the whole tree.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling.config import ModelConfig
from scaling.families import get_family
from scaling.families.layers import causal_attention, mup_ratio

__all__ = [
    "apply",
    "apply_with_aux",
    "causal_attention",
    "decode",
    "init_cache",
    "init_params",
    "logical_axes",
    "mup_ratio",
]


def _module(cfg: ModelConfig) -> nn.Module:
    return get_family(cfg.family).Model(cfg)


def _boxed_init(cfg: ModelConfig, seed: int):
    tokens = jnp.zeros((1, cfg.seq_len), jnp.int32)
    return _module(cfg).init(jax.random.PRNGKey(seed), tokens)["params"]


def init_params(cfg: ModelConfig, seed: int):
    """Plain float32 parameter tree (logical-axis boxes removed)."""
    return nn.meta.unbox(_boxed_init(cfg, seed))


def logical_axes(cfg: ModelConfig):
    """The logical axis names of every parameter, as a tree of PartitionSpecs."""
    return nn.get_partition_spec(jax.eval_shape(lambda: _boxed_init(cfg, 0)))


def apply_with_aux(params, cfg: ModelConfig, tokens):
    """(logits, auxiliary loss) of a batch of sequences that start at position 0; the loss is
    a routed family's load balancing, 0 for a dense one."""
    logits, _, aux = _module(cfg).apply({"params": params}, tokens)
    return logits, aux


def apply(params, cfg: ModelConfig, tokens):
    """Logits of a batch of sequences that start at position 0."""
    return apply_with_aux(params, cfg, tokens)[0]


def init_cache(cfg: ModelConfig, batch: int) -> list[dict]:
    """An empty key/value cache: per layer, keys and values for seq_len slots."""
    return get_family(cfg.family).init_cache(cfg, batch)


def decode(params, cfg: ModelConfig, tokens, cache, index, pad):
    """(logits, cache) for tokens filling cache slots index.. (right-aligned rows, see
    scaling.families.layers.decoding_positions)."""
    logits, cache, _ = _module(cfg).apply({"params": params}, tokens, cache, index, pad)
    return logits, cache
