"""Hugging Face export and import (scaling.export, experiments.export_run): the exported arrays
run through NumPy forward passes written from transformers' GPT-2 and Llama architectures give
our logits; import gives back the parameters bit for bit, and the imported run evaluates; the
byte tokenizer's tokenizer.json gives our ids; malformed checkpoints are refused on one line."""

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
import safetensors.numpy
from conftest import TINY, tiny_run
from tokenizers import Tokenizer

from experiments import export_run, store
from experiments.cli import main
from scaling import export
from scaling.config import ModelConfig, run_config
from scaling.model import apply, init_params
from scaling.tokenizer import ByteTokenizer
from scaling.train import checkpoint_manager, restore, train

BYTES = ByteTokenizer()
logits = jax.jit(apply, static_argnums=1)
# µP (base widths 24 and 16 of 32) so that the output multiplier has to be folded in; llama with
# grouped-query attention (4 heads, 2 key/value heads) and a θ of its own.
MODELS = {
    "gpt2": ModelConfig(**TINY, mup_base_width=24),
    "llama": ModelConfig(
        **TINY | {"n_head": 4}, family="llama", n_kv_head=2, rope_theta=500.0, mup_base_width=16
    ),
}


def _params(m: ModelConfig, seed: int = 0):
    """Random parameters of m's shapes, norms' scales around 1: every tensor's mapping shows
    in the logits (an initialisation's zero biases and unit scales would hide some). Drawn with
    NumPy: compiling the initialisation of each test model costs seconds."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: init_params(m, 0))
    return jax.tree_util.tree_map_with_path(
        lambda path, x: rng.normal(float(path[-1].key == "scale"), 0.3, x.shape).astype(np.float32),
        shapes,
    )


# ---------------------------------------------------------------------------------------------
# NumPy reference forward passes, from transformers' modeling_gpt2.py and modeling_llama.py,
# over the exported arrays and config.json only (float64).


def _attention(q, k, v):
    """Causal softmax(q kᵀ/√head_dim) v over (time, heads, head_dim), heads concatenated."""
    t = q.shape[0]
    scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("hts,shd->thd", weights, v).reshape(t, -1)


def gpt2_logits(c: dict, w: dict, ids) -> np.ndarray:
    assert c["activation_function"] == "gelu_new" and c["scale_attn_weights"]
    t, heads, eps = len(ids), c["n_head"], c["layer_norm_epsilon"]

    def norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def conv1d(x, name):  # transformers' Conv1D: x @ weight (in, out) + bias
        return x @ w[f"{name}.weight"] + w[f"{name}.bias"]

    def gelu_new(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:t]
    for i in range(c["n_layer"]):
        h = f"transformer.h.{i}"
        qkv = conv1d(norm(x, f"{h}.ln_1"), f"{h}.attn.c_attn")
        q, k, v = (y.reshape(t, heads, -1) for y in np.split(qkv, 3, axis=-1))
        x = x + conv1d(_attention(q, k, v), f"{h}.attn.c_proj")
        x = x + conv1d(gelu_new(conv1d(norm(x, f"{h}.ln_2"), f"{h}.mlp.c_fc")), f"{h}.mlp.c_proj")
    return norm(x, "transformer.ln_f") @ w["transformer.wte.weight"].T  # tied head


def llama_logits(c: dict, w: dict, ids) -> np.ndarray:
    assert c["hidden_act"] == "silu" and c["rope_scaling"] is None
    t, hd, eps = len(ids), c["head_dim"], c["rms_norm_eps"]
    heads, kv_heads = c["num_attention_heads"], c["num_key_value_heads"]

    def norm(x, name):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w[f"{name}.weight"]

    def linear(x, name):  # nn.Linear: x @ weight.T, weight (out, in)
        return x @ w[f"{name}.weight"].T

    inv_freq = 1.0 / c["rope_theta"] ** (np.arange(0, hd, 2) / hd)
    angles = np.outer(np.arange(t), inv_freq)
    cos, sin = (np.concatenate([f(angles)] * 2, -1)[:, None] for f in (np.cos, np.sin))

    def rope(x):  # x·cos + rotate_half(x)·sin
        return x * cos + np.concatenate([-x[..., hd // 2 :], x[..., : hd // 2]], -1) * sin

    x = w["model.embed_tokens.weight"][ids]
    for i in range(c["num_hidden_layers"]):
        layer = f"model.layers.{i}"
        h = norm(x, f"{layer}.input_layernorm")
        q = rope(linear(h, f"{layer}.self_attn.q_proj").reshape(t, heads, hd))
        k = rope(linear(h, f"{layer}.self_attn.k_proj").reshape(t, kv_heads, hd))
        v = linear(h, f"{layer}.self_attn.v_proj").reshape(t, kv_heads, hd)
        k, v = (np.repeat(y, heads // kv_heads, axis=1) for y in (k, v))  # repeat_kv
        x = x + linear(_attention(q, k, v), f"{layer}.self_attn.o_proj")
        h = norm(x, f"{layer}.post_attention_layernorm")
        gate = linear(h, f"{layer}.mlp.gate_proj")
        up = linear(h, f"{layer}.mlp.up_proj")
        x = x + linear(gate / (1 + np.exp(-gate)) * up, f"{layer}.mlp.down_proj")
    return linear(norm(x, "model.norm"), "lm_head")


REFERENCE = {"gpt2": gpt2_logits, "llama": llama_logits}


def _reload(directory) -> tuple[dict, dict]:
    config = json.loads((directory / export.CONFIG).read_text())
    tensors = safetensors.numpy.load_file(directory / export.WEIGHTS)
    return config, {k: v.astype(np.float64) for k, v in tensors.items()}


@pytest.mark.parametrize("family", MODELS)
def test_exported_arrays_give_our_logits_in_a_reference_forward_pass(family, tmp_path):
    m = MODELS[family]
    params = _params(m)
    export.write_hf(tmp_path, params, m, BYTES)
    config, tensors = _reload(tmp_path)
    assert config["vocab_size"] == m.vocab_size and config["torch_dtype"] == "float32"
    ids = np.random.default_rng(0).integers(0, m.vocab_size, m.seq_len)
    ours = np.asarray(logits(params, m, ids[None]))[0]
    theirs = REFERENCE[family](config, tensors, ids)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4)
    assert np.abs(ours).max() > 1  # logits that a wrong mapping or scale would visibly change


@pytest.mark.parametrize("family", MODELS)
def test_import_gives_back_the_exported_parameters_bit_for_bit(family, tmp_path):
    m = dataclasses.replace(MODELS[family], mup_base_width=0)
    params = _params(m, seed=3)
    export.write_hf(tmp_path, params, m, BYTES)
    checkpoint = export.read_hf(tmp_path)
    assert checkpoint.tokenizer == "bytes"  # our byte tokenizer's file is recognised
    m2, params2 = export.from_hf(checkpoint.config, checkpoint.tensors, "hf")
    assert export.same_model(m2, m)  # a llama's d_ff is known only up to its SwiGLU width
    mine, theirs = export.flatten(params), export.flatten(params2)
    assert mine.keys() == theirs.keys()
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)


def test_a_mup_model_comes_back_as_the_standard_model_with_its_logits(tmp_path):
    m = MODELS["llama"]
    params = _params(m)
    export.write_hf(tmp_path, params, m, BYTES)
    checkpoint = export.read_hf(tmp_path)
    m2, params2 = export.from_hf(checkpoint.config, checkpoint.tensors, "hf")
    assert m2.mup_base_width == 0 and export.same_model(m2, m)
    ids = np.arange(20)[None]
    np.testing.assert_allclose(logits(params2, m2, ids), logits(params, m, ids), atol=1e-5)


def test_published_layout_variants_import(tmp_path):
    """A GPT-2 saved from the base class (no `transformer.` prefix, with its causal-mask
    buffers), and a Llama with a tied head (no lm_head tensor)."""
    gpt2 = dataclasses.replace(MODELS["gpt2"], mup_base_width=0)
    config, tensors = export.to_hf(_params(gpt2), gpt2, BYTES)
    base = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    base["h.0.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))
    m, params = export.from_hf(config, base, "hf")
    assert np.array_equal(params["wte"]["embedding"], tensors["transformer.wte.weight"])

    llama = dataclasses.replace(MODELS["llama"], mup_base_width=0)
    config, tensors = export.to_hf(_params(llama), llama, BYTES)
    del tensors["lm_head.weight"]
    _, params = export.from_hf(config | {"tie_word_embeddings": True}, tensors, "hf")
    assert np.array_equal(params["lm_head"], tensors["model.embed_tokens.weight"].T)


def test_rope_theta_is_read_as_transformers_4_and_5_write_it():
    m = dataclasses.replace(MODELS["llama"], mup_base_width=0)
    config, tensors = export.to_hf(_params(m), m, BYTES)
    v4 = {k: v for k, v in config.items() if k != "rope_parameters"}
    v5 = {k: v for k, v in config.items() if k not in ("rope_theta", "rope_scaling")}
    for written in (v4, v5):
        assert export.from_hf(written, tensors, "hf")[0].rope_theta == 500.0


def test_byte_tokenizer_json_encodes_to_our_ids(tmp_path, bpe):
    export.write_tokenizer(tmp_path, BYTES, 64)
    theirs = Tokenizer.from_file(str(tmp_path / export.TOKENIZER_JSON))
    for text in ["hello world\n\nQ: 12+7=", "é€😀\x00\t  <0x41> <|endoftext|>", ""]:
        ids = theirs.encode(text, add_special_tokens=False).ids
        assert ids == BYTES.encode(text).tolist()
        assert theirs.decode(ids) == text
    assert json.loads((tmp_path / export.TOKENIZER_CONFIG).read_text())["eos_token"] is None
    # re-saved by transformers, it gains a post-processor: still our byte tokenizer on import
    saved = json.loads((tmp_path / export.TOKENIZER_JSON).read_text())
    saved["post_processor"] = {"type": "TemplateProcessing", "single": [], "pair": []}
    (tmp_path / export.TOKENIZER_JSON).write_text(json.dumps(saved))
    assert export.tokenizer_of(tmp_path) == "bytes"
    # a tokenizers file is the run's own, its special tokens named
    export.write_tokenizer(tmp_path, bpe, 64)
    copied = (tmp_path / export.TOKENIZER_JSON).read_bytes()
    assert copied == Path(bpe.spec).read_bytes()
    special = json.loads((tmp_path / export.TOKENIZER_CONFIG).read_text())
    assert special["eos_token"] == "<|endoftext|>" and bpe.eos_id is not None


def test_a_subword_model_imports_with_its_tokenizer_and_a_shorter_context(bpe, tmp_path):
    m = ModelConfig(**TINY | {"vocab_size": 512})
    params = _params(m)
    hf_dir = tmp_path / "hf"
    export.write_hf(hf_dir, params, m, bpe)
    assert json.loads((hf_dir / export.CONFIG).read_text())["eos_token_id"] == bpe.eos_id
    run = tmp_path / "imported" / "bpe"
    argv = ["import-hf", str(hf_dir), str(run), "--seq-len", "32", "--tokens", "6400"]
    assert main(argv) == 0
    cfg, params2 = _restored(run)
    assert (cfg.model.seq_len, cfg.steps, cfg.train.batch_size) == (32, 200, 1)
    assert cfg.data.run_tokenizer().sha256 == bpe.sha256  # the run's own copy
    assert Path(cfg.data.tokenizer).parent == run.absolute()
    assert np.array_equal(params2["wpe"], params["wpe"][:32])  # the first 32 positions
    longer = ["import-hf", str(hf_dir), str(tmp_path / "imported" / "x"), "--seq-len", "65"]
    assert main(longer) == 2


# ---------------------------------------------------------------------------------------------
# The commands, as a user runs them


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # slow: compiling a train step and generation costs 40 s on a cold cache
    """A tiny gpt2 run trained for 4 steps, as `scaling train` leaves it (config.json too)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-0123456789ab"
    raw = tiny_run(4) | {"data": {"synthetic_chars": 20_000}}
    raw["train"] |= {"eval_every": 2, "checkpoint_every": 2}
    cfg = run_config(raw)
    store.claim_config(str(run_dir), cfg.to_dict())
    result = train(cfg, run_dir)
    store.set_status(
        str(run_dir), store.DONE, steps=cfg.steps, heldout_loss=result.final_heldout_loss
    )
    return run_dir, cfg, result


