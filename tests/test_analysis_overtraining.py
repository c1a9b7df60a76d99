"""The over-training law (Gadre et al. 2024): recovery and interval coverage on synthetic runs,
the paper's extrapolation on its released RedPajama runs, bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.extrapolation import extrapolation_check
from analysis.fits.overtraining import fit_overtraining, fit_overtraining_arrays, paper_parameters
from scaling.config import ConfigError

GADRE = Path(__file__).resolve().parent / "data" / "gadre2024" / "models.csv"
TRUE = {"E": 1.8, "a": 200.0, "b": 350.0, "eta": 0.13}
SMALL_GRID = {"a": [5.0, 10.0], "b": [5.0, 10.0], "e": [0.0, 0.5], "alpha": [0.2, 0.5]}
# The paper's fitting grid (Table 2 defaults; scaling/shared.py of their repository): the four
# small shapes at M = 20 and the smallest at M = 320. Held out: 1.4B at M = 640, 6.9B at M = 20.
PAPER_GRID = ["d=96_l=8_h=4-1.0", "d=512_l=8_h=4-1.0", "d=576_l=24_h=8-1.0",
              "d=1024_l=24_h=8-1.0", "d=96_l=8_h=4-16.0"]  # fmt: skip
HELD_OUT = {"open_lm_1b-32.0": 0.007103, "open_lm_7b-1.0": 0.007320}  # their notebook's errors
MARGIN = 0.001  # 0.1 percentage point


def law(N, D, p=TRUE):
    C, M = 6 * N * D, D / N
    return p["E"] + (p["a"] * M ** p["eta"] + p["b"] * M ** -p["eta"]) * C ** -p["eta"]


def synthetic(rng, noise=0.01):
    """Four model sizes x eight token multipliers (the shape of Gadre et al.'s grid), log-normal
    noise of sd `noise` on the loss."""
    N, M = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 4e8, 4), 5 * 2.0 ** np.arange(8)))
    D = M * N
    return N, D, law(N, D) * np.exp(noise * rng.standard_normal(len(N)))


def test_recovers_known_law_and_its_tied_chinchilla_form():
    N, D, loss = synthetic(np.random.default_rng(0), noise=0.001)
    fit = fit_overtraining_arrays(N, D, loss, grid=SMALL_GRID, n_boot=30, boot_starts=5)
    est = fit.estimates()
    for k, v in TRUE.items():
        assert est[k].value == pytest.approx(v, rel=0.05 if k in "ab" else 0.01), k
        assert est[k].lo <= est[k].value <= est[k].hi, k
    assert fit.law.alpha == fit.law.beta == pytest.approx(2 * TRUE["eta"], rel=0.01)
    m_opt = (TRUE["b"] / TRUE["a"]) ** (1 / (2 * TRUE["eta"]))
    assert est["M_opt"].value == pytest.approx(m_opt, rel=0.05)
    alloc = fit.allocation([1e20])
    assert (alloc["d_opt"] / alloc["n_opt"]).iloc[0] == pytest.approx(est["M_opt"].value)
    assert np.allclose(fit.predict(N, D), law(N, D), rtol=0.002)
    d = fit.to_dict()
    assert d["law"].startswith("L(C, M)") and d["diagnostics"]["boot_unidentified"] == 0
    assert set(d["equivalent_chinchilla"]) >= {"A", "B", "alpha"}


@pytest.mark.slow
def test_bootstrap_interval_coverage():
    """The true parameters fall inside the 95% intervals in ~95% of repeated draws."""
    rng = np.random.default_rng(1)
    truth = {**TRUE, "M_opt": (TRUE["b"] / TRUE["a"]) ** (1 / (2 * TRUE["eta"]))}
    hits, draws = dict.fromkeys(truth, 0), 40
    for _ in range(draws):
        fit = fit_overtraining_arrays(
            *synthetic(rng), grid=SMALL_GRID, n_boot=100, boot_starts=5,
            seed=int(rng.integers(1e6)),
        ).estimates()  # fmt: skip
        for k in hits:
            hits[k] += fit[k].lo <= truth[k] <= fit[k].hi
    for k, h in hits.items():
        assert 0.85 <= h / draws <= 1.0, (k, h / draws)


def gadre() -> pd.DataFrame:
    if not GADRE.exists():
        pytest.skip(f"reference data not found at {GADRE}")
    return pd.read_csv(GADRE).set_index("name")


def relative_errors(fit, runs: pd.DataFrame) -> dict[str, float]:
    actual = runs["loss_c4_val"].to_numpy()
    pred = fit.predict(runs["params"].to_numpy(float), runs["tokens"].to_numpy(float))
    return dict(zip(runs.index, (pred - actual) / actual, strict=True))


def test_paper_grid_predicts_the_held_out_runs_as_well_as_the_paper():
    """Fitted on the paper's five runs, the 1.4B M = 640 (900B tokens) and 6.9B M = 20 runs are
    predicted at least as well as the paper's 0.71% and 0.73% (plus 0.1 percentage point)."""
    runs = gadre()
    grid = runs.loc[[f"rpj-{g}" for g in PAPER_GRID]]
    fit = fit_overtraining(grid, n_col="params", d_col="tokens", loss_col="loss_c4_val", n_boot=0)
    errors = relative_errors(fit, runs.loc[[f"rpj-{h}" for h in HELD_OUT]])
    for (name, paper), ours in zip(HELD_OUT.items(), errors.values(), strict=True):
        assert abs(ours) <= paper + MARGIN, (name, ours, paper)
    # Five runs, four parameters: almost no resample identifies the law, and the fit says so.
    with_boot = fit_overtraining(
        grid, n_col="params", d_col="tokens", loss_col="loss_c4_val", n_boot=50, boot_starts=3
    )
    assert with_boot.n_unidentified > 40
    assert any("do not identify" in w for w in with_boot.law.diagnostics["warnings"])


def test_backtest_on_every_cheaper_run_covers_the_held_out_runs():
    """All 33 runs below 1e21 FLOPs: the two large runs within the paper's error, inside the
    95% prediction interval."""
    runs = gadre().reset_index()
    res = extrapolation_check(
        runs, lambda t: fit_overtraining(
            t, n_col="params", d_col="tokens", loss_col="loss_c4_val", n_boot=100, boot_starts=5
        ),
        n_col="params", d_col="tokens", loss_col="loss_c4_val", holdout_above=1e21,
        min_train=5,
    )  # fmt: skip
    assert res.n_train == 33 and res.n_holdout == 2
    assert res.max_abs_rel_error <= min(HELD_OUT.values()) + MARGIN
    assert res.n_outside == 0


def test_paper_parameters_map_back_to_the_tied_law():
    theta = np.array([np.log(200.0), np.log(350.0), np.log(1.8), 0.26, 0.26])
    p = paper_parameters(theta)
    assert p["eta"] == pytest.approx(0.13)
    assert p["a"] == pytest.approx(200.0 * 6**0.13) and p["E"] == pytest.approx(1.8)
    N, D = np.array([1e8, 3e9]), np.array([2e9, 6e10])
    tied = 1.8 + 200.0 / N**0.26 + 350.0 / D**0.26
    params = {k: float(v) for k, v in p.items()}
    assert np.allclose(law(N, D, params), tied)


@pytest.mark.parametrize(
    "M, field",
    [(np.full(6, 20.0), "overtraining"), (np.array([5, 10, 20, 40]), "overtraining")],
)
def test_unidentified_designs_are_refused(M, field):
    N = np.geomspace(1e7, 1e9, len(M))
    with pytest.raises(ConfigError) as e:
        fit_overtraining_arrays(N, M * N, law(N, M * N), n_boot=0)
    assert e.value.field == field and "do not identify" in e.value.problem
