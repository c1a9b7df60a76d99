import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.fits.outputs import fit_latex, fit_markdown
from experiments import cli_fit
from scaling.config import ConfigError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PORIAN = DATA / "porian2024"
EPOCH = DATA / "chinchilla_epoch" / "svg_extracted_data.csv"
SETUP = ["dataset", "hparams", "warmup", "decay", "param_count", "loss_split"]
RW_TUNED = ("rw", "tuned", "short", "const", "standard", "val")  # a ~ 0.497 (Chinchilla-like)


def run(argv: list[str]) -> int:
    """`scaling fit ...` as experiments.cli.main runs it: ConfigError -> one line, exit code 2."""
    p = argparse.ArgumentParser(prog="scaling")
    sub = p.add_subparsers(dest="command", required=True)
    cli_fit.add_parser(sub)
    args = p.parse_args(["fit", *argv])
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"scaling: error: {e}", file=sys.stderr)
        return 2


def porian():
    if not PORIAN.is_dir():
        pytest.skip(f"reference data not found at {PORIAN}")
    return PORIAN / "isoflop_points.csv", pd.read_csv(PORIAN / "published_fits_basic.csv")


def filters(setup) -> list[str]:
    return [x for col, v in zip(SETUP, setup) for x in ("--filter", f"{col}={v}")]


