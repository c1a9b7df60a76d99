import json

import numpy as np
import pandas as pd
import pytest

from analysis.fits.envelope import fit_envelope
from analysis.fits.powerlaw import compute_frontier
from scaling.config import ConfigError

# Chinchilla's fitted law (Hoffmann et al. 2022, eq. 10); N_opt ∝ C^(beta / (alpha + beta)).
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
A_TRUE = BETA / (ALPHA + BETA)
SIZES = np.geomspace(1e6, 1e9, 16)


def curves(rng, sizes=SIZES, noise=0.0):
    """Idealised training curves: loss after D tokens = L(N, D), 60 evaluations per run."""
    rows = []
    for i, N in enumerate(sizes):
        D = np.geomspace(1e7, 3e11, 60)
        loss = E + A / N**ALPHA + B / D**BETA + noise * rng.standard_normal(len(D))
        rows.append(
            pd.DataFrame(
                {
                    "run_id": f"r{i}",
                    "model": f"m{i}",
                    "params_non_embedding": N,
                    "params_total": N,
                    "step": np.arange(len(D)),
                    "tokens": D,
                    "flops_6n": 6 * N * D,
                    "loss": loss,
                }
            )
        )
    step0 = rows[0].iloc[:1].assign(step=0, tokens=0, flops_6n=0.0, loss=11.0)
    return pd.concat([step0, *rows], ignore_index=True)


def test_recovers_allocation_exponent_and_matches_compute_frontier():
    c = curves(np.random.default_rng(0))
    fit = fit_envelope(c, c_col="flops_6n", n_boot=200)
    # Discrete model sizes (5 per decade) quantise N_opt; the fit still lands near the truth.
    assert abs(fit.a - A_TRUE) < 0.015
    assert fit.b == pytest.approx(1 - fit.a)  # D = C / (6 N)
    assert fit.a_ci[0] < A_TRUE < fit.a_ci[1]
    assert fit.r2_n > 0.95
    frontier = compute_frontier(c, "flops_6n", 20)
    env = fit.envelope
    assert env["params_non_embedding"].tolist() == frontier["params_non_embedding"].tolist()
    assert env["flops_6n"].tolist() == frontier["flops_6n"].tolist()
    # Envelope points of the smallest / largest model are flagged and left out.
    edge = env["params_non_embedding"].isin([SIZES.min(), SIZES.max()])
    assert edge.any() and (env["edge"] == edge).all() and (env["used"] == ~edge).all()
    assert fit.n_edge_points == edge.sum() and fit.n_points == (~edge).sum()
    kept = fit_envelope(c, c_col="flops_6n", n_boot=0, exclude_edge_models=False)
    assert kept.n_points == fit.n_envelope and kept.a != fit.a


def test_noisy_curves_tokens_column_and_resampling():
    c = curves(np.random.default_rng(1), noise=0.01)
    by_runs = fit_envelope(c, c_col="flops_6n", d_col="tokens", n_boot=300)
    assert abs(by_runs.a - A_TRUE) < 0.03
    assert by_runs.b == pytest.approx(1 - by_runs.a, abs=1e-9)  # tokens = C / (6 N) here
    assert "'tokens'" in by_runs.d_convention
    by_points = fit_envelope(c, c_col="flops_6n", resample="points", n_boot=300)
    assert by_points.a == by_runs.a and by_points.a_ci != by_runs.a_ci
    for f in (by_runs, by_points):
        assert f.a_ci[0] < f.a < f.a_ci[1] and f.n_boot_failed < 30
        alloc = f.allocation([1e19, 1e21])
        assert np.all(alloc.n_lo < alloc.n_opt) and np.all(alloc.n_opt < alloc.n_hi)


def test_deterministic_and_strict_json():
    c = curves(np.random.default_rng(2), noise=0.01)
    d = fit_envelope(c, c_col="flops_6n", n_boot=100, seed=3).to_dict()
    assert d == fit_envelope(c, c_col="flops_6n", n_boot=100, seed=3).to_dict()
    json.dumps(d, allow_nan=False)
    assert d["status"] == "ok" and d["resample"] == "runs" and "whole runs" in d["resampled"]
    assert d["n_runs"] == 16 and d["n_sizes"] == 16 and len(d["envelope"]) == d["n_envelope"]
    assert "boot" not in d and len(d["a_ci"]) == 2


def test_bad_input_gives_one_line_errors():
    c = curves(np.random.default_rng(3))

    def bad(df, **kw):
        with pytest.raises(ConfigError) as e:
            fit_envelope(df, **{"c_col": "flops_6n", "n_boot": 5, **kw})
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "no column 'flops'" in bad(c, c_col="flops")
    nan = c.copy()
    nan.loc[5, "loss"] = np.nan
    assert "envelope.loss" in bad(nan)
    neg = c.copy()
    neg.loc[5, "params_non_embedding"] = -3
    assert "envelope.params_non_embedding" in bad(neg)
    assert "single model size" in bad(c[c.run_id == "r3"])
    assert "too few" in bad(c.head(3))
    two = c[c.run_id.isin(["r0", "r15"])]  # only edge models
    assert "smallest or largest" in bad(two)
    assert "unknown resample" in bad(c, resample="budgets")


def test_plot_envelope(tmp_path):
    from analysis.fit_plots import plot_envelope
    from analysis.fits.kaplan import fit_kaplan_compute

    c = curves(np.random.default_rng(4), noise=0.01)
    frontier, law = fit_kaplan_compute(c, "flops_6n", irreducible=True, n_boot=50)
    fig = plot_envelope(c, frontier, law, path=tmp_path / "env.png")
    assert (tmp_path / "env.png").stat().st_size > 10_000
    ax = fig.axes[0]
    assert len(ax.lines) == 16 + 1  # one per run + the law
    assert plot_envelope(c, frontier).axes[0].get_legend() is not None
