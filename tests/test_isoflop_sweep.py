"""An IsoFLOP study as a researcher writes it: a YAML file with budgets in `1e10` notation,
trained on CPU, then its own report and `scaling fit isoflop` on its run directory: approaches
1, 2 and 3 each give the allocation exponent a with an interval. The design mirrors the demo's
at 1/20 of its compute (a corpus of task demonstrations, the optimum inside the sizes)."""

import json

import pytest

from experiments.cli import main

SWEEP = """\
name: iso
base:
  model: {seq_len: 32}
  data: {synthetic_chars: 3e5, task_fraction: 1.0, tasks: [add2, largest_of_4, navigate]}
  train: {batch_size: 8, learning_rate: 3e-3, warmup_steps: 10, eval_every: 25,
          checkpoint_every: 1000}
  eval: {tasks: [largest_of_4], shots: [0], n_examples: 20}
isoflop:
  budgets: [5e9, 1e10, 2e10, 4e10]
  models:
    - s0
    - {n_layer: 1, d_model: 24, n_head: 2, d_ff: 96}
    - s1
    - s2
    - s3
"""


@pytest.mark.slow
def test_isoflop_sweep_reports_approaches_1_to_3(tmp_path, capsys):
    sweep_file = tmp_path / "iso.yaml"
    sweep_file.write_text(SWEEP)
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    args = ["sweep", str(sweep_file), "--runs-dir", str(runs), "--reports-dir", str(reports)]
    assert main([*args, "--no-tensorboard"]) == 0
    assert "trained 20, already done 0, failed 0" in capsys.readouterr().out
    assert len(list((runs / "iso").glob("L1-d24-C1e_10-*"))) == 1  # readable run directories

    fits = json.loads((reports / "iso" / "fits.json").read_text())
    assert fits["flops_col"] == "flops_detailed"
    for name in ("chinchilla", "envelope", "isoflop"):
        fit = fits[name]
        assert fit["status"] == "ok", (name, fit.get("reason"))
        lo, hi = fit["a_ci"]
        assert lo <= fit["a"] <= hi and lo < hi, name
    assert fits["isoflop"]["n_budgets_used"] >= 2
    assert "flops_budget" in fits["isoflop"]["budget_grouping"]
    report = (reports / "iso" / "report.md").read_text()
    assert "approach 2 (IsoFLOP): a = " in report and (reports / "iso" / "isoflop.png").exists()

    out = tmp_path / "fit"
    assert main(["fit", "isoflop", str(runs / "iso"), "--n-boot", "50", "--out", str(out)]) == 0
    fitted = json.loads((out / "fit.json").read_text())
    assert "flops_detailed" in json.dumps(fitted)
