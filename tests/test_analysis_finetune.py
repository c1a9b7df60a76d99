"""Fine-tuning scaling laws (analysis.fits.finetune): a known law recovered from synthetic
fine-tunes with binomial item noise and seed noise, its interval coverage, the per-doubling
change and examples-to-target, Hernandez et al.'s transfer, the CLI and the report, bad input."""

import json

import finetune_cases as fc
import numpy as np
import pandas as pd
import pytest
from test_analysis_report import BUDGETS, synthetic_sweep

from analysis.fits.finetune import fit_finetune
from analysis.fits.finetune_data import read_runs
from analysis.report import FILES, write_report
from experiments.cli import main
from scaling.config import ConfigError

TARGET = 0.12
JOINT = "joint (Zhang et al.)"


def truth() -> dict:
    """Every reported quantity of the synthetic law (tests/finetune_cases.py)."""
    law, d_max, out = fc.LAW, max(fc.EXAMPLES), {}
    for N in fc.SIZES:
        a_n, lab = law["A"] * N ** -law["a"], f"N={N:.4g}"
        out |= {
            f"{lab} E": law["E"],
            f"{lab} A": a_n,
            f"{lab} alpha": law["b"],
            f"{lab} per_doubling": fc.law_error(N, 2 * d_max) / fc.law_error(N, d_max),
            f"{lab} examples_to_target": (a_n / (TARGET - law["E"])) ** (1 / law["b"]),
        }
    return out | {
        f"{JOINT} {k}": law[v] for k, v in (("E", "E"), ("A", "A"), ("alpha", "a"), ("beta", "b"))
    }


def fit_of(rng, n_boot=100, seed=0, **kw):
    return fit_finetune(read_runs(fc.table(rng, **kw)), target=TARGET, n_boot=n_boot, seed=seed)


def test_recovers_known_law_per_doubling_and_examples_to_target():
    """Nearly noise-free runs: every quantity within 3% of the law's."""
    fit = fit_of(np.random.default_rng(0), n_items=2_000_000, seed_sd=1e-5, rho=0)
    est = fit.estimates()
    for k, v in truth().items():
        assert est[k].value == pytest.approx(v, rel=0.03, abs=2e-3), k
        assert est[k].lo <= est[k].value <= est[k].hi, k
    assert fit.transfer is None and "no from-scratch baseline" in fit.transfer_skipped


def test_interval_coverage_over_synthetic_replicates():
    """The law's values fall in the 95% intervals of ~95% of replicates: 3 sizes x 6 example
    counts x 3 seeds, seed sd 0.01, 400 test items of one fixed test split (rho = 1). Measured
    with 200 replicates x 200 resamples: 0.935-0.965 per quantity (0.945-1.0 at rho = 0.5,
    0.965-1.0 with independent item noise, rho = 0: conservative). Here 30 x 100, pooled over
    the 19 quantities: 0.937."""
    rng, hits = np.random.default_rng(1), []
    for r in range(30):
        est = fit_of(rng, seed=r).estimates()
        hits += [est[k].lo <= v <= est[k].hi for k, v in truth().items()]
    assert 0.85 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_unreachable_target_is_said_plainly():
    fit = fit_of(np.random.default_rng(2), n_boot=50)
    key = ("pretrained", 1e7)
    below = fit_finetune(fit.runs, target=0.01, n_boot=50)  # under the floor E = 0.05
    assert np.isinf(below.size_estimates()[key]["examples_to_target"].value)
    assert below.reach(key).startswith("unreachable: the target 0.01 is at or below the floor")
    above = fit_finetune(fit.runs, target=0.2, n_boot=50)
    d = above.size_estimates()[key]["examples_to_target"]
    assert np.isfinite(d.hi) and d.lo <= d.value <= d.hi and "within the runs" in above.reach(key)


def test_effective_data_transferred_recovered():
    """Fine-tunes that score as from-scratch runs on D + D_T examples: k, alpha, beta of D_T."""
    fit = fit_of(np.random.default_rng(3), transfer=True, n_items=2_000_000, seed_sd=1e-5, rho=0)
    est = fit.transfer_estimates()
    assert est["alpha"].value == pytest.approx(fc.TRANSFER["alpha"], abs=0.03)
    assert est["beta"].value == pytest.approx(fc.TRANSFER["beta"], abs=0.03)
    assert est["k"].value == pytest.approx(fc.TRANSFER["K"], rel=0.3)
    assert all(e.lo <= e.value <= e.hi for e in est.values())


