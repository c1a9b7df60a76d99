"""Observational scaling (Ruan et al. 2024): recovery and interval coverage on models drawn from
the law (low-rank capabilities, family lines in compute, sigmoid link, binomial noise), missing
benchmarks, the three kinds of input (long and wide tables, lm-eval JSON), the real
Pythia/OPT/BLOOM backtest through the CLI, and bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from scipy.stats import spearmanr
from test_cli_fit import run

from analysis.fits.observational import (
    Scores,
    Settings,
    drop_incomplete,
    fit_observational,
    holdout_mask,
)

PYTHIA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pythia_evals"
TASKS = "arc_easy,arc_challenge,piqa,sciq,winogrande,logiqa,wsc,hendrycksTest-*"
FLOOR, CHANCE, TAU = 0.2, 0.25, 0.15  # the floor inside [0, chance]: not at a bound


def synthetic(rng, families=5, sizes=6, J=8, n_bench=2000, n_target=1000):
    """Models from the law: 2 latent capabilities on each family's line in log10 C (its own
    slope and offset, scatter 0.1), benchmarks linear in them with binomial noise, the target
    a sigmoid of them with a floor, scatter TAU in eta and binomial noise. Returns the Scores,
    the true mean target of every model and each family's true capability at log10 C = 21.5."""
    fi = np.repeat(np.arange(families), sizes)
    x = (np.linspace(20.0, 23.0, sizes)[None, :] + rng.uniform(-0.5, 0.5, (families, 1))).ravel()
    theta = np.array([1.0, 0.4]) * rng.uniform(0.8, 1.2, (families, 1))
    nu = rng.normal(0, 0.5, (families, 2))
    z = theta[fi] * (x - 21.5)[:, None] + nu[fi] + rng.normal(0, 0.1, (len(x), 2))
    L = np.column_stack([rng.uniform(0.04, 0.1, J), rng.normal(0, 0.04, J)])
    X = rng.binomial(n_bench, np.clip(0.55 + z @ L.T, 0.01, 0.99)) / n_bench
    eta = -0.5 + 1.2 * z[:, 0] + 0.6 * z[:, 1]
    y = rng.binomial(n_target, FLOOR + (1 - FLOOR) * expit(eta + TAU * rng.normal(size=len(x))))
    sc = Scores(
        np.array([f"m{i}" for i in range(len(x))]), np.array([f"f{i}" for i in fi]), x, X,
        y / n_target, np.full(len(x), float(n_target)), tuple(f"b{j}" for j in range(J)), "t",
    )  # fmt: skip
    level = -0.5 + 1.2 * nu[:, 0] + 0.6 * nu[:, 1]  # eta of each family at x = 21.5
    return sc, FLOOR + (1 - FLOOR) * expit(eta), level


def coverage(runs: int, seed: int = 0, n_boot: int = 100) -> dict:
    rng, hits = np.random.default_rng(seed), {"benchmarks": [], "compute": []}
    for r in range(runs):
        sc, _, _ = synthetic(rng)
        s = Settings(chance=CHANCE)
        fit = fit_observational(sc, holdout_mask(sc, "largest", s), settings=s, n_boot=n_boot,
                                ci=0.9, seed=r)  # fmt: skip
        for mode, b in fit.backtest().items():
            assert b["n_forecast"] == b["n_heldout"] == 5
            hits[mode].append(b["n_covered"] / b["n_forecast"])
    return {mode: float(np.mean(v)) for mode, v in hits.items()}


def test_recovers_the_law_it_was_drawn_from():
    sc, true, level = synthetic(np.random.default_rng(0), families=6, sizes=8)
    fit = fit_observational(sc, settings=Settings(chance=CHANCE), n_boot=100, ci=0.95)
    est = fit.estimates()
    rmse = lambda v: np.sqrt(np.mean((v - true) ** 2))  # noqa: E731
    assert rmse(fit.predict()) < min(0.025, rmse(sc.y))  # nearer the truth than the scores
    b = est["link floor b"]
    assert b.lo <= FLOOR <= b.hi and abs(b.value - FLOOR) < 0.05
    shares = [est[f"PCA PC{i} variance share"].value for i in (1, 2)]
    assert sum(shares) > 0.9 and shares[0] > shares[1]  # two latent capabilities
    tau = est["link tau"]
    assert tau.lo < TAU * 1.6 and tau.hi > TAU * 0.6  # plus the benchmarks' noise in S
    # Compute efficiency: the families' fitted PC1 at a common compute ranks as the truth.
    levels = [est[k].value for k in sorted(est) if k.startswith("family") and " at 10^" in k]
    assert spearmanr(levels, level).statistic > 0.8
    assert all(est[k].lo < est[k].value < est[k].hi for k in est if k.endswith("per decade"))