def test_isoflop_on_porian_setup_reproduces_published_exponent(tmp_path, capsys):
    points, published = porian()
    pub = published.set_index(SETUP).loc[RW_TUNED]
    out = tmp_path / "iso"
    argv = [str(points), "--n", "n_params", "--c", "flops", "--d", "tokens", "--method", "akima"]
    argv += [*filters(RW_TUNED), "--n-boot", "50", "--budgets", "1e20,1e21", "--out", str(out)]
    assert run(["isoflop", *argv]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert abs(fit["a"] - pub.n_exponent) < 0.01, (fit["a"], pub.n_exponent)
    assert abs(fit["b"] - pub.t_exponent) < 0.01
    assert fit["a_ci"][0] < fit["a"] < fit["a_ci"][1]
    assert fit["method"] == "akima"
    mapping = {"n": "n_params", "d": "tokens", "c": "flops", "loss": "loss"}
    assert fit["column_mapping"] == mapping and fit["cli_args"]["method"] == "akima"
    n_rows = len(pd.read_csv(points).set_index(SETUP).loc[RW_TUNED])
    assert fit["n_points_used"] == fit["selection"]["n_rows_selected"] == n_rows
    assert fit["input"].endswith("isoflop_points.csv")
    assert [r["C"] for r in fit["allocation"]] == [1e20, 1e21]
    for name in ("isoflop.png", "allocation.png"):
        assert (out / name).stat().st_size > 10_000
    md = (out / "fit.md").read_text()
    assert "| a | 0.49" in md and "Compute-optimal allocation" in md
    tex = (out / "fit.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    printed = capsys.readouterr().out
    assert "a = 0.49" in printed and str(out) in printed


def test_group_fits_each_setup_separately(tmp_path):
    points, published = porian()
    out = tmp_path / "g"
    argv = [str(points), "--n", "n_params", "--c", "flops", "--method", "akima", "--n-boot", "20"]
    argv += ["--filter", "dataset=rw", "--filter", "hparams=tuned", "--filter", "decay=const"]
    argv += ["--filter", "warmup=short", "--group", "param_count,loss_split", "--out", str(out)]
    assert run(["isoflop", *argv]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert set(fit["groups"]) == {
        "param_count=attention, loss_split=train",
        "param_count=standard, loss_split=val",
    }
    pub = published.set_index(SETUP)
    for key, entry in fit["groups"].items():
        values = dict(kv.split("=") for kv in key.split(", "))
        expected = pub.loc[
            ("rw", "tuned", "short", "const", values["param_count"], values["loss_split"])
        ]
        assert abs(entry["a"] - expected.n_exponent) < 0.01, key
        assert entry["n_points_used"] > 50
    assert (out / "isoflop-standard_val.png").exists()
    assert (out / "allocation-attention_train.png").exists()


def bad_table(tmp_path, **changes) -> Path:
    """A small IsoFLOP-shaped table (3 budgets x 4 sizes) with optional column edits."""
    rows = []
    for C in (1e18, 1e19, 1e20):
        for N in (1e7, 3e7, 1e8, 3e8):
            D = C / (6 * N)
            rows.append({"N": N, "D": D, "C": C, "L": 1.7 + 400 / N**0.34 + 410 / D**0.28})
    df = pd.DataFrame(rows)
    for col, fn in changes.items():
        df[col] = fn(df)
    path = tmp_path / f"t{len(list(tmp_path.glob('t*.csv')))}.csv"
    df.to_csv(path, index=False)
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("scaling: error:")
    return err


def test_unknown_column_exits_2_naming_it(tmp_path, capsys):
    path = bad_table(tmp_path)
    assert run(["isoflop", str(path), "--n", "N", "--c", "C", "--loss", "los"]) == 2
    err = error_line(capsys)
    assert "--loss 'los'" in err and "no column 'los'" in err and "N, D, C, L" in err
    assert run(["kaplan", str(path), "--n", "params", "--c", "C", "--loss", "L"]) == 2
    assert "no column 'params'" in error_line(capsys)
    assert run(["isoflop", str(path), "--n", "N", "--c", "C", "--loss", "L", "--filter", "x=1"])
    assert "--filter" in error_line(capsys)
    assert run(["isoflop", str(path), "--n", "N", "--c", "C", "--loss", "L", "--group", "grp"])
    assert "no column 'grp'" in error_line(capsys)


def test_negative_or_non_finite_values_exit_2_naming_the_column(tmp_path, capsys):
    neg = bad_table(tmp_path, L=lambda d: d["L"].where(d.index != 5, -0.5))
    assert run(["isoflop", str(neg), "--n", "N", "--c", "C", "--loss", "L"]) == 2
    err = error_line(capsys)
    assert "--loss 'L'" in err and "-0.5" in err and "not finite and positive" in err
    nan = bad_table(tmp_path, D=lambda d: d["D"].where(d.index != 2, np.nan))
    assert run(["kaplan", str(nan), "--n", "N", "--d", "D", "--loss", "L", "--law", "nd"]) == 2
    assert "--d 'D'" in error_line(capsys)
    zero = bad_table(tmp_path, C=lambda d: d["C"].where(d.index != 0, 0.0))
    assert run(["isoflop", str(zero), "--n", "N", "--c", "C", "--loss", "L"]) == 2
    assert "--c 'C'" in error_line(capsys)


def test_single_model_size_and_too_few_points_exit_2(tmp_path, capsys):
    one = bad_table(tmp_path, N=lambda d: 1e8)
    assert run(["kaplan", str(one), "--n", "N", "--c", "C", "--loss", "L", "--law", "nd"]) == 2
    err = error_line(capsys)
    assert "--n 'N'" in err and "single model size" in err
    path = bad_table(tmp_path)
    argv = [str(path), "--n", "N", "--c", "C", "--loss", "L", "--law", "nd", "--max-c", "1e18"]
    assert run(["kaplan", *argv]) == 2  # 4 points for 4 parameters
    err = error_line(capsys)
    assert "4 point(s)" in err and "too few" in err and "4 parameters" in err
    argv = [str(path), "--n", "N", "--c", "C", "--loss", "L", "--drop-highest-loss", "10"]
    assert run(["envelope", *argv]) == 2
    assert "too few" in error_line(capsys)
    assert run(["isoflop", str(path), "--n", "N", "--d", "D", "--loss", "L"]) == 2
    assert "--c" in error_line(capsys)  # IsoFLOP needs the budget column
    assert run(["isoflop", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in error_line(capsys)
    assert run(["isoflop", str(path), "--n", "N", "--c", "C", "--loss", "L", "--ci", "2"]) == 2
    assert "--ci" in error_line(capsys)


def kaplan_runs(tmp_path, kink: float = 0.0) -> Path:
    """Runs of Kaplan's L(N, D) (eq. 1.5, Table 2 values) on a 6 x 5 grid, noise sd 0.3%;
    with kink > 0 the loss bends upwards beyond C = 1e19 by `kink` per decade (log L)."""
    rng = np.random.default_rng(0)
    N, r = np.meshgrid(np.geomspace(1e7, 1e9, 6), [2, 5, 10, 20, 50])
    N, D = N.ravel(), (N * r).ravel()
    C = 6 * N * D
    loss = ((6.4e13 / N) ** (0.076 / 0.103) + 1.8e13 / D) ** 0.103
    loss *= np.exp(0.003 * rng.standard_normal(N.size)) * np.maximum(C / 1e19, 1) ** kink
    path = tmp_path / f"kaplan{kink}.csv"
    pd.DataFrame({"params": N, "tokens": D, "flops": C, "loss": loss}).to_csv(path, index=False)
    return path


def test_kaplan_laws_and_extrapolation_check(tmp_path, capsys):
    out = tmp_path / "k"
    argv = [str(kaplan_runs(tmp_path)), "--n", "params", "--d", "tokens", "--law", "nd,c,n"]
    argv += ["--n-boot", "30", "--holdout-frac", "0.2", "--out", str(out)]
    assert run(["kaplan", *argv]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert set(fit["laws"]) == {"L(N,D)", "L(C_min)", "L(N)"}
    nd = fit["laws"]["L(N,D)"]
    assert abs(nd["alpha_N"] - 0.076) < 0.01 and abs(nd["alpha_D"] - 0.103) < 0.015
    assert fit["column_mapping"]["c"] == "C (=6ND)" and "6 N D" in fit["flop_convention"]
    ex = json.loads((out / "extrapolation.json").read_text())
    assert ex["n_holdout"] == 6 and ex["n_train"] == 24 and not ex["flagged"]
    assert ex["has_interval"] and ex["max_abs_rel_error"] < 0.02
    assert len(ex["points"]) == 6 and {"C", "N", "D", "loss", "predicted"} <= set(ex["points"][0])
    assert fit["extrapolation"]["verdict"] == ex["verdict"]
    for name in ("kaplan_nd.png", "kaplan_c.png", "kaplan_n.png", "extrapolation.png"):
        assert (out / name).exists(), name
    assert "extrapolation: ok" in capsys.readouterr().out

    # A kink beyond the cutoff is flagged.
    argv = [str(kaplan_runs(tmp_path, kink=0.05)), "--n", "params", "--d", "tokens"]
    argv += ["--law", "nd", "--n-boot", "30", "--holdout-above", "1e19", "--out", str(out)]
    assert run(["kaplan", *argv]) == 0
    ex = json.loads((out / "extrapolation.json").read_text())
    assert ex["flagged"] and ex["max_abs_rel_error"] > 0.05
    assert "FLAGGED" in capsys.readouterr().out

    # Bad splits are exit code 2 naming the flag.
    argv[-3:-2] = ["1e30"]
    assert run(["kaplan", *argv]) == 2
    assert "--holdout-above" in error_line(capsys)
    argv[-4:-2] = ["--holdout-frac", "0.95"]
    assert run(["kaplan", *argv]) == 2
    assert "--holdout-frac" in error_line(capsys)
    argv[argv.index("nd")] = "c"
    assert run(["kaplan", *argv]) == 2
    assert "add nd to --law" in error_line(capsys)


def test_envelope_on_training_curves(tmp_path):
    """Curves of 5 model sizes (loss = Chinchilla law at each step's tokens): the envelope
    fit runs, with --run naming the run column, and writes its plots."""
    rows = []
    for i, N in enumerate(np.geomspace(1e7, 1e9, 5)):
        for D in np.geomspace(1e7, 20 * 1e9, 40):
            rows.append({"run": f"r{i}", "N": N, "D": D, "C": 6 * N * D})
    df = pd.DataFrame(rows)
    df["L"] = 1.69 + 406.4 / df["N"] ** 0.34 + 410.7 / df["D"] ** 0.28
    path = tmp_path / "curves.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "env"
    argv = [str(path), "--n", "N", "--c", "C", "--d", "D", "--loss", "L", "--run", "run"]
    assert run(["envelope", *argv, "--n-boot", "20", "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert 0.3 < fit["a"] < 0.8 and fit["column_mapping"]["run"] == "run"
    assert (out / "envelope.png").exists() and (out / "allocation.png").exists()


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as e:
        run(["chinchilla", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--n COL", "--c COL", "--d COL", "--filter", "--group", "--drop-highest-loss"):
        assert flag in text, flag
    assert "--holdout-frac" in text and "--delta" in text and "--budgets" in text


def test_chinchilla_on_epoch_data(tmp_path, capsys):
    if not EPOCH.exists():
        pytest.skip(f"reference data not found at {EPOCH}")
    out = tmp_path / "ch"
    argv = [str(EPOCH), "--n", "Model Size", "--c", "Training FLOP", "--loss", "loss"]
    argv += ["--drop-highest-loss", "5", "--n-boot", "10", "--budgets", "1e21,1e22"]
    argv += ["--holdout-frac", "0.2", "--out", str(out)]
    assert run(["chinchilla", *argv]) == 0
    fit = json.loads((out / "fit.json").read_text())
    for k in ("E", "A", "B", "alpha", "beta", "a", "b"):
        assert np.isfinite(fit[k]) and f"{k}_ci" in fit, k
    assert "diagnostics" in fit
    assert fit["n_points_used"] == 240 and len(fit["dropped_highest_loss"]) == 5
    assert 0.2 < fit["alpha"] < 0.6 and 0.2 < fit["beta"] < 0.6
    assert [r["C"] for r in fit["allocation"]] == [1e21, 1e22]
    for name in ("allocation.png", "loss_vs_compute.png", "extrapolation.png", "fit.md"):
        assert (out / name).exists(), name
    ex = json.loads((out / "extrapolation.json").read_text())
    assert ex["n_holdout"] >= 48 and ex["max_abs_rel_error"] < 0.1
    assert "E = " in capsys.readouterr().out


def test_fit_tables_render_missing_values_and_tex_names():
    rows = [("set_1", "", "alpha", 0.3, None, float("nan")), ("set_1", "", "E", 1.5, 1.4, 1.6)]
    tex = fit_latex(rows, "chinchilla", 0.95)
    assert r"set\_1 & $\alpha$ & 0.3 & [--, --] \\" in tex and r"set\_1 & E & 1.5" in tex
    assert r"Group & Parameter & Estimate & 95\% interval \\" in tex
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    md = fit_markdown(rows, "chinchilla", 0.95, "meta", [])
    assert md.startswith("# chinchilla fit\n\nmeta\n\n| group | parameter | estimate |")
    assert "| set_1 | alpha | 0.3 | [–, –] |" in md


GADRE = Path(__file__).resolve().parent / "data" / "gadre2024"
GADRE_COLS = ["--n", "params", "--d", "tokens", "--loss", "loss_c4_val", "--n-boot", "20"]


def test_overtraining_and_error_from_compute_on_gadre_runs(tmp_path, capsys):
    """Both Gadre et al. laws on their RedPajama runs, the two largest held out."""
    models = str(GADRE / "models.csv")
    out = tmp_path / "ot"
    argv = [models, *GADRE_COLS, "--holdout-above", "1e21"]
    assert run(["overtraining", *argv, "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["law"].startswith("L(C, M)") and 0.1 < fit["eta"] < 0.2 and fit["M_opt"] > 1
    assert fit["extrapolation"]["n_holdout"] == 2
    assert fit["extrapolation"]["max_abs_rel_error"] < 0.01
    names = ("fit.md", "fit.tex", "extrapolation.json", "overtraining.png", "allocation.png")
    for name in (*names, "extrapolation.png", "overtraining_holdout.png"):
        assert (out / name).exists(), name
    assert "| eta | 0.1" in (out / "fit.md").read_text()

    out = tmp_path / "ds"
    argv += ["--error", "err_avg17", "--from-compute", "--tolerance", "0.05"]
    assert run(["downstream_error", *argv, "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert set(fit["laws"]) == {"L(C, M)", "Err(L)"}
    ex = json.loads((out / "extrapolation.json").read_text())
    assert ex["target"] == "err_avg17" and not ex["flagged"] and ex["n_outside"] == 0
    for name in ("downstream_error.png", "error_vs_compute.png", "downstream_error_holdout.png"):
        assert (out / name).exists(), name
    assert "Err(L) gamma = " in capsys.readouterr().out


def test_downstream_error_from_measured_loss_and_per_task(tmp_path, capsys):
    out = tmp_path / "avg"
    argv = [str(GADRE / "models.csv"), *GADRE_COLS, "--error", "err_avg17"]
    assert run(["downstream_error", *argv, "--holdout-frac", "0.1", "--out", str(out)]) == 0
    ex = json.loads((out / "extrapolation.json").read_text())
    assert ex["n_holdout"] == 4 and "loss_c4_val" in ex["points"][0]
    assert (out / "downstream_error_holdout.png").exists()

    out = tmp_path / "tasks"
    argv = [str(GADRE / "downstream.csv"), "--loss", "loss_c4_val", "--n-boot", "20"]
    argv += ["--filter", "in_subset17=True", "--group", "task", "--out", str(out)]
    assert run(["downstream_error", *argv]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert len(fit["groups"]) == 17 and all(g["k"] > 0 for g in fit["groups"].values())
    assert (out / "downstream_error-arc_easy.png").exists()

    argv = [str(GADRE / "models.csv"), "--loss", "loss_c4_val", "--error", "nope"]
    assert run(["downstream_error", *argv, "--out", str(out)]) == 2
    assert "--error 'nope'" in error_line(capsys)


MUENNIGHOFF = Path(__file__).resolve().parent / "data" / "muennighoff2023" / "runs.csv"
PAPER_BASE = "1.869144,520.8249,1487.716,0.3526596,0.3526596"  # their C4 base law, unrounded


def test_data_constrained_on_muennighoff_runs(tmp_path, capsys):
    """Their procedure on their 182 runs (the base given), the most-repeated fifth held out;
    their own base fitted on their runs of at most 2.5 epochs; bad flags."""
    out = tmp_path / "given"
    argv = [str(MUENNIGHOFF), "--n", "params", "--d", "tokens", "--n-boot", "20"]
    given = [*argv, "--filter", "in_decay_fit=1", "--base", PAPER_BASE]
    holdout = ["--holdout-by", "epochs", "--holdout-frac", "0.2", "--tolerance", "0.5"]
    assert run(["data_constrained", *given, *holdout, "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["law"].startswith("L(N, D, U)") and fit["settings"]["base"] == "given"
    assert 90 < fit["R_D_star"] < 100 and 1.6 < fit["R_N_star"] < 1.8
    assert any("do not separate" in w for w in fit["diagnostics"]["warnings"])
    assert fit["columns"]["unique"] == "unique_tokens"
    ex = json.loads((out / "extrapolation.json").read_text())
    assert ex["split"].startswith("largest-epochs 0.2 of runs (epochs > ")
    assert ex["n_holdout"] >= 0.2 * 182 and "unique_tokens" in ex["points"][0]
    for name in ("fit.md", "fit.tex", "data_constrained.png", "data_constrained_holdout.png"):
        assert (out / name).exists(), name
    assert r"$R_D^*$" in (out / "fit.tex").read_text()

    out = tmp_path / "fitted"
    fitted = [*argv, "--max-epochs-base", "2.5", "--tie-exponents", "--out", str(out)]
    assert run(["data_constrained", *fitted]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["n_base_points"] == 62 and fit["alpha"] == fit["beta"]

    assert run(["data_constrained", *argv, "--base", "1,2,3", "--out", str(out)]) == 2
    assert "--base" in error_line(capsys)
    assert run(["data_constrained", *argv, "--unique", "nope", "--out", str(out)]) == 2
    assert "--unique 'nope'" in error_line(capsys)
