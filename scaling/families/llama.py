"""LLaMA (Touvron et al. 2023): pre-RMSNorm blocks, rotary positions (RoPE, θ = rope_theta),
grouped-query attention (n_kv_head key/value heads, Ainslie et al. 2023), a SwiGLU MLP
(Shazeer 2020), no biases, and an output layer of its own (untied). `model.family: llama`.

The SwiGLU MLP is 2/3 as wide as the config's d_ff, rounded to a multiple of 8 (LLaMA's rule:
three matrices of 2/3 the width hold what GPT-2's two hold), so the zoo's rungs give llama the
non-embedding parameters of gpt2's within a few per cent (tests/test_families.py).

Logical axes beyond gpt2's: `kv_heads` (the key/value heads, split over `tensor` like `heads`).
The moe family is this one with a routed MLP: it reuses Block and Model through `mlp_class`
and `block_class`.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from scaling import zoo
from scaling.config import ModelConfig
from scaling.families.hf import expect, number
from scaling.families.layers import (
    attend,
    block_class,
    decoding_positions,
    hidden_std,
    kv_cache,
    mup_ratio,
    normal,
    ones,
)
from scaling.flops import ParamCounts
from scaling.mesh import constrain
from scaling.typed import ConfigError


def swiglu_width(m: ModelConfig) -> int:
    """The SwiGLU hidden width: 2/3 of d_ff to the nearest multiple of 8 (at least 8)."""
    return max(8, int(2 * m.d_ff / 3 / 8 + 0.5) * 8)


RMS_EPS = 1e-5


def rms_norm(name: str) -> nn.RMSNorm:
    return nn.RMSNorm(epsilon=RMS_EPS, scale_init=ones(("embed",)), name=name)


def rope(x, positions, theta: float):
    """Rotary position embedding (Su et al. 2021) of x (batch, time, heads, head_dim) at
    positions (batch or 1, time), in the rotate-half layout of GPT-NeoX and Hugging Face's
    Llama: dimension i pairs with i + head_dim/2, rotated by position·θ^(-2i/head_dim).
    Computed in float32."""
    half = x.shape[-1] // 2
    inverse_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = positions[..., None].astype(jnp.float32) * inverse_freq  # (batch, time, half)
    cos, sin = jnp.cos(angle)[:, :, None], jnp.sin(angle)[:, :, None]  # over heads
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


class Attention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, positions, cache=None, index=None, mask=None):
        """Grouped-query attention with rotary positions; a cache works as in gpt2's."""
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)

        def project(name: str, heads: int, axis: str):
            kernel = normal(("embed", axis, "kv"), hidden_std(cfg))
            shape = (heads, cfg.head_dim)
            return nn.DenseGeneral(
                shape, use_bias=False, dtype=dtype, name=name, kernel_init=kernel
            )(x)

        q = rope(project("q", cfg.n_head, "heads"), positions, cfg.rope_theta)
        k = rope(project("k", cfg.kv_heads, "kv_heads"), positions, cfg.rope_theta)
        v = project("v", cfg.kv_heads, "kv_heads")
        q = constrain(q, ("batch", "length", "act_heads", "kv"))
        k, v = (constrain(y, ("batch", "length", "act_kv_heads", "kv")) for y in (k, v))
        out, cache = attend(q, k, v, cache, index, mask, dtype)
        out = nn.DenseGeneral(
            cfg.d_model,
            axis=(-2, -1),
            use_bias=False,
            dtype=dtype,
            name="out",
            kernel_init=normal(("heads", "kv", "embed"), hidden_std(cfg, residual=True)),
        )(out)
        return out, cache