def test_prediction_intervals_cover_held_out_models():
    """Hold out each family's largest model: nominal 90% intervals cover ~90% (25 points)."""
    cov = coverage(runs=5)
    assert 0.7 <= cov["benchmarks"] <= 1.0 and 0.7 <= cov["compute"] <= 1.0


@pytest.mark.slow
def test_prediction_interval_coverage_is_nominal():
    """200 held-out models over 40 draws: 0.9 +- 3.5 binomial sd (measured: 0.915 from
    benchmarks, 0.95 from compute; 0.80-0.85 from benchmarks with the scatter tau taken from
    in-sample residuals)."""
    cov = coverage(runs=40, n_boot=200)
    assert 0.83 <= cov["benchmarks"] <= 0.97 and 0.83 <= cov["compute"] <= 0.97


def test_missing_benchmarks_imputed_and_sparse_models_left_out():
    sc, true, _ = synthetic(np.random.default_rng(1))
    X = sc.X.copy()
    holes = np.random.default_rng(2).random(X.shape) < 0.1
    X[holes] = np.nan
    X[0, :5] = np.nan  # 5 of 8 missing: more than half
    sparse = Scores(sc.models, sc.family, sc.x, X, sc.y, sc.n, sc.benchmarks, sc.target)
    kept, dropped = drop_incomplete(sparse, None)
    assert dropped == ["m0"] and len(kept.models) == len(sc.models) - 1
    fit = fit_observational(kept, settings=Settings(chance=CHANCE), n_boot=30)
    filled = fit.full.pca.complete(kept.X)
    err = filled[holes[1:]] - sc.X[1:][holes[1:]]
    assert np.sqrt(np.mean(err**2)) < 0.5 * np.std(sc.X)  # far better than the column mean
    assert np.sqrt(np.mean((fit.predict() - true[1:]) ** 2)) < 0.03


def test_holdout_rules():
    sc, _, _ = synthetic(np.random.default_rng(3))
    s = Settings()
    two = holdout_mask(sc, "largest:2", s)
    assert two.sum() == 10 and all(two[sc.family == f].sum() == 2 for f in set(sc.family))
    assert (holdout_mask(sc, "above:1e22", s) == (sc.x > 22)).all()
    assert holdout_mask(sc, "pc1:0.2", s).sum() == 6


def _wide(sc: Scores) -> pd.DataFrame:
    df = pd.DataFrame(sc.X, columns=sc.benchmarks)
    return df.assign(model=sc.models, family=sc.family, flops=10**sc.x, t=sc.y)


def test_wide_long_and_lm_eval_inputs_agree(tmp_path):
    sc, _, _ = synthetic(np.random.default_rng(4), families=3, sizes=5, J=5)
    wide = _wide(sc)
    wide.to_csv(tmp_path / "wide.csv", index=False)
    long = wide.melt(["model", "family", "flops"], var_name="task", value_name="value")
    long.to_csv(tmp_path / "long.csv", index=False)
    lm = tmp_path / "lm_eval"
    for _, row in wide.iterrows():
        results = {t: {"acc": row[t], "acc_stderr": 0.01} for t in (*sc.benchmarks, "t")}
        path = lm / row["model"] / "results.json"
        path.parent.mkdir(parents=True)
        config = {"model_args": f"pretrained=org/{row['model']}", "num_fewshot": 0}
        path.write_text(json.dumps({"results": results, "config": config}))
    wide[["model", "family", "flops"]].to_csv(tmp_path / "models.csv", index=False)
    common = ["--target", "t", "--c", "flops", "--n-boot", "20", "--holdout", "largest"]
    fits = {}
    for name, extra in (("wide", ["--benchmarks", ",".join(sc.benchmarks)]), ("long", []),
                        ("lm_eval", ["--models", str(tmp_path / "models.csv")])):  # fmt: skip
        src = tmp_path / (name if name == "lm_eval" else f"{name}.csv")
        out = tmp_path / f"out_{name}"
        assert run(["observational", str(src), *common, *extra, "--out", str(out)]) == 0
        fits[name] = json.loads((out / "fit.json").read_text())
        assert {p.name for p in out.glob("*.png")} == {
            "observational_capabilities.png", "observational_link.png",
            "observational_backtest.png",
        }  # fmt: skip
    pred = {k: pd.Series({m["model"]: m["predicted"] for m in f["models"]}).sort_index()
            for k, f in fits.items()}  # fmt: skip
    np.testing.assert_allclose(pred["long"], pred["wide"], rtol=1e-6)
    np.testing.assert_allclose(pred["lm_eval"], pred["wide"], rtol=1e-6)
    assert fits["wide"]["backtest"]["benchmarks"]["n_heldout"] == 3
    # The harness's stderr gives the examples: binomial noise enters the intervals.
    assert all(m["n_examples"] > 1000 for m in fits["lm_eval"]["models"])


