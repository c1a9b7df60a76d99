import pytest

from experiments.cli import main
from scaling.config import ConfigError, RunConfig, run_config


def test_defaults_validate():
    cfg = run_config({})
    assert isinstance(cfg, RunConfig)
    assert cfg.tokens_trained == cfg.steps * cfg.train.batch_size * cfg.model.seq_len


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": {"d_modle": 64}}, "model.d_modle: unknown key; fix: did you mean 'd_model'?"),
        ({"model": {"d_model": "64"}}, "model.d_model: expected int, got str"),
        ({"model": {"d_model": 100, "n_head": 3}}, "model.d_model: 100 is not divisible by"),
        ({"train": {"learning_rate": -1.0}}, "train.learning_rate: must be > 0"),
        ({"eval": {"tasks": ["add9"]}}, "eval.tasks: unknown task 'add9'"),
        ({"eval": {"shots": {"k": 3}}}, "eval.shots: expected a list, got dict"),
        ({"eval": {"samples": 2, "pass_k": [1, 5]}}, "eval.pass_k: k=5 exceeds samples=2"),
        ({"data": {"tasks": ["python_functions"]}}, "data.tasks: no generated task"),
        ({"model": {"remat": "some"}}, "model.remat: unknown policy"),
        ({"data": {"corpus": "files"}}, "data.paths: empty while corpus is 'files'"),
        ({"train": {"batch_size": True}}, "train.batch_size: expected int, got bool"),
        ({"oops": 1}, "oops: unknown key"),
        ({"train": {"learning_rate": float("inf")}}, "train.learning_rate: inf is not a finite"),
        ({"train": {"grad_clip": float("nan")}}, "train.grad_clip: nan is not a finite"),
        ({"train": {"weight_decay": -0.1}}, "train.weight_decay: must be >= 0"),
        ({"train": {"tokens": 1e300}}, "train.tokens: expected int, got float"),
    ],
)
def test_bad_config_names_the_field_and_the_fix(raw, message):
    with pytest.raises(ConfigError) as e:
        run_config(raw)
    assert message in str(e.value) and "fix:" in str(e.value)


def test_ints_are_accepted_for_floats_and_lists_for_tuples():
    cfg = run_config({"train": {"learning_rate": 1, "tokens": 2e5}, "eval": {"tasks": ["add2"]}})
    assert cfg.train.learning_rate == 1.0 and cfg.train.tokens == 200_000
    assert cfg.eval.tasks == ("add2",)


def test_cli_reports_bad_input_on_one_line_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "run.yaml"
    bad.write_text("model:\n  d_model: 100\n  n_head: 3\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.d_model" in err and "fix:" in err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
