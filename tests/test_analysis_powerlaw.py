import numpy as np
import pandas as pd
import pytest

from analysis.fits.powerlaw import (
    FitError,
    FitSkipped,
    PowerLawFit,
    compute_frontier,
    fit_loss_vs_params,
    fit_power_law,
)

TRUE_E, TRUE_ALPHA = 1.7, 0.3


def noisy_law(x, A, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return (TRUE_E + A * x**-TRUE_ALPHA) * np.exp(noise * rng.standard_normal(len(x)))


# A = 400 is Chinchilla's N-term (x = params); on FLOPs A is scaled so that the power-law term
# is O(1) over the range (A = 400 at x >= 1e15 would be < 1% of L, below the noise).
@pytest.mark.parametrize("lo, hi, A", [(1e6, 1e9, 400.0), (1e15, 1e20, 2e5)])
def test_recovers_known_law_and_interval_covers_alpha(lo, hi, A):
    x = np.geomspace(lo, hi, 20)
    fit = fit_power_law(x, noisy_law(x, A), x_col="flops_6n", n_boot=1000, seed=0)
    assert abs(fit.E - TRUE_E) < 0.1
    assert abs(fit.alpha - TRUE_ALPHA) < 0.03
    assert abs(fit.A / A - 1) < 0.3
    assert fit.alpha_ci[0] <= TRUE_ALPHA <= fit.alpha_ci[1]
    assert fit.E_ci[0] <= fit.E <= fit.E_ci[1]
    assert fit.n_boot_failed < 50
    assert fit.r2_log > 0.99 and fit.rmse_log < 0.02
    assert fit.predict(x) == pytest.approx(fit.E + fit.A * x**-fit.alpha)
    assert "Kaplan" in fit.convention


def test_fit_is_deterministic_and_serialisable():
    x = np.geomspace(1e6, 1e9, 8)
    y = noisy_law(x, 400.0)
    a, b = fit_power_law(x, y, n_boot=100, seed=3), fit_power_law(x, y, n_boot=100, seed=3)
    assert a.to_dict() == b.to_dict()
    d = a.to_dict()
    assert d["status"] == "ok" and "boot" not in d and len(d["alpha_ci"]) == 2


def test_pure_power_law_gives_E_near_zero():
    x = np.geomspace(1e6, 1e9, 12)
    fit = fit_power_law(x, 50 * x**-0.2, n_boot=0)
    assert fit.E < 1e-3
    assert fit.alpha == pytest.approx(0.2, rel=1e-3)


def test_too_few_points_raise_or_skip():
    with pytest.raises(FitError, match="at least 4 distinct"):
        fit_power_law([1e6, 1e7, 1e8], [3.0, 2.5, 2.2])
    results = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d", "e"],
            "tokens": [100, 100, 100, 200, 200],
            "params_non_embedding": [1e4, 1e5, 1e6, 1e4, 1e5],
            "loss": [4.0, 3.5, 3.2, 3.8, 3.3],
        }
    )
    fits = fit_loss_vs_params(pd.concat([results, results]), n_boot=10)  # 2 metrics per run
    assert list(fits) == [100, 200]
    assert all(isinstance(f, FitSkipped) and f.n_points in (2, 3) for f in fits.values())
    assert fits[100].to_dict()["status"] == "skipped"


def test_fit_loss_vs_params_per_budget():
    n = np.geomspace(1e4, 1e7, 6)
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(6)],
            "tokens": 1000,
            "params_non_embedding": n,
            "loss": noisy_law(n, 400.0, noise=0.0),
        }
    )
    (fit,) = fit_loss_vs_params(runs, n_boot=50).values()
    assert isinstance(fit, PowerLawFit) and fit.x_col == "params_non_embedding"
    assert fit.alpha == pytest.approx(TRUE_ALPHA, rel=1e-3)


def curve(run_id, params, flops, losses):
    return pd.DataFrame(
        {
            "run_id": run_id,
            "model": run_id,
            "params_non_embedding": params,
            "params_total": params,
            "step": np.arange(len(flops)),
            "tokens": np.arange(len(flops)) * 10,
            "flops_detailed": flops,
            "loss": losses,
        }
    )


def test_frontier_picks_the_best_run_per_compute():
    # small is best at low compute, big overtakes at high compute, bad is never best;
    # step 0 (0 FLOPs) is ignored.
    curves = pd.concat(
        [
            curve("small", 1e4, [0, 1e12, 1e13, 1e14], [9.0, 4.0, 3.5, 3.4]),
            curve("big", 1e6, [0, 1e13, 1e14, 1e15, 1e16], [9.0, 5.0, 3.45, 2.9, 2.5]),
            curve("bad", 1e5, [0, 1e12, 1e13, 1e14, 1e15], [9.0, 6.0, 5.5, 5.0, 4.5]),
        ]
    )
    f = compute_frontier(curves, "flops_detailed", n_bins=5)  # one point per 0.8-decade bin
    assert f["run_id"].tolist() == ["small", "small", "small", "big", "big"]
    assert f["flops_detailed"].tolist() == [1e12, 1e13, 1e14, 1e15, 1e16]
    assert f["step"].tolist() == [1, 2, 3, 3, 4]


def test_frontier_drops_bins_that_do_not_improve_on_cheaper_compute():
    curves = pd.concat([curve("a", 1e4, [1e12], [3.0]), curve("b", 1e6, [1e14, 1e16], [3.5, 2.0])])
    f = compute_frontier(curves, "flops_detailed", n_bins=3)  # the 1e14 bin is worse than 1e12
    assert f["run_id"].tolist() == ["a", "b"]
    assert f["loss"].tolist() == [3.0, 2.0]


def test_frontier_of_empty_curves_is_empty():
    empty = curve("x", 1e4, [0.0], [9.0])
    assert compute_frontier(empty).empty


def test_pure_power_law_option_fixes_E_at_zero():
    rng = np.random.default_rng(4)
    x = np.geomspace(1e6, 1e9, 10)
    y = 50 * x**-0.2 * np.exp(0.002 * rng.standard_normal(10))
    fit = fit_power_law(x, y, n_boot=300, irreducible=False)
    assert fit.E == 0 and fit.E_ci == (0.0, 0.0)
    assert fit.alpha == pytest.approx(0.2, abs=0.003)
    assert abs(fit.A / 50 - 1) < 0.1
    assert fit.alpha_ci[0] < fit.alpha < fit.alpha_ci[1] and fit.n_boot_failed == 0
    slope, icpt = np.polyfit(np.log(x), np.log(y), 1)  # E = 0 is OLS in log-log
    assert fit.alpha == pytest.approx(-slope)
    assert np.isclose(fit.A, np.exp(icpt))
    with pytest.raises(FitError, match="at least 3 distinct"):
        fit_power_law([1e6, 1e7], [3.0, 2.5], irreducible=False)


def test_frontier_with_other_column_names():
    c = curve("a", 1e4, [1e12, 1e13], [3.0, 2.5]).rename(columns={"loss": "val_loss"})
    c = c[["run_id", "flops_detailed", "val_loss"]]  # other FRONTIER_COLS absent: kept if present
    f = compute_frontier(c, "flops_detailed", n_bins=2, loss_col="val_loss")
    assert list(f.columns) == ["run_id", "flops_detailed", "val_loss"]
    assert f["val_loss"].tolist() == [3.0, 2.5]
