"""The shared parts of analysis/fits: registry, bootstrap, budget grouping, and IsoFLOP end to
end on jittered FLOPs (CLI) and on a sweep's flops_budget column (report)."""

import json

import numpy as np
import pandas as pd
import pytest
from test_cli_fit import run  # `scaling fit` as the CLI runs it (exit code 2 on ConfigError)

from analysis.fits.bootstrap import Bootstrap, percentile_interval, resample_indices
from analysis.fits.ols import ols
from analysis.fits.registry import FORMS, get_form
from analysis.fits.selection import group_budgets
from scaling.config import ConfigError

BUDGETS = (1e18, 1e19, 1e20)


def test_registry_finds_fits_by_name_and_names_the_choices_otherwise():
    assert {"chinchilla", "isoflop", "envelope", "kaplan"} <= set(FORMS)
    form = get_form("isoflop")
    assert form.name == "isoflop" and {"n", "c", "loss"} <= form.roles({})
    assert get_form("kaplan").holdout({"laws": ("c",)}) == "add nd to --law"
    with pytest.raises(ConfigError) as e:
        get_form("chinchila")
    assert "\n" not in str(e.value) and "unknown fit 'chinchila'" in str(e.value)
    assert "chinchilla" in str(e.value)


def test_bootstrap_interval_of_an_ols_slope_covers_the_truth():
    """200 synthetic data sets, y = 1 + 0.5 x + N(0, 1) noise: the 95% percentile interval
    of the slope from a 400-resample point bootstrap covers 0.5 in roughly 90-99% of them."""
    boot, rng = Bootstrap(n_boot=400, ci=0.95, seed=0), np.random.default_rng(1)
    x = np.linspace(0, 10, 30)
    covered = 0
    for _ in range(200):
        y = 1 + 0.5 * x + rng.standard_normal(x.size)
        idx = resample_indices(boot.rng(), x.size, boot.n_boot)
        slopes, _ = ols(x[idx], y[idx])
        lo, hi = boot.interval(slopes)
        covered += lo <= 0.5 <= hi
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_percentile_interval_needs_two_finite_values():
    assert np.isnan(percentile_interval([1.0, np.nan], 0.95)).all()


def jittered(rng, n=400):
    """3 budgets x 5 sizes, FLOPs jittered by up to ±5% around each budget."""
    rows = []
    for C in BUDGETS:
        for N in np.geomspace(0.2, 5, 5) * np.sqrt(C / 120):
            c = C * rng.uniform(0.95, 1.05)
            D = c / (6 * N)
            loss = 1.7 + 400 / N**0.34 + 410 / D**0.28
            rows.append({"N": N, "C": c, "L": loss * np.exp(0.002 * rng.standard_normal())})
    return pd.DataFrame(rows)


def test_budget_grouping_by_tolerance_and_by_design_column():
    df = jittered(np.random.default_rng(0))
    budget, how = group_budgets(df, "C", "flops_budget", 0.1)
    assert budget.nunique() == 3 and "within a factor 1.1" in how
    for C in BUDGETS:  # each budget is the geometric mean of its runs' FLOPs, near nominal
        assert np.isclose(budget, C, rtol=0.05).sum() == 5
    exact, _ = group_budgets(df, "C", None, 0.0)
    assert exact.nunique() == len(df)  # tolerance 0: every distinct C is its own budget
    with pytest.raises(ConfigError, match="--budget-tolerance"):
        group_budgets(df, "C", None, 2.0)  # a budget spanning 1e18-1e20 is refused
    design = df.assign(flops_budget=np.repeat(BUDGETS, 5))
    by_design, how = group_budgets(design, "C", "flops_budget", 0.0)
    assert by_design.nunique() == 3 and "'flops_budget'" in how


def test_isoflop_cli_on_jittered_flops(tmp_path, capsys):
    path = tmp_path / "jittered.csv"
    jittered(np.random.default_rng(0)).to_csv(path, index=False)
    out = tmp_path / "iso"
    argv = ["isoflop", str(path), "--n", "N", "--c", "C", "--loss", "L", "--n-boot", "100"]
    assert run([*argv, "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["n_budgets"] == fit["n_budgets_used"] == 3
    assert "--budget-tolerance 0.1" in fit["budget_grouping"]
    assert fit["a_ci"][0] < fit["a"] < fit["a_ci"][1] and 0.4 < fit["a"] < 0.65
    assert fit["flop_convention"] == "C = column 'C' as given"
    assert (out / "isoflop.png").exists()
    assert run([*argv, "--budget-tolerance", "0", "--out", str(out)]) == 2
    assert "0 compute budget(s)" in capsys.readouterr().err
