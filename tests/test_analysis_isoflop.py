import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.fits.allocation import allocation_table
from analysis.fits.isoflop import fit_isoflop
from scaling.config import ConfigError

PORIAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "porian2024"
SETUP = ["dataset", "hparams", "warmup", "decay", "param_count", "loss_split"]

# Chinchilla's fitted law (Hoffmann et al. 2022, eq. 10): N_opt ∝ C^(beta / (alpha + beta)).
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
A_TRUE = BETA / (ALPHA + BETA)
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))


def n_opt_true(C):
    return G * (C / 6) ** A_TRUE


BUDGETS = np.geomspace(1e18, 1e21, 7)


def isoflop_table(rng, sigma=0.01, budgets=BUDGETS, k=9, span=1.0, jitter=0.1):
    """k sizes per budget, log-spaced over +-span decades around the true optimum (whose centre
    is jittered by up to `jitter` decades), loss = Chinchilla law + N(0, sigma^2)."""
    rows = []
    for C in budgets:
        centre = np.log10(n_opt_true(C)) + rng.uniform(-jitter, jitter)
        N = 10 ** np.linspace(centre - span, centre + span, k)
        D = C / (6 * N)
        loss = E + A / N**ALPHA + B / D**BETA + sigma * rng.standard_normal(k)
        rows.append(pd.DataFrame({"N": N, "C": C, "D": D, "L": loss}))
    return pd.concat(rows, ignore_index=True)


COLS = dict(n_col="N", c_col="C", loss_col="L")


def load_porian():
    if not PORIAN.is_dir():
        pytest.skip(f"reference data not found at {PORIAN} (see /work/shared/data/README.md)")
    points = pd.read_csv(PORIAN / "isoflop_points.csv")
    optima = pd.read_csv(PORIAN / "isoflop_optima.csv")
    published = pd.read_csv(PORIAN / "published_fits_basic.csv").set_index(SETUP)
    return points, optima, published


def test_porian_2024_exponents_of_all_15_setups():
    """Akima minima (Porian et al.'s method) + the edge rule reproduce every published a and b,
    and exclude exactly the budgets for which the authors report no optimum."""
    points, optima, published = load_porian()
    groups = list(points.groupby(SETUP))
    assert len(groups) == 15 and len(published) == 15
    a_kaplan = []
    for setup, g in groups:
        fit = fit_isoflop(g, n_col="n_params", c_col="flops", d_col="tokens", method="akima")
        pub = published.loc[setup]
        assert abs(fit.a - pub.n_exponent) < 0.03, (setup, fit.a, pub.n_exponent)
        assert abs(fit.b - pub.t_exponent) < 0.03, (setup, fit.b, pub.t_exponent)
        assert fit.a_ci[0] < fit.a < fit.a_ci[1]
        assert fit.r2_n > 0.97
        authors = optima.set_index(SETUP).loc[setup].set_index("flops")
        ours = fit.budgets.set_index("C")
        no_optimum = set(authors.index[authors["n_opt"].isna()])
        assert set(ours.index[~ours["used"]]) == no_optimum, setup
        # Per-budget minima agree with the authors' (theirs are bootstrap medians).
        both = authors.dropna().index
        ratio = np.log(ours.loc[both, "n_opt"] / authors.loc[both, "n_opt"])
        assert np.abs(ratio).max() < 0.15, setup
        if setup[1:6] == ("base", "long", "kaplan", "kaplan", "train"):
            a_kaplan.append(fit.a)
    assert min(a_kaplan) > 0.8  # the Kaplan-reproducing set-ups really give a ~ 0.83-0.87


def test_porian_bootstrap_is_fast():
    points, _, _ = load_porian()
    g = points.groupby(SETUP).get_group(("rw", "tuned", "short", "const", "standard", "val"))
    t0 = time.perf_counter()
    for method in ("akima", "parabola"):
        fit = fit_isoflop(g, n_col="n_params", c_col="flops", method=method, n_boot=1000)
        assert fit.n_boot_failed == 0
    assert time.perf_counter() - t0 < 5.0


