"""A sweep over model families (`grid: {model.family: [gpt2, llama]}`): one L(C) per family on
its own compute frontier, overlaid, and each family's compute-equivalent multiplier against a
reference family.

Why per family: two architectures sit on two different loss-compute curves, and a law fitted to
their pooled frontier describes neither. The multiplier is the question a comparison asks
("how much compute does gpt2 need to reach llama's loss at C?"): with L_f(C) = E_f + A_f·C^-α_f,
m(C) = C_ref(L_f(C)) / C, where C_ref(L) = (A_ref / (L − E_ref))^(1/α_ref) inverts the reference
law; m > 1 means the family reaches a loss for less compute than the reference. Its interval
pairs the two fits' bootstrap resamples (independent fits, so resample i of one with resample i
of the other) and is infinite where the reference's law cannot reach the loss (L ≤ E_ref).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.fits.bootstrap import percentile_band
from analysis.fits.powerlaw import PowerLawFit, fit_loss_vs_flops
from analysis.plots import DPI
from analysis.tables import fmt, fmt_ci, markdown_table

REFERENCE = "gpt2"  # the default family, when the sweep has it
FIGURE = "families_loss_vs_flops.png"


def _law(params, x0: float, c):
    """L(C) from one (E, A_scaled, alpha) of PowerLawFit."""
    e, a_scaled, alpha = params
    return e + a_scaled * (np.asarray(c, float) / x0) ** (-alpha)


def _inverse(params, x0: float, loss):
    """The compute at which one (E, A_scaled, alpha) law reaches `loss` (inf where it cannot)."""
    e, a_scaled, alpha = params
    gap = np.asarray(loss, float) - e
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, x0 * (gap / a_scaled) ** (-1.0 / alpha), np.inf)


def multiplier(fit: PowerLawFit, ref: PowerLawFit, c) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m, lo, hi) at compute c: the reference's compute to reach `fit`'s loss, over c."""
    c = np.asarray(c, float)
    point = (fit.E, fit.A_scaled, fit.alpha)
    ref_point = (ref.E, ref.A_scaled, ref.alpha)
    m = _inverse(ref_point, ref.x0, _law(point, fit.x0, c)) / c
    k = min(len(fit.boot), len(ref.boot))
    draws = [_inverse(ref.boot[i], ref.x0, _law(fit.boot[i], fit.x0, c)) / c for i in range(k)]
    lo, hi = percentile_band(draws, fit.ci) if k >= 2 else (np.full_like(c, np.nan),) * 2
    return m, lo, hi


def compare_families(curves: pd.DataFrame, runs: pd.DataFrame, flops_col: str, **boot):
    """Per-family L(C) fits and multipliers; None when the sweep has one family."""
    families = sorted(runs["family"].dropna().unique()) if "family" in runs else []
    if len(families) < 2:
        return None
    fits = {
        f: fit_loss_vs_flops(curves[curves["family"] == f], flops_col, **boot) for f in families
    }
    reference = REFERENCE if REFERENCE in families else families[0]
    ref_fit = fits[reference][1]
    rows = []
    for family in families:
        fit = fits[family][1]
        if family == reference or not (
            isinstance(fit, PowerLawFit) and isinstance(ref_fit, PowerLawFit)
        ):
            continue
        budgets = np.sort(runs.loc[runs["family"] == family, flops_col].unique())
        at = np.unique(budgets[[0, len(budgets) // 2, -1]])
        for c, m, lo, hi in zip(at, *multiplier(fit, ref_fit, at), strict=True):
            rows.append({"family": family, "C": float(c), "multiplier": m, "lo": lo, "hi": hi})
    return {"reference": reference, "fits": fits, "multipliers": rows}


def plot_families(comparison: dict, runs: pd.DataFrame, flops_col: str, path) -> None:
    """Each family's frontier points, fitted L(C) and bootstrap band, in one colour each."""
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    colors = colormaps["tab10"]
    for i, (family, (frontier, fit)) in enumerate(comparison["fits"].items()):
        color = colors(i)
        mine = runs[runs["family"] == family]
        ax.scatter(mine[flops_col], mine["loss"], color=color, edgecolors="k", s=30, zorder=3)
        ax.scatter(frontier[flops_col], frontier["loss"], marker="D", facecolors="none",
                   edgecolors=color, s=36, zorder=4)  # fmt: skip
        if not isinstance(fit, PowerLawFit):
            ax.plot([], [], " ", label=f"{family}: fit skipped ({fit.reason})")
            continue
        xs = np.geomspace(frontier[flops_col].min(), frontier[flops_col].max(), 200)
        ax.fill_between(xs, *fit.band(xs), color=color, alpha=0.15, lw=0)
        ax.plot(xs, fit.predict(xs), color=color, lw=2,
                label=f"{family}: α = {fit.alpha:.3f} [{fit.alpha_ci[0]:.3f}, "
                f"{fit.alpha_ci[1]:.3f}], E = {fit.E:.2f}")  # fmt: skip
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=f"training compute C (FLOPs, {flops_col})",
        ylabel="held-out loss (nats/token)",
        title="Loss vs compute per model family (◇ frontier, ● final loss, bootstrap bands)",
    )
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # losses span less than a decade
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=DPI)


def families_markdown(comparison: dict) -> str:
    ref = comparison["reference"]
    lines = []
    for family, (_, fit) in comparison["fits"].items():
        if isinstance(fit, PowerLawFit):
            alpha, e = fmt_ci(fit.alpha, *fit.alpha_ci), fmt_ci(fit.E, *fit.E_ci)
            lines.append(f"- {family}: alpha = {alpha}, E = {e}, {fit.n_points} frontier points")
        else:
            lines.append(f"- {family}: skipped ({fit.reason})")
    table = markdown_table(
        ["family", "C", f"compute multiplier vs {ref} [interval]"],
        [[r["family"], fmt(r["C"], ".2e"), fmt_ci(r["multiplier"], r["lo"], r["hi"])]
         for r in comparison["multipliers"]],
    )  # fmt: skip
    return (
        "## Model families\n\nThe fits above pool every family; each family on its own "
        "compute frontier, L(C) = E + A·C^-alpha:\n\n"
        + "\n".join(lines)
        + f"\n\n![families]({FIGURE})\n\n"
        f"Compute multiplier: the compute {ref} needs to reach the family's fitted loss at C, "
        f"over C (> 1: the family needs less compute than {ref}):\n\n{table}\n"
    )


def families_json(comparison: dict) -> dict:
    return {
        "reference": comparison["reference"],
        "fits": {
            f: fit.to_dict()
            if isinstance(fit, PowerLawFit)
            else {"status": "skipped", "reason": fit.reason}
            for f, (_, fit) in comparison["fits"].items()
        },
        "multipliers": comparison["multipliers"],
    }