def test_pythia_opt_bloom_backtest_through_the_cli(tmp_path):
    data = PYTHIA / "pythia_evals_final.csv"
    if not data.exists():
        pytest.skip(f"reference data not found at {data}")
    out = tmp_path / "obs"
    argv = ["observational", str(data), "--target", "lambada_openai", "--benchmarks", TASKS,
            "--metric", "acc", "--filter", "shots=0", "--family", "model_family", "--n",
            "total_params", "--holdout", "largest", "--ci", "0.9", "--n-boot", "100", "--out",
            str(out)]  # fmt: skip
    assert run(argv) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["n_models"] == 29 and fit["n_fitted"] == 25
    assert len(fit["benchmarks"]) == 8 and fit["scale"] == "log10 N"
    bt = fit["backtest"]["benchmarks"]
    assert bt["n_heldout"] == bt["n_forecast"] == 4  # OPT-66B, BLOOM-7B1, both Pythia-12B
    assert bt["mae"] < 0.08 and bt["n_covered"] >= 3
    assert fit["estimates"]["PCA"]["PC1 variance share"]["value"] > 0.6
    assert (out / "observational_backtest.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--target", "lambada_openai", "--metric", "acc"], "--filter shots=0"),  # 0- and 5-shot
        (["--target", "lambada_opnai", "--filter", "shots=0"], "did you mean lambada_openai"),
        (["--target", "arc_easy", "--filter", "shots=0"], "pass --metric NAME"),
        (
            ["--target", "lambada_openai:ppl", "--metric", "acc", "--filter", "shots=0"],
            "needs scores in [0, 1]",
        ),  # fmt: skip
        (
            [
                "--target",
                "piqa",
                "--metric",
                "acc",
                "--filter",
                "shots=0",
                "--benchmarks",
                "piqa,sciq",
            ],
            "holds the target",
        ),  # fmt: skip
        (
            ["--target", "piqa", "--metric", "acc", "--filter", "shots=0", "--holdout", "top:2"],
            "--holdout",
        ),  # fmt: skip
        (["--target", "piqa", "--metric", "acc", "--filter", "shots=0", "--pcs", "0"], "--pcs"),
        (["--target", "piqa", "--drop-highest-loss", "2"], "reads no loss"),
    ],
)
def test_bad_input_is_one_line_exit_2(extra, field, tmp_path, capsys):
    data = PYTHIA / "pythia_evals_final.csv"
    if not data.exists():
        pytest.skip(f"reference data not found at {data}")
    argv = ["observational", str(data), "--family", "model_family", "--n", "total_params"]
    assert run([*argv, *extra, "--n-boot", "5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err


def test_wide_table_needs_benchmarks_and_enough_models(tmp_path, capsys):
    sc, _, _ = synthetic(np.random.default_rng(5), families=2, sizes=3, J=4)
    _wide(sc).to_csv(tmp_path / "wide.csv", index=False)
    base = ["observational", str(tmp_path / "wide.csv"), "--target", "t", "--c", "flops"]
    assert run([*base, "--out", str(tmp_path / "o")]) == 2
    assert "--benchmarks" in capsys.readouterr().err
    argv = [*base, "--benchmarks", "b0,b1,b2,b3", "--holdout", "largest:2", "--out", str(tmp_path)]
    assert run(argv) == 2  # 2 models left to fit
    assert "too few" in capsys.readouterr().err
