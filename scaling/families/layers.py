"""What the model families share: initialisers with logical axis names, µP's width ratio, causal
attention, the positions and mask of a cached decoding step, the key/value cache and
per-block rematerialisation."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling.config import ModelConfig

INIT_STD = 0.02
# ModelConfig.remat: what a block keeps for the backward pass (the rest is recomputed).
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def mup_ratio(cfg: ModelConfig) -> float:
    """base_width / d_model under µP (Yang et al. 2022, Tensor Programs V, table 3, Adam), 1
    without it. µP scales three things by it, so that hyperparameters tuned at the base width
    transfer to every width: the init std of hidden matrices by √ratio (variance ∝ 1/fan_in),
    their Adam learning rate by ratio (scaling.train.lr_multipliers), and the logits by ratio
    (the output multiplier; with it, µP's readout keeps a width-independent init and learning
    rate, as an embedding does). Embeddings, biases and norms keep width-independent init and
    learning rate. Attention keeps 1/√head_dim: µP's 1/head_dim differs only if head_dim
    changes with width, which the zoo's ladder never does (16 everywhere)."""
    return cfg.mup_base_width / cfg.d_model if cfg.mup_base_width else 1.0


def hidden_std(cfg: ModelConfig, residual: bool = False) -> float:
    """Init std of the hidden matrices: GPT-2's 0.02, times √mup_ratio under µP. GPT-2 scales
    projections that write into the residual stream (`residual`) by a further 1/√(2L)."""
    std = INIT_STD * mup_ratio(cfg) ** 0.5
    return std / (2 * cfg.n_layer) ** 0.5 if residual else std


def normal(axes: tuple[str | None, ...], std: float = INIT_STD):
    return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def zeros(axes):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def ones(axes):
    return nn.with_logical_partitioning(nn.initializers.ones_init(), axes)


def causal_attention(q, k, v):
    """softmax(q kᵀ/√d + causal mask) v for q of shape (batch, time, heads, head_dim) and k, v
    of (batch, time, kv_heads, head_dim), kv_heads dividing heads (grouped-query attention:
    each key/value head serves heads/kv_heads query heads).

    On GPU and TPU this is `jax.nn.dot_product_attention` (cuDNN flash attention where
    available). XLA on CPU has no fused kernel, and its (batch, time, heads) batched dots and
    full T×T softmax cost 3× PyTorch's: there the queries go in blocks, heads-major, each
    block against only the keys it can see, which skips the masked upper triangle (half the
    work) and keeps each block's scores small (see bench/RESULTS.md)."""
    if jax.default_backend() != "cpu":
        return jax.nn.dot_product_attention(q, k, v, is_causal=True)
    if k.shape[2] != q.shape[2]:  # the blocked dots below pair query and key heads one to one
        k, v = (jnp.repeat(x, q.shape[2] // x.shape[2], axis=2) for x in (k, v))
    t, scale = q.shape[1], q.shape[-1] ** -0.5
    block = max(32, -(-t // 16))  # at most 16 blocks: more only slows compilation
    q, k, v = (x.swapaxes(1, 2) for x in (q * scale, k, v))  # (batch, heads, time, head_dim)
    outs = []
    for start in range(0, t, block):
        stop = min(start + block, t)
        scores = q[:, :, start:stop] @ k[:, :, :stop].swapaxes(-1, -2)
        visible = jnp.arange(stop)[None, :] <= jnp.arange(start, stop)[:, None]
        scores = jnp.where(visible, scores.astype(jnp.float32), -jnp.inf)
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        outs.append(weights @ v[:, :, :stop])
    return jnp.concatenate(outs, axis=2).swapaxes(1, 2)


def attend(q, k, v, cache, index, mask, dtype):
    """Attention of q over k, v: causal over the sequence without a cache; with one, k and v
    first fill its slots index.., and q attends to the slots `mask` shows. (out, cache)."""
    if cache is None:  # training and scoring: one causal pass
        return causal_attention(q, k, v), None
    k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(dtype), index, axis=1)
    v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(dtype), index, axis=1)
    return jax.nn.dot_product_attention(q, k, v, mask=mask), {"k": k, "v": v}


def decoding_positions(cfg: ModelConfig, t: int, index, pad):
    """(positions (batch, t), mask (batch, 1, t, seq_len)) of t tokens filling cache slots
    index.. . Rows are right-aligned, so row r's first pad[r] slots are padding: masked out of
    attention, and positions count from the row's first real token. A padding slot attends to
    itself only, so that no softmax is over an empty set."""
    slots = index + jnp.arange(t)
    positions = jnp.maximum(slots[None, :] - pad[:, None], 0)
    keys = jnp.arange(cfg.seq_len)
    visible = (keys <= slots[:, None]) & (keys >= pad[:, None, None])
    return positions, (visible | (keys == slots[:, None]))[:, None]


def kv_cache(cfg: ModelConfig, batch: int, kv_heads: int) -> list[dict]:
    """An empty key/value cache: per layer, keys and values of kv_heads heads for seq_len slots."""
    zeros_ = jnp.zeros((batch, cfg.seq_len, kv_heads, cfg.head_dim), jnp.dtype(cfg.dtype))
    return [{"k": zeros_, "v": zeros_} for _ in range(cfg.n_layer)]


def block_class(block: type[nn.Module], cfg: ModelConfig, decoding: bool) -> type[nn.Module]:
    """The block to stack: rematerialised per cfg.remat in training, which trades compute for
    activation memory; decoding keeps nothing for a backward pass, so it never needs it."""
    if decoding or cfg.remat == "none":
        return block
    return nn.remat(block, policy=REMAT_POLICIES[cfg.remat])