class SwiGlu(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        """(down(silu(gate x) · up x), no auxiliary loss)."""
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        width = swiglu_width(cfg)

        def dense(name: str, features: int, axes, std: float):
            init = normal(axes, std)
            return nn.Dense(features, use_bias=False, dtype=dtype, name=name, kernel_init=init)

        gate = dense("gate", width, ("embed", "mlp"), hidden_std(cfg))(x)
        up = dense("up", width, ("embed", "mlp"), hidden_std(cfg))(x)
        h = constrain(nn.silu(gate) * up, ("batch", "length", "act_mlp"))
        down = dense("down", cfg.d_model, ("mlp", "embed"), hidden_std(cfg, residual=True))
        return down(h), jnp.float32(0.0)


class Block(nn.Module):
    cfg: ModelConfig
    mlp_class: ClassVar[type[nn.Module]] = SwiGlu  # (x) -> (y, auxiliary loss)

    @nn.compact
    def __call__(self, x, positions, cache=None, index=None, mask=None):
        attn = Attention(self.cfg, name="attn")
        h, cache = attn(rms_norm("ln_attn")(x), positions, cache, index, mask)
        x = x + h
        h, aux = self.mlp_class(self.cfg, name="mlp")(rms_norm("ln_mlp")(x))
        return x + h, cache, aux


class Model(nn.Module):
    cfg: ModelConfig
    block_class: ClassVar[type[nn.Module]] = Block

    @nn.compact
    def __call__(self, tokens, cache=None, index=None, pad=None):
        """tokens (batch, time) -> (logits (batch, time, vocab) float32, cache, auxiliary loss:
        the blocks' mean). Cache, index and pad as in gpt2.Model."""
        cfg = self.cfg
        t = tokens.shape[1]
        if cache is None:
            positions, mask = jnp.arange(t)[None, :], None
        else:
            positions, mask = decoding_positions(cfg, t, index, pad)
        wte = nn.Embed(
            cfg.vocab_size, cfg.d_model, embedding_init=normal(("vocab", "embed")), name="wte"
        )
        x = constrain(wte(tokens).astype(jnp.dtype(cfg.dtype)), ("batch", "length", "act_embed"))
        block = block_class(self.block_class, cfg, decoding=cache is not None)
        new_cache, aux = [], []
        for i in range(cfg.n_layer):
            layer_cache = None if cache is None else cache[i]
            x, layer_cache, layer_aux = block(cfg, name=f"block_{i}")(
                x, positions, layer_cache, index, mask
            )
            x = constrain(x, ("batch", "length", "act_embed"))
            new_cache.append(layer_cache)
            aux.append(layer_aux)
        x = rms_norm("ln_f")(x)
        # Not a Dense "kernel": under µP the readout keeps an embedding's width-independent
        # init and learning rate, the output multiplier doing the scaling (layers.mup_ratio).
        lm_head = self.param("lm_head", normal(("embed", "vocab")), (cfg.d_model, cfg.vocab_size))
        logits = x.astype(jnp.float32) @ lm_head * mup_ratio(cfg)
        logits = constrain(logits, ("batch", "length", "act_vocab"))
        return logits, (None if cache is None else new_cache), jnp.mean(jnp.stack(aux))


def init_cache(cfg: ModelConfig, batch: int) -> list[dict]:
    return kv_cache(cfg, batch, cfg.kv_heads)


# ---------------------------------------------------------------------------------------------
# Accounting (conventions: scaling.flops)


def attention_params(m: ModelConfig) -> int:
    """Q and output projections d×d each, K and V d×(kv_heads·head_dim) each; no biases."""
    return 2 * m.d_model * m.d_model + 2 * m.d_model * m.kv_heads * m.head_dim


def count(m: ModelConfig, mlp: int, active_mlp: int) -> ParamCounts:
    """Counts of a llama-style stack whose MLP holds `mlp` parameters per layer, `active_mlp`
    of them used per token. Embedding = input embedding + untied output layer."""
    norms = 2 * m.d_model
    non_embedding = m.n_layer * (attention_params(m) + mlp + norms) + m.d_model  # + ln_f
    active = non_embedding - m.n_layer * (mlp - active_mlp)
    embedding = 2 * m.vocab_size * m.d_model
    return ParamCounts(non_embedding + embedding, non_embedding, embedding, active)


def param_counts(m: ModelConfig) -> ParamCounts:
    mlp = 3 * m.d_model * swiglu_width(m)
    return count(m, mlp, mlp)


def attention_flops(m: ModelConfig) -> float:
    """Chinchilla's attention terms for one sequence, K and V over kv_heads heads."""
    t, d, h = m.seq_len, m.d_model, m.n_head
    inner, kv_inner = m.head_dim * h, m.head_dim * m.kv_heads
    return (
        2 * t * d * (inner + 2 * kv_inner)  # Q, K, V projections
        + 2 * t * t * inner  # QK^T logits
        + 3 * h * t * t  # softmax
        + 2 * t * t * inner  # softmax @ V
        + 2 * t * inner * d  # output projection
    )


def stack_flops(m: ModelConfig, mlp_flops: float) -> float:
    """Forward FLOPs of one sequence through a llama-style stack whose MLP takes `mlp_flops`
    per layer: embeddings and logits as Chinchilla counts them (the input lookup as if a V×d
    matmul, so that families compare on one convention), attention_flops per layer."""
    t, d, v = m.seq_len, m.d_model, m.vocab_size
    return 2 * t * v * d + m.n_layer * (attention_flops(m) + mlp_flops) + 2 * t * d * v


def forward_flops_per_sequence(m: ModelConfig) -> float:
    """Chinchilla Appendix F with grouped K/V and a SwiGLU dense block (three matrices);
    RMSNorm, RoPE and SiLU ignored."""
    return stack_flops(m, 2 * m.seq_len * 3 * m.d_model * swiglu_width(m))


def attention_terms(m: ModelConfig) -> list[tuple[float, str | None, int]]:
    """Per token and layer at 16 bits, after Korthikanti et al. 2022 without dropout: 8h not
    split (both norms' inputs, attention's and the MLP's inputs), 4h + 2as over the heads (Q,
    the output projection's input, the softmax's a·s output), 4·kv·head_dim over the key/value
    heads (K and V)."""
    h, a, s, kv = m.d_model, m.n_head, m.seq_len, m.kv_heads
    return [
        (8 * h, None, 1),
        (4 * h + 2 * a * s, "act_heads", a),
        (4 * kv * m.head_dim, "act_kv_heads", kv),
    ]


def activation_terms(m: ModelConfig) -> list[tuple[float, str | None, int]]:
    """attention_terms, and 8f over the SwiGLU units (gate, up, silu(gate) and the product)."""
    width = swiglu_width(m)
    return [*attention_terms(m), (8 * width, "act_mlp", width)]


def label(m: ModelConfig) -> str:
    """`llama-s3`, with `-kv2` when keys and values have fewer heads than queries."""
    kv = f"-kv{m.n_kv_head}" if m.kv_heads != m.n_head else ""
    return f"{m.family}-{zoo.label(m.n_layer, m.d_model, m.n_head, m.d_ff)}{kv}"


# ---------------------------------------------------------------------------------------------
# Hugging Face layout (scaling.families.hf): LlamaForCausalLM. nn.Linear stores (out, in), so
# kernels are flattened and transposed. Our rotate-half RoPE is transformers' own (q·cos +
# rotate_half(q)·sin, inverse frequencies θ^(-2i/head_dim)), so q and k need no permutation.
HF_EXPORT = (
    ("wte/embedding", "model.embed_tokens.weight", "copy"),
    ("block_{i}/ln_attn/scale", "model.layers.{i}.input_layernorm.weight", "copy"),
    ("block_{i}/attn/q/kernel", "model.layers.{i}.self_attn.q_proj.weight", "rows_T"),
    ("block_{i}/attn/k/kernel", "model.layers.{i}.self_attn.k_proj.weight", "rows_T"),
    ("block_{i}/attn/v/kernel", "model.layers.{i}.self_attn.v_proj.weight", "rows_T"),
    ("block_{i}/attn/out/kernel", "model.layers.{i}.self_attn.o_proj.weight", "cols_T"),
    ("block_{i}/ln_mlp/scale", "model.layers.{i}.post_attention_layernorm.weight", "copy"),
    ("block_{i}/mlp/gate/kernel", "model.layers.{i}.mlp.gate_proj.weight", "T"),
    ("block_{i}/mlp/up/kernel", "model.layers.{i}.mlp.up_proj.weight", "T"),
    ("block_{i}/mlp/down/kernel", "model.layers.{i}.mlp.down_proj.weight", "T"),
    ("ln_f/scale", "model.norm.weight", "copy"),
    ("lm_head", "lm_head.weight", "T"),
)
HF_PREFIX = "model."
HF_POSITIONS = None
HF_OUTPUT = ("lm_head",)
HF_TIED = {"lm_head.weight": "model.embed_tokens.weight"}
HF_IGNORED = r"\.rotary_emb\.inv_freq$"


def hf_config(m: ModelConfig) -> dict:
    """LlamaConfig of m: SwiGLU of swiglu_width, grouped-query attention, no biases, no RoPE
    scaling, an untied output layer."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": m.vocab_size,
        "max_position_embeddings": m.seq_len,
        "hidden_size": m.d_model,
        "intermediate_size": swiglu_width(m),
        "num_hidden_layers": m.n_layer,
        "num_attention_heads": m.n_head,
        "num_key_value_heads": m.kv_heads,
        "head_dim": m.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": RMS_EPS,
        "rope_theta": m.rope_theta,  # transformers 4; 5 reads rope_parameters
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": False,
    }


def _rope_theta(hf: dict, where: str) -> float:
    """θ of plain RoPE: transformers 5's rope_parameters, or 4's rope_theta with rope_scaling
    null (which wins where both are given, as in transformers 5). Scaled variants (linear,
    dynamic, YaRN, llama3) are refused."""
    key = "rope_scaling" if hf.get("rope_scaling") else "rope_parameters"
    rope = hf.get(key) or {}
    kind = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else rope
    if kind != "default" or set(rope) - {"rope_type", "type", "rope_theta"}:
        raise ConfigError(
            f"{where}: {key}",
            f"{rope!r} cannot be represented (plain RoPE only)",
            "only rope_type 'default' without scaling can be imported",
        )
    theta = {"rope_theta": rope.get("rope_theta") or hf.get("rope_theta")}
    return number(theta, "rope_theta", where, default=10_000.0, kind=float)


def model_fields(hf: dict, where: str) -> dict:
    """Our fields of a LlamaConfig (transformers' defaults where a key is absent). A tied
    output layer is imported as an untied copy of the embedding (scaling.export)."""
    expect(hf, "hidden_act", ("silu",), where, "silu", "our SwiGLU gates with SiLU")
    expect(hf, "rms_norm_eps", (RMS_EPS,), where, 1e-6, f"our RMSNorm has eps {RMS_EPS}")
    expect(hf, "attention_bias", (False,), where, False, "no biases")
    expect(hf, "mlp_bias", (False,), where, False, "no biases")
    d_model, n_head = number(hf, "hidden_size", where), number(hf, "num_attention_heads", where)
    expect(hf, "head_dim", (d_model // n_head,), where, d_model // n_head, "head_dim = d/heads")
    width = number(hf, "intermediate_size", where)
    fields = {
        "family": "llama",
        "n_layer": number(hf, "num_hidden_layers", where),
        "d_model": d_model,
        "n_head": n_head,
        "n_kv_head": number(hf, "num_key_value_heads", where, default=n_head),
        "d_ff": width * 3 // 2,
        "vocab_size": number(hf, "vocab_size", where),
        "seq_len": number(hf, "max_position_embeddings", where),
        "rope_theta": _rope_theta(hf, where),
    }
    if swiglu_width(ModelConfig(**fields)) != width:
        raise ConfigError(
            f"{where}: intermediate_size",
            f"{width} is not 2/3 of any d_ff rounded to a multiple of 8 (our SwiGLU width)",
            "only a multiple of 8 can be imported",
        )
    return fields