def test_recovers_exponent_from_noiseless_centred_grid():
    # On a grid centred on the true optimum, every parabola vertex is offset from N_opt by the
    # same factor (the profile's shape scales with C), so a is exact.
    df = isoflop_table(np.random.default_rng(0), sigma=0.0, jitter=0.0)
    fit = fit_isoflop(df, **COLS, n_boot=50)
    assert fit.a == pytest.approx(A_TRUE, abs=1e-6)
    assert fit.b == pytest.approx(1 - A_TRUE, abs=1e-6)
    assert fit.r2_n == pytest.approx(1.0)
    assert fit.n_opt(1e20) == pytest.approx(n_opt_true(1e20), rel=0.05)
    with_d = fit_isoflop(df, **COLS, d_col="D", n_boot=50)
    assert with_d.b == pytest.approx(fit.b, abs=1e-9)
    assert with_d.d_opt(1e20) == pytest.approx(fit.d_opt(1e20), rel=1e-9)
    assert "C / (6 N)" in fit.d_convention and "'D'" in with_d.d_convention


def test_interval_coverage_of_exponent():
    """True a inside the 95% interval in ~95% of 200 synthetic draws (binomial sd ~1.5%)."""
    rng = np.random.default_rng(1)
    hits, est = [], []
    for _ in range(200):
        fit = fit_isoflop(isoflop_table(rng), **COLS, n_boot=1000, seed=0)
        hits.append(fit.a_ci[0] <= A_TRUE <= fit.a_ci[1])
        est.append(fit.a)
    assert 0.91 <= np.mean(hits) <= 0.99
    assert abs(np.mean(est) - A_TRUE) < 0.002
    assert np.std(est) < 0.01


def test_edge_budget_is_flagged_and_excluded():
    df = isoflop_table(np.random.default_rng(2), sigma=0.0, jitter=0.0)
    C = 3e21  # sizes all far below the optimum: the loss still falls at the largest size
    N = n_opt_true(C) * np.geomspace(1e-4, 1e-2, 6)
    D = C / (6 * N)
    edge = pd.DataFrame({"N": N, "C": C, "D": D, "L": E + A / N**ALPHA + B / D**BETA})
    fit = fit_isoflop(pd.concat([df, edge]), **COLS, n_boot=100)
    assert fit.edge_budgets == [C]
    row = fit.budgets.set_index("C").loc[C]
    assert row["at_edge"] and not row["used"] and np.isnan(row["n_opt"])
    assert fit.n_budgets == 8 and fit.n_budgets_used == 7
    assert fit.a == pytest.approx(A_TRUE, abs=1e-6)
    assert fit.to_dict()["edge_budgets"] == [C]


def test_budget_whose_bootstrap_minimum_is_often_at_the_edge_is_flagged_unstable():
    df = isoflop_table(np.random.default_rng(3), sigma=0.001)
    C = 3e21  # an off-law budget whose minimum (log N = log 1e8 + 5.8) is near the top size
    x = np.arange(7.0)
    extra = pd.DataFrame({"N": 1e8 * np.exp(x), "C": C, "L": 3 + 0.01 * (x - 5.8) ** 2})
    kw = dict(**COLS, resample="noise", loss_noise_sd=0.01)
    loose = fit_isoflop(pd.concat([df, extra]), **kw)
    row = loose.budgets.set_index("C").loc[C]
    assert np.log(row["n_opt"] / 1e8) == pytest.approx(5.8)
    assert row["used"] and not row["at_edge"] and 0.25 < row["edge_frac"] < 0.5
    assert loose.a > A_TRUE + 0.1  # the off-law budget drags a up
    strict = fit_isoflop(pd.concat([df, extra]), **kw, max_edge_frac=0.25)
    assert strict.unstable_budgets == [C] and strict.edge_budgets == []
    assert not strict.budgets.set_index("C").loc[C, "used"]
    assert abs(strict.a - A_TRUE) < 0.01


def test_other_resampling_schemes_and_akima_run():
    df = isoflop_table(np.random.default_rng(4))
    for kw in (dict(resample="points"), dict(resample="noise"), dict(method="akima")):
        fit = fit_isoflop(df, **COLS, n_boot=200, **kw)
        assert abs(fit.a - A_TRUE) < 0.05
        assert fit.a_ci[0] < fit.a_ci[1]
    noise = fit_isoflop(df, **COLS, n_boot=200, resample="noise", loss_noise_sd=0.01)
    assert noise.loss_noise_sd == 0.01 and "Gaussian noise" in noise.resampled


