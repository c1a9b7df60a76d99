import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

from analysis.extrapolation import extrapolation_check, plot_extrapolation
from analysis.fits.kaplan import fit_kaplan_nd
from scaling.config import ConfigError

# Chinchilla's fitted law (Hoffmann et al. 2022, eq. 10).
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
FLAGS = {"holdout_above": "--holdout-above", "holdout_frac": "--holdout-frac"}


def chinchilla_law(N, D):
    return E + A / N**ALPHA + B / D**BETA


def runs_table(rng, sigma=0.003, law=chinchilla_law):
    """8 model sizes x 5 tokens-per-parameter ratios: 40 runs spanning ~5.5 decades of C,
    loss = law * exp(N(0, sigma^2))."""
    N, r = np.meshgrid(np.geomspace(1e7, 3e9, 8), [5, 10, 20, 40, 80])
    N = N.ravel()
    D = N * r.ravel()
    loss = law(N, D) * np.exp(sigma * rng.standard_normal(N.size))
    return pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "L": loss})


class _Law:
    def __init__(self, p):
        self.E, self.A, self.B, self.alpha, self.beta = p

    def predict(self, N, D):
        return self.E + self.A / np.asarray(N) ** self.alpha + self.B / np.asarray(D) ** self.beta

    def band(self, N, D):
        """No bootstrap: no band (NaN), so the check reports no interval."""
        nan = np.full(np.shape(N), np.nan)
        return nan, nan


def fit_chinchilla_form(df):
    """Least squares of log L for L = E + A/N^alpha + B/D^beta, a few starts (test stand-in
    for approach 3, independent of analysis.chinchilla)."""
    logn, logd, logy = (np.log(df[c].to_numpy(float)) for c in ("N", "D", "L"))

    def res(t):
        e, a, b, al, be = t
        return np.logaddexp(np.logaddexp(e, a - al * logn), b - be * logd) - logy

    starts = [[e, 5.0, 5.0, al, be] for e in (0.0, 0.5) for al in (0.2, 0.5) for be in (0.2, 0.5)]
    best = min((least_squares(res, s) for s in starts), key=lambda r: r.cost)
    e, a, b, al, be = best.x
    return _Law((np.exp(e), np.exp(a), np.exp(b), al, be))


def test_smooth_chinchilla_law_extrapolates_with_small_errors():
    df = runs_table(np.random.default_rng(0))
    res = extrapolation_check(df, fit_chinchilla_form, n_col="N", d_col="D", loss_col="L")
    # Default: the largest-compute 20% of the 40 runs.
    assert res.holdout_frac == 0.2 and res.n_holdout == 8 and res.n_train == 32
    assert res.points["C"].min() > res.train["C"].max() == res.c_max_train
    assert res.decades_beyond > 0.5
    assert res.max_abs_rel_error < 0.015, res.verdict
    assert res.mean_abs_rel_error < 0.008
    assert res.rmse_log < 0.01
    assert not res.flagged and res.verdict.startswith("ok")
    # No band(N, D) on this fit: no interval, and the report says so.
    assert not res.has_interval and res.n_outside is None
    assert "no interval" in res.interval_note
    assert set(res.points.columns) >= {"C", "N", "D", "loss", "predicted", "rel_error"}
    np.testing.assert_allclose(
        res.points["rel_error"], (res.points["predicted"] - res.points["loss"]) / res.points["loss"]
    )
    json.dumps(res.to_dict(), allow_nan=False)


def test_kink_beyond_the_cutoff_is_flagged():
    cutoff = 1e20

    def kinked(N, D):  # the law bends upwards beyond the cutoff: 0.05 per decade in log L
        C = 6 * N * D
        return chinchilla_law(N, D) * np.maximum(C / cutoff, 1.0) ** 0.05

    df = runs_table(np.random.default_rng(1), law=kinked)
    res = extrapolation_check(
        df, fit_chinchilla_form, n_col="N", c_col="C", loss_col="L", holdout_above=cutoff
    )
    assert res.holdout_above == cutoff and res.holdout_frac is None
    assert (res.points["C"] > cutoff).all() and (res.train["C"] <= cutoff).all()
    assert res.flagged and res.verdict.startswith("FLAGGED")
    assert res.max_abs_rel_error > 0.1
    # The law underpredicts the loss, more so further out.
    assert (res.points["rel_error"] < 0).all()
    far = res.points.sort_values("C")["rel_error"]
    assert far.iloc[-1] < far.iloc[0]
    # The same data without the kink passes: the flag is due to the kink.
    ok = extrapolation_check(
        runs_table(np.random.default_rng(1)),
        fit_chinchilla_form,
        n_col="N",
        c_col="C",
        loss_col="L",
        holdout_above=cutoff,
    )
    assert not ok.flagged


def kaplan_law(N, D, a_n=0.076, a_d=0.103, n_c=6.4e13, d_c=1.8e13):
    return ((n_c / N) ** (a_n / a_d) + d_c / D) ** a_d


