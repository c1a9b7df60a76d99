"""Figures for the compute-optimal fits: IsoFLOP profiles (approach 2), N_opt(C) / D_opt(C)
allocations of any approach with interval bands, the loss-vs-FLOPs envelope (approach 1), the
approach-3 law against the data (loss vs C) and Kaplan et al. 2020 laws.

matplotlib object API (Figure, no pyplot), rendered with Agg when saved, as analysis/plots.py.
Every function returns the Figure and saves it when `path` is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

DPI = 120
ALLOCATION_COLS = ("C", "n_opt", "n_lo", "n_hi", "d_opt", "d_lo", "d_hi")


def save_figure(fig: Figure, path) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=DPI)
    return fig


def log_norm(values) -> LogNorm:
    """Color scale over positive values (a single value still gets a non-empty range)."""
    return LogNorm(values.min(), max(values.max(), values.min() * 1.01))


def plot_isoflop(fit, points: pd.DataFrame, path=None) -> Figure:
    """Per budget: loss vs N points, the fitted curve, and the minimum with its bootstrap interval.

    `points` is the table passed to fit_isoflop (fit.n_col, fit.loss_col; its rows' budgets are
    fit.point_budgets). Budgets
    excluded from the exponent fit (minimum at the edge / unstable) are drawn with hollow markers
    and no minimum.
    """
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    budgets = fit.budgets
    norm = log_norm(budgets["C"])
    cmap = colormaps["plasma"]
    for _, row in budgets.iterrows():
        C, color = row["C"], cmap(0.85 * norm(row["C"]))
        g = points[fit.point_budgets.reindex(points.index) == C]
        face = color if row["used"] else "none"
        ax.scatter(g[fit.n_col], g[fit.loss_col], s=14, facecolors=face, edgecolors=color)
        n = np.geomspace(row["n_min"], row["n_max"], 200)
        ax.plot(
            n,
            fit.curve(C, n),
            color=color,
            lw=1,
            alpha=0.8 if row["used"] else 0.4,
            label=f"C = {C:.2g}",
        )
        if row["used"]:
            err = [
                [row["n_opt"] - row["n_opt_lo"]] if np.isfinite(row["n_opt_lo"]) else [0],
                [row["n_opt_hi"] - row["n_opt"]] if np.isfinite(row["n_opt_hi"]) else [0],
            ]
            ax.errorbar(
                row["n_opt"],
                row["loss_opt"],
                xerr=err,
                fmt="D",
                ms=5,
                color=color,
                mec="black",
                mew=0.6,
                capsize=2,
                zorder=5,
            )
    ax.set_xscale("log")
    ax.set_xlabel(f"N ({fit.n_col})")
    ax.set_ylabel(fit.loss_col)
    lo, hi = fit.a_ci
    ax.set_title(
        f"IsoFLOP profiles ({fit.method}): N_opt ∝ C^{fit.a:.3f} [{lo:.3f}, {hi:.3f}]"
        + (f"; {len(fit.edge_budgets)} edge budget(s) excluded" if fit.edge_budgets else "")
    )
    if len(budgets) <= 16:
        ax.legend(fontsize=7, ncols=2)
    ax.grid(True, which="both", alpha=0.2)
    return save_figure(fig, path)


def _as_frames(allocations) -> dict[str, pd.DataFrame]:
    if isinstance(allocations, pd.DataFrame):
        if "approach" in allocations.columns:
            return {str(k): g for k, g in allocations.groupby("approach", sort=False)}
        return {"": allocations}
    return dict(allocations)


def plot_allocation(allocations, points: dict | None = None, path=None) -> Figure:
    """N_opt(C) and D_opt(C) with interval bands, one line per approach.

    allocations: a DataFrame with columns C, n_opt, n_lo, n_hi, d_opt, d_lo, d_hi (and optionally
    `approach`, one group per label), or a dict label -> such a DataFrame (e.g. from
    IsoFLOPFit.allocation, EnvelopeFit.allocation or approach 3). points: optional dict label ->
    DataFrame with columns C, n_opt (and d_opt) of the measured optima to overlay.
    """
    frames = _as_frames(allocations)
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    for i, (label, df) in enumerate(frames.items()):
        missing = [c for c in ALLOCATION_COLS if c not in df.columns]
        if missing:
            raise ValueError(f"allocation {label!r} lacks column(s) {missing}")
        df = df.sort_values("C")
        color = f"C{i}"
        for ax, key in zip(axes, ("n", "d"), strict=True):
            ax.plot(df["C"], df[f"{key}_opt"], color=color, label=label or None)
            ax.fill_between(df["C"], df[f"{key}_lo"], df[f"{key}_hi"], color=color, alpha=0.2, lw=0)
            if points and label in points and f"{key}_opt" in points[label]:
                p = points[label]
                ax.scatter(
                    p["C"],
                    p[f"{key}_opt"],
                    s=16,
                    color=color,
                    edgecolors="black",
                    linewidths=0.5,
                    zorder=5,
                )
    for ax, name in zip(axes, ("N_opt (parameters)", "D_opt (tokens)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("C (FLOPs)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.2)
    if any(frames):
        axes[0].legend(fontsize=8)
    fig.suptitle("Compute-optimal allocation (bands: bootstrap intervals)")
    return save_figure(fig, path)


def plot_envelope(
    curves: pd.DataFrame,
    frontier: pd.DataFrame,
    law=None,
    *,
    c_col: str = "flops_6n",
    loss_col: str = "loss",
    n_col: str = "params_non_embedding",
    group_col: str = "run_id",
    path=None,
) -> Figure:
    """Every run's loss vs FLOPs (colored by N), the envelope points, and a fitted L(C) law.

    law: anything with predict(C) and band(C) (powerlaw.PowerLawFit, kaplan.KaplanFit), or None.
    """
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    pts = curves[curves[c_col] > 0]
    sizes = pts[n_col]
    norm = log_norm(sizes)
    cmap = colormaps["viridis"]
    for _, g in pts.groupby(group_col, sort=False):
        g = g.sort_values(c_col)
        ax.plot(g[c_col], g[loss_col], color=cmap(norm(g[n_col].iloc[0])), lw=0.8, alpha=0.7)
    ax.scatter(frontier[c_col], frontier[loss_col], s=18, color="black", zorder=5, label="envelope")
    if law is not None and len(frontier):
        c = np.geomspace(frontier[c_col].min(), frontier[c_col].max() * 10, 200)
        ax.plot(c, law.predict(c), color="red", lw=1.5, label="fitted L(C)")
        lo, hi = law.band(c)
        if np.isfinite(lo).any():
            ax.fill_between(c, lo, hi, color="red", alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"C ({c_col})")
    ax.set_ylabel(loss_col)
    ax.legend()
    ax.grid(True, which="both", alpha=0.2)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=f"N ({n_col})")
    return save_figure(fig, path)


def plot_chinchilla_loss(
    points: pd.DataFrame,
    fit,
    allocation: pd.DataFrame | None = None,
    *,
    n_col: str = "params_non_embedding",
    c_col: str = "flops_6n",
    loss_col: str = "loss",
    path=None,
) -> Figure:
    """Loss vs C of the points, colored by N; the fitted L(N, D) along a few model sizes
    (D = C / 6N) and, from `allocation` (columns C, l_opt and optionally l_lo, l_hi, e.g.
    ChinchillaFit.allocation), the compute-optimal frontier L_opt(C) with its interval.

    fit: an approach-3 fit with predict(N, D) and attributes E, alpha, beta.
    """
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    N = points[n_col].to_numpy(float)
    C = points[c_col].to_numpy(float)
    L = points[loss_col].to_numpy(float)
    norm, cmap = log_norm(N), colormaps["viridis"]
    ax.scatter(C, L, s=14, c=cmap(norm(N)), edgecolors="none")
    sizes = np.unique(N)
    if len(sizes) > 8:
        sizes = np.unique(np.quantile(sizes, np.linspace(0, 1, 8), method="nearest"))
    for n in sizes:
        at = np.equal(N, n)
        c = np.geomspace(C[at].min() / 3, C[at].max() * 3, 100)
        ax.plot(c, fit.predict(np.full_like(c, n), c / (6 * n)), color=cmap(norm(n)), lw=0.8)
    if allocation is not None and "l_opt" in allocation:
        a = allocation.sort_values("C")
        ax.plot(a["C"], a["l_opt"], color="red", lw=1.5, label="L_opt(C)")
        if {"l_lo", "l_hi"} <= set(a.columns):
            ax.fill_between(a["C"], a["l_lo"], a["l_hi"], color="red", alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"C ({c_col})")
    ax.set_ylabel(loss_col)
    ax.set_title(
        f"L = E + A/N^α + B/D^β: E={fit.E:.3g}, α={fit.alpha:.3g}, β={fit.beta:.3g}; "
        f"lines: fixed N, D = C/6N",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=f"N ({n_col})")
    return save_figure(fig, path)


def plot_kaplan(
    fit,
    points: pd.DataFrame,
    *,
    x_col: str | None = None,
    n_col: str | None = None,
    d_col: str | None = None,
    loss_col: str = "loss",
    curves: pd.DataFrame | None = None,
    path=None,
) -> Figure:
    """A Kaplan et al. 2020 law and its data, on log-log axes.

    One-variable law (x_col given; kaplan.KaplanFit): loss vs x_col with the fit and its band;
    with `curves` (the training curves behind an L(C_min) envelope) their points in grey and
    `points` labelled as the envelope. Joint L(N, D) (x_col None; n_col, d_col given;
    kaplan.KaplanNDFit): loss vs D colored by N, the law along up to ~8 model sizes.
    """
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    L = points[loss_col].to_numpy(float)
    if x_col is None:
        N, D = points[n_col].to_numpy(float), points[d_col].to_numpy(float)
        norm, cmap = log_norm(N), colormaps["viridis"]
        ax.scatter(D, L, s=14, c=cmap(norm(N)))
        for n in np.unique(N)[:: max(1, len(np.unique(N)) // 8)]:
            at = np.equal(N, n)
            d = np.geomspace(D[at].min() / 2, D[at].max() * 2, 100)
            ax.plot(d, fit.predict(np.full_like(d, n), d), color=cmap(norm(n)), lw=0.8)
            ax.plot([], [], color=cmap(norm(n)), label=f"N = {n:.3g}")
        ax.set_xlabel(d_col)
        ax.legend(fontsize=7)
        ax.set_title(
            f"L(N,D): α_N={fit.alpha_N:.3g}, α_D={fit.alpha_D:.3g}, N_c={fit.N_c:.3g}, "
            f"D_c={fit.D_c:.3g}",
            fontsize=9,
        )
    else:
        if curves is not None:
            cur = curves[curves[x_col] > 0]
            ax.scatter(cur[x_col], cur[loss_col], s=4, color="0.75", label="all points")
        x = points[x_col].to_numpy(float)
        ax.scatter(x, L, s=16, color="black", label="data" if curves is None else "envelope")
        g = np.geomspace(x.min(), x.max() * 10, 200)
        ax.plot(g, fit.predict(g), color="red", lw=1.5, label=f"{fit.law} fit")
        lo, hi = fit.band(g)
        if np.isfinite(lo).any():
            ax.fill_between(g, lo, hi, color="red", alpha=0.15, lw=0)
        ax.set_xlabel(x_col)
        ax.legend(fontsize=8)
        ax.set_title(f"{fit.law}: α={fit.alpha:.3g}, x_c={fit.x_c:.3g}, E={fit.E:.3g}", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(loss_col)
    ax.grid(True, which="both", alpha=0.2)
    return save_figure(fig, path)
