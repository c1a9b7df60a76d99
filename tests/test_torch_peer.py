"""bench/torch_peer.py, the PyTorch peer of the train-step bench: its torch modules, built from
the Hugging Face tensors of scaling.export.to_hf, give our logits (gpt2; llama with grouped-query
attention and a θ of its own; both under µP, whose multiplier to_hf folds in). Skipped where
torch is not installed (it is a benchmark peer only: `pip install -e '.[bench]'`)."""

import dataclasses
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest
from test_export import BYTES, MODELS, _params

from scaling import export
from scaling.config import TrainConfig
from scaling.model import apply
from scaling.train import optimizer, optimizer_args

torch = pytest.importorskip("torch")
spec = importlib.util.spec_from_file_location(
    "torch_peer", Path(__file__).resolve().parent.parent / "bench" / "torch_peer.py"
)
torch_peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_peer)


@pytest.mark.parametrize("family", MODELS)
def test_the_torch_module_of_our_exported_tensors_gives_our_logits(family):
    m = MODELS[family]
    params = _params(m)
    model, decay = torch_peer.from_ours(params, m, BYTES)
    ids = np.random.default_rng(0).integers(0, m.vocab_size, (2, m.seq_len))
    ours = np.asarray(jax.jit(apply, static_argnums=1)(params, m, ids))
    with torch.no_grad():
        theirs = model(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4)
    assert np.abs(ours).max() > 1  # logits that a wrong mapping or scale would visibly change


@pytest.mark.parametrize("family", MODELS)
def test_the_torch_optimizer_decays_what_ours_decays(family):
    """One step on zero gradients moves only what weight decay moves, by lr·wd·p: the same
    tensors by the same amounts on both sides."""
    m = dataclasses.replace(MODELS[family], mup_base_width=0)
    t, lr = TrainConfig(weight_decay=0.5), 0.1
    params = _params(m)
    model, decay = torch_peer.from_ours(params, m, BYTES)
    opt = torch_peer.optimizer(model, decay, lr, t)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    ours = optimizer(*optimizer_args(t))
    zeros = jax.tree.map(np.zeros_like, params)
    updates, _ = jax.jit(ours.update)(zeros, ours.init(params), params)
    stepped = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    want = export.to_hf(stepped, m, BYTES)[1]
    got = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert 0 < len(decay) < len(want)
