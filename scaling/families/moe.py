"""Mixture of experts: the llama family with every block's MLP made of n_expert SwiGLU experts,
each token routed to expert_top_k of them (Shazeer et al. 2017; GShard, Lepikhin et al. 2021;
Switch Transformer, Fedus et al. 2022). `model.family: moe`.

Routing: a d_model × n_expert router, softmax over experts in float32; a token's output is the
sum of its top_k experts' outputs weighted by their router probabilities, renormalised over the
k when k > 1 (GShard, Mixtral). Switch's k = 1 keeps the raw probability: renormalised it would
be 1, and the router would learn nothing from the language-model loss.

Capacity: each sequence is a group (GShard's groups): an expert takes at most
capacity = ⌈capacity_factor · top_k · T / n_expert⌉ of the group's T tokens, and a token
routed to a full expert gets nothing from it (the residual carries it past). Slots are given
in token order, so whether a token is dropped depends only on the tokens before it and the
model stays causal; a row never depends on the rest of the batch. Cached decoding routes the
tokens of each call as a group, so it equals a full pass where that pass drops nothing
(capacity_factor ≥ n_expert / top_k never drops).

Load balancing: Switch's auxiliary loss n_expert · Σ_e f_e · P_e (f_e: the share of the
token→expert assignments that go to e, before capacity; P_e: e's mean router probability; 1
when balanced), averaged over layers (as Hugging Face's Mixtral: the weight means the same at
any depth), times router_aux_weight; scaling.train adds it to the loss it descends.

Dispatch is dense, as in Mesh-TensorFlow and GShard: one-hot dispatch and combine tensors of
shape (batch, T, n_expert, capacity) and einsums. Every op is a plain matmul, so it runs and
shards anywhere, CPU included, but it computes every capacity slot, empty or not, and the
dispatch and combine einsums cost 4·n_expert·capacity·d_model FLOPs per token, quadratic in T
like attention (`dense_dispatch_flops_per_sequence`). A GPU path would sort the assignments
by expert, run one grouped matmul over the ragged groups (jax.lax.ragged_dot; MegaBlocks,
Gale et al. 2023), scatter the results back, and for expert parallelism exchange tokens
between the devices holding the experts by an all-to-all over an `expert` mesh axis.
forward_flops_per_sequence counts that ideal: the router and top_k experts per token.

Logical axes beyond llama's: `expert` (the experts of a block; scaling.mesh's table says where
they go). µP: expert weights are hidden matrices (named `kernel`: learning rate and init
scaled); the router, whose output width is fixed, is treated like the readout (named
`router`: width-independent init and learning rate, its logits times mup_ratio).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling.config import ModelConfig
from scaling.families import llama
from scaling.families.layers import hidden_std, mup_ratio, normal
from scaling.families.llama import swiglu_width
from scaling.mesh import constrain


def capacity(m: ModelConfig, tokens: int) -> int:
    """Slots per expert in a group of `tokens` tokens (at most all of them)."""
    return min(tokens, math.ceil(m.capacity_factor * m.expert_top_k * tokens / m.n_expert))


def route(probs, m: ModelConfig, slots: int):
    """(dispatch, combine, choice) of router probabilities (batch, T, n_expert): dispatch
    (batch, T, n_expert, slots) is 1 where a token sits in an expert's slot, combine the same
    weighted by the token's gate, choice (batch, T, n_expert) 1 where a token chose an expert."""
    batch, t, n_expert = probs.shape
    k = m.expert_top_k
    gates, chosen = jax.lax.top_k(probs, k)
    if k > 1:
        gates = gates / gates.sum(-1, keepdims=True)
    picks = jax.nn.one_hot(chosen, n_expert, dtype=jnp.int32)  # (batch, T, k, n_expert)
    # Token-major order (token t's choices before token t+1's), so that capacity is causal.
    order = jnp.cumsum(picks.reshape(batch, t * k, n_expert), axis=1).reshape(picks.shape)
    choice = picks.sum(2)  # a token picks an expert at most once
    slot = jnp.sum((order - 1) * picks, axis=2)
    kept = (choice > 0) & (slot < slots)
    dispatch = jax.nn.one_hot(jnp.where(kept, slot, slots), slots)  # index `slots`: no slot
    gate = jnp.sum(gates[..., None] * picks, axis=2)
    return dispatch, dispatch * gate[..., None], choice


def balance_loss(probs, choice, m: ModelConfig):
    """Switch's load-balancing loss: n_expert · Σ_e (share of assignments to e) · (mean P_e)."""
    share = choice.mean((0, 1)) / m.expert_top_k
    return m.n_expert * jnp.sum(share * probs.mean((0, 1)))


