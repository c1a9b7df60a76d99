import json

import pytest

from experiments import store
from experiments.sweep import expand, load_sweep, run_id
from scaling.config import ConfigError

BASE = {"model": {"seq_len": 64}, "train": {"batch_size": 4}}


def test_demo_sweep_spans_the_required_grid():
    sweep = load_sweep("experiments/configs/demo.yaml")
    from scaling.flops import param_counts

    sizes = {param_counts(s.config.model).non_embedding for s in sweep.runs}
    tokens = {s.config.train.tokens for s in sweep.runs}
    assert len(sizes) >= 6 and len(tokens) >= 2 and len(sweep.runs) == len(sizes) * len(tokens)
    assert max(sizes) / min(sizes) >= 10**1.5


def test_grid_expansion_and_stable_ids():
    spec = {
        "name": "t",
        "base": BASE,
        "grid": {
            "model": ["s0", {"n_layer": 3, "d_model": 32, "n_head": 2, "d_ff": 64}],
            "train.tokens": [2560, 5120],
        },
    }
    sweep = expand(spec)
    assert [r.name for r in sweep.runs] == ["s0-2560", "s0-5120", "model-2560", "model-5120"]
    assert sweep.runs[2].config.model.n_layer == 3
    assert sweep.runs[0].config.model.seq_len == 64  # base kept under the ladder shape
    ids = [r.run_id for r in sweep.runs]
    assert len(set(ids)) == 4 and ids == [r.run_id for r in expand(spec).runs]
    assert all(run_id(r.config) == r.run_id for r in sweep.runs)
    # the display name is not part of the identity of a run
    renamed = expand({**spec, "name": "other"})
    assert [r.run_id for r in renamed.runs] == ids


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "t", "grid": {"model": ["s99"]}}, "sweep.grid.model: unknown size 's99'"),
        ({"name": "t", "grdi": {}}, "sweep.grdi: unknown key"),
        ({"grid": {}}, "sweep.name: missing"),
        ({"name": "t", "grid": {"train.tokens": 5}}, "sweep.grid: must map field paths"),
        (
            {"name": "t", "base": BASE, "grid": {"train.tokens": [10]}},
            "run 10: train.tokens: 10 tokens is less than one batch",
        ),
        ({"name": "t", "grid": {"model.d_model": [30]}}, "run 30: model.d_model: 30 is not"),
    ],
)
def test_bad_sweeps_name_the_field(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expand(spec)


def test_run_directory_refuses_a_different_config(tmp_path):
    store.claim_config(tmp_path, {"a": (1, 2), "name": "x"})
    store.claim_config(tmp_path, {"a": [1, 2], "name": "renamed"})  # same run
    with pytest.raises(RuntimeError, match="different run"):
        store.claim_config(tmp_path, {"a": [1, 3], "name": "x"})
    store.set_status(tmp_path, store.RUNNING, steps=3)
    store.set_status(tmp_path, store.DONE, heldout_loss=1.5)
    status = json.loads((tmp_path / store.STATUS).read_text())
    assert status["state"] == "done" and status["steps"] == 3 and status["heldout_loss"] == 1.5
