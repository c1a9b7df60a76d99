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
from analysis.scores import resolve_baselines
from analysis.tables import fmt, fmt_ci, json_safe, latex_table, markdown_table
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
ESTIMATES = ("E", "A", "B", "alpha", "beta", "a", "b")
OVERTRAINING = ("E", "a", "b", "eta", "M_opt")
DATA_CONSTRAINED = ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star")
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


def _loss_units(runs: pd.DataFrame) -> str:
    """Which tokens the losses are per: nats per token compare only within one tokenizer."""
    if "tokenizer" not in runs:
        return "Loss: held-out nats per token."
    names = ", ".join(f"`{t}`" for t in sorted(runs["tokenizer"].dropna().unique()))
    return (
        f"Loss: held-out nats per token of the {names} tokenizer; bits per byte (measured bytes "
        "per token of the held-out text) compare across tokenizers."
    )


def _fit_sentence(fit: dict, what: str) -> str:
    if fit["status"] != "ok":
        return f"{what}: skipped ({fit['reason']})."
    n_ok = fit["n_boot"] - fit["n_boot_failed"]
    return (
        f"{what}: alpha = {fmt_ci(fit['alpha'], *fit['alpha_ci'])}, "
        f"E = {fmt_ci(fit['E'], *fit['E_ci'])}, A = {fmt_ci(fit['A'], *fit['A_ci'])} "
        f"({round(100 * fit['ci'])}% bootstrap intervals, {n_ok}/{fit['n_boot']} resamples ok), "
        f"{fit['n_points']} points, R²(log L) = {fmt(fit['r2_log'], '.4f')}."
    )


def _budget_fits(per_budget: list[dict]) -> str:
    """One line per fitted token budget; budgets skipped for one reason share a line (an
    IsoFLOP design gives every run its own budget, so each has one size)."""
    lines = ["- " + _fit_sentence(f, f"{f['tokens']:,} tokens") for f in per_budget
             if f["status"] == "ok"]  # fmt: skip
    by_reason: dict[str, list[int]] = {}
    for f in per_budget:
        if f["status"] != "ok":
            by_reason.setdefault(f["reason"], []).append(f["tokens"])
    lines += [
        f"- {len(t)} token budget(s) ({fmt(min(t), ',')}–{fmt(max(t), ',')}) skipped: {reason}."
        for reason, t in by_reason.items()
    ]
    return "\n".join(lines)


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


def _estimates_rows(fits: dict) -> tuple[list[str], list[list[str]]]:
    """One row per fit and estimate, for fits.md and fits.tex."""
    rows = []
    for name, keys in (
        ("chinchilla", ESTIMATES),
        ("envelope", ("a", "b")),
        ("isoflop", ("a", "b")),
        ("overtraining", OVERTRAINING),
        ("data_constrained", DATA_CONSTRAINED),
        ("loss_vs_flops", ("E", "A", "alpha")),
    ):
        f = fits[name]
        if f.get("status") == "ok":
            rows += [
                [
                    name,
                    k,
                    fmt(f[k], ".4g"),
                    "[{}, {}]".format(*(fmt(v, ".4g") for v in f[f"{k}_ci"])),
                ]
                for k in keys
            ]
    ci = round(100 * fits["bootstrap"]["ci"])
    return ["fit", "estimate", "value", f"{ci}% interval"], rows


