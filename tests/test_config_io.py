"""Config files as researchers write them: YAML 1.2 numbers, ladder names, key=value overrides,
`scaling config show`, the `launch:` section, and every YAML snippet of the README."""

import re
from pathlib import Path

import orbax.checkpoint as ocp
import pytest

from experiments import launch_config, store
from experiments.cli import main, parse
from experiments.cli_config import show
from experiments.sweep import DESIGN_KEYS, load_sweep
from scaling import zoo
from scaling.config import ConfigError
from scaling.config_io import load_run_config, load_yaml, parse_yaml
from scaling.data import synthetic_text
from scaling.prepare import Settings, prepare
from scaling.train import checkpoint_manager, initial_state

ROOT = Path(__file__).resolve().parents[1]

RUN = """\
model: s3
train:
  learning_rate: 3e-3
  tokens: 1e6
  batch_size: 8
  min_lr_ratio: .1
  weight_decay: 1E-1
eval: {shots: [0], n_examples: 10}
"""


def write(tmp_path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, value",
    [
        ("3e-3", 0.003),
        ("1e6", 1e6),
        ("1E+12", 1e12),
        (".5", 0.5),
        ("-2.5e-4", -2.5e-4),
        ("2.", 2.0),
        ("1_000", 1000),
        ("12", 12),
        ("-7", -7),
        (".inf", float("inf")),
        ("s3", "s3"),
        ("1e", "1e"),
        ("e3", "e3"),
        ("0.0.1", "0.0.1"),
    ],
)
def test_yaml_numbers_read_as_yaml_1_2(text, value):
    assert parse_yaml(f"x: {text}") == {"x": value}
    assert type(parse_yaml(text)) is type(value)


def test_run_config_file_with_short_floats_and_a_ladder_name(tmp_path):
    cfg = load_run_config(write(tmp_path, RUN))
    assert cfg.train.learning_rate == 0.003 and cfg.train.tokens == 1_000_000
    assert cfg.train.min_lr_ratio == 0.1 and cfg.train.weight_decay == 0.1
    assert (cfg.model.n_layer, cfg.model.d_model) == zoo.LADDER["s3"]


def test_inexact_integer_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size: expected int, got float 8.5"):
        load_run_config(write(tmp_path, RUN.replace("batch_size: 8", "batch_size: 8.5")))


def test_overrides_are_typed_and_validated_like_the_file(tmp_path):
    path = write(tmp_path, RUN.replace("model: s3", "model: {seq_len: 64}"))
    cfg = load_run_config(path, ["train.learning_rate=3e-4", "model=s4", "eval.shots=[0,1]"])
    assert cfg.train.learning_rate == 3e-4 and cfg.eval.shots == (0, 1)
    assert cfg.model.d_model == 64 and cfg.model.seq_len == 64  # the rung merges, seq_len stays
    with pytest.raises(ConfigError, match="train.learning_rat: unknown key; fix: did you mean"):
        load_run_config(path, ["train.learning_rat=1e-3"])
    with pytest.raises(ConfigError, match="model.d_model: 30 is not divisible"):
        load_run_config(path, ["model.d_model=30"])
    with pytest.raises(ConfigError, match="not an override"):
        load_run_config(path, ["train.learning_rate"])
    with pytest.raises(ConfigError, match="model: unknown size 's99'"):
        load_run_config(path, ["model=s99"])
    ladder = load_run_config(write(tmp_path, RUN, "s3.yaml"), ["model.seq_len=32"])
    assert ladder.model.d_model == 48 and ladder.model.seq_len == 32


SWEEP = """\
name: iso
base:
  model: {seq_len: 64}
  train: {batch_size: 4, learning_rate: 3e-3}
  eval: {shots: [0], n_examples: 10}
isoflop:
  budgets: [1e10, 3e10]
  models: [s0, s1, s2]
launch:
  workers: 2
  slurm: {partition: gpu, qos: high}
"""


def test_sweep_overrides_reach_base_grid_and_sections(tmp_path):
    path = write(tmp_path, SWEEP)
    sweep = load_sweep(path, overrides=("train.learning_rate=1e-3", "isoflop.budgets=[2e10]"))
    assert {r.config.train.learning_rate for r in sweep.runs} == {1e-3}
    assert {r.design["flops_budget"] for r in sweep.runs} == {2e10}
    grid = load_sweep(path, overrides=("grid.train.seed=[0,1]",))
    assert len(grid.runs) == 2 * len(load_sweep(path).runs)


