"""A GPT-style decoder in Flax (linen): pre-LayerNorm blocks, causal multi-head self-attention,
GELU MLP, learned positions, input and output embedding tied (GPT-2 / nanoGPT).

Decoding reuses each layer's keys and values from a cache (`init_cache`, `decode`), so a
generated token costs one position's compute, not a pass over the whole sequence.

Every parameter is created with logical axis names (`vocab`, `embed`, `heads`, `kv`, `mlp`,
`seq`), so that sharding is only a table mapping these names to mesh axes, never code in here.
`logical_axes(cfg)` returns the names for the whole tree.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling.config import ModelConfig
from scaling.mesh import constrain

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
    (the output multiplier; the embedding is tied, so the multiplier stands in for µP's
    readout init and learning rate). Embeddings, biases and LayerNorm keep width-independent
    init and learning rate. Attention keeps 1/√head_dim: µP's 1/head_dim differs only if
    head_dim changes with width, which the zoo's ladder never does (16 everywhere)."""
    return cfg.mup_base_width / cfg.d_model if cfg.mup_base_width else 1.0


def _hidden_std(cfg: ModelConfig, residual: bool = False) -> float:
    """Init std of the hidden matrices: GPT-2's 0.02, times √mup_ratio under µP. GPT-2 scales
    projections that write into the residual stream (`residual`) by a further 1/√(2L)."""
    std = INIT_STD * mup_ratio(cfg) ** 0.5
    return std / (2 * cfg.n_layer) ** 0.5 if residual else std


def _init(axes: tuple[str | None, ...], std: float = INIT_STD):
    return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _zeros(axes):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def _layer_norm(name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=1e-5,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
        bias_init=_zeros(("embed",)),
        name=name,
    )


def causal_attention(q, k, v):
    """softmax(q kᵀ/√d + causal mask) v for q, k, v of shape (batch, time, heads, head_dim).

    On GPU and TPU this is `jax.nn.dot_product_attention` (cuDNN flash attention where
    available). XLA on CPU has no fused kernel, and its (batch, time, heads) batched dots and
    full T×T softmax cost 3× PyTorch's: there the queries go in blocks, heads-major, each
    block against only the keys it can see, which skips the masked upper triangle (half the
    work) and keeps each block's scores small (see bench/RESULTS.md)."""
    if jax.default_backend() != "cpu":
        return jax.nn.dot_product_attention(q, k, v, is_causal=True)
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


class CausalSelfAttention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cache=None, index=None, mask=None):
        """Causal attention over x; with a cache, x fills slots index.. of it (see GPT)."""
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        std = _hidden_std(cfg)
        # q, k and v from one matmul (nanoGPT's c_attn): on CPU, 9% more tokens/s than three.
        qkv = nn.DenseGeneral(
            (3, cfg.n_head, cfg.head_dim),
            dtype=dtype,
            name="qkv",
            kernel_init=_init(("embed", None, "heads", "kv"), std),
            bias_init=_zeros((None, "heads", "kv")),
        )(x)
        q, k, v = (
            constrain(qkv[:, :, i], ("batch", "length", "act_heads", "kv")) for i in range(3)
        )
        if cache is None:  # training and scoring: one causal pass over x
            out = causal_attention(q, k, v)
        else:
            k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(dtype), index, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(dtype), index, axis=1)
            cache = {"k": k, "v": v}
            out = jax.nn.dot_product_attention(q, k, v, mask=mask)
        out = nn.DenseGeneral(
            cfg.d_model,
            axis=(-2, -1),
            dtype=dtype,
            name="out",
            kernel_init=_init(("heads", "kv", "embed"), _hidden_std(cfg, residual=True)),
            bias_init=_zeros(("embed",)),
        )(out)
        return out, cache


class Mlp(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        std = _hidden_std(cfg)
        h = nn.Dense(
            cfg.d_ff,
            dtype=dtype,
            name="fc",
            kernel_init=_init(("embed", "mlp"), std),
            bias_init=_zeros(("mlp",)),
        )(x)
        h = constrain(nn.gelu(h), ("batch", "length", "act_mlp"))
        return nn.Dense(
            cfg.d_model,
            dtype=dtype,
            name="proj",
            kernel_init=_init(("mlp", "embed"), _hidden_std(cfg, residual=True)),
            bias_init=_zeros(("embed",)),
        )(h)


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cache=None, index=None, mask=None):
        attn = CausalSelfAttention(self.cfg, name="attn")
        h, cache = attn(_layer_norm("ln_attn")(x), cache, index, mask)
        x = x + h
        return x + Mlp(self.cfg, name="mlp")(_layer_norm("ln_mlp")(x)), cache


