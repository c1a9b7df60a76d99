"""Turn a sweep's results/curves tables into figures, tables, fits.json and a summary report."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.emergence import CLASS_COLS, classify_tasks
from analysis.plots import plot_emergence, plot_loss_vs_flops
from analysis.powerlaw import (
    CONVENTIONS,
    PowerLawFit,
    final_runs,
    fit_loss_vs_flops,
    fit_loss_vs_params,
    json_safe,
)

FLOPS_COLS = ("flops_6n", "flops_detailed")
N_FRONTIER_BINS = 20
FILES = (
    "loss_vs_flops.png",
    "emergence.png",
    "emergence.md",
    "emergence.csv",
    "fits.json",
    "report.md",
)


def load_sweep_tables(sweep_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, curves) of a sweep directory: results.parquet (else results.csv), curves.csv."""
    d = Path(sweep_dir)
    parquet, csv, curves = d / "results.parquet", d / "results.csv", d / "curves.csv"
    if not (parquet.exists() or csv.exists()):
        raise FileNotFoundError(f"{parquet} (or {csv.name}) not found: run `scaling sweep` first")
    if not curves.exists():
        raise FileNotFoundError(f"{curves} not found: run `scaling sweep` first")
    results = pd.read_parquet(parquet) if parquet.exists() else pd.read_csv(csv)
    return results, pd.read_csv(curves)


def _fmt(v: float, spec: str = ".3g") -> str:
    return "–" if v is None or not np.isfinite(v) else format(v, spec)


def _fmt_ci(v: float, ci: tuple[float, float], spec: str = ".3g") -> str:
    return f"{_fmt(v, spec)} [{_fmt(ci[0], spec)}, {_fmt(ci[1], spec)}]"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in lines) + "\n"


def _threshold(r: dict) -> str:
    """Emergence threshold 'x [lo, hi]' in FLOPs for emergent tasks, '–' otherwise."""
    if r["class"] != "emergent":
        return "–"
    return _fmt_ci(r["threshold_x"], (r["threshold_lo"], r["threshold_hi"]), ".2e")


def emergence_markdown(classes: pd.DataFrame) -> str:
    """The classes table as Markdown: scores per model (in increasing FLOPs), class, threshold."""
    score_cols = [c for c in classes.columns if c not in CLASS_COLS]
    header = [
        "task",
        "metric",
        "shots",
        "baseline",
        *score_cols,
        "class",
        "confidence",
        "threshold FLOPs [interval]",
    ]
    rows = [
        [
            r["task"],
            r["metric"],
            r["shots"],
            _fmt(r["random_baseline"]),
            *(_fmt(r[c], ".3f") for c in score_cols),
            r["class"],
            _fmt(r["confidence"], ".2f"),
            _threshold(r),
        ]
        for r in classes.to_dict("records")
    ]
    return _md_table(header, rows)


def _fit_sentence(fit: dict, what: str) -> str:
    if fit["status"] != "ok":
        return f"{what}: skipped ({fit['reason']})."
    n_ok = fit["n_boot"] - fit["n_boot_failed"]
    return (
        f"{what}: alpha = {_fmt_ci(fit['alpha'], fit['alpha_ci'])}, "
        f"E = {_fmt_ci(fit['E'], fit['E_ci'])}, A = {_fmt_ci(fit['A'], fit['A_ci'])} "
        f"({round(100 * fit['ci'])}% bootstrap intervals, {n_ok}/{fit['n_boot']} resamples ok), "
        f"{fit['n_points']} points, R²(log L) = {_fmt(fit['r2_log'], '.4f')}."
    )


