"""Figures of observational scaling (analysis.fits.observational): PC1 against log compute per
family with each family's line and band, the target against the link's eta with the fitted
sigmoid and its band, and the backtest's forecasts against the held-out scores.

matplotlib object API, as analysis/fit_plots.py; every function returns the Figure and saves
it when `path` is given.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy.special import expit

from analysis.fit_plots import save_figure
from analysis.fits.bootstrap import percentile_band

MODES = {"benchmarks": ("o", "from benchmarks"), "compute": ("s", "from compute")}


def _colors(families) -> dict:
    return {f: f"C{i % 10}" for i, f in enumerate(sorted(set(families)))}


def _points(ax, x, y, fit, colors) -> None:
    """Fitted models as dots, held-out ones as stars, one color a family."""
    sc = fit.scores
    for f, c in colors.items():
        for rows, kw in (
            (fit.train, dict(marker="o", s=28)),
            (fit.heldout, dict(marker="*", s=120)),
        ):
            rows = rows & (sc.family == f)
            ax.scatter(x[rows], y[rows], color=c, zorder=4, edgecolor="k", lw=0.4, **kw)
        ax.plot([], [], "o", color=c, label=f)
    if fit.heldout.any():
        ax.scatter([], [], marker="*", s=120, color="w", edgecolor="k", label="held out")


def plot_capabilities(fit, path=None) -> Figure:
    """PC1 of every model against log10 of its scale, each family's line (fitted on its fitted
    models) with the bootstrap band of the line."""
    sc, full = fit.scores, fit.full
    S1, colors = fit.capabilities()[:, 0], _colors(sc.family)
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.add_subplot()
    for f, c in colors.items():
        if f not in full.lines.theta:
            continue
        xf = sc.x[(sc.family == f) & np.isfinite(sc.x)]
        grid = np.linspace(xf.min(), xf.max(), 50)
        ax.plot(grid, full.lines.at([f] * len(grid), grid)[:, 0], color=c, lw=1.5)
        curves = [m.lines.at([f] * len(grid), grid)[:, 0] * fit.signs(m)[0]
                  for m in fit.boot if m is not None and f in m.lines.theta]  # fmt: skip
        if len(curves) > 1:
            lo, hi = percentile_band(np.array(curves), fit.ci)
            ax.fill_between(grid, lo, hi, color=c, alpha=0.15, lw=0)
    _points(ax, sc.x, S1, fit, colors)
    share = full.pca.explained[0]
    ax.set(xlabel=sc.scale, ylabel=f"PC1 ({share:.0%} of the variance)",
           title=f"Capability PC1 per family, {fit.ci:.0%} bands of the lines")  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _link_band(fit, grid) -> tuple[np.ndarray, np.ndarray]:
    """Band of the sigmoid along the full fit's eta: each refit's link, its own eta mapped onto
    the full fit's by least squares over the models (eta_b ~ a eta + c: both are linear in the
    same standardized benchmarks)."""
    eta, curves = fit.eta(), []
    for m in fit.boot:
        if m is None:
            continue
        p = m.link.params
        eta_b = p[0] + m.pca.transform(fit.scores.X) @ p[1:-1]
        a, c = np.polyfit(eta, eta_b, 1)
        curves.append(p[-1] + (1 - p[-1]) * expit(a * grid + c))
    return percentile_band(np.array(curves), fit.ci)


def plot_link(fit, path=None) -> Figure:
    """The target against eta = alpha + beta . S: the fitted sigmoid with its bootstrap band
    (for a flat fit, the models' mean with its band), the models, and the held-out models'
    forecasts with prediction intervals."""
    sc, p = fit.scores, fit.full.link.params
    eta, colors = fit.eta(), _colors(sc.family)
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.add_subplot()
    grid = np.linspace(np.nanmin(eta) - 0.3, np.nanmax(eta) + 0.3, 200)
    title = f"{sc.target}: y = b + (1 - b) sigmoid(eta), b = {p[-1]:.3g}"
    if fit.kind == "flat":  # forecasts are the fitted models' mean: draw that, not the link
        band = percentile_band(np.repeat(fit.boot_means[:, None], len(grid), 1), fit.ci)
        curve, label = fit.predict()[0] + 0 * grid, "flat forecast (the models' mean)"
        title = f"{sc.target}: flat, the link does not beat the mean (LOO R² {fit.loo.r2:.2f})"
    else:
        band = _link_band(fit, grid)
        curve, label = p[-1] + (1 - p[-1]) * expit(grid), "link"
    ax.plot(grid, curve, color="k", lw=1.5, label=label)
    ax.fill_between(grid, *band, color="k", alpha=0.12, lw=0, label=f"{fit.ci:.0%} band")
    if fit.heldout.any():
        (plo, phi), h = fit.prediction_interval(), fit.heldout
        pred = fit.predict()[h]
        ax.errorbar(eta[h], pred, yerr=[pred - plo[h], phi[h] - pred], fmt="o", mfc="none",
                    color="C3", capsize=3, zorder=3,
                    label=f"held out: forecast, {fit.ci:.0%} prediction interval")  # fmt: skip
    _points(ax, eta, sc.y, fit, colors)
    ax.set(xlabel="eta = alpha + beta . S (capability measures)", ylabel=sc.target, title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_backtest(fit, path=None) -> Figure:
    """Forecasts of the held-out models against their scores, from benchmarks and from
    compute, with prediction intervals; coverage and MAE in the legend."""
    pts, summary = fit.backtest_points(), fit.backtest()
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    ax = fig.add_subplot()
    for i, (mode, (marker, label)) in enumerate(MODES.items()):
        pred, b = pts[f"{mode}_predicted"], summary[mode]
        ok = np.isfinite(pred)
        x = pts["actual"][ok] + (i - 0.5) * 0.002  # side by side where they coincide
        ax.errorbar(
            x, pred[ok], yerr=[pred[ok] - pts[f"{mode}_lo"][ok], pts[f"{mode}_hi"][ok] - pred[ok]],
            fmt=marker, mfc="none", color=f"C{i}", capsize=3, label=f"{label}: "
            f"{b['n_covered']}/{b['n_forecast']} covered, MAE {b['mae']:.3f}",
        )  # fmt: skip
    lims = [np.nanmin(pts[["actual"]].to_numpy()) - 0.05, np.nanmax(pts["actual"]) + 0.05]
    ax.plot(lims, lims, color="k", lw=0.8, ls="--")
    for i, row in pts.iterrows():  # staggered: forecasts of a flat fit coincide
        ax.annotate(row["model"], (row["actual"], row["benchmarks_predicted"]), fontsize=7,
                    xytext=(4, -8 - 9 * (i % 4)), textcoords="offset points")  # fmt: skip
    title = f"Backtest: {len(pts)} held-out models, {fit.ci:.0%} prediction intervals"
    ax.set(xlabel=f"{fit.scores.target} (held out, measured)", ylabel="forecast", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
