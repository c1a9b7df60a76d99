"""The words of a sweep's report: report.md's sections and the rows of fits.md / fits.tex,
from the fits analysis.report computed (kept apart so that module stays the computation)."""

from pathlib import Path

import pandas as pd

from analysis.fits.columns import CONVENTIONS
from analysis.tables import fmt, fmt_ci, markdown_table

ESTIMATES = ("E", "A", "B", "alpha", "beta", "a", "b")
OVERTRAINING = ("E", "a", "b", "eta", "M_opt")
DATA_CONSTRAINED = ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star")


def loss_units(runs: pd.DataFrame) -> str:
    """Which tokens the losses are per: nats per token compare only within one tokenizer."""
    if "tokenizer" not in runs:
        return "Loss: held-out nats per token."
    names = ", ".join(f"`{t}`" for t in sorted(runs["tokenizer"].dropna().unique()))
    return (
        f"Loss: held-out nats per token of the {names} tokenizer; bits per byte (measured bytes "
        "per token of the held-out text) compare across tokenizers."
    )


def fit_sentence(fit: dict, what: str) -> str:
    if fit["status"] != "ok":
        return f"{what}: skipped ({fit['reason']})."
    n_ok = fit["n_boot"] - fit["n_boot_failed"]
    return (
        f"{what}: alpha = {fmt_ci(fit['alpha'], *fit['alpha_ci'])}, "
        f"E = {fmt_ci(fit['E'], *fit['E_ci'])}, A = {fmt_ci(fit['A'], *fit['A_ci'])} "
        f"({round(100 * fit['ci'])}% bootstrap intervals, {n_ok}/{fit['n_boot']} resamples ok), "
        f"{fit['n_points']} points, R²(log L) = {fmt(fit['r2_log'], '.4f')}."
    )


def budget_fits(per_budget: list[dict]) -> str:
    """One line per fitted token budget; budgets skipped for one reason share a line (an
    IsoFLOP design gives every run its own budget, so each has one size)."""
    lines = ["- " + fit_sentence(f, f"{f['tokens']:,} tokens") for f in per_budget
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


def estimates_rows(fits: dict) -> tuple[list[str], list[list[str]]]:
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


def report_markdown(sweep: str, runs: pd.DataFrame, fits: dict, emergence: dict) -> str:
    flops_col = fits["flops_col"]
    c_fit = fit_sentence(fits["loss_vs_flops"], "L(C) = E + A·C^-alpha on the compute frontier")
    n_fits = budget_fits(fits["loss_vs_params"])
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

{len(runs)} runs. Compute `{flops_col}`: {CONVENTIONS[flops_col]}. {loss_units(runs)}

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


def finetune_only(results: pd.DataFrame, out: Path, finetune: dict) -> dict:
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
