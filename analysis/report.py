"""Turn a sweep's results/curves tables into figures, tables, fits.json and a summary report.

Fits: the loss-vs-compute frontier L(C) (Kaplan et al. 2020 / approach 1 envelope), L(N) at each
token budget, Chinchilla approach 3 L(N, D) with the compute-optimal allocation, approach 1
(envelope of the training curves), approach 2 (IsoFLOP, when the sweep is an IsoFLOP design),
the over-training law L(C, M) of Gadre et al. 2024 (when the runs span >= 2 token
multipliers M = D / N) and the data-constrained law of Muennighoff et al. 2023 (when the
results carry unique_tokens and some runs repeat their data).
A fit the sweep cannot support is listed under "skipped" with the reason; it never raises.
Fine-tune rows (an `examples` count): the fine-tuning laws (analysis.finetune_report); the fits
above use the other rows, and a sweep of fine-tunes alone gets only the fine-tuning section.
Emergence: analysis.emergence_report on the sweep's task scores.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.emergence_report import write_emergence
from analysis.emergence_stats import Settings
from analysis.family_report import (
    FIGURE,
    compare_families,
    families_json,
    families_markdown,
    plot_families,
)
from analysis.finetune_report import write_finetune
from analysis.fit_plots import plot_allocation, plot_isoflop
from analysis.fits.base import FitRequest
from analysis.fits.bootstrap import Bootstrap
from analysis.fits.columns import CONVENTIONS, Columns
from analysis.fits.powerlaw import PowerLawFit, fit_loss_vs_flops, fit_loss_vs_params
from analysis.fits.registry import get_form
from analysis.fits.selection import final_rows
from analysis.plots import plot_loss_vs_flops
from analysis.project_scores import from_project
from analysis.report_text import (
    ESTIMATES,
    estimates_rows,
    finetune_only,
    report_markdown,
)
from analysis.scores import resolve_baselines
from analysis.tables import json_safe, latex_table, markdown_table
from scaling.config import ConfigError

FLOPS_COLS = ("flops_6n", "flops_detailed")
CURVE_COLUMNS = ("run_id", "params_non_embedding", "step", "tokens", *FLOPS_COLS, "loss")
N_FRONTIER_BINS = 20
FILES = (
    "loss_vs_flops.png",
    "allocation.png",
    "emergence.md",
    "emergence.tex",
    "emergence.csv",
    "fits.json",
    "fits.md",
    "fits.tex",
    "report.md",
)
# Approach 3's allocation solves C = 6ND (N_opt and D_opt in closed form); approaches 1 and 2
# read N_opt off runs at the report's FLOP count. The labels say so: on tiny models the
# detailed count is several times 6ND, which shifts approach 3's curve along C.
ALLOCATION_LABELS = (
    "approach 3, L(N, D), C = 6ND",
    "approach 1, envelope, C = {}",
    "approach 2, IsoFLOP, C = {}",
    "L(C, M), tied exponents, C = 6ND",
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


MIN_REPEATED = 6  # runs past one epoch before the report fits the data-constrained law


def _attempt(name: str, fit, skipped: list):
    """Run a fit; a ConfigError (the sweep cannot support it) becomes a named skip (None)."""
    try:
        return fit()
    except ConfigError as e:
        skipped.append({"fit": name, "reason": str(e)})
        return None


def _repeated_design(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs, if they are a data-constrained design: R_D* and R_N* need several runs that
    repeat their data, at more than one size. A sweep whose largest budgets happen to go past
    one pass over a small corpus would otherwise get two decay constants fitted to noise."""
    unique = pd.to_numeric(runs.get("unique_tokens", pd.Series(np.nan, index=runs.index)))
    repeated = runs[runs["tokens"] / unique > 1]
    sizes = repeated["params_non_embedding"].nunique() if len(repeated) else 0
    if len(repeated) < MIN_REPEATED or sizes < 2:
        raise ConfigError(
            "data_constrained",
            f"{len(repeated)} run(s) at {sizes} size(s) repeat their data",
            f"a data-constrained design needs >= {MIN_REPEATED} such runs at >= 2 sizes "
            "(data.unique_tokens, several epochs)",
        )
    return runs


