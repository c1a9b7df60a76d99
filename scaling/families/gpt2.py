"""GPT-2 (Radford et al. 2019) as nanoGPT writes it: pre-LayerNorm blocks, causal multi-head
self-attention, GELU MLP, learned positions, input and output embedding tied, biases
everywhere. The default family (`model.family: gpt2`).

Logical axes of its parameters: `vocab`, `embed`, `heads`, `kv` (within a head), `mlp`, `seq`.
"""

from __future__ import annotations

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
    zeros,
)
from scaling.flops import ParamCounts
from scaling.mesh import constrain

LN_EPS = 1e-5


def _layer_norm(name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=LN_EPS, scale_init=ones(("embed",)), bias_init=zeros(("embed",)), name=name
    )


class CausalSelfAttention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cache=None, index=None, mask=None):
        """Causal attention over x; with a cache, x fills slots index.. of it (see Model)."""
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        # q, k and v from one matmul (nanoGPT's c_attn): on CPU, 9% more tokens/s than three.
        qkv = nn.DenseGeneral(
            (3, cfg.n_head, cfg.head_dim),
            dtype=dtype,
            name="qkv",
            kernel_init=normal(("embed", None, "heads", "kv"), hidden_std(cfg)),
            bias_init=zeros((None, "heads", "kv")),
        )(x)
        q, k, v = (
            constrain(qkv[:, :, i], ("batch", "length", "act_heads", "kv")) for i in range(3)
        )
        out, cache = attend(q, k, v, cache, index, mask, dtype)
        out = nn.DenseGeneral(
            cfg.d_model,
            axis=(-2, -1),
            dtype=dtype,
            name="out",
            kernel_init=normal(("heads", "kv", "embed"), hidden_std(cfg, residual=True)),
            bias_init=zeros(("embed",)),
        )(out)
        return out, cache


class Mlp(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        h = nn.Dense(
            cfg.d_ff,
            dtype=dtype,
            name="fc",
            kernel_init=normal(("embed", "mlp"), hidden_std(cfg)),
            bias_init=zeros(("mlp",)),
        )(x)
        h = constrain(nn.gelu(h), ("batch", "length", "act_mlp"))
        return nn.Dense(
            cfg.d_model,
            dtype=dtype,
            name="proj",
            kernel_init=normal(("mlp", "embed"), hidden_std(cfg, residual=True)),
            bias_init=zeros(("embed",)),
        )(h)


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cache=None, index=None, mask=None):
        attn = CausalSelfAttention(self.cfg, name="attn")
        h, cache = attn(_layer_norm("ln_attn")(x), cache, index, mask)
        x = x + h
        return x + Mlp(self.cfg, name="mlp")(_layer_norm("ln_mlp")(x)), cache


class Model(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens, cache=None, index=None, pad=None):
        """tokens (batch, time) int32 -> (logits (batch, time, vocab) float32, cache, 0.0).

        Without a cache, tokens start at position 0 (training, scoring). With one (decoding),
        `cache` holds every layer's keys and values for seq_len slots and tokens fill slots
        index, index+1, ... of right-aligned rows, row r's first pad[r] slots being padding
        (layers.decoding_positions)."""
        cfg = self.cfg
        wte = nn.Embed(
            cfg.vocab_size, cfg.d_model, embedding_init=normal(("vocab", "embed")), name="wte"
        )
        wpe = self.param("wpe", normal(("seq", "embed"), 0.01), (cfg.seq_len, cfg.d_model))
        t = tokens.shape[1]
        if cache is None:
            positions, mask = wpe[:t], None
        else:
            indices, mask = decoding_positions(cfg, t, index, pad)
            positions = wpe[indices]
        x = (wte(tokens) + positions).astype(jnp.dtype(cfg.dtype))
        x = constrain(x, ("batch", "length", "act_embed"))
        block = block_class(Block, cfg, decoding=cache is not None)
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
        return logits, (None if cache is None else new_cache), jnp.float32(0.0)


def init_cache(cfg: ModelConfig, batch: int) -> list[dict]:
    return kv_cache(cfg, batch, cfg.n_head)


# ---------------------------------------------------------------------------------------------
# Accounting (conventions: scaling.flops)


def param_counts(m: ModelConfig) -> ParamCounts:
    """Embedding = token + learned position embeddings; the output layer is tied."""
    d, f = m.d_model, m.d_ff
    attention = 4 * d * d + 4 * d  # Q, K, V, out kernels and biases (n_head·head_dim = d)
    mlp = 2 * d * f + f + d
    layer_norms = 2 * (2 * d)
    per_layer = attention + mlp + layer_norms
    embedding = m.vocab_size * d + m.seq_len * d
    non_embedding = m.n_layer * per_layer + 2 * d  # + final LayerNorm
    return ParamCounts(non_embedding + embedding, non_embedding, embedding, non_embedding)


def forward_flops_per_sequence(m: ModelConfig) -> float:
    """Chinchilla Appendix F forward FLOPs for one sequence of m.seq_len tokens, as written
    there (GELU MLP of width d_ff); LayerNorms, biases and GELU ignored."""
    t, d, v, f, h = m.seq_len, m.d_model, m.vocab_size, m.d_ff, m.n_head
    inner = m.head_dim * h  # key_size × num_heads
    embeddings = 2 * t * v * d
    attention = (
        2 * 3 * t * d * inner  # Q, K, V projections
        + 2 * t * t * inner  # QK^T logits
        + 3 * h * t * t  # softmax
        + 2 * t * t * inner  # softmax @ V
        + 2 * t * inner * d  # output projection
    )
    dense = 2 * t * (d * f + d * f)
    logits = 2 * t * d * v
    return embeddings + m.n_layer * (attention + dense) + logits


