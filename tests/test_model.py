"""Model options: rematerialisation changes memory, not numbers; bfloat16 activations stay
close to float32 with float32 parameters."""

import dataclasses

import jax
import numpy as np
import pytest

from scaling import data
from scaling.config import ModelConfig
from scaling.model import apply, causal_attention, init_params
from scaling.tokenizer import ByteTokenizer
from scaling.train import loss_fn

M = ModelConfig(n_layer=2, d_model=32, n_head=2, d_ff=64, seq_len=64)


@pytest.fixture(scope="module")
def batch():
    tokens = ByteTokenizer().encode(data.synthetic_text(20_000, 0.5, seed=0))
    return data.train_batch(tokens, 0, 0, 4, M.seq_len)


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_gives_the_same_loss_and_gradients(batch, policy):
    params = init_params(M, 0)
    grad = jax.jit(jax.value_and_grad(loss_fn), static_argnums=1)
    loss, g = grad(params, M, batch)
    loss_r, g_r = grad(params, dataclasses.replace(M, remat=policy), batch)
    assert float(loss_r) == pytest.approx(float(loss), abs=1e-6)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_r)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_bfloat16_activations_track_float32(batch):
    params = init_params(M, 0)  # parameters stay float32 (master weights)
    f32 = apply(params, M, batch[:, :-1])
    bf16 = apply(params, dataclasses.replace(M, dtype="bfloat16"), batch[:, :-1])
    assert bf16.dtype == np.float32  # logits are computed in float32
    assert float(np.abs(np.asarray(bf16) - np.asarray(f32)).max()) < 0.1


@pytest.mark.parametrize("time", [7, 70, 130])  # one block, then 3 and 5 with a ragged last
def test_blocked_causal_attention_equals_dot_product_attention(time):
    """The CPU path (queries in blocks against only the keys they see) is exact attention:
    outputs and gradients equal jax.nn.dot_product_attention's."""
    q, k, v, w = (
        jax.random.normal(key, (3, time, 4, 16))
        for key in jax.random.split(jax.random.PRNGKey(time), 4)
    )

    def loss(attention):
        return jax.value_and_grad(lambda *qkv: (attention(*qkv) * w).sum(), argnums=(0, 1, 2))

    reference = loss(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True))
    for got, want in zip(
        jax.tree.leaves(loss(causal_attention)(q, k, v)), jax.tree.leaves(reference(q, k, v))
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