def write_report(
    results: pd.DataFrame,
    curves: pd.DataFrame,
    out_dir,
    flops_col: str = "flops_detailed",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict:
    """Fit, classify and plot a sweep; write FILES into out_dir; return a summary dict.

    Fits that cannot be done (too few points, not an IsoFLOP design) are listed under
    "skipped" in fits.json with the reason; they never raise.
    """
    if flops_col not in FLOPS_COLS:
        raise ValueError(f"flops_col must be one of {FLOPS_COLS}, got {flops_col!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    boot = {"n_boot": n_boot, "seed": seed, "ci": ci}
    if curves.empty:  # runs without training curves (imported checkpoints): no frontier
        curves = pd.DataFrame({c: pd.Series(dtype=float) for c in CURVE_COLUMNS})
    # Fine-tune rows (an `examples` count) get the fine-tuning laws, not the pretraining fits.
    fine = pd.Series(False, index=results.index)
    if "examples" in results.columns:
        fine = results["examples"].notna()
    finetune = {"markdown": "", "files": [], "skipped": []}
    if fine.any():
        finetune = write_finetune(results[fine], out, **boot)
        if fine.all():
            return finetune_only(results, out, finetune)
        tuned = results.loc[fine, "run_id"] if "run_id" in results.columns else []
        results = results[~fine]
        curves = curves[~curves["run_id"].isin(tuned)] if "run_id" in curves.columns else curves
    runs = final_rows(results)

    frontier, c_fit = fit_loss_vs_flops(curves, flops_col, N_FRONTIER_BINS, **boot)
    n_fits = fit_loss_vs_params(results, **boot)
    plot_loss_vs_flops(curves, runs, frontier, c_fit, out / "loss_vs_flops.png", flops_col)

    skipped = [
        {"fit": name, "reason": f.reason}
        for name, f in [("loss_vs_flops", c_fit)]
        + [(f"loss_vs_params@tokens={t}", f) for t, f in n_fits.items()]
        if not isinstance(f, PowerLawFit)
    ]
    cols = Columns(n="params_non_embedding", loss="loss", c=flops_col, d="tokens", run="run_id")
    request = FitRequest(cols, {}, Bootstrap(**boot))
    tables = {"chinchilla": runs, "envelope": curves, "isoflop": runs, "overtraining": runs}
    allocation_fits = {
        name: _attempt(name, lambda name=name, t=t: get_form(name).fit(t, request), skipped)
        for name, t in tables.items()
    }
    drawn = []
    if allocation_fits["isoflop"] is not None:  # the profiles and their minima (approach 2)
        plot_isoflop(allocation_fits["isoflop"], runs, path=out / "isoflop.png")
        drawn.append("isoflop.png")
    form = get_form("data_constrained")  # when the runs carry unique_tokens
    law_fits = {
        "data_constrained": _attempt(
            form.name, lambda: form.fit(_repeated_design(runs), request), skipped
        )
    }
    if law_fits["data_constrained"] is not None:
        paths = form.plot(law_fits["data_constrained"], runs, request, lambda s: out / f"{s}.png")
        drawn += [p.name for p in paths]
    reasons = {s["fit"]: s["reason"] for s in skipped}
    fit_dicts = {
        name: fit.to_dict() if fit else {"status": "skipped", "reason": reasons[name]}
        for name, fit in (allocation_fits | law_fits).items()
    }
    budgets = np.geomspace(runs[flops_col].min(), 100 * runs[flops_col].max(), 20)
    allocations = {
        label.format(flops_col): fit.allocation(budgets)
        for label, fit in zip(ALLOCATION_LABELS, allocation_fits.values(), strict=True)
        if fit is not None
    }
    plot_allocation(allocations, path=out / "allocation.png")
    families = compare_families(curves, runs, flops_col, **boot)
    if families is not None:
        plot_families(families, runs, flops_col, out / FIGURE)
        drawn.append(FIGURE)

    emergence = write_emergence(
        resolve_baselines(from_project(results, flops_col)),
        out,
        x="flops",
        settings=Settings(n_boot=n_boot, seed=seed),
    )
    fits = {
        "flops_col": flops_col,
        "flops_convention": CONVENTIONS[flops_col],
        "bootstrap": {
            **boot,
            "method": "nonparametric bootstrap over points (runs for the envelope), "
            "percentile intervals",
        },
        "loss_vs_flops": {
            **c_fit.to_dict(),
            "frontier_bins": N_FRONTIER_BINS,
            "frontier": json_safe(frontier.to_dict("records")),
        },
        "loss_vs_params": [{"tokens": t, **f.to_dict()} for t, f in n_fits.items()],
        **fit_dicts,
        "families": families_json(families) if families else None,
        "skipped": skipped,
    }
    skipped += finetune["skipped"]
    (out / "fits.json").write_text(json.dumps(json_safe(fits), indent=2, allow_nan=False) + "\n")
    header, rows = estimates_rows(fits)
    (out / "fits.md").write_text(markdown_table(header, rows))
    (out / "fits.tex").write_text(latex_table(header, rows, caption="Scaling-law fits"))

    sweep = ", ".join(map(str, results["sweep"].unique())) or str(out.name)
    report = report_markdown(sweep, runs, fits, emergence)
    if families is not None:  # before the emergence section: it is about the loss fits
        report = report.replace("## Emergence", families_markdown(families) + "\n## Emergence", 1)
    (out / "report.md").write_text(
        report + (f"\n{finetune['markdown']}" if finetune["markdown"] else "")
    )
    return {
        "out_dir": str(out),
        "files": [str(out / f) for f in (*FILES, *drawn)] + list(map(str, finetune["files"])),
        "n_runs": len(runs),
        "alpha": (c_fit.alpha, *c_fit.alpha_ci) if isinstance(c_fit, PowerLawFit) else None,
        "chinchilla": {k: fit_dicts["chinchilla"].get(k) for k in ESTIMATES},
        "classes": emergence["classes"],
        "skipped": skipped,
    }
