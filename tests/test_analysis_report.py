import json

import numpy as np
import pandas as pd
import pytest

from analysis.report import FILES, load_sweep_tables, write_report

SIZES = {"s1": 2e4, "s2": 6e4, "s3": 2e5, "s4": 6e5, "s5": 2e6}  # non-embedding params
BUDGETS = (2_000_000, 4_000_000, 8_000_000)  # tokens
TASKS = {  # task: (metric, random baseline, score as a function of log10 FLOPs)
    "copy": ("exact_match", 0.0, lambda lc: 0.0),
    "count": ("acc", 0.25, lambda lc: 0.4 + 0.08 * (lc - 11)),
    "add": ("exact_match", 0.0, lambda lc: 0.0 if lc < 12.5 else 0.2 * (lc - 12.3)),
    "negate": ("acc", 0.5, lambda lc: 0.9 - 0.1 * (lc - 11)),
}


def law(n, d):
    """Chinchilla-like L(N, D) (Hoffmann et al. 2022, eq. 10), scaled to tiny models."""
    return 1.7 + 40 * n**-0.34 + 40 * d**-0.28


def synthetic_sweep(runs, jitter: float = 0.0):
    """Results and curves of runs (model, tokens), or (model, tokens, N, IsoFLOP budget), whose
    losses follow `law`; `jitter` spreads each run's FLOPs by up to that fraction, as a design's
    integer token counts and a detailed FLOP count do."""
    rng = np.random.default_rng(0)
    results, curves = [], []
    for model, tokens, *iso in runs:
        n = iso[0] if iso else SIZES[model]
        run = {
            "sweep": "synthetic",
            "run_id": f"{model}-t{tokens}",
            "model": model,
            "n_layer": 2, "d_model": 64, "n_head": 4, "d_ff": 256, "seq_len": 128,
            "vocab_size": 256,
            "params_total": int(n) + 16384,
            "params_non_embedding": int(n),
            "params_embedding": 16384,
        } | ({"flops_budget": iso[1]} if iso else {})  # fmt: skip
        per_token = 7.0 * n * (1 + jitter * rng.uniform(-1, 1))
        steps = np.arange(11)
        seen = tokens * steps // 10
        curves.append(
            pd.DataFrame(
                {
                    **{k: run[k] for k in ("sweep", "run_id", "model", "params_total",
                                           "params_non_embedding", "params_embedding")},
                    "tokens_budget": tokens,
                    "step": steps * 100,
                    "tokens": seen,
                    "flops_6n": 6.0 * n * seen,
                    "flops_detailed": per_token * seen,
                    "loss": np.where(seen > 0, law(n, np.maximum(seen, 1)), np.log(256)),
                }
            )
        )  # fmt: skip
        flops = per_token * tokens
        for task, (metric, baseline, score) in TASKS.items():
            k = rng.binomial(150, float(np.clip(score(np.log10(flops)), 0, 1)))
            results.append(
                run
                | {
                    "tokens": tokens, "flops_6n": 6.0 * n * tokens, "flops_detailed": flops,
                    "loss": law(n, tokens), "task": task, "metric": metric, "shots": 0,
                    "value": k / 150, "stderr": np.sqrt(k / 150 * (1 - k / 150) / 150),
                    "n_examples": 150, "random_baseline": baseline,
                }
            )  # fmt: skip
    return pd.DataFrame(results), pd.concat(curves, ignore_index=True)


FULL = [(m, t) for m in SIZES for t in BUDGETS]