def test_launch_section_and_flags(tmp_path):
    sweep = load_sweep(write(tmp_path, SWEEP))
    from_file = launch_config.resolve(sweep.launch)
    assert from_file.workers == 2 and from_file.slurm.partition == "gpu"
    args = parse(["sweep", "s.yaml", "--workers", "3", "--slurm-account", "lab", "model=s1"])
    merged = launch_config.resolve(sweep.launch, args)
    assert merged.workers == 3 and merged.slurm.account == "lab" and merged.slurm.qos == "high"
    assert args.overrides == ["model=s1"]
    bad = write(tmp_path, SWEEP.replace("workers: 2", "workerz: 2"), "bad.yaml")
    with pytest.raises(ConfigError, match="sweep.launch.workerz: unknown key; fix: did you mean"):
        load_sweep(bad)
    with pytest.raises(ConfigError, match="launch.slices"):
        launch_config.resolve({"executor": "tpu"})


def test_config_show_round_trips(tmp_path, capsys):
    path = write(tmp_path, RUN)
    assert main(["config", "show", str(path), "train.learning_rate=1e-4"]) == 0
    shown = write(tmp_path, capsys.readouterr().out, "shown.yaml")
    assert load_run_config(shown) == load_run_config(path, ["train.learning_rate=1e-4"])
    sweep = show(str(write(tmp_path, SWEEP, "sweep.yaml")))
    assert sweep["launch"]["workers"] == 2 and sweep["base"]["train"]["learning_rate"] == 3e-3
    assert len(sweep["runs"]) == 6
    one = show(str(tmp_path / "sweep.yaml"), run="s1-C1e+10")
    assert one["model"]["d_model"] == 32 and one["name"] == "s1-C1e+10"


def test_version_and_bad_files_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("scaling ")
    assert main(["config", "show", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["train", str(write(tmp_path, "a: [1, 2", "broken.yaml"))]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err


def _finished(sweep, runs_dir: Path) -> None:
    """The sweep's runs as finished runs, without training: each one's final checkpoint holds
    its initial state."""
    for spec in sweep.runs:
        run_dir = Path(store.locate(str(runs_dir / sweep.name), spec.run_id, spec.name))
        store.claim_config(str(run_dir), spec.config.to_dict())
        manager = checkpoint_manager(run_dir, spec.config.train)
        state = initial_state(spec.config)
        manager.save(spec.config.steps, args=ocp.args.StandardSave(state), force=True)
        manager.wait_until_finished()
        manager.close()
        store.set_status(str(run_dir), store.DONE)


def _readme_snippets() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


@pytest.mark.parametrize(
    "path",
    [*sorted((ROOT / "experiments" / "configs").glob("*.yaml"))]
    + [f"README#{i}" for i in range(len(_readme_snippets()))],
    ids=str,
)
def test_every_shipped_and_documented_config_loads_from_a_file(tmp_path, path, monkeypatch):
    if str(path).startswith("README#"):
        snippet = _readme_snippets()[int(str(path)[7:])]
        path = write(tmp_path, snippet)
        if "corpus: tokens" in snippet:  # a study of its own corpus: the shards it names, here
            monkeypatch.chdir(tmp_path)
            (tmp_path / "corpus.txt").write_text(synthetic_text(20_000, 0.5, seed=0))
            shard_dir = load_yaml(path, "config")["base"]["data"]["path"]
            prepare(["corpus.txt"], shard_dir, settings=Settings(val_fraction=0.1))
    tree = load_yaml(path, "config")
    if "finetune" in tree:  # the parents it names: zoo.yaml's runs, here finished untrained
        monkeypatch.chdir(tmp_path)
        _finished(load_sweep(ROOT / "experiments" / "configs" / "zoo.yaml"), tmp_path / "runs")
    if (DESIGN_KEYS | {"finetune"}) & set(tree):
        sweep = load_sweep(path, yes=True)
        assert sweep.runs and all(r.config.steps >= 1 for r in sweep.runs)
        launch_config.resolve(sweep.launch)
    else:
        load_run_config(path)