class GPT(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens, cache=None, index=None, pad=None):
        """tokens (batch, time) int32 -> (logits (batch, time, vocab) float32, cache).

        Without a cache, tokens start at position 0 (training, scoring). With one (decoding),
        `cache` holds every layer's keys and values for seq_len slots and tokens fill slots
        index, index+1, ...; rows are right-aligned, so row r's first pad[r] slots are padding:
        masked out of attention, and positions count from the row's first real token. A padding
        slot attends to itself only, so that no softmax is over an empty set."""
        cfg = self.cfg
        wte = nn.Embed(
            cfg.vocab_size, cfg.d_model, embedding_init=_init(("vocab", "embed")), name="wte"
        )
        wpe = self.param("wpe", _init(("seq", "embed"), 0.01), (cfg.seq_len, cfg.d_model))
        t = tokens.shape[1]
        if cache is None:
            positions, mask = wpe[:t], None
        else:
            slots = index + jnp.arange(t)
            positions = wpe[jnp.maximum(slots[None, :] - pad[:, None], 0)]
            keys = jnp.arange(cfg.seq_len)
            visible = (keys <= slots[:, None]) & (keys >= pad[:, None, None])
            mask = (visible | (keys == slots[:, None]))[:, None]  # (batch, 1, time, slots)
        x = (wte(tokens) + positions).astype(jnp.dtype(cfg.dtype))
        x = constrain(x, ("batch", "length", "act_embed"))
        # Rematerialisation trades compute for activation memory in training; decoding keeps
        # nothing for a backward pass, so it never needs it.
        block = (
            Block
            if cache is not None or cfg.remat == "none"
            else nn.remat(Block, policy=REMAT_POLICIES[cfg.remat])
        )
        new_cache = []
        for i in range(cfg.n_layer):
            layer_cache = None if cache is None else cache[i]
            x, layer_cache = block(cfg, name=f"block_{i}")(x, layer_cache, index, mask)
            x = constrain(x, ("batch", "length", "act_embed"))
            new_cache.append(layer_cache)
        x = _layer_norm("ln_f")(x)
        logits = wte.attend(x.astype(jnp.float32))  # tied output embedding
        if cfg.mup_base_width:
            logits = logits * mup_ratio(cfg)  # µP's output multiplier
        logits = constrain(logits, ("batch", "length", "act_vocab"))
        return logits, (None if cache is None else new_cache)


def init_params(cfg: ModelConfig, seed: int):
    """Plain float32 parameter tree (logical-axis boxes removed)."""
    boxed = GPT(cfg).init(jax.random.PRNGKey(seed), jnp.zeros((1, cfg.seq_len), jnp.int32))
    return nn.meta.unbox(boxed["params"])


def logical_axes(cfg: ModelConfig):
    """The logical axis names of every parameter, as a tree of PartitionSpecs."""
    boxed = jax.eval_shape(
        lambda: GPT(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, cfg.seq_len), jnp.int32))
    )
    return nn.get_partition_spec(boxed["params"])


def apply(params, cfg: ModelConfig, tokens):
    """Logits of a batch of sequences that start at position 0."""
    return GPT(cfg).apply({"params": params}, tokens)[0]


def init_cache(cfg: ModelConfig, batch: int) -> list[dict]:
    """An empty key/value cache: per layer, keys and values for seq_len slots."""
    shape = (batch, cfg.seq_len, cfg.n_head, cfg.head_dim)
    zeros = jnp.zeros(shape, jnp.dtype(cfg.dtype))
    return [{"k": zeros, "v": zeros} for _ in range(cfg.n_layer)]


def decode(params, cfg: ModelConfig, tokens, cache, index, pad):
    """(logits, cache) for tokens filling cache slots index.. (right-aligned rows, see GPT)."""
    return GPT(cfg).apply({"params": params}, tokens, cache, index, pad)
