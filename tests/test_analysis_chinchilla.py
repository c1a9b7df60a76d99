"""Chinchilla approach 3: Epoch AI's figures on Epoch's data, recovery and coverage, bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.fits.chinchilla import fit_chinchilla, fit_chinchilla_arrays, optimal_allocation
from scaling.config import ConfigError

EPOCH = Path(__file__).resolve().parents[2] / "shared/data/chinchilla_epoch/svg_extracted_data.csv"
# Plain L-BFGS on the 4,500-start grid (../shared/data/chinchilla_epoch/README.md).
EPOCH_FIT = {"E": 1.8172, "A": 477.8, "B": 2143, "alpha": 0.3473, "beta": 0.3672}
EPOCH_SE = {"E": 0.026, "alpha": 0.015, "beta": 0.021, "a": 0.020}
TRUE = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.30}
SMALL_GRID = {"a": [5.0, 10.0], "b": [5.0, 10.0], "e": [0.0, 0.5], "alpha": [0.5], "beta": [0.5]}


def epoch_points() -> pd.DataFrame:
    if not EPOCH.exists():
        pytest.skip(f"{EPOCH} not available")
    df = pd.read_csv(EPOCH)
    return df[df["loss"] < df["loss"].nlargest(5).min()]  # Epoch drops the 5 highest losses


@pytest.fixture(scope="module")
def epoch_fit():
    return fit_chinchilla(
        epoch_points(), n_col="Model Size", c_col="Training FLOP", n_boot=300, seed=0
    )


def test_reproduces_epoch_point_estimates(epoch_fit):
    assert epoch_fit.n_points == 240 and epoch_fit.n_starts == 4500
    for k in ("E", "alpha", "beta"):
        assert getattr(epoch_fit, k) == pytest.approx(EPOCH_FIT[k], rel=0.01), k
    for k in ("A", "B"):
        assert getattr(epoch_fit, k) == pytest.approx(EPOCH_FIT[k], rel=0.05), k
    assert epoch_fit.objective == pytest.approx(1.0183e-3, rel=1e-3)
    assert 0.05 < epoch_fit.frac_at_optimum < 0.6
    assert epoch_fit.diagnostics["warnings"] == []


def test_bootstrap_standard_errors_match_epoch(epoch_fit):
    d = epoch_fit.to_dict()
    for k, se in EPOCH_SE.items():
        assert d[f"{k}_se"] == pytest.approx(se, rel=0.3), k
        lo, hi = d[f"{k}_ci"]
        assert lo < d[k] < hi
    assert d["a"] == pytest.approx(0.513, abs=0.005)


def test_allocation_is_consistent_with_the_law(epoch_fit):
    table = epoch_fit.allocation([1e21, 1e24])
    assert np.allclose(6 * table["n_opt"] * table["d_opt"], table["C"])
    assert (table["n_lo"] < table["n_opt"]).all() and (table["n_opt"] < table["n_hi"]).all()
    # N_opt minimises L along the iso-FLOP line C = 6 N D.
    C = 1e22
    n = np.geomspace(1e8, 1e11, 400)
    loss = epoch_fit.predict(n, C / (6 * n))
    best = n[np.argmin(loss)]
    n_opt = optimal_allocation(epoch_fit.theta, [C])["n_opt"][0]
    assert best == pytest.approx(n_opt, rel=0.05)
    assert table["l_opt"].iloc[1] < table["l_opt"].iloc[0]


def synthetic(rng, noise=0.01, true=TRUE):
    """Loss from the law at a grid of 6 sizes x 6 token counts, log-normal noise."""
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 3e9, 6), np.geomspace(2e8, 1e11, 6)))
    law = true["E"] + true["A"] / N ** true["alpha"] + true["B"] / D ** true["beta"]
    return N, D, law * np.exp(noise * rng.standard_normal(len(N)))


def test_recovers_known_law():
    N, D, loss = synthetic(np.random.default_rng(0), noise=0.002)
    fit = fit_chinchilla_arrays(N, D, loss, grid=SMALL_GRID, n_boot=50, boot_starts=5)
    for k, v in TRUE.items():
        assert getattr(fit, k) == pytest.approx(v, rel=0.1 if k in "AB" else 0.03), k


@pytest.mark.slow
def test_bootstrap_interval_coverage():
    """The true exponents fall inside the 95% intervals in ~95% of repeated draws."""
    rng = np.random.default_rng(1)
    hits = {k: 0 for k in ("E", "alpha", "beta", "a")}
    true_a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    draws = 60
    for _ in range(draws):
        N, D, loss = synthetic(rng)
        fit = fit_chinchilla_arrays(
            N, D, loss, grid=SMALL_GRID, n_boot=200, boot_starts=5, seed=int(rng.integers(1e6))
        ).to_dict()
        for k in hits:
            lo, hi = fit[f"{k}_ci"]
            hits[k] += lo <= (true_a if k == "a" else TRUE[k]) <= hi
    for k, h in hits.items():
        assert 0.85 <= h / draws <= 1.0, (k, h / draws)


def test_vanishing_irreducible_term_is_flagged():
    N, D, loss = synthetic(np.random.default_rng(2), noise=0.002, true={**TRUE, "E": 0.0})
    fit = fit_chinchilla_arrays(N, D, loss, grid=SMALL_GRID, n_boot=0)
    assert any("irreducible term vanished" in w for w in fit.diagnostics["warnings"])


def test_deterministic():
    N, D, loss = synthetic(np.random.default_rng(3))
    fits = [
        fit_chinchilla_arrays(N, D, loss, grid=SMALL_GRID, n_boot=20, boot_starts=3, seed=7)
        for _ in range(2)
    ]
    assert fits[0].to_dict() == fits[1].to_dict()


def _table(**overrides):
    N, D, loss = synthetic(np.random.default_rng(4))
    return pd.DataFrame({"n": N, "d": D, "loss": loss}).assign(**overrides)


@pytest.mark.parametrize(
    "df, kw, field",
    [
        (_table(), {"d_col": "tokens"}, "chinchilla.tokens"),
        (_table(loss=-1.0), {"d_col": "d"}, "chinchilla.loss"),
        (_table(n=1e8), {"d_col": "d"}, "chinchilla.n"),
        (_table().head(5), {"d_col": "d"}, "chinchilla"),
        (_table(), {"d_col": "d", "c_col": "n"}, "chinchilla.d_col"),
        (_table(), {"d_col": "d", "ci": 95}, "chinchilla.ci"),
    ],
)
def test_bad_input_names_the_field(df, kw, field):
    with pytest.raises(ConfigError) as e:
        fit_chinchilla(df, n_col="n", loss_col="loss", n_boot=0, **kw)
    assert e.value.field == field