def _report_markdown(sweep: str, runs: pd.DataFrame, fits: dict, emergence: dict) -> str:
    flops_col = fits["flops_col"]
    c_fit = _fit_sentence(fits["loss_vs_flops"], "L(C) = E + A·C^-alpha on the compute frontier")
    n_fits = _budget_fits(fits["loss_vs_params"])
    ch = fits["chinchilla"]
    if ch["status"] == "ok":
        est = lambda keys: ", ".join(f"{k} = {fmt_ci(ch[k], *ch[f'{k}_ci'])}" for k in keys)
        law = f"{est(ESTIMATES[:5])}; N_opt ∝ C^a, D_opt ∝ C^b with {est('ab')}"
        warnings = "".join(f"\n- warning: {w}" for w in ch["diagnostics"]["warnings"])
        alloc = markdown_table(
            ["C (6ND)", "N_opt [interval]", "D_opt [interval]", "L_opt [interval]"],
            [
                [fmt(r["C"], ".1e"), fmt_ci(r["n_opt"], r["n_lo"], r["n_hi"]),
                 fmt_ci(r["d_opt"], r["d_lo"], r["d_hi"]), fmt_ci(r["l_opt"], r["l_lo"], r["l_hi"])]
                for r in ch["allocation"]
            ],
        )  # fmt: skip
        law += f"{warnings}\n\nCompute-optimal allocation:\n\n{alloc}"
    else:
        law = f"skipped ({ch['reason']})"
    others = "\n".join(
        f"- {name}: a = {fmt_ci(f['a'], *f['a_ci'])}" if f["status"] == "ok"
        else f"- {name}: skipped ({f['reason']})"
        for name, f in (("approach 1 (envelope)", fits["envelope"]),
                        ("approach 2 (IsoFLOP)", fits["isoflop"]))
    )  # fmt: skip
    ot = fits["overtraining"]
    others += "\n- over-training law L(C, M) = E + (a M^eta + b M^-eta) C^-eta (Gadre et al. " + (
        "2024): " + ", ".join(f"{k} = {fmt_ci(ot[k], *ot[f'{k}_ci'])}" for k in OVERTRAINING)
        if ot["status"] == "ok"
        else f"2024): skipped ({ot['reason']})"
    )
    dc = fits["data_constrained"]
    others += "\n- data-constrained law (Muennighoff et al. 2023): " + (
        ", ".join(f"{k} = {fmt_ci(dc[k], *dc[f'{k}_ci'])}" for k in DATA_CONSTRAINED[-2:])
        + "\n\nLoss along epochs and the effective data D' / U_D:\n\n"
        "![data-constrained](data_constrained.png)"
        if dc["status"] == "ok"
        else f"skipped ({dc['reason']})"
    )
    iso = fits["isoflop"]
    if iso["status"] == "ok":
        others += (
            f"\n\nIsoFLOP profiles with their fitted minima ({iso['n_budgets_used']} of "
            f"{iso['n_budgets']} budgets used; {iso['budget_grouping']}):\n\n"
            "![isoflop](isoflop.png)"
        )
    counts = "; ".join(
        f"{fam}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
        for fam, c in emergence["counts"].items()
    )
    run_table = markdown_table(
        ["run", "model", "N (non-emb.)", "tokens", f"C ({flops_col})", "final loss", "bits/byte"],
        [
            [r["run_id"], r["model"], f"{r['params_non_embedding']:,}", f"{r['tokens']:,}",
             fmt(r[flops_col], ".3e"), fmt(r["loss"], ".4f"), fmt(r.get("loss_bpb"), ".4f")]
            for r in runs.sort_values(flops_col).to_dict("records")
        ],
    )  # fmt: skip
    return f"""# Scaling report: {sweep}

{len(runs)} runs. Compute `{flops_col}`: {CONVENTIONS[flops_col]}. {_loss_units(runs)}

## Loss vs compute

![loss vs compute](loss_vs_flops.png)

{c_fit}

L(N) = E + A·N^-alpha, N = non-embedding parameters, final loss at each token budget:

{n_fits}

## L(N, D) and the compute-optimal allocation (Chinchilla approach 3)

L(N, D) = E + A/N^alpha + B/D^beta, N = non-embedding parameters, D = tokens, Huber loss on
log L (delta {fmt(ch.get("settings", {}).get("delta"))}) from the 4,500-start grid: {law}

![allocation](allocation.png)

N_opt(C) of approaches 3, 1, 2 and the over-training law side by side in allocation.png:

{others}

All estimates with intervals: [fits.md](fits.md) ([fits.tex](fits.tex)); every number,
setting and skipped fit: [fits.json](fits.json).

## Emergence

![emergence](emergence.png)

Classes per family ({emergence["n_curves"]} curves, x = training FLOPs): {counts or "none"}.
Per-task scores, thresholds, BIG-bench linearity and breakthroughness and forecasts:
[emergence.md](emergence.md) ([emergence.tex](emergence.tex), [emergence.csv](emergence.csv)).
{emergence["n_skipped"]} curves skipped, with reasons in emergence_skipped.csv.

## Runs

{run_table}"""


def _finetune_only(results: pd.DataFrame, out: Path, finetune: dict) -> dict:
    """The report of a sweep of fine-tunes alone: the fine-tuning laws."""
    sweep = ", ".join(map(str, results.get("sweep", pd.Series([out.name])).unique()))
    text = finetune["markdown"] or "No fine-tuning law could be fitted."
    skips = "".join(f"\n- {s['fit']}: skipped ({s['reason']})" for s in finetune["skipped"])
    (out / "report.md").write_text(f"# Fine-tuning report: {sweep}\n\n{text}{skips}\n")
    files = [str(out / "report.md"), *map(str, finetune["files"])]
    return {
        "out_dir": str(out),
        "files": files,
        "n_runs": int(results["run_id"].nunique()) if "run_id" in results else len(results),
        "skipped": finetune["skipped"],
    }


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
            return _finetune_only(results, out, finetune)
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
    header, rows = _estimates_rows(fits)
    (out / "fits.md").write_text(markdown_table(header, rows))
    (out / "fits.tex").write_text(latex_table(header, rows, caption="Scaling-law fits"))

    sweep = ", ".join(map(str, results["sweep"].unique())) or str(out.name)
    report = _report_markdown(sweep, runs, fits, emergence)
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