def test_write_report_full_sweep(tmp_path):
    results, curves = synthetic_sweep(FULL)
    summary = write_report(results, curves, tmp_path, n_boot=200)
    for name in FILES:
        assert (tmp_path / name).stat().st_size > 0, name
    fits = json.loads((tmp_path / "fits.json").read_text())
    c_fit = fits["loss_vs_flops"]
    assert c_fit["status"] == "ok" and c_fit["x_col"] == "flops_detailed"
    assert c_fit["alpha_ci"][0] <= c_fit["alpha"] <= c_fit["alpha_ci"][1]
    assert "Hoffmann" in fits["flops_convention"] and fits["bootstrap"]["n_boot"] == 200
    assert [f["tokens"] for f in fits["loss_vs_params"]] == list(BUDGETS)
    for f in fits["loss_vs_params"]:
        assert f["status"] == "ok" and f["n_points"] == len(SIZES)
        assert f["alpha"] == pytest.approx(0.34, abs=0.02)  # noiseless, so nearly exact
        assert len(f["E_ci"]) == len(f["A_ci"]) == 2
    ch = fits["chinchilla"]  # the law the losses were drawn from, without noise
    assert ch["alpha"] == pytest.approx(0.34, abs=0.01)
    assert ch["beta"] == pytest.approx(0.28, abs=0.01)
    assert ch["E"] == pytest.approx(1.7, rel=0.01) and len(ch["allocation"]) > 0
    assert fits["envelope"]["status"] == "ok"
    # Five sizes x three token budgets span 15 multipliers M = D / N: the over-training law fits.
    assert fits["overtraining"]["status"] == "ok" and 0.1 < fits["overtraining"]["eta"] < 0.2
    assert "| overtraining | M_opt |" in (tmp_path / "fits.md").read_text()
    # A grid of sizes x token budgets is not an IsoFLOP design: approach 2 is a named skip, and
    # results without unique tokens skip the data-constrained law.
    assert [s["fit"] for s in fits["skipped"]] == ["isoflop", "data_constrained"]
    assert fits["isoflop"]["status"] == "skipped" and "budget" in fits["isoflop"]["reason"]
    assert "unique_tokens" in fits["data_constrained"]["reason"]

    table = pd.read_csv(tmp_path / "emergence.csv")
    assert {"task", "metric", "family", "class"} <= set(table.columns)
    # one curve per token budget and task, one point per size: never a line through budgets
    assert len(table) == len(TASKS) * len(BUDGETS)
    assert set(table["family"]) == {"synthetic, D=2M", "synthetic, D=4M", "synthetic, D=8M"}
    assert table.groupby("task")["class"].agg(set).to_dict() == {
        "copy": {"flat"}, "count": {"smooth"}, "add": {"emergent"}, "negate": {"inverse-scaling"},
    }  # fmt: skip
    assert "toprule" in (tmp_path / "fits.tex").read_text()
    report = (tmp_path / "report.md").read_text()
    for part in ("alpha", "emergence.md", "fits.json", "fits.md", "allocation.png", "isoflop"):
        assert part in report, part
    assert summary["alpha"] is not None
    assert summary["classes"]["synthetic, D=8M/add//exact_match/0"] == "emergent"


def test_data_constrained_law_when_runs_repeat_their_data(tmp_path):
    """Unique tokens capped at 8M: the 16M and 32M runs repeat their data 2 and 4 times, and
    the report fits the data-constrained law (its rows in fits.md, its figure)."""
    results, curves = synthetic_sweep([(m, t) for m in SIZES for t in (*BUDGETS, 16e6, 32e6)])
    results["unique_tokens"] = np.minimum(results["tokens"], 8e6)
    summary = write_report(results, curves, tmp_path, n_boot=20)
    dc = json.loads((tmp_path / "fits.json").read_text())["data_constrained"]
    assert dc["status"] == "ok" and dc["n_base_points"] == len(SIZES) * len(BUDGETS)
    assert "| data_constrained | R_D_star |" in (tmp_path / "fits.md").read_text()
    assert str(tmp_path / "data_constrained.png") in summary["files"]
    assert "![data-constrained](data_constrained.png)" in (tmp_path / "report.md").read_text()


def test_write_report_two_runs_skips_fits_instead_of_failing(tmp_path):
    results, curves = synthetic_sweep([("s1", BUDGETS[0]), ("s2", BUDGETS[0])])
    summary = write_report(results, curves, tmp_path, flops_col="flops_6n", n_boot=50)
    for name in FILES:
        assert (tmp_path / name).exists(), name
    fits = json.loads((tmp_path / "fits.json").read_text())
    (n_fit,) = fits["loss_vs_params"]
    assert n_fit["status"] == "skipped" and "at least 4" in n_fit["reason"]
    skipped = {s["fit"]: s["reason"] for s in fits["skipped"]}
    assert skipped[f"loss_vs_params@tokens={BUDGETS[0]}"] == n_fit["reason"]
    assert {"chinchilla", "isoflop"} <= set(skipped)
    assert summary["skipped"] == fits["skipped"]
    # Two sizes are too few for an emergence curve: every task is a named skip, not a class.
    skipped_curves = pd.read_csv(tmp_path / "emergence_skipped.csv")
    assert set(skipped_curves["task"]) == set(TASKS)
    assert "skipped" in (tmp_path / "report.md").read_text()


