"""The llama and moe families through scaling.train.train() itself: a killed run resumes to
bit-identical parameters, and a dp2 × fsdp2 × tp2 mesh of 8 simulated devices gives the
held-out losses of one device."""

import jax
import numpy as np
import pytest
from conftest import TINY, tiny_run
from test_sharded_train import _on_mesh

from scaling.config import run_config
from scaling.train import read_metrics, train

FAMILIES = {
    "llama": {"family": "llama", "n_kv_head": 1},
    "moe": {"family": "moe", "n_expert": 4},  # capacity 1.25: some tokens are dropped
}


def _raw(family: str) -> dict:
    raw = tiny_run(steps=6, log_every=2, eval_every=2, checkpoint_every=3)
    return raw | {"model": TINY | FAMILIES[family], "data": {"synthetic_chars": 50_000}}


def _heldout(run_dir) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir) if r["split"] == "heldout"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """Each family's uninterrupted run on one device: (its TrainResult, its directory)."""
    runs = {}
    for family in FAMILIES:
        run_dir = tmp_path_factory.mktemp(family)
        runs[family] = (train(run_config(_raw(family)), run_dir), run_dir)
    return runs


class Stop(Exception):
    pass


def _stop_at(step: int):
    def on_step(done, params):
        if done == step:
            raise Stop

    return on_step


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_killed_run_resumes_to_the_same_parameters(family, whole, tmp_path):
    cfg = run_config(_raw(family))
    with pytest.raises(Stop):
        train(cfg, tmp_path, on_step=_stop_at(4))  # after the checkpoint at step 3
    resumed = train(cfg, tmp_path)
    assert resumed.resumed_from == 3
    for a, b in zip(jax.tree.leaves(whole[family][0].params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    assert _heldout(tmp_path) == _heldout(whole[family][1])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_an_8_device_mesh_gives_the_losses_of_one_device(family, whole, tmp_path):
    """kv_heads (1) does not split over tensor=2 and is replicated; experts split over fsdp."""
    mesh = {"data": 2, "fsdp": 2, "tensor": 2}
    losses = _on_mesh(_raw(family), tmp_path, mesh)
    assert losses == pytest.approx(_heldout(whole[family][1]), abs=1e-5)
