import json

import pytest

from experiments import runner, store
from experiments.plan import format_plan, plan_table
from experiments.sweep import RunSpec, expand, load_sweep, normalize, run_id
from scaling.config import ConfigError, run_config
from scaling.flops import flops_per_token, param_counts

BASE = {"model": {"seq_len": 64}, "train": {"batch_size": 4}}


def test_demo_sweep_spans_the_required_grid():
    sweep = load_sweep("experiments/configs/demo.yaml")
    from scaling.flops import param_counts

    branches = [s for s in sweep.runs if s.design.get("role") == "branch"]
    sizes = {param_counts(s.config.model).non_embedding for s in branches}
    budgets = {s.design["flops_budget"] for s in branches}
    assert len(sizes) >= 5 and len(budgets) >= 3 and len(branches) == len(sizes) * len(budgets)
    assert max(sizes) / min(sizes) >= 10
    assert min(s.config.steps for s in branches) >= 150  # no run limited by too few steps


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
    assert [r.name for r in sweep.runs] == ["s0-2560", "s0-5120", "L3-d32-2560", "L3-d32-5120"]
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
        ({"name": "t", "grid": {"model": ["s99"]}}, "run s99: model: unknown size 's99'"),
        ({"name": "t", "grdi": {}}, "sweep.grdi: unknown key"),
        ({"grid": {}}, "sweep.name: missing"),
        ({"name": "t", "grid": {"train.tokens": 5}}, "sweep.grid: must map field paths"),
        (
            {"name": "t", "base": BASE, "grid": {"train.tokens": [10]}},
            "run 10: train.tokens: 10 tokens is less than one batch",
        ),
        ({"name": "t", "grid": {"model.d_model": [30]}}, "run 30: model.d_model: 30 is not"),
        ({"name": "t", "grid": {}}, "sweep.grid: must map field paths to non-empty lists"),
        ({"name": "t"}, "sweep: the design is empty"),
        ({"name": "t", "base": [1], "grid": {"train.seed": [0]}}, "sweep.base: expected a mapping"),
        ({"name": "t", "zip": {"model": ["s0"], "train.seed": [1, 2]}}, "sweep.zip: must map"),
        (
            {"name": "t", "base": BASE, "isoflop": {"budgets": [3e7], "models": ["s0", "s5"]}},
            "run s5-C3e\\+07: train.tokens: .* less than one batch .*; fix: raise train.tokens "
            "\\(the compute budget\\)",
        ),
        ({"name": "t", "isoflop": {"budgets": [1e9], "sizes": 3, "x": 1}}, "sweep.isoflop.x"),
        (
            {"name": "t", "grid": {"train.seed": list(range(300))}},
            "sweep: the design expands to 300 runs .*; fix: .* pass --yes",
        ),
        ({"name": "t", "grid": {"model": ["s0"]}, "lr_rule": {"rule": "x"}}, "sweep.lr_rule"),
        ({"name": "t", "repeat": {"epochs": [1]}}, "sweep.repeat: must give exactly"),
        (
            {"name": "t", "repeat": {"unique_tokens": [1e4], "epochs": [0]}},
            "sweep.repeat.epochs: must be a non-empty list of finite numbers > 0",
        ),
    ],
)
def test_bad_sweeps_name_the_field(spec, message):
    with pytest.raises(ConfigError, match=message):
        expand(spec)


def test_repeat_design_trains_whole_epochs_of_the_first_unique_tokens():
    spec = {
        "name": "r",
        "base": {**BASE, "model": {"seq_len": 32}, "train": {"batch_size": 2}},
        "grid": {"model": ["s0", "s1"]},
        "repeat": {"unique_tokens": [4e3, 1.6e4], "epochs": [1, 4]},
    }
    runs = expand(spec).runs
    assert len(runs) == 8 and runs[1].name == "s0-U4e+03-ep4"
    for r in runs:
        unique = r.config.data.unique_tokens
        assert r.config.data.sampling == "epochs" and unique in (4000, 16000)
        per_epoch = (unique - 1) // 32 * 32  # the tokens the whole windows predict
        planned = r.design["planned_epochs"] * per_epoch
        assert abs(r.config.tokens_trained - planned) <= 32  # within half a step (2 windows)
        assert r.config.tokens_trained == planned or unique == 16000  # 124 windows: whole steps


