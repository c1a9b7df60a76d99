"""Model families (scaling.families): every family's accounting against its real parameter tree
and XLA's FLOP count, cached decoding against a full pass, routing, the ladder across families,
the export mapping, config checks and sweeps over families."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, tiny_run
from test_run_dirs import finished

from experiments.collect import collect
from experiments.sweep import expand, run_id
from scaling import zoo
from scaling.config import ConfigError, ModelConfig, run_config
from scaling.families import FIELDS, get_family, label, moe
from scaling.families.hf import to_theirs
from scaling.flops import forward_flops_per_sequence, param_counts
from scaling.model import apply, decode, init_cache, init_params, logical_axes
from scaling.train import loss_fn, lr_multipliers

MODELS = {
    "gpt2": ModelConfig(**TINY),
    "llama": ModelConfig(**TINY, family="llama", n_kv_head=1),
    "moe": ModelConfig(**TINY, family="moe", n_expert=4),
}
ODD = dict(n_layer=3, d_model=48, n_head=3, d_ff=200, vocab_size=300, seq_len=40)
SHAPES = [
    *MODELS.values(),
    ModelConfig(**ODD),
    ModelConfig(**ODD, family="llama", n_kv_head=1),
    ModelConfig(**ODD, family="moe", n_expert=3, expert_top_k=1),
]
EMBEDDINGS = ("wte", "wpe", "lm_head")  # scaling.flops: token, position and output embeddings


def _size(x) -> int:
    return int(np.prod(x.shape))


@pytest.mark.parametrize("m", SHAPES, ids=lambda m: label(m))
def test_param_counts_match_the_real_tree(m):
    """Embedding: the parameters under EMBEDDINGS; active: all but the top_k/n_expert share of
    the weights with an `expert` axis that a token leaves unused."""
    shapes = jax.eval_shape(lambda: init_params(m, 0))
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    specs = jax.tree.leaves(
        logical_axes(m), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
    )
    total = sum(_size(x) for _, x in leaves)
    embedding = sum(_size(x) for path, x in leaves if path[0].key in EMBEDDINGS)
    routed = sum(_size(x) for (_, x), spec in zip(leaves, specs) if "expert" in spec)
    counts = param_counts(m)
    assert (counts.total, counts.embedding) == (total, embedding)
    assert counts.non_embedding == total - embedding
    unused = routed * (m.n_expert - m.expert_top_k) // m.n_expert if m.family == "moe" else 0
    assert counts.active == counts.non_embedding - unused


@pytest.mark.parametrize("family", FIELDS)
def test_detailed_flops_agree_with_xla_cost_analysis(family):
    """XLA counts every op of forward + backward; the detailed count ignores norms, biases and
    activations and counts the embedding lookup as a matmul, so they differ a little (measured
    0.89 gpt2, 0.87 llama, 0.92 moe). The moe family's dense dispatch does more than the count
    (its ideal), by dense_dispatch_flops_per_sequence."""
    shape = dict(n_layer=2, d_model=64, n_head=4, d_ff=256, seq_len=64)
    extra = {"llama": {"n_kv_head": 2}, "moe": {"n_expert": 4}}.get(family, {})
    m = ModelConfig(**shape, family=family, **extra)
    params = jax.eval_shape(lambda: init_params(m, 0))
    batch = jax.ShapeDtypeStruct((2, m.seq_len + 1), jnp.int32)
    step = jax.jit(jax.value_and_grad(loss_fn), static_argnums=1)
    cost = step.lower(params, m, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    per_sequence = forward_flops_per_sequence(m)
    if family == "moe":
        per_sequence += moe.dense_dispatch_flops_per_sequence(m)
    assert cost["flops"] == pytest.approx(3 * 2 * per_sequence, rel=0.15)


DECODING = {  # grouped-query attention; a capacity that never drops (moe's docstring)
    "llama": MODELS["llama"],
    "moe": dataclasses.replace(MODELS["moe"], capacity_factor=2.0),
}


@pytest.mark.parametrize("family", DECODING)
def test_cached_decode_equals_full_apply(family):
    """A 10-token prompt in one pass, then a token at a time, right-aligned rows (row 1 has 4
    padding slots): every logit equals the full pass over the row's text from position 0."""
    m = DECODING[family]
    params = init_params(m, 0)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, m.vocab_size)
    pad = jnp.array([0, 4])
    step = jax.jit(decode, static_argnums=1)  # eager flax is slower than two compilations
    logits, cache = step(params, m, tokens[:, :10], init_cache(m, 2), 0, pad)
    steps = [logits]
    for i in range(10, 16):
        logits, cache = step(params, m, tokens[:, i : i + 1], cache, i, pad)
        steps.append(logits)
    cached = jnp.concatenate(steps, axis=1)
    # Row 1's text moved to position 0; what follows it there cannot change its logits.
    texts = tokens.at[1].set(jnp.roll(tokens[1], -4))
    full = jax.jit(apply, static_argnums=1)(params, m, texts)
    np.testing.assert_allclose(cached[0], full[0], atol=2e-5)
    np.testing.assert_allclose(cached[1, 4:], full[1, :12], atol=2e-5)