def activation_terms(m: ModelConfig) -> list[tuple[float, str | None, int]]:
    """Korthikanti et al. 2022, Sec. 4, per token and layer at 16 bits (scaling.memory): 10h not
    split (the inputs of both LayerNorms, of attention and of the MLP, two dropout masks), 8h +
    5as over the heads (Q, K, V, the output projection's input, the a·s scores, softmax and
    dropout), 4f over the MLP units (GELU's input and output). (bytes, axis, its length)."""
    h, a, s, f = m.d_model, m.n_head, m.seq_len, m.d_ff
    return [(10 * h, None, 1), (8 * h + 5 * a * s, "act_heads", a), (4 * f, "act_mlp", f)]


def label(m: ModelConfig) -> str:
    return zoo.label(m.n_layer, m.d_model, m.n_head, m.d_ff)


# ---------------------------------------------------------------------------------------------
# Hugging Face layout (scaling.families.hf): GPT2LMHeadModel. Its Conv1D weights are stored
# (in, out), so nothing is transposed; c_attn holds q, k, v side by side, as our
# (d, 3, heads, head_dim) kernel flattened. The output layer is tied to wte.
HF_EXPORT = (
    ("wte/embedding", "transformer.wte.weight", "copy"),
    ("wpe", "transformer.wpe.weight", "copy"),
    ("block_{i}/ln_attn/scale", "transformer.h.{i}.ln_1.weight", "copy"),
    ("block_{i}/ln_attn/bias", "transformer.h.{i}.ln_1.bias", "copy"),
    ("block_{i}/attn/qkv/kernel", "transformer.h.{i}.attn.c_attn.weight", "rows"),
    ("block_{i}/attn/qkv/bias", "transformer.h.{i}.attn.c_attn.bias", "flat"),
    ("block_{i}/attn/out/kernel", "transformer.h.{i}.attn.c_proj.weight", "cols"),
    ("block_{i}/attn/out/bias", "transformer.h.{i}.attn.c_proj.bias", "copy"),
    ("block_{i}/ln_mlp/scale", "transformer.h.{i}.ln_2.weight", "copy"),
    ("block_{i}/ln_mlp/bias", "transformer.h.{i}.ln_2.bias", "copy"),
    ("block_{i}/mlp/fc/kernel", "transformer.h.{i}.mlp.c_fc.weight", "copy"),
    ("block_{i}/mlp/fc/bias", "transformer.h.{i}.mlp.c_fc.bias", "copy"),
    ("block_{i}/mlp/proj/kernel", "transformer.h.{i}.mlp.c_proj.weight", "copy"),
    ("block_{i}/mlp/proj/bias", "transformer.h.{i}.mlp.c_proj.bias", "copy"),
    ("ln_f/scale", "transformer.ln_f.weight", "copy"),
    ("ln_f/bias", "transformer.ln_f.bias", "copy"),
)
HF_PREFIX = "transformer."
HF_POSITIONS = "transformer.wpe.weight"
HF_OUTPUT = ("ln_f/scale", "ln_f/bias")
HF_TIED: dict[str, str] = {}  # our output layer is the embedding already
HF_IGNORED = r"\.attn\.(masked_)?bias$|^lm_head\.weight$"
# transformers' names of the tanh approximation of GELU, flax's nn.gelu default (ours)
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def hf_config(m: ModelConfig) -> dict:
    """GPT2Config of m: attention scaled by 1/√head_dim as ours (scale_attn_weights), no
    dropout (we train without)."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": m.vocab_size,
        "n_positions": m.seq_len,
        "n_ctx": m.seq_len,
        "n_embd": m.d_model,
        "n_layer": m.n_layer,
        "n_head": m.n_head,
        "n_inner": m.d_ff,
        "activation_function": TANH_GELU[0],
        "layer_norm_epsilon": LN_EPS,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
    }


def model_fields(hf: dict, where: str) -> dict:
    """Our fields of a GPT2Config (transformers' defaults where a key is absent)."""
    expect(hf, "activation_function", TANH_GELU, where, "gelu_new", "our GELU is the tanh one")
    expect(hf, "layer_norm_epsilon", (LN_EPS,), where, 1e-5, f"our LayerNorm has eps {LN_EPS}")
    expect(hf, "scale_attn_weights", (True,), where, True, "we scale by 1/sqrt(head_dim)")
    expect(hf, "scale_attn_by_inverse_layer_idx", (False,), where, False, "no per-layer scale")
    expect(hf, "add_cross_attention", (False,), where, False, "a decoder only")
    expect(hf, "tie_word_embeddings", (True,), where, True, "gpt2 ties its output layer")
    d_model = number(hf, "n_embd", where)
    return {
        "n_layer": number(hf, "n_layer", where),
        "d_model": d_model,
        "n_head": number(hf, "n_head", where),
        "d_ff": number(hf, "n_inner", where, default=4 * d_model),
        "vocab_size": number(hf, "vocab_size", where),
        "seq_len": number(hf, "n_positions", where),
    }