def test_per_item_correctness_resamples_items_and_is_reproducible():
    table = fc.table(np.random.default_rng(4), per_item=True, n_items=100)
    runs = read_runs(table)
    a, b = (fit_finetune(runs, target=TARGET, n_boot=50, seed=7) for _ in range(2))
    assert a.to_dict() == b.to_dict()
    assert "per-item" in a.to_dict()["settings"]["bootstrap"]
    with pytest.raises(ConfigError, match="1 - mean\\(correct\\) differs"):
        read_runs(table.assign(error=table["error"] + 0.01))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda t: t.drop(columns="error"), "--error 'error': no column 'error'"),
        (lambda t: t[t["examples"] >= 256], "2 example count\\(s\\) for pretrained size 100000"),
        (
            lambda t: t.assign(error=t["error"] + 1),
            "--error 'error': .* not an error in \\[0, 1\\]",
        ),
        (lambda t: pd.concat([t, t.iloc[:1]]), "two rows for one run"),
        (lambda t: t.assign(init="finetuned"), "--init 'init': unknown value"),
        (lambda t: t.assign(epochs=t["seed"] + 1), "several epochs values"),
    ],
)
def test_bad_input_is_one_line(change, match):
    table = fc.table(np.random.default_rng(5), seeds=(0, 1))
    with pytest.raises(ConfigError, match=match) as e:
        read_runs(change(table))
    assert "\n" not in str(e.value)


def test_cli_writes_figures_and_tables(tmp_path, capsys):
    out = tmp_path / "fit"
    argv = [
        "fit",
        "finetune",
        str(fc.CSV),
        "--size",
        "params",
        "--examples",
        "examples",
        "--error",
        "error",
        "--target",
        "0.1",
        "--n-boot",
        "50",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    for name in (
        "error_vs_examples.png",
        "error_heatmap.png",
        "finetune.md",
        "finetune.tex",
        "finetune.csv",
        "fit.json",
    ):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "fit.json").read_text())
    assert [s["size"] for s in doc["sizes"]] == list(fc.SIZES) * 2 and doc["joint"]["alpha"]
    assert doc["transfer"]["alpha"] and "examples" in doc["sizes"][0]["reach"]
    assert "per doubling" in (out / "finetune.md").read_text()
    laws = {"per size", JOINT, "transfer (Hernandez et al.)"}
    assert set(pd.read_csv(out / "finetune.csv")["law"]) == laws
    bad = tmp_path / "bad.csv"
    pd.read_csv(fc.CSV).query("examples < 64").to_csv(bad, index=False)
    assert main([*argv[:2], str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--examples 'examples'" in err


def project_rows(rng) -> pd.DataFrame:
    """Fine-tunes as this project's results table holds them: eval rows (acc, n_examples) of
    two tasks plus a logprob row, params_non_embedding for the size."""
    t = fc.table(rng, seeds=(0, 1), sizes=(1e5, 1e6), examples=(16, 64, 256))
    rows = t.rename(columns={"params": "params_non_embedding", "n_items": "n_examples"})
    rows = rows.assign(metric="acc", value=1 - rows["error"], sweep="ft", run_id=rows.index)
    rows = rows.drop(columns="error").assign(run_id=lambda d: "ft" + d["run_id"].astype(str))
    return pd.concat(
        [rows.assign(task="a"), rows.assign(task="b"), rows.assign(metric="logprob", task="a")]
    )


def test_report_sections_beside_pretraining_fits_and_alone(tmp_path):
    """The sweep report fits fine-tune rows apart (one section per task), the pretraining
    fits on the other rows as before; a sweep of fine-tunes alone gets the section only."""
    results, curves = synthetic_sweep([("s1", BUDGETS[0]), ("s2", BUDGETS[0])])
    tuned = project_rows(np.random.default_rng(6))
    summary = write_report(pd.concat([results, tuned]), curves, tmp_path / "mixed", n_boot=30)
    report = (tmp_path / "mixed" / "report.md").read_text()
    assert report.startswith("# Scaling report") and report.count("Fine-tuning scaling") == 2
    assert summary["n_runs"] == 2 and len(summary["files"]) == len(FILES) + 10
    assert (tmp_path / "mixed" / "finetune-task_a_error_vs_examples.png").exists()
    alone = write_report(tuned, curves.iloc[:0], tmp_path / "alone", n_boot=30)
    assert alone["skipped"] == [] and alone["n_runs"] == len(tuned["run_id"].unique())
    assert (tmp_path / "alone" / "report.md").read_text().startswith("# Fine-tuning report: ft")
