import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import zoo
from scaling.config import ModelConfig
from scaling.flops import flops_per_token, forward_flops_per_sequence, param_counts
from scaling.model import apply, init_params

SHAPES = [
    ModelConfig(n_layer=1, d_model=32, n_head=2, d_ff=64, seq_len=16),
    ModelConfig(n_layer=3, d_model=48, n_head=3, d_ff=200, vocab_size=300, seq_len=40),
    ModelConfig(**zoo.shape("s6")),
]


def _sizes(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("m", SHAPES)
def test_param_counts_match_the_real_tree(m):
    params = jax.eval_shape(lambda: init_params(m, 0))
    counts = param_counts(m)
    assert counts.total == _sizes(params)
    assert counts.embedding == _sizes(params["wte"]) + _sizes(params["wpe"])
    assert counts.non_embedding == counts.total - counts.embedding


def test_kaplan_approximation_is_close_for_a_wide_model():
    # N ≈ 12·n_layer·d² once d_ff = 4d and biases/LayerNorms are negligible (Kaplan 2020).
    m = ModelConfig(n_layer=4, d_model=512, n_head=8, d_ff=2048)
    assert param_counts(m).non_embedding == pytest.approx(12 * 4 * 512**2, rel=0.01)


def test_detailed_flops_by_hand():
    m = ModelConfig(n_layer=1, d_model=4, n_head=2, d_ff=8, vocab_size=256, seq_len=2)
    t, d, v, f, h = 2, 4, 256, 8, 2
    attention = 2 * 3 * t * d * d + 2 * t * t * d + 3 * h * t * t + 2 * t * t * d + 2 * t * d * d
    expected = 2 * t * v * d + attention + 2 * t * 2 * d * f + 2 * t * d * v
    assert forward_flops_per_sequence(m) == expected
    per_token = flops_per_token(m)
    assert per_token.detailed == 3 * expected / t
    assert per_token.six_n == 6 * param_counts(m).non_embedding


def test_detailed_count_agrees_with_xla_cost_analysis():
    # XLA counts every op of the real forward pass; the Chinchilla count ignores LayerNorm,
    # biases and GELU, so it may be a little lower, never far off.
    m = ModelConfig(n_layer=2, d_model=64, n_head=4, d_ff=256, seq_len=64)
    params = init_params(m, 0)
    tokens = jnp.zeros((1, m.seq_len), jnp.int32)
    cost = jax.jit(lambda p, x: apply(p, m, x)).lower(params, tokens).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert forward_flops_per_sequence(m) == pytest.approx(cost["flops"], rel=0.15)