def test_zip_isoflop_ratios_and_width_rule():
    spec = {
        "name": "t",
        "base": {**BASE, "train": {"batch_size": 4, "learning_rate": 0.004}},
        "zip": {"model": ["s1", "s2"], "train.seed": [0, 1]},
        "grid": {"tokens_per_param": [10, 20]},
        "lr_rule": {"rule": "inverse_width", "base_width": 16},
    }
    runs = expand(spec).runs
    assert [r.name for r in runs] == ["10-s1-0", "10-s2-1", "20-s1-0", "20-s2-1"]
    for r in runs:
        n = param_counts(r.config.model).non_embedding
        assert r.config.train.tokens == r.design["tokens_per_param"] * n
        assert r.config.train.learning_rate == pytest.approx(0.004 * 16 / r.config.model.d_model)
    iso = expand({"name": "i", "base": BASE, "isoflop": {"budgets": [1e10, 1e11], "sizes": 3}})
    for r in iso.runs:
        c = r.design["flops_budget"]
        assert r.config.train.tokens == int(c / flops_per_token(r.config.model).detailed)
    six_n = expand(
        {"name": "k", "base": BASE, "isoflop": {"budgets": [1e10], "sizes": 3, "flops": "6n"}}
    )
    for r in six_n.runs:
        assert r.config.train.tokens == int(1e10 / flops_per_token(r.config.model).six_n)
    sizes = {
        c: [r.config.model.d_model for r in iso.runs if r.design["flops_budget"] == c]
        for c in (1e10, 1e11)
    }
    assert len(sizes[1e10]) == 3 and sum(sizes[1e11]) > sum(sizes[1e10])  # larger C, larger N


def test_cooldown_design_shares_one_stable_run_per_shape():
    spec = {
        "name": "w",
        "base": BASE,
        "grid": {"model": ["s0", "s1"], "train.tokens": [2560, 5120, 10240]},
        "cooldown": {"decay_fraction": 0.2},
    }
    sweep = expand(spec)
    stable = [r for r in sweep.runs if r.design.get("role") == "stable"]
    branches = [r for r in sweep.runs if r.design.get("role") == "branch"]
    assert len(stable) == 2 and len(branches) == 6
    assert [len(stage) for stage in sweep.stages()] == [2, 6]
    s0 = next(r for r in stable if r.config.model.d_model == 16)
    # 10, 20, 40 steps of 4×64 tokens decay over their last 2, 4, 8 steps
    assert s0.config.train.save_steps == (8, 16, 32) and s0.config.steps == 32
    assert s0.config.train.schedule == "constant"
    assert {b.config.train.init_from for b in branches if b.config.model.d_model == 16} == {
        s0.run_id
    }
    text = format_plan(sweep, plan_table(sweep))
    # stable 32 steps + cooldowns 2+4+8 = 46 of 70 steps: 34% saved
    assert "8 runs" in text and "(34% saved)" in text


def test_run_ids_hash_only_what_differs_from_the_defaults():
    """A field added to the schema (its default keeps the old behaviour) renames no run: the
    id of this config is pinned, and spelling a default out changes nothing."""
    cfg = run_config(BASE)
    assert run_id(cfg) == "dedf10bae394"
    spelled = run_config(BASE | {"model": {"seq_len": 64, "mup_base_width": 0, "dtype": "float32"}})
    assert run_id(spelled) == run_id(cfg)
    assert run_id(run_config(BASE | {"name": "x", "mesh": {"fsdp": 1}})) == run_id(cfg)


def test_a_run_directory_trained_under_other_settings_is_refused_by_name(tmp_path):
    cfg = run_config(BASE).to_dict()
    older = json.loads(json.dumps(cfg))
    del older["model"]["mup_base_width"]  # written before the field existed: the same run
    (tmp_path / "config.json").write_text(json.dumps(older))
    store.claim_config(str(tmp_path), cfg, normalize)
    changed = json.loads(json.dumps(cfg))
    changed["train"]["beta2"] = 0.999  # trained when the default was another value
    (tmp_path / "config.json").write_text(json.dumps(changed))
    with pytest.raises(RuntimeError, match=r"\(train.beta2 differ\)"):
        store.claim_config(str(tmp_path), cfg, normalize)


def test_a_refused_run_directory_is_a_failed_outcome_not_an_exception(tmp_path):
    cfg = run_config(BASE)
    spec = RunSpec(run_id(cfg), "r", cfg)
    changed = json.loads(json.dumps(cfg.to_dict()))
    changed["train"]["beta2"] = 0.999
    (tmp_path / spec.run_id).mkdir()
    (tmp_path / spec.run_id / "config.json").write_text(json.dumps(changed))
    result = runner.work(runner.Task(spec, str(tmp_path), runner.Launch(show_progress=False)))
    assert result["result"] == "failed" and "(train.beta2 differ)" in result["message"]
    assert store.attempts(tmp_path / spec.run_id) == []  # nothing claimed, nothing trained