def _restored(run_dir):
    cfg = run_config(json.loads((run_dir / store.CONFIG).read_text()))
    manager = checkpoint_manager(run_dir, cfg.train)
    try:
        return cfg, restore(manager, cfg, cfg.steps)["params"]
    finally:
        manager.close()


@pytest.mark.slow
def test_export_import_and_evaluate_a_trained_run(trained, tmp_path, capsys):
    run_dir, cfg, result = trained
    out = tmp_path / "hf"
    assert main(["export", str(run_dir), str(out)]) == 0
    card = (out / "README.md").read_text()
    assert f"{result.final_heldout_loss:.4f} nats/token" in card and "6·N·D" in card
    record = json.loads((out / export.RUN_RECORD).read_text())
    assert record["step"] == 4 and record["tokens"] == 4 * 8 * 64
    assert record["flops_6n"] == 6 * record["params"]["active"] * record["tokens"]

    imported = tmp_path / "imported" / "tiny"
    assert main(["import-hf", str(out), str(imported)]) == 0
    cfg2, params2 = _restored(imported)
    assert (cfg2.model, cfg2.train.tokens, cfg2.eval) == (cfg.model, cfg.train.tokens, cfg.eval)
    mine, theirs = export.flatten(result.params), export.flatten(params2)
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)  # bit for bit
    assert store.status(imported)["heldout_loss"] == result.final_heldout_loss

    argv = ["eval", str(imported.parent), "--tasks", "add2", "--shots", "0", "--n-examples", "4"]
    assert main(argv) == 0
    rows = store.read_eval(imported)
    assert {(r["task"], r["step"]) for r in rows} == {("add2", 4)}

    again = tmp_path / "again"  # exporting the imported run writes the same weights
    assert main(["export", str(imported), str(again)]) == 0
    assert (again / export.WEIGHTS).read_bytes() == (out / export.WEIGHTS).read_bytes()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory without training: a random llama imported (its checkpoint at step 1)."""
    m = dataclasses.replace(MODELS["llama"], mup_base_width=0)
    hf_dir = tmp_path_factory.mktemp("hf")
    export.write_hf(hf_dir, _params(m), m, BYTES)
    run = tmp_path_factory.mktemp("runs") / "llama"
    export_run.import_hf(hf_dir, run)
    return run


def test_npz_export_is_the_parameters_as_trained(run_dir, tmp_path):
    assert main(["export", str(run_dir), str(tmp_path), "--format", "npz", "--step", "1"]) == 0
    cfg, params = _restored(run_dir)
    arrays = np.load(tmp_path / export.NPZ)
    assert sorted(arrays.files) == sorted(export.flatten(params))
    assert all(np.array_equal(arrays[k], v) for k, v in export.flatten(params).items())
    config = json.loads((tmp_path / export.CONFIG).read_text())
    assert run_config(config) == cfg
    assert json.loads((tmp_path / export.RUN_RECORD).read_text())["step"] == 1
    assert "not measured at this step" in (tmp_path / "README.md").read_text()


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file or field, exit code 2


def _edit_config(d, **fields):
    config = json.loads((d / export.CONFIG).read_text())
    (d / export.CONFIG).write_text(json.dumps(config | fields))


def _replace_tensor(d, name, array):
    tensors = safetensors.numpy.load_file(d / export.WEIGHTS)
    tensors[name] = array
    safetensors.numpy.save_file(tensors, d / export.WEIGHTS)


BAD_CHECKPOINTS = {  # what is done to a good export -> what the error names
    "no config": (lambda d: (d / export.CONFIG).unlink(), "config.json: missing"),
    "config not JSON": (lambda d: (d / export.CONFIG).write_text("{"), "config.json: not JSON"),
    "other model type": (lambda d: _edit_config(d, model_type="mistral"), "model_type"),
    "exact GELU": (lambda d: _edit_config(d, activation_function="gelu"), "activation_function"),
    "other eps": (lambda d: _edit_config(d, layer_norm_epsilon=1e-6), "layer_norm_epsilon"),
    "bad n_head": (lambda d: _edit_config(d, n_head=5), "n_head"),
    "no weights": (lambda d: (d / export.WEIGHTS).unlink(), "no model.safetensors"),
    "truncated weights": (
        lambda d: (d / export.WEIGHTS).write_bytes((d / export.WEIGHTS).read_bytes()[:100]),
        "not a safetensors file",
    ),
    "wrong shape": (
        lambda d: _replace_tensor(d, "transformer.ln_f.bias", np.zeros(7, np.float32)),
        "transformer.ln_f.bias: shape (7,)",
    ),
    "extra tensor": (
        lambda d: _replace_tensor(d, "transformer.h.0.adapter", np.zeros(2, np.float32)),
        "tensor transformer.h.0.adapter is not part of a gpt2 model",
    ),
    "no tokenizer": (lambda d: (d / export.TOKENIZER_JSON).unlink(), "no tokenizer.json"),
}


@pytest.fixture(scope="module")
def good_export(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    m = dataclasses.replace(MODELS["gpt2"], mup_base_width=0)
    export.write_hf(d, _params(m), m, BYTES)
    return d


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_a_malformed_checkpoint_is_refused_on_one_line(case, good_export, tmp_path, capsys):
    damage, expected = BAD_CHECKPOINTS[case]
    hf_dir = tmp_path / "hf"
    shutil.copytree(good_export, hf_dir)
    damage(hf_dir)
    assert main(["import-hf", str(hf_dir), str(tmp_path / "runs" / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "runs" / "x" / store.CONFIG).exists()


def test_llama_settings_we_cannot_compute_are_refused(tmp_path):
    m = dataclasses.replace(MODELS["llama"], mup_base_width=0)
    config, tensors = export.to_hf(_params(m), m, BYTES)
    for fields, named in [
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_parameters"),
        ({"intermediate_size": 30}, "intermediate_size"),
        ({"attention_bias": True}, "attention_bias"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rms_norm_eps": 1e-6}, "rms_norm_eps"),
    ]:
        with pytest.raises(export.ConfigError) as e:
            export.from_hf(config | fields, tensors, "hf")
        assert named in e.value.field


def test_export_refusals(run_dir, tmp_path, capsys):
    moe = tmp_path / "moe"
    raw = tiny_run(4) | {"model": TINY | {"family": "moe", "n_expert": 2}}
    store.claim_config(str(moe), run_config(raw).to_dict())
    for argv, named in [
        (["export", str(moe), str(tmp_path / "o1")], "--format: family moe"),
        (
            ["export", str(run_dir), str(tmp_path / "o2"), "--step", "3"],
            "--step: no checkpoint at step 3",
        ),
        (["export", str(tmp_path), str(tmp_path / "o3")], "RUN_DIR: no config.json"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err, err