def test_deterministic_strict_json_and_allocation():
    df = isoflop_table(np.random.default_rng(5))
    a, b = fit_isoflop(df, **COLS, n_boot=300, seed=7), fit_isoflop(df, **COLS, n_boot=300, seed=7)
    d = a.to_dict()
    assert d == b.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["status"] == "ok" and d["n_boot"] == 300 and d["seed"] == 7
    assert d["method"] == "parabola" and d["resample"] == "residuals"
    assert len(d["a_ci"]) == 2 and len(d["budgets"]) == 7 and "boot" not in d
    budgets = [1e19, 1e22, 1e24]
    alloc = a.allocation(budgets, label="approach 2")
    assert list(alloc.columns) == [
        "approach",
        "C",
        "n_opt",
        "n_lo",
        "n_hi",
        "d_opt",
        "d_lo",
        "d_hi",
    ]
    assert np.all(alloc.n_lo < alloc.n_opt) and np.all(alloc.n_opt < alloc.n_hi)
    assert np.all(alloc.d_lo < alloc.d_opt) and np.all(alloc.d_opt < alloc.d_hi)
    assert alloc.d_opt.to_numpy() == pytest.approx(alloc.C / (6 * alloc.n_opt))
    # The band widens away from the sampled budgets (extrapolation).
    width = np.log(alloc.n_hi / alloc.n_lo).to_numpy()
    assert width[2] > width[1] > width[0]
    assert allocation_table(a, 1e21).shape == (1, 7)
    with pytest.raises(ConfigError, match="budgets"):
        a.allocation([0.0])


def bad(df, **kw):
    with pytest.raises(ConfigError) as e:
        fit_isoflop(df, **{**COLS, "n_boot": 10, **kw})
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_input_gives_one_line_errors():
    df = isoflop_table(np.random.default_rng(6))
    assert "no column 'params'" in bad(df, n_col="params")
    neg = df.copy()
    neg.loc[3, "N"] = -1.0
    assert "isoflop.N" in bad(neg) and "not finite and positive" in bad(neg)
    nan = df.copy()
    nan.loc[0, "L"] = np.nan
    assert "isoflop.L" in bad(nan)
    inf = df.copy()
    inf.loc[0, "C"] = np.inf
    assert "isoflop.C" in bad(inf)
    one_size = df.assign(N=1e8)
    assert "single model size" in bad(one_size)
    assert "too few" in bad(df.head(5))
    two_sizes = df.groupby("C").head(2)  # every budget has 2 sizes
    assert "budget(s) with >= 3 model sizes" in bad(two_sizes)
    assert "unknown method" in bad(df, method="spline")
    assert "unknown resample" in bad(df, resample="jackknife")
    assert "Akima spline has no residuals" in bad(df, method="akima", resample="residuals")
    # Every budget's minimum at the edge: nothing to fit.
    low = df[df.groupby("C").N.transform("median") / 3 > df.N]
    assert "inside the sampled model sizes" in bad(low)


def test_plots(tmp_path):
    from analysis.fit_plots import plot_allocation, plot_isoflop

    df = isoflop_table(np.random.default_rng(8))
    C = 3e21  # an edge budget: drawn hollow, without a minimum
    N = n_opt_true(C) * np.geomspace(1e-4, 1e-2, 5)
    df = pd.concat([df, pd.DataFrame({"N": N, "C": C, "L": E + A / N**ALPHA + 3.0})])
    fit = fit_isoflop(df, **COLS, n_boot=100)
    fig = plot_isoflop(fit, df, path=tmp_path / "iso.png")
    assert (tmp_path / "iso.png").stat().st_size > 10_000
    ax = fig.axes[0]
    assert len(ax.lines) >= 8 and len(ax.containers) == 7  # 8 curves, 7 minima with error bars
    assert "edge budget" in ax.get_title()
    budgets = np.geomspace(1e18, 1e22, 20)
    alloc = {
        "approach 2": fit.allocation(budgets),
        "other": fit.allocation(budgets) * [1, 2, 2, 2, 1, 1, 1],
    }
    fig = plot_allocation(alloc, points={"approach 2": fit.budgets}, path=tmp_path / "alloc.png")
    assert (tmp_path / "alloc.png").stat().st_size > 10_000
    n_ax, d_ax = fig.axes
    assert len(n_ax.lines) == 2 and len(d_ax.collections) == 3  # 2 bands + measured optima
    both = pd.concat([fit.allocation(budgets, "a"), fit.allocation(budgets, "b")])
    assert len(plot_allocation(both).axes[0].lines) == 2
    with pytest.raises(ValueError, match="lacks column"):
        plot_allocation({"x": fit.allocation(budgets).drop(columns="d_hi")})
