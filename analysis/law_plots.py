"""Figures of the over-training law, the downstream-error law and the data-constrained law
(analysis.fits.overtraining, analysis.fits.downstream, analysis.fits.data_constrained): the
law with its bootstrap band against the runs it was fitted on, and, after a hold-out check,
the law fitted on the cheaper runs against the held-out ones (their actual values, and the
predictions with the check's prediction interval).

matplotlib object API, as analysis/fit_plots.py; every function returns the Figure and saves
it when `path` is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from analysis.fit_plots import log_norm, save_figure

MAX_LINES = 8  # law lines drawn, one per token multiplier, at most


def _multipliers(M) -> np.ndarray:
    """The distinct token multipliers, thinned to MAX_LINES spread over their range."""
    values = np.unique(np.asarray(M, float))
    if len(values) > MAX_LINES:
        values = np.unique(np.quantile(values, np.linspace(0, 1, MAX_LINES), method="nearest"))
    return values


def _held_out(ax, x, heldout: pd.DataFrame, y_col: str) -> None:
    """Held-out runs: actual values (stars) and predictions with their interval (circles)."""
    ax.scatter(x, heldout[y_col], marker="*", s=90, color="C3", zorder=6, label="held out")
    yerr = None
    if {"lo", "hi"} <= set(heldout.columns):
        p = heldout["predicted"]
        yerr = [(p - heldout["lo"]).clip(lower=0), (heldout["hi"] - p).clip(lower=0)]
    ax.errorbar(
        x, heldout["predicted"], yerr=yerr, fmt="o", mfc="none", color="C3", ms=7, capsize=3,
        zorder=6, label="held out, predicted" + (" (prediction interval)" if yerr else ""),
    )  # fmt: skip


def _band(ax, x, lo, hi, color) -> None:
    if np.isfinite(lo).any():
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)


def plot_law_vs_compute(fit, N, D, y, *, y_label: str, heldout=None, path=None) -> Figure:
    """y (the loss, or an error predicted from compute) against C = 6 N D: the runs colored by
    M = D / N, and fit.predict(N, D) with fit.band along each multiplier of the runs
    (N = sqrt(C / 6M), D = M N). heldout: an extrapolation check's points (N, D, y_label,
    predicted, lo, hi)."""
    N, D, y = (np.asarray(v, float) for v in (N, D, y))
    M, C = D / N, 6 * N * D
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    all_m, all_c = M, C
    if heldout is not None:
        hn, hd = heldout["N"].to_numpy(float), heldout["D"].to_numpy(float)
        all_m, all_c = np.r_[M, hd / hn], np.r_[C, 6 * hn * hd]
    norm, cmap = log_norm(all_m), colormaps["viridis"]
    ax.scatter(C, y, s=16, c=cmap(norm(M)), edgecolors="none", label="fitted on")
    grid = np.geomspace(all_c.min() / 2, all_c.max() * 2, 120)
    for m in _multipliers(all_m):
        n = np.sqrt(grid / (6 * m))
        ax.plot(grid, fit.predict(n, m * n), color=cmap(norm(m)), lw=1)
        _band(ax, grid, *fit.band(n, m * n), cmap(norm(m)))
    if heldout is not None:
        _held_out(ax, 6 * hn * hd, heldout, y_label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("C = 6 N D (FLOPs)")
    ax.set_ylabel(y_label)
    ax.set_title("law along each token multiplier M = D / N (bands: bootstrap)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="M = D / N")
    return save_figure(fig, path)


def plot_error_vs_loss(
    law, loss, error, *, x_label: str, y_label: str, heldout=None, path=None
) -> Figure:
    """Downstream error against loss: the runs, law.predict(L) with law.band(L) over their
    range (and the held-out runs', with `heldout`: points with x_label, y_label, predicted,
    lo, hi)."""
    loss, error = np.asarray(loss, float), np.asarray(error, float)
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(loss, error, s=18, color="0.35", label="fitted on")
    span = loss if heldout is None else np.r_[loss, heldout[x_label].to_numpy(float)]
    grid = np.linspace(span.min() * 0.97, span.max() * 1.03, 200)
    ax.plot(grid, law.predict(grid), color="C0", lw=1.5, label="Err(L)")
    _band(ax, grid, *law.band(grid), "C0")
    if heldout is not None:
        _held_out(ax, heldout[x_label], heldout, y_label)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(
        f"Err(L) = eps - k exp(-gamma L): eps={law.eps:.3g}, k={law.k:.3g}, "
        f"gamma={law.gamma:.3g} (band: bootstrap)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.2)
    return save_figure(fig, path)


def _repeated_pairs(N, U, epochs) -> list[tuple[float, float]]:
    """The (N, U) pairs run at the most distinct epochs (at least 2), at most MAX_LINES."""
    pairs = pd.DataFrame({"N": N, "U": U, "epochs": epochs}).groupby(["N", "U"])["epochs"]
    counts = pairs.nunique()
    counts = counts[counts >= 2].sort_values(ascending=False, kind="stable")
    return sorted(counts.index[:MAX_LINES])


def plot_data_constrained(fit, N, D, U, loss, *, y_label, heldout=None, path=None) -> Figure:
    """Left: the loss against epochs D / U_D (U_D = min(U, D)) for the (N, U_D) pairs run at
    the most epochs, fit.predict along each with fit.band; right: the effective data D' / U_D
    with its band, beside D / U_D (repeated tokens as good as new) and its ceiling 1 + R_D*.
    heldout: an extrapolation check's points (N, D, U, y_label, predicted, lo, hi)."""
    N, D, U, loss = (np.asarray(v, float) for v in (N, D, U, loss))
    ud = np.minimum(U, D)
    epochs = D / ud
    fig = Figure(figsize=(12, 5), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    held = None if heldout is None else heldout["D"] / np.minimum(heldout["U"], heldout["D"])
    top = epochs.max() if held is None else max(epochs.max(), held.max())
    grid = np.geomspace(1, 1.5 * top, 120)
    pairs = _repeated_pairs(N, ud, epochs)
    colors = colormaps["viridis"](np.linspace(0, 0.9, max(len(pairs), 1)))
    for (n, u), color in zip(pairs, colors, strict=False):
        at = np.isclose(N, n) & np.isclose(ud, u)
        ax.scatter(epochs[at], loss[at], s=16, color=color, label=f"N = {n:.3g}, U = {u:.3g}")
        ax.plot(grid, fit.predict(n, grid * u, u), color=color, lw=1)
        _band(ax, grid, *fit.band(n, grid * u, u), color)
    if heldout is not None:
        _held_out(ax, held, heldout, y_label)
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xlabel("epochs D / U_D")
        a.grid(True, which="both", alpha=0.2)
    ax.set_ylabel(y_label)
    ax.set_title("the law along epochs per (N, U) run at several (bands: bootstrap)", fontsize=9)
    ax.legend(fontsize=7)
    value, lo, hi = fit.data_multiplier(grid)
    r_d = fit.estimates()["R_D_star"].value
    bx.plot(grid, value, color="C0", lw=1.5, label="D' / U_D, the law")
    _band(bx, grid, lo, hi, "C0")
    bx.plot(grid, grid, color="0.4", ls="--", lw=1, label="D / U_D: repeats worth new tokens")
    if 1 + r_d < 10 * grid[-1]:  # a ceiling far above the data would flatten the curve
        bx.axhline(1 + r_d, color="0.4", ls=":", lw=1, label=f"ceiling 1 + R_D* = {1 + r_d:.3g}")
    bx.set_yscale("log")
    bx.set_ylabel("effective data D' / U_D")
    bx.set_title(f"effective data, R_D* = {r_d:.3g} (band: bootstrap)", fontsize=9)
    bx.legend(fontsize=8)
    return save_figure(fig, path)