class ExpertKernel(nn.Module):
    """The (n_expert, in, out) weights of one of the experts' matrices."""

    shape: tuple[int, int, int]
    axes: tuple[str, str, str]
    std: float

    @nn.compact
    def __call__(self):
        return self.param("kernel", normal(self.axes, self.std), self.shape)


class RoutedMlp(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        """(the routed experts' output, router_aux_weight · the load-balancing loss)."""
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        d, e, width = cfg.d_model, cfg.n_expert, swiglu_width(cfg)
        router = self.param("router", normal(("embed", None)), (d, e))
        probs = jax.nn.softmax(x.astype(jnp.float32) @ router * mup_ratio(cfg), axis=-1)
        dispatch, combine, choice = route(probs, cfg, capacity(cfg, x.shape[1]))

        def kernel(name: str, shape, axes, residual: bool = False):
            std = hidden_std(cfg, residual)
            return ExpertKernel(shape, axes, std, name=name)().astype(dtype)

        into, out = ("expert", "embed", "mlp"), ("expert", "mlp", "embed")
        gate, up = (kernel(n, (e, d, width), into) for n in ("gate", "up"))
        down = kernel("down", (e, width, d), out, residual=True)
        slots = jnp.einsum("btec,btd->becd", dispatch.astype(dtype), x)
        h = nn.silu(jnp.einsum("becd,edf->becf", slots, gate))
        h = h * jnp.einsum("becd,edf->becf", slots, up)
        h = constrain(h, ("batch", None, None, "act_mlp"))
        y = jnp.einsum("becf,efd->becd", h, down)
        y = jnp.einsum("btec,becd->btd", combine.astype(dtype), y)
        return y, cfg.router_aux_weight * balance_loss(probs, choice, cfg)


class Block(llama.Block):
    mlp_class = RoutedMlp


class Model(llama.Model):
    block_class = Block


init_cache = llama.init_cache  # the same keys and values: only the MLP differs


# ---------------------------------------------------------------------------------------------
# Accounting (conventions: scaling.flops)


def param_counts(m: ModelConfig):
    """llama's counts with n_expert experts and a router per layer; active: top_k experts."""
    expert = 3 * m.d_model * swiglu_width(m)
    router = m.d_model * m.n_expert
    return llama.count(m, router + m.n_expert * expert, router + m.expert_top_k * expert)


def forward_flops_per_sequence(m: ModelConfig) -> float:
    """llama's count with the router and top_k SwiGLU experts per token as the dense block:
    the FLOPs of an ideal dispatch (see the module docstring)."""
    t, d = m.seq_len, m.d_model
    routed = 2 * t * d * m.n_expert + m.expert_top_k * 2 * t * 3 * d * swiglu_width(m)
    return llama.stack_flops(m, routed)


def dense_dispatch_flops_per_sequence(m: ModelConfig) -> float:
    """What the dense dispatch computes beyond forward_flops_per_sequence, per sequence: the
    experts over every capacity slot rather than top_k per token, and the dispatch and
    combine einsums."""
    t, d, slots = m.seq_len, m.d_model, m.n_expert * capacity(m, m.seq_len)
    idle = 2 * (slots - m.expert_top_k * t) * 3 * d * swiglu_width(m)
    return m.n_layer * (idle + 2 * 2 * t * slots * d)


def activation_terms(m: ModelConfig) -> list[tuple[float, str | None, int]]:
    """llama's attention terms; for the routed MLP, per token and layer at 16 bits, with
    r = n_expert·capacity/T slots per token: not split, the float32 router probabilities,
    dispatch and combine (4·n_expert·capacity) and the experts' inputs and outputs (4h·r);
    over the expert units, SwiGLU's 8f per slot."""
    h, e, width = m.d_model, m.n_expert, swiglu_width(m)
    slots = e * capacity(m, m.seq_len)
    per_token = slots / m.seq_len
    routing = 4 * e + 4 * slots + 4 * h * per_token
    return [
        *llama.attention_terms(m),
        (routing, None, 1),
        (8 * width * per_token, "act_mlp", width),
    ]


def label(m: ModelConfig) -> str:
    """llama's label and the routing: `moe-s3-e8k2`."""
    return f"{llama.label(m)}-e{m.n_expert}k{m.expert_top_k}"


# No Hugging Face layout: the nearest, Mixtral, never drops tokens and has no capacity.
HF_EXPORT = None
