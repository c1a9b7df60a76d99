"""Parameter and FLOP accounting from the model config alone. The conventions, written once:

Parameters (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1):
  * total         every trained number, biases and LayerNorm included (tied output counts once);
  * embedding     token embedding V·d plus learned position embedding T·d;
  * non_embedding total - embedding. This is Kaplan's N; it includes biases and LayerNorms,
                  which Kaplan's approximation N ≈ 12·n_layer·d_model² leaves out.

Training FLOPs per token, two conventions, both carried by every results row:
  * `six_n`     6·N with N = non-embedding parameters (Kaplan 2020, eq. 2.1 and Table 1): 2N for
                the forward pass, 4N for the backward pass; attention and embeddings ignored.
                Training compute C = 6·N·D.
  * `detailed`  Hoffmann et al. 2022 ("Chinchilla"), Appendix F: embeddings, Q/K/V projections,
                QK^T logits, softmax, attention-weighted values, output projection, dense block
                and final logits, per sequence of seq_len tokens; backward = 2 × forward. The
                causal mask is NOT taken to halve the attention terms: as in Chinchilla's count,
                and as this model computes them (the full T×T scores are computed, then masked).
                LayerNorms, biases, GELU and the loss are ignored (Chinchilla ignores them too).

A multiply-accumulate is 2 FLOPs throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaling.config import ModelConfig


@dataclass(frozen=True)
class ParamCounts:
    total: int
    non_embedding: int
    embedding: int


def param_counts(m: ModelConfig) -> ParamCounts:
    d, f = m.d_model, m.d_ff
    attention = 4 * d * d + 4 * d  # Q, K, V, out kernels and biases (n_head·head_dim = d)
    mlp = 2 * d * f + f + d
    layer_norms = 2 * (2 * d)
    per_layer = attention + mlp + layer_norms
    embedding = m.vocab_size * d + m.seq_len * d
    non_embedding = m.n_layer * per_layer + 2 * d  # + final LayerNorm
    return ParamCounts(non_embedding + embedding, non_embedding, embedding)


@dataclass(frozen=True)
class FlopsPerToken:
    six_n: float
    detailed: float


def forward_flops_per_sequence(m: ModelConfig) -> float:
    """Chinchilla Appendix F forward FLOPs for one sequence of m.seq_len tokens."""
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


def flops_per_token(m: ModelConfig) -> FlopsPerToken:
    """Training (forward + backward) FLOPs per token in both conventions."""
    return FlopsPerToken(
        six_n=6.0 * param_counts(m).non_embedding,
        detailed=3.0 * forward_flops_per_sequence(m) / m.seq_len,
    )