def test_routing_fills_slots_in_token_order_and_drops_the_rest():
    m = dataclasses.replace(MODELS["moe"], expert_top_k=1)
    probs = jnp.tile(jnp.array([0.7, 0.1, 0.1, 0.1]), (1, 5, 1))  # every token wants expert 0
    dispatch, combine, choice = moe.route(probs, m, slots=2)
    assert dispatch[0, :, 0].sum(-1).tolist() == [1, 1, 0, 0, 0]  # the first two get slots
    assert float(combine[0, 1, 0, 1]) == pytest.approx(0.7)  # k = 1: the raw probability
    assert float(moe.balance_loss(probs, choice, m)) == pytest.approx(4 * 0.7)  # 1: balanced


def test_a_full_expert_drops_tokens_yet_the_model_stays_causal():
    m = dataclasses.replace(MODELS["moe"], capacity_factor=0.25)
    params = init_params(m, 0)
    a = jax.random.randint(jax.random.PRNGKey(2), (1, 64), 0, m.vocab_size)
    b = a.at[:, 32:].set((a[:, 32:] + 1) % m.vocab_size)
    np.testing.assert_array_equal(apply(params, m, a)[:, :32], apply(params, m, b)[:, :32])


def test_remat_changes_no_gradient():
    """The moe block (llama's, with a routed MLP and an auxiliary loss) under remat."""
    m = dataclasses.replace(MODELS["moe"], seq_len=16)
    params = init_params(m, 0)
    batch = jax.random.randint(jax.random.PRNGKey(3), (2, 17), 0, m.vocab_size)
    grad = jax.jit(jax.grad(loss_fn), static_argnums=1)
    for a, b in zip(
        jax.tree.leaves(grad(params, m, batch)),
        jax.tree.leaves(grad(params, dataclasses.replace(m, remat="full"), batch)),
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "moe"])
def test_mup_scales_hidden_kernels_only(family):
    """µP's learning rates: hidden kernels (experts' included) by base/width; the untied
    readout and the router keep width-independent ones (layers.mup_ratio)."""
    m = dataclasses.replace(MODELS[family], mup_base_width=16)
    rates = lr_multipliers(jax.eval_shape(lambda: init_params(m, 0)), m)
    assert rates["block_0"]["attn"]["q"]["kernel"] == rates["block_1"]["mlp"]["up"]["kernel"]
    assert rates["block_0"]["attn"]["q"]["kernel"] == 0.5 and rates["lm_head"] == 1.0
    if family == "moe":
        assert rates["block_0"]["mlp"]["router"] == 1.0


def test_every_rung_gives_llama_the_non_embedding_parameters_of_gpt2():
    """SwiGLU at 2/3 of d_ff: within 3% from s1 up; s0 (d_model 16), whose biases and
    LayerNorms are 6% of gpt2's count, within 10%."""
    for name in zoo.LADDER:
        gpt2 = param_counts(ModelConfig(**zoo.shape(name))).non_embedding
        llama = param_counts(ModelConfig(**zoo.shape(name), family="llama")).non_embedding
        assert llama == pytest.approx(gpt2, rel=0.10 if name == "s0" else 0.03), name


