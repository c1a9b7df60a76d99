import json

import numpy as np
import pandas as pd
import pytest

from analysis.fits.kaplan import fit_kaplan_compute, fit_kaplan_d, fit_kaplan_n, fit_kaplan_nd
from scaling.config import ConfigError

# Kaplan et al. 2020's published values (eq. 1.1, 1.2 and Table 2 for eq. 1.5).
ALPHA_N, N_C = 0.076, 8.8e13
ALPHA_D, D_C = 0.095, 5.4e13
ND = dict(alpha_N=0.076, alpha_D=0.103, N_c=6.4e13, D_c=1.8e13)


def noisy(y, rng, sd=0.003):
    return y * np.exp(sd * rng.standard_normal(np.shape(y)))


def test_pure_l_of_n_and_d_recover_kaplan_constants():
    rng = np.random.default_rng(0)
    n = np.geomspace(1e6, 1e9, 12)
    fit = fit_kaplan_n(
        pd.DataFrame({"params_non_embedding": n, "loss": noisy((N_C / n) ** ALPHA_N, rng)})
    )
    assert fit.alpha == pytest.approx(ALPHA_N, abs=0.003)
    assert fit.x_c == pytest.approx(N_C, rel=0.5)  # x_c = A^(1/alpha): very sensitive to alpha
    assert fit.alpha_ci[0] < ALPHA_N < fit.alpha_ci[1]
    assert fit.x_c_ci[0] < N_C < fit.x_c_ci[1]
    assert fit.E == 0 and not fit.irreducible and fit.law == "L(N)"
    assert fit.predict(n) == pytest.approx((fit.x_c / n) ** fit.alpha)
    d = np.geomspace(1e8, 1e11, 10)
    fd = fit_kaplan_d(pd.DataFrame({"tokens": d, "loss": noisy((D_C / d) ** ALPHA_D, rng)}))
    assert fd.alpha == pytest.approx(ALPHA_D, abs=0.003) and fd.law == "L(D)"
    assert fd.alpha_ci[0] < fd.alpha < fd.alpha_ci[1] and fd.alpha_ci[1] - fd.alpha_ci[0] < 0.01
    exact = fit_kaplan_d(pd.DataFrame({"tokens": d, "loss": (D_C / d) ** ALPHA_D}), n_boot=20)
    assert exact.alpha == pytest.approx(ALPHA_D, rel=1e-9)
    assert exact.x_c == pytest.approx(D_C, rel=1e-6)
    assert exact.r2_log == pytest.approx(1.0)


def test_l_of_n_with_irreducible_term():
    rng = np.random.default_rng(1)
    n = np.geomspace(1e6, 1e10, 16)
    loss = noisy(1.7 + (1e10 / n) ** 0.3, rng, sd=0.002)
    df = pd.DataFrame({"N": n, "L": loss})
    fit = fit_kaplan_n(df, n_col="N", loss_col="L", irreducible=True, n_boot=200)
    assert fit.irreducible
    assert abs(fit.E - 1.7) < 0.05
    assert fit.alpha == pytest.approx(0.3, abs=0.03)
    assert fit.x_c == pytest.approx(1e10, rel=0.3)
    assert fit.E_ci[0] < 1.7 < fit.E_ci[1]
    pure = fit_kaplan_n(df, n_col="N", loss_col="L", n_boot=0)
    assert pure.rmse_log > 5 * fit.rmse_log  # the pure law cannot bend towards E


def test_joint_l_of_n_d_recovers_kaplan_table_2():
    rng = np.random.default_rng(2)
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(1e6, 1e9, 6), np.geomspace(1e7, 1e10, 6)))
    true = ((ND["N_c"] / N) ** (ND["alpha_N"] / ND["alpha_D"]) + ND["D_c"] / D) ** ND["alpha_D"]
    df = pd.DataFrame({"params_non_embedding": N, "tokens": D, "loss": noisy(true, rng, 0.005)})
    fit = fit_kaplan_nd(df, n_boot=200)
    for k, v in ND.items():
        lo, hi = getattr(fit, f"{k}_ci")
        assert lo < v < hi, (k, lo, v, hi)
    assert fit.alpha_N == pytest.approx(0.076, abs=0.003)
    assert fit.alpha_D == pytest.approx(0.103, abs=0.003)
    assert fit.rmse_log < 0.006 and fit.n_boot_failed < 10
    assert fit.predict(N, D) == pytest.approx(true, rel=0.01)
    d = fit.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["status"] == "ok" and "boot" not in d and d["n_points"] == 36
    assert d == fit_kaplan_nd(df, n_boot=200).to_dict()  # deterministic


def test_l_of_compute_on_the_frontier():
    rng = np.random.default_rng(3)
    rows = []
    for i, N in enumerate(np.geomspace(1e6, 1e9, 8)):
        D = np.geomspace(1e7, 1e11, 40)
        loss = ((ND["N_c"] / N) ** (ND["alpha_N"] / ND["alpha_D"]) + ND["D_c"] / D) ** 0.103
        rows.append(pd.DataFrame({"run": i, "C": 6 * N * D, "L": noisy(loss, rng, 0.002)}))
    curves = pd.concat(rows, ignore_index=True)
    frontier, fit = fit_kaplan_compute(curves, "C", loss_col="L", n_boot=200)
    assert fit.law == "L(C_min)" and fit.n_points == len(frontier) >= 10
    assert np.all(np.diff(frontier["L"]) < 0)
    # The envelope of eq. 1.5 is close to a pure power law in C with a small exponent
    # (Kaplan et al. find alpha_C^min = 0.050).
    assert 0.03 < fit.alpha < 0.07 and fit.r2_log > 0.98
    assert fit.alpha_ci[0] < fit.alpha < fit.alpha_ci[1]
    json.dumps(fit.to_dict(), allow_nan=False)


def test_bad_input_gives_one_line_errors():
    df = pd.DataFrame(
        {
            "params_non_embedding": [1e6, 1e7, 1e8, 1e9],
            "tokens": [1e9, 1e9, 2e9, 3e9],
            "loss": [4.0, 3.5, 3.1, 2.9],
        }
    )

    def bad(fn, frame, **kw):
        with pytest.raises(ConfigError) as e:
            fn(frame, n_boot=5, **kw)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "no column 'N'" in bad(fit_kaplan_n, df, n_col="N")
    assert "too few" in bad(fit_kaplan_n, df.head(2))
    assert "too few" in bad(fit_kaplan_n, df.head(3), irreducible=True)
    assert "a single value" in bad(fit_kaplan_n, df.assign(params_non_embedding=1e8))
    assert "kaplan.loss" in bad(fit_kaplan_n, df.assign(loss=[4.0, np.inf, 3.0, 2.0]))
    assert "kaplan.tokens" in bad(fit_kaplan_d, df.assign(tokens=[0.0, 1e9, 2e9, 3e9]))
    assert "too few" in bad(fit_kaplan_nd, df)  # 4 rows for 4 parameters
    five = pd.concat([df, df.iloc[:1]], ignore_index=True).assign(tokens=1e9)
    assert "a single value of 'tokens'" in bad(fit_kaplan_nd, five)
    assert "no column" in bad(fit_kaplan_compute, df, c_col="flops")
