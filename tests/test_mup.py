"""µP (model.mup_base_width): exact at the base width, the stated multipliers above it, and the
coordinate check of Yang et al. 2022: the change training makes to the logits stays the same
size as the width grows, where the standard parametrisation's grows with it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.sweep import expand
from scaling import train
from scaling.config import ConfigError, ModelConfig
from scaling.model import apply, init_params

OPT = (0.9, 0.95, 0.0, 1e9)  # AdamW without decay or clipping: the bare update rule
BATCH = jax.random.randint(jax.random.PRNGKey(1), (8, 33), 0, 256)


def shape(width: int, base: int = 0) -> ModelConfig:
    return ModelConfig(
        n_layer=2, d_model=width, n_head=width // 16, d_ff=4 * width, seq_len=32,
        mup_base_width=base,
    )  # fmt: skip


def logit_change(cfg: ModelConfig, lr: float = 0.01, steps: int = 4) -> float:
    """RMS change of the logits over `steps` Adam steps on one batch."""
    params = init_params(cfg, 0)
    before = apply(params, cfg, BATCH[:, :-1])
    state = {"params": params, "opt_state": train.optimizer(*OPT).init(params)}
    for _ in range(steps):
        state, _ = train.train_step(state, BATCH, jnp.float32(lr), cfg, OPT)  # donates state
    change = apply(state["params"], cfg, BATCH[:, :-1]) - before
    return float(jnp.sqrt(jnp.mean(change**2)))


def test_at_the_base_width_mup_is_the_standard_model():
    assert logit_change(shape(64, base=64)) == logit_change(shape(64))
    sp, mup = init_params(shape(64), 0), init_params(shape(64, base=64), 0)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, sp, mup)))


def test_above_the_base_width_init_learning_rates_and_output_are_scaled():
    wide, base = shape(256, base=64), 64 / 256
    params = init_params(wide, 0)
    fc = params["block_0"]["mlp"]["fc"]["kernel"]
    assert float(fc.std()) == pytest.approx(0.02 * base**0.5, rel=0.02)  # variance ∝ 1/fan_in
    assert float(params["wte"]["embedding"].std()) == pytest.approx(0.02, rel=0.02)
    rates = train.lr_multipliers(params, wide)
    assert rates["block_1"]["attn"]["qkv"]["kernel"] == base
    assert rates["block_1"]["attn"]["qkv"]["bias"] == 1.0
    assert rates["wte"]["embedding"] == rates["ln_f"]["scale"] == 1.0
    standard = apply(params, dataclasses.replace(wide, mup_base_width=0), BATCH[:, :-1])
    np.testing.assert_allclose(apply(params, wide, BATCH[:, :-1]), base * standard, rtol=1e-6)


def test_coordinate_check():
    standard = logit_change(shape(256)) / logit_change(shape(64))
    mup = logit_change(shape(256, base=64)) / logit_change(shape(64, base=64))
    assert standard > 3  # measured 4.1: updates grow with width
    assert 0.5 < mup < 2  # measured 0.67


def test_the_sweep_rule_sets_the_base_width_and_keeps_the_tuned_rate():
    spec = {
        "name": "m",
        "base": {"train": {"batch_size": 4, "learning_rate": 0.01, "tokens": 4096}},
        "grid": {"model": ["s1", "s3"]},
        "lr_rule": {"rule": "mup", "base_width": 32},
    }
    for run in expand(spec).runs:
        assert run.config.model.mup_base_width == 32
        assert run.config.train.learning_rate == 0.01
    with pytest.raises(ConfigError, match="sweep.lr_rule.base_width"):
        expand({**spec, "lr_rule": {"rule": "mup"}})
    with pytest.raises(ConfigError, match="model.mup_base_width"):
        shape(64, base=-1).validate()
