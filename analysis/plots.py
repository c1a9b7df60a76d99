"""The report's loss-vs-compute figure.

Uses matplotlib's object API (Figure, no pyplot) so that nothing depends on the interactive
backend or global figure state; PNGs are rendered with Agg."""

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from analysis.fits.powerlaw import FitSkipped, PowerLawFit

DPI = 120


def _size_colors(params: pd.Series):
    """Color by log non-embedding parameter count (one color per model size)."""
    params = params[params > 0]
    lo, hi = (float(params.min()), float(params.max())) if len(params) else (1.0, 10.0)
    norm = LogNorm(lo, hi if hi > lo else lo * 1.01)
    return ScalarMappable(norm, colormaps["viridis"])


def _tokenizers(runs: pd.DataFrame) -> str:
    """', <tokenizer>' for the loss axis: nats per token mean nothing without it."""
    names = sorted(runs["tokenizer"].dropna().unique()) if "tokenizer" in runs else []
    return f", {' / '.join(names)} tokens" if names else ""


def plot_loss_vs_flops(
    curves: pd.DataFrame,
    runs: pd.DataFrame,
    frontier: pd.DataFrame,
    fit: PowerLawFit | FitSkipped,
    path,
    flops_col: str = "flops_detailed",
) -> None:
    """Every run's held-out curve (log-log), final points, frontier points, fitted law + band."""
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    sm = _size_colors(pd.concat([curves["params_non_embedding"], runs["params_non_embedding"]]))
    for _, c in curves[curves[flops_col] > 0].groupby("run_id", sort=False):
        c = c.sort_values(flops_col)
        color = sm.to_rgba(c["params_non_embedding"].iloc[0])
        ax.plot(c[flops_col], c["loss"], color=color, lw=1, alpha=0.7)
    ax.scatter(
        runs[flops_col],
        runs["loss"],
        c=sm.to_rgba(runs["params_non_embedding"]),
        edgecolors="k",
        s=36,
        zorder=3,
        label="final loss of each run",
    )
    ax.scatter(
        frontier[flops_col],
        frontier["loss"],
        marker="D",
        facecolors="none",
        edgecolors="crimson",
        s=40,
        zorder=4,
        label=f"frontier ({len(frontier)} points)",
    )
    if isinstance(fit, PowerLawFit):
        xs = np.geomspace(
            curves.loc[curves[flops_col] > 0, flops_col].min(), curves[flops_col].max(), 200
        )
        lo, hi = fit.band(xs)
        pct = round(100 * fit.ci)
        ax.fill_between(
            xs, lo, hi, color="crimson", alpha=0.15, lw=0, label=f"{pct}% bootstrap band"
        )
        ax.plot(
            xs,
            fit.predict(xs),
            color="crimson",
            lw=2,
            label=f"$L = E + A\\,C^{{-\\alpha}}$: $\\alpha$ = {fit.alpha:.3f} "
            f"[{fit.alpha_ci[0]:.3f}, {fit.alpha_ci[1]:.3f}], E = {fit.E:.2f}",
        )
    else:
        ax.plot([], [], " ", label=f"L(C) fit skipped: {fit.reason}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=f"training compute C (FLOPs, {flops_col})",
        ylabel=f"held-out loss (nats/token{_tokenizers(runs)})",
        title="Held-out loss vs training compute",
    )
    # Losses span less than a decade: plain numbers read better than 3x10^0 on a log axis.
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.xaxis.set_minor_formatter(NullFormatter())  # short FLOP ranges would label every minor tick
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.colorbar(sm, ax=ax, label="non-embedding parameters N")
    fig.savefig(path, dpi=DPI)