HF_SHAPES = {  # a few tensors of each layout, as transformers shapes them for MODELS
    "gpt2": {
        "transformer.h.0.attn.c_attn.weight": (32, 96),
        "transformer.h.1.attn.c_attn.bias": (96,),
        "transformer.h.0.attn.c_proj.weight": (32, 32),
        "transformer.h.0.mlp.c_fc.weight": (32, 64),
    },
    "llama": {
        "model.layers.0.self_attn.q_proj.weight": (32, 32),
        "model.layers.1.self_attn.k_proj.weight": (16, 32),
        "model.layers.0.self_attn.o_proj.weight": (32, 32),
        "model.layers.0.mlp.down_proj.weight": (32, 40),
        "lm_head.weight": (256, 32),
    },
}


@pytest.mark.parametrize("family", HF_SHAPES)
def test_export_mapping_names_every_parameter_once(family):
    m = MODELS[family]
    shapes = jax.eval_shape(lambda: init_params(m, 0))
    ours = {
        "/".join(k.key for k in path): np.zeros(x.shape)
        for path, x in jax.tree_util.tree_flatten_with_path(shapes)[0]
    }
    exported = {}
    for path, name, transform in get_family(family).HF_EXPORT:
        for i in range(m.n_layer) if "{i}" in path else [0]:
            exported[name.format(i=i)] = to_theirs(ours.pop(path.format(i=i)), transform).shape
    assert not ours  # every parameter has a name there
    assert {k: exported[k] for k in HF_SHAPES[family]} == HF_SHAPES[family]


@pytest.mark.parametrize(
    "fields, where",
    [
        ({"family": "mamba"}, "model.family"),
        ({"n_kv_head": 1}, "model.n_kv_head"),  # gpt2 has no grouped-query attention
        ({"family": "llama", "n_expert": 4}, "model.n_expert"),
        ({"family": "llama", "n_head": 2, "n_kv_head": 3}, "model.n_kv_head"),
        ({"family": "llama", "d_model": 36, "n_head": 4}, "model.n_head"),  # head_dim 9
        ({"family": "moe", "n_expert": 2, "expert_top_k": 3}, "model.expert_top_k"),
        ({"family": "moe", "capacity_factor": 0}, "model.capacity_factor"),
    ],
)
def test_bad_family_settings_are_refused_by_name(fields, where):
    with pytest.raises(ConfigError) as e:
        run_config({"model": fields})
    assert e.value.field == where


def test_new_fields_keep_old_run_ids():
    """Ids computed before families existed (they hash only fields off their defaults)."""
    tiny = {"model": TINY, "train": {"batch_size": 8}}
    assert run_id(run_config(tiny)) == "8183f83a7c05"
    explicit = {"model": {**TINY, "family": "gpt2"}, "train": {"batch_size": 8}}
    assert run_id(run_config(explicit)) == "8183f83a7c05"
    assert run_id(run_config({})) == "44136fa355b3"


def test_a_sweep_over_families_names_and_labels_them_apart():
    spec = {
        "name": "families",
        "base": {"model": {"seq_len": 64}, "train": {"batch_size": 4, "tokens": 4096}},
        "grid": {"model.family": ["gpt2", "llama"], "model": ["s1", "s2"]},
    }
    runs = expand(spec).runs
    assert [r.name for r in runs] == ["gpt2-s1", "gpt2-s2", "llama-s1", "llama-s2"]
    assert [label(r.config.model) for r in runs] == ["s1", "s2", "llama-s1", "llama-s2"]
    assert (label(MODELS["llama"]), label(MODELS["moe"])) == ("llama-L2-d32-kv1", "moe-L2-d32-e4k2")


def test_results_carry_the_family_and_active_parameters(tmp_path):
    sweep = expand({"name": "f", "base": tiny_run(20), "grid": {"model.family": ["gpt2", "moe"]}})
    for spec in sweep.runs:  # finished as far as collect can tell
        finished(str(tmp_path / spec.run_id), spec)
    runs = collect(tmp_path)[0].set_index("family")
    assert runs.loc["gpt2", "model"] == "L2-d32" and runs.loc["moe", "model"] == "moe-L2-d32-e8k2"
    assert runs.loc["gpt2", "params_active"] == runs.loc["gpt2", "params_non_embedding"]
    assert runs.loc["moe", "params_active"] < runs.loc["moe", "params_non_embedding"] / 2