def test_kaplan_nd_fit_provides_a_prediction_interval_that_covers():
    df = runs_table(np.random.default_rng(2), sigma=0.004, law=kaplan_law)
    res = extrapolation_check(
        df,
        lambda t: fit_kaplan_nd(t, n_col="N", d_col="D", loss_col="L", n_boot=50),
        n_col="N",
        d_col="D",
        loss_col="L",
        holdout_frac=0.2,
        min_train=5,
    )
    assert res.has_interval and "prediction interval" in res.interval_note
    assert (res.points["lo"] < res.points["predicted"]).all()
    assert (res.points["predicted"] < res.points["hi"]).all()
    assert res.n_outside <= 1 and res.coverage >= 7 / 8
    assert res.max_abs_rel_error < 0.02 and not res.flagged
    lo, hi = res.fit.band(res.points["N"], res.points["D"])
    assert np.all(lo <= hi)


def test_holdout_frac_keeps_runs_of_one_budget_together():
    # 5 budgets x 4 runs: 20% = 4 runs = exactly the top budget; 0.3 -> the top two budgets.
    C = np.repeat([1e18, 1e19, 1e20, 1e21, 1e22], 4)
    N = np.tile([1e7, 2e7, 4e7, 8e7], 5)
    df = pd.DataFrame({"N": N, "C": C, "L": chinchilla_law(N, C / (6 * N))})
    fit = lambda t: _Law((E, A, B, ALPHA, BETA))  # noqa: E731
    kw = dict(n_col="N", c_col="C", loss_col="L", min_train=4)
    res = extrapolation_check(df, fit, holdout_frac=0.2, **kw)
    assert res.n_holdout == 4 and res.holdout_above == 1e21
    res = extrapolation_check(df, fit, holdout_frac=0.3, **kw)
    assert res.n_holdout == 8 and res.holdout_above == 1e20
    assert res.max_abs_rel_error < 1e-12  # the true law predicts exactly


def test_bad_splits_are_config_errors_naming_the_flag():
    df = runs_table(np.random.default_rng(3))
    kw = dict(n_col="N", d_col="D", loss_col="L", flag_names=FLAGS)
    with pytest.raises(ConfigError, match="no runs above") as e:
        extrapolation_check(df, fit_chinchilla_form, holdout_above=1e30, **kw)
    assert e.value.field == "--holdout-above"
    with pytest.raises(ConfigError, match="too few") as e:
        extrapolation_check(df, fit_chinchilla_form, holdout_above=1e16, **kw)
    assert e.value.field == "--holdout-above"
    with pytest.raises(ConfigError) as e:
        extrapolation_check(df, fit_chinchilla_form, holdout_frac=1.5, **kw)
    assert e.value.field == "--holdout-frac"
    with pytest.raises(ConfigError, match="too few") as e:
        extrapolation_check(df, fit_chinchilla_form, holdout_frac=0.9, **kw)
    assert e.value.field == "--holdout-frac"
    with pytest.raises(ConfigError, match="together"):
        extrapolation_check(df, fit_chinchilla_form, holdout_frac=0.2, holdout_above=1e20, **kw)

    def failing(t):
        raise ConfigError("kaplan.N", "a single value of 'N'", "add runs")

    with pytest.raises(ConfigError, match="single value") as e:
        extrapolation_check(df, failing, holdout_frac=0.2, **kw)
    assert e.value.field == "--holdout-frac" and "\n" not in str(e.value)
    bad = df.assign(L=df["L"].where(df.index != 3, -1.0))
    with pytest.raises(ConfigError, match="not finite and positive"):
        extrapolation_check(bad, fit_chinchilla_form, **kw)


def test_split_on_another_variable():
    """split_by holds out the largest values of that variable (here tokens per parameter)
    instead of C, and the split, the verdict and the errors name it."""
    df = runs_table(np.random.default_rng(6))
    ratio = ("D/N", (df["D"] / df["N"]).to_numpy())
    kw = dict(n_col="N", d_col="D", loss_col="L", split_by=ratio, flag_names=FLAGS)
    res = extrapolation_check(df, fit_chinchilla_form, holdout_frac=0.2, **kw)
    assert res.n_holdout == 8 and np.allclose(res.points["D"] / res.points["N"], 80)
    assert res.split == "largest-D/N 0.2 of runs (D/N > 40)"
    assert "with D/N up to 80 (training runs: up to 40, 32 runs)" in res.verdict
    with pytest.raises(ConfigError, match="no runs above D/N = 100") as e:
        extrapolation_check(df, fit_chinchilla_form, holdout_above=100, **kw)
    assert e.value.field == "--holdout-above"


def test_plot(tmp_path):
    df = runs_table(np.random.default_rng(4))
    res = extrapolation_check(df, fit_chinchilla_form, n_col="N", c_col="C", loss_col="L")
    assert math.isclose(
        res.points["D"].iloc[0] * 6 * res.points["N"].iloc[0], res.points["C"].iloc[0]
    )
    plot_extrapolation(res, tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 10_000


def test_with_approach_3_when_available():
    chinchilla = pytest.importorskip("analysis.fits.chinchilla")
    df = runs_table(np.random.default_rng(5))
    res = extrapolation_check(
        df,
        lambda t: chinchilla.fit_chinchilla(
            t, n_col="N", d_col="D", loss_col="L", n_boot=20, boot_starts=4
        ),
        n_col="N",
        d_col="D",
        loss_col="L",
    )
    assert res.max_abs_rel_error < 0.02 and not res.flagged, res.verdict
    assert res.has_interval and res.n_outside <= 1  # band from the fit's bootstrap
    assert (res.points["lo"] < res.points["predicted"]).all()
    json.dumps(res.to_dict(), allow_nan=False)
