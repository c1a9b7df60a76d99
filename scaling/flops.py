"""Parameter and FLOP accounting from the model config alone. The conventions, written once; each
model family (scaling.families) counts its own architecture by them.

Parameters (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1):
  * total         every trained number, biases and norms included (a tied output counts once);
  * embedding     the token embedding V·d, learned position embedding T·d where the family has
                  one, and an untied output layer V·d (as Pythia's counts do: it is the
                  embedding's transpose in role, and grows with the vocabulary, not the depth);
  * non_embedding total - embedding. This is Kaplan's N; it includes biases and norms, which
                  Kaplan's approximation N ≈ 12·n_layer·d_model² leaves out;
  * active        the non-embedding parameters one token uses: all of them in a dense family;
                  with routed experts, the router and top_k of n_expert experts (the N of
                  Clark et al. 2022's routed models when compute is what is being compared).

Training FLOPs per token, two conventions, both carried by every results row:
  * `six_n`     6·N with N = active non-embedding parameters (Kaplan 2020, eq. 2.1 and Table 1):
                2N for the forward pass, 4N for the backward pass; attention and embeddings
                ignored. Training compute C = 6·N·D.
  * `detailed`  Hoffmann et al. 2022 ("Chinchilla"), Appendix F: embeddings, Q/K/V projections,
                QK^T logits, softmax, attention-weighted values, output projection, dense block
                and final logits, per sequence of seq_len tokens; backward = 2 × forward. The
                causal mask is NOT taken to halve the attention terms: as in Chinchilla's count,
                and as the models compute them on accelerators (the full T×T scores, masked).
                Norms, biases, activation functions, rotary embeddings and the loss are ignored
                (Chinchilla ignores the first three too). A family adapts the dense block to its
                MLP (SwiGLU: three matrices; routed experts: the router and top_k experts per
                token, the FLOPs of an ideal dispatch) and Q/K/V to its heads.

A multiply-accumulate is 2 FLOPs throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaling.config import ModelConfig
from scaling.families import get_family


@dataclass(frozen=True)
class ParamCounts:
    total: int
    non_embedding: int
    embedding: int
    active: int  # non-embedding parameters one token uses


def param_counts(m: ModelConfig) -> ParamCounts:
    return get_family(m.family).param_counts(m)


@dataclass(frozen=True)
class FlopsPerToken:
    six_n: float
    detailed: float


def forward_flops_per_sequence(m: ModelConfig) -> float:
    """Chinchilla Appendix F forward FLOPs for one sequence of m.seq_len tokens."""
    return get_family(m.family).forward_flops_per_sequence(m)


def flops_per_token(m: ModelConfig) -> FlopsPerToken:
    """Training (forward + backward) FLOPs per token in both conventions."""
    return FlopsPerToken(
        six_n=6.0 * param_counts(m).active,
        detailed=3.0 * forward_flops_per_sequence(m) / m.seq_len,
    )