def _report_markdown(
    sweep: str, runs: pd.DataFrame, fits: dict, classes: pd.DataFrame, flops_col: str
) -> str:
    c_fit = _fit_sentence(fits["loss_vs_flops"], "L(C) = E + A·C^-alpha on the compute frontier")
    n_fits = "\n".join(
        "- " + _fit_sentence(f, f"{f['tokens']:,} tokens") for f in fits["loss_vs_params"]
    )
    tasks = "\n".join(
        f"- {r['task']} ({r['metric']}, {r['shots']}-shot): **{r['class']}**, "
        f"confidence {_fmt(r['confidence'], '.2f')}, threshold FLOPs {_threshold(r)}"
        for r in classes.to_dict("records")
    )
    run_table = _md_table(
        ["run", "model", "N (non-emb.)", "tokens", f"C ({flops_col})", "final loss"],
        [
            [
                r["run_id"],
                r["model"],
                f"{r['params_non_embedding']:,}",
                f"{r['tokens']:,}",
                _fmt(r[flops_col], ".3e"),
                _fmt(r["loss"], ".4f"),
            ]
            for r in runs.sort_values(flops_col).to_dict("records")
        ],
    )
    return f"""# Scaling report: {sweep}

{len(runs)} runs, {len(classes)} task evaluations. Compute `{flops_col}`: {CONVENTIONS[flops_col]}.

## Loss vs compute

![loss vs compute](loss_vs_flops.png)

{c_fit}

L(N) = E + A·N^-alpha, N = non-embedding parameters, final loss at each token budget:

{n_fits}

All fit numbers, bootstrap settings and skipped fits: [fits.json](fits.json).

## Emergence

![emergence](emergence.png)

Classes after Wei et al. 2022; a run is above the random baseline by a one-sided exact binomial
test, Holm-corrected over the runs at 0.05 (see `analysis/emergence.py`). Scores per model:
[emergence.md](emergence.md), [emergence.csv](emergence.csv).

{tasks}

## Runs

{run_table}"""


def write_report(
    results: pd.DataFrame,
    curves: pd.DataFrame,
    out_dir,
    flops_col: str = "flops_detailed",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Fit, classify and plot a sweep; write FILES into out_dir; return a summary dict.

    Fits that cannot be done (too few points) are listed under "skipped" in fits.json with the
    reason; they never raise.
    """
    if flops_col not in FLOPS_COLS:
        raise ValueError(f"flops_col must be one of {FLOPS_COLS}, got {flops_col!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = final_runs(results)

    frontier, c_fit = fit_loss_vs_flops(
        curves, flops_col, N_FRONTIER_BINS, n_boot=n_boot, seed=seed
    )
    n_fits = fit_loss_vs_params(results, n_boot=n_boot, seed=seed)
    classes = classify_tasks(results, x=flops_col, n_boot=n_boot, seed=seed)

    plot_loss_vs_flops(curves, runs, frontier, c_fit, out / "loss_vs_flops.png", flops_col)
    plot_emergence(results, classes, out / "emergence.png", flops_col)
    classes.to_csv(out / "emergence.csv", index=False)
    (out / "emergence.md").write_text(emergence_markdown(classes))

    fits = {
        "flops_col": flops_col,
        "flops_convention": CONVENTIONS[flops_col],
        "bootstrap": {
            "n_boot": n_boot,
            "seed": seed,
            "method": "nonparametric bootstrap over points, percentile intervals, each resample "
            "warm-started from the full-data optimum",
        },
        "loss_vs_flops": {
            **c_fit.to_dict(),
            "frontier_bins": N_FRONTIER_BINS,
            "frontier": json_safe(frontier.to_dict("records")),
        },
        "loss_vs_params": [{"tokens": t, **f.to_dict()} for t, f in n_fits.items()],
    }
    fits["skipped"] = [
        {"fit": name, "reason": f["reason"]}
        for name, f in [("loss_vs_flops", fits["loss_vs_flops"])]
        + [(f"loss_vs_params@tokens={f['tokens']}", f) for f in fits["loss_vs_params"]]
        if f["status"] == "skipped"
    ]
    (out / "fits.json").write_text(json.dumps(fits, indent=2, allow_nan=False) + "\n")

    sweep = ", ".join(map(str, results["sweep"].unique())) or str(out.name)
    (out / "report.md").write_text(_report_markdown(sweep, runs, fits, classes, flops_col))

    return {
        "out_dir": str(out),
        "files": [str(out / f) for f in FILES],
        "n_runs": len(runs),
        "alpha": (c_fit.alpha, *c_fit.alpha_ci) if isinstance(c_fit, PowerLawFit) else None,
        "classes": {
            f"{r['task']}/{r['metric']}/{r['shots']}": r["class"]
            for r in classes.to_dict("records")
        },
        "skipped": fits["skipped"],
    }
