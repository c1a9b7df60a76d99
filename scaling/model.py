"""A GPT-style decoder in Flax (linen): pre-LayerNorm blocks, causal multi-head self-attention,
GELU MLP, learned positions, input and output embedding tied (GPT-2 / nanoGPT).

Every parameter is created with logical axis names (`vocab`, `embed`, `heads`, `kv`, `mlp`,
`seq`), so that sharding is only a table mapping these names to mesh axes, never code in here.
`logical_axes(cfg)` returns the names for the whole tree.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling.config import ModelConfig

INIT_STD = 0.02


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


class CausalSelfAttention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        # GPT-2 scales the init of projections that write into the residual stream by 1/sqrt(2L).
        out_std = INIT_STD / (2 * cfg.n_layer) ** 0.5

        def project(name):
            return nn.DenseGeneral(
                (cfg.n_head, cfg.head_dim),
                dtype=dtype,
                name=name,
                kernel_init=_init(("embed", "heads", "kv")),
                bias_init=_zeros(("heads", "kv")),
            )(x)

        q, k, v = project("query"), project("key"), project("value")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(cfg.head_dim).astype(dtype)
        t = x.shape[1]
        causal = jnp.tril(jnp.ones((t, t), dtype=bool))
        scores = jnp.where(causal, scores.astype(jnp.float32), jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return nn.DenseGeneral(
            cfg.d_model,
            axis=(-2, -1),
            dtype=dtype,
            name="out",
            kernel_init=_init(("heads", "kv", "embed"), out_std),
            bias_init=_zeros(("embed",)),
        )(out)


class Mlp(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        h = nn.Dense(
            cfg.d_ff,
            dtype=dtype,
            name="fc",
            kernel_init=_init(("embed", "mlp")),
            bias_init=_zeros(("mlp",)),
        )(x)
        h = nn.gelu(h)
        return nn.Dense(
            cfg.d_model,
            dtype=dtype,
            name="proj",
            kernel_init=_init(("mlp", "embed"), INIT_STD / (2 * cfg.n_layer) ** 0.5),
            bias_init=_zeros(("embed",)),
        )(h)


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        x = x + CausalSelfAttention(self.cfg, name="attn")(_layer_norm("ln_attn")(x))
        return x + Mlp(self.cfg, name="mlp")(_layer_norm("ln_mlp")(x))


class GPT(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens):
        """tokens (batch, time) int32 -> logits (batch, time, vocab) float32."""
        cfg = self.cfg
        wte = nn.Embed(
            cfg.vocab_size, cfg.d_model, embedding_init=_init(("vocab", "embed")), name="wte"
        )
        wpe = self.param("wpe", _init(("seq", "embed"), 0.01), (cfg.seq_len, cfg.d_model))
        x = wte(tokens) + wpe[: tokens.shape[1]]
        x = x.astype(jnp.dtype(cfg.dtype))
        for i in range(cfg.n_layer):
            x = Block(cfg, name=f"block_{i}")(x)
        x = _layer_norm("ln_f")(x)
        return wte.attend(x.astype(jnp.float32))  # tied output embedding


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
    return GPT(cfg).apply({"params": params}, tokens)