def test_load_sweep_tables(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.parquet.*scaling sweep"):
        load_sweep_tables(tmp_path)
    results, curves = synthetic_sweep(FULL[:2])
    results.to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(FileNotFoundError, match="curves.csv.*scaling sweep"):
        load_sweep_tables(tmp_path)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    r, c = load_sweep_tables(tmp_path)
    assert len(r) == len(results) and len(c) == len(curves)
    results.iloc[:1].to_parquet(tmp_path / "results.parquet")  # preferred over the CSV
    assert len(load_sweep_tables(tmp_path)[0]) == 1


def isoflop_design(budgets=(1e12, 1e13, 1e14), sizes: int = 7) -> list[tuple]:
    """Runs of an IsoFLOP design on `law`: per budget C, `sizes` models log-spaced over 100x
    around the optimum, each trained on C / (7 N) tokens."""
    runs = []
    for c in budgets:
        grid = np.geomspace(1e2, 1e8, 4000)
        n_opt = grid[np.argmin(law(grid, c / (7 * grid)))]
        for i, n in enumerate(np.geomspace(n_opt / 10, n_opt * 10, sizes)):
            runs.append((f"m{i}", int(c / (7 * n)), float(n), c))
    return runs


def test_isoflop_sweep_report_gives_approaches_1_to_3(tmp_path):
    """The design built for approach 2 reports it, budgets grouped by the design's
    flops_budget although every run spent a slightly different number of FLOPs."""
    results, curves = synthetic_sweep(isoflop_design(), jitter=0.05)
    assert results.drop_duplicates("run_id")["flops_detailed"].nunique() == 21
    write_report(results, curves, tmp_path, n_boot=100)
    fits = json.loads((tmp_path / "fits.json").read_text())
    a_true = 0.28 / (0.34 + 0.28)  # N_opt ∝ C^(beta / (alpha + beta)) for `law`
    for name in ("chinchilla", "isoflop", "envelope"):
        fit = fits[name]
        assert fit["status"] == "ok", (name, fit.get("reason"))
        lo, hi = fit["a_ci"]
        assert lo <= fit["a"] <= hi and lo < hi, name
        assert fit["a"] == pytest.approx(a_true, abs=0.08), name
    assert (
        fits["isoflop"]["n_budgets_used"] == 3
        and "flops_budget" in fits["isoflop"]["budget_grouping"]
    )
    assert (tmp_path / "isoflop.png").stat().st_size > 0
    assert "approach 2 (IsoFLOP): a = " in (tmp_path / "report.md").read_text()
    table = pd.read_csv(tmp_path / "emergence.csv")
    assert set(table["family"]) == {"synthetic, compute-optimal"}  # one run per budget


def test_two_families_get_their_own_laws_and_a_compute_multiplier(tmp_path):
    """llama's runs reach gpt2's losses at half the compute: its multiplier against gpt2 is 2."""
    parts = []
    for family, scale in (("gpt2", 1.0), ("llama", 0.5)):
        results, curves = synthetic_sweep(FULL)
        for t in (results, curves):
            t["family"] = family
            t["run_id"] = family + "-" + t["run_id"]
            t["flops_6n"] *= scale
            t["flops_detailed"] *= scale
        parts.append((results, curves))
    results = pd.concat([p[0] for p in parts], ignore_index=True)
    curves = pd.concat([p[1] for p in parts], ignore_index=True)
    summary = write_report(results, curves, tmp_path, n_boot=10)
    assert str(tmp_path / "families_loss_vs_flops.png") in summary["files"]
    families = json.loads((tmp_path / "fits.json").read_text())["families"]
    assert families["reference"] == "gpt2"
    assert families["fits"]["gpt2"]["alpha"] == pytest.approx(families["fits"]["llama"]["alpha"])
    for row in families["multipliers"]:
        assert row["family"] == "llama" and row["multiplier"] == pytest.approx(2.0, rel=1e-3)
        assert row["lo"] <= 2.0 + 1e-6 and row["hi"] >= 2.0 - 1e-6
    assert "compute multiplier vs gpt2" in (tmp_path / "report.md").read_text()


def test_runs_without_training_curves_report_with_the_frontier_skipped(tmp_path):
    """Imported checkpoints (scaling import-hf) have results but no metrics.jsonl."""
    results, _ = synthetic_sweep(FULL[:6])
    summary = write_report(results, pd.DataFrame(), tmp_path, n_boot=10)
    reasons = {s["fit"]: s["reason"] for s in summary["skipped"]}
    assert "got 0" in reasons["loss_vs_flops"] and (tmp_path / "report.md").exists()
