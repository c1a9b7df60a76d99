"""Figures and tables of the fine-tuning laws (analysis.fits.finetune), for `scaling fit
finetune` and the sweep report of a results table with fine-tune rows.

error_vs_examples.png: the error against the examples (log x), one color per model size: every
seed's run (dots), the mean with its spread over seeds (min to max), the law with its bootstrap
band (dashed beyond the largest run: extrapolation), from-scratch baselines dotted, the target.
error_heatmap.png: the mean error of each size x examples. finetune.md / .tex / .csv: the
per-size laws (per doubling, examples to the target, in words where it is out of reach), the
joint law and the effective data transferred, each with its interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from analysis.fit_plots import log_norm, save_figure
from analysis.fits.finetune import (
    JOINT_LAW,
    LAW,
    TRANSFER_LAW,
    FinetuneFit,
    fit_finetune,
    interval_with_inf,
)
from analysis.fits.finetune_data import (
    DESIGN_COLS,
    PRETRAINED,
    SCRATCH,
    FinetuneColumns,
    finetune_rows,
    preferred_metric,
    read_runs,
)
from analysis.inputs import ConfigError
from analysis.tables import fmt, fmt_ci, latex_table, markdown_table

COLUMNS = {  # quantity -> table header
    "E": "E (floor)",
    "alpha": "alpha",
    "error_at_d_max": "error(D_max)",
    "error_at_2d_max": "error(2 D_max)",
    "per_doubling": "per doubling",
    "reducible_per_doubling": "2^-alpha",
}


def _sizes(fit: FinetuneFit, init: str) -> list[float]:
    return sorted(fit.runs.cells.loc[fit.runs.cells["init"] == init, "size"].unique())


def _draw_size(ax, fit: FinetuneFit, init: str, size: float, color) -> None:
    runs, cells = fit.runs, fit.runs.cells
    at = (runs.init == init) & (runs.size == size)
    c = cells[(cells["init"] == init) & (cells["size"] == size)]
    scratch = init == SCRATCH
    ax.scatter(runs.examples[at], runs.error[at], s=12, color=color, alpha=0.45, lw=0)
    spread = np.clip([c["error"] - c["lo"], c["hi"] - c["error"]], 0, None)  # float rounding
    marker = dict(fmt="s", mfc="none") if scratch else dict(fmt="o")
    key = (init, size)
    label = fit.label(init, size)
    if key in fit.curves:
        e = fit.size_estimates()[key]
        label += f": alpha {e['alpha'].value:.2f}, x{e['per_doubling'].value:.3f} per doubling"
        curve = fit.curves[key]
        d_max = curve.examples.max()
        grid = np.geomspace(curve.examples.min() / 1.3, 4 * d_max, 150)
        inside = grid <= d_max
        style = ":" if scratch else "-"
        ax.plot(grid[inside], curve.predict(grid[inside]), color=color, lw=1.4, ls=style)
        ax.plot(grid[~inside], curve.predict(grid[~inside]), color=color, lw=1, ls="--")
        lo, hi = fit.band(size, grid, init)
        ax.fill_between(grid, lo, hi, color=color, alpha=0.15, lw=0)
    else:
        label += " (no fit: the error does not fall)"
    ax.errorbar(
        c["examples"], c["error"], yerr=spread, color=color, ms=5, capsize=2, label=label, **marker
    )


def plot_curves(fit: FinetuneFit, path=None) -> Figure:
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    sizes = np.array(_sizes(fit, PRETRAINED))
    norm, cmap = log_norm(sizes), colormaps["viridis"]
    color = lambda s: cmap(0.85 * norm(s)) if len(sizes) > 1 else "C0"  # noqa: E731
    for init in (PRETRAINED, SCRATCH):
        for size in _sizes(fit, init):
            _draw_size(ax, fit, init, size, color(size))
    ax.axhline(fit.target, color="0.3", ls=":", lw=1, label=f"target {fit.target:.3g}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 16, 32, ... as counts
    ax.xaxis.set_minor_formatter(NullFormatter())  # a short range would label every minor tick
    ax.set_ylim(bottom=0)
    ax.set_xlabel("fine-tuning examples D")
    ax.set_ylabel("error (1 - accuracy)")
    ax.set_title(
        f"error(D) = E + A D^-alpha per model size; dots: seeds, bars: their range\nbands: "
        f"{fit.ci:.0%} bootstrap over seeds and test items; dashed: beyond the largest run",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_heatmap(fit: FinetuneFit, path=None) -> Figure:
    """Mean error of each size x examples (one panel per init present)."""
    cells = fit.runs.cells
    inits = [i for i in (PRETRAINED, SCRATCH) if (cells["init"] == i).any()]
    fig = Figure(
        figsize=(7.5, 1.6 + 0.9 * cells["size"].nunique() * len(inits)), layout="constrained"
    )
    axes = fig.subplots(len(inits), 1, squeeze=False)[:, 0]
    for ax, init in zip(axes, inits, strict=True):
        grid = cells[cells["init"] == init].pivot(index="size", columns="examples", values="error")
        im = ax.imshow(
            grid.to_numpy(),
            cmap="viridis_r",
            vmin=0,
            vmax=cells["error"].max(),
            aspect="auto",
            origin="lower",
        )
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:.3f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v > 0.5 * cells["error"].max() else "black",
                )
        ax.set_xticks(range(grid.shape[1]), [f"{d:g}" for d in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{s:.3g}" for s in grid.index])
        ax.set_xlabel("fine-tuning examples D")
        ax.set_ylabel(f"model size N ({init})")
        fig.colorbar(im, ax=ax, label="mean error over seeds")
    axes[0].set_title("mean error, size x examples", fontsize=9)
    return save_figure(fig, path)


def plot_finetune(fit: FinetuneFit, curve_path, heatmap_path) -> None:
    plot_curves(fit, curve_path)
    plot_heatmap(fit, heatmap_path)


def long_rows(fit: FinetuneFit) -> pd.DataFrame:
    """Every estimate: law, init, size, quantity, value, lo, hi (finetune.csv)."""
    rows = [
        {
            "law": "per size",
            "init": init,
            "size": size,
            "quantity": k,
            "value": e.value,
            "lo": e.lo,
            "hi": e.hi,
        }
        for (init, size), est in fit.size_estimates().items()
        for k, e in est.items()
    ]
    for est in (fit.joint_estimates(), fit.transfer_estimates()):
        rows += [
            {"law": e.law, "quantity": k, "value": e.value, "lo": e.lo, "hi": e.hi}
            for k, e in est.items()
        ]
    return pd.DataFrame(rows).assign(target=fit.target)


def _bound(v) -> str:
    """An interval's upper end; inf: the target may be out of reach."""
    return "inf" if np.isposinf(v) else fmt(v, ".3g")


def size_table(fit: FinetuneFit) -> tuple[list, list]:
    header = ["model", "D_max", *COLUMNS.values(), f"examples to {fit.target:.3g}"]
    rows = []
    for key, est in fit.size_estimates().items():
        d = est["examples_to_target"]
        reach = f"{fmt(d.value, '.3g')} [{fmt(d.lo, '.3g')}, {_bound(d.hi)}]"
        reach = reach if np.isfinite(d.value) else "unreachable (below the floor)"
        rows.append(
            [
                fit.label(*key),
                fmt(fit.curves[key].examples.max(), "g"),
                *(fmt_ci(*est[k][:3], ".3g") for k in COLUMNS),
                reach,
            ]
        )
    return header, rows


def transfer_table(fit: FinetuneFit) -> tuple[list, list]:
    """Per fine-tune cell: its error, D_E and D_T with intervals (inf: below the floor)."""
    t, cells = fit.transfer, fit.runs.cells
    header = ["N", "D_F", "error", "D_E", "D_T = D_E - D_F"]
    rows = []
    for j, c in enumerate(t.cells):
        d_f, d_e = cells["examples"].iloc[c], t.d_e[:, j]
        lo, hi = interval_with_inf(d_e[1:], fit.ci)
        cell = lambda v, lo, hi: f"{fmt(v, '.3g')} [{fmt(lo, '.3g')}, {_bound(hi)}]"  # noqa: E731
        rows.append(
            [
                fmt(cells["size"].iloc[c], ".3g"),
                fmt(d_f, "g"),
                fmt(cells["error"].iloc[c], ".3f"),
                cell(d_e[0], lo, hi),
                cell(d_e[0] - d_f, lo - d_f, hi - d_f),
            ]
        )
    return header, rows


def _estimate_lines(est: dict) -> str:
    return ", ".join(f"{k} = {fmt_ci(*e[:3], '.3g')}" for k, e in est.items())


def finetune_markdown(fit: FinetuneFit, heading: str = "#") -> str:
    """The per-size table, one sentence per size, the joint law and the transfer."""
    pct = f"{fit.ci:.0%}"
    lines = [
        f"{heading} Fine-tuning scaling",
        "",
        f"{LAW} per model size; intervals: {pct} bootstrap over seeds and test items "
        f"({fit.n_boot} resamples). Target error: {fit.target:.4g}.",
        "",
        markdown_table(*size_table(fit)),
    ]
    for key, est in fit.size_estimates().items():
        d_max, e = fit.curves[key].examples.max(), est
        ci = lambda k, e=e: fmt_ci(*e[k][:3], ".3g")  # noqa: E731
        lines.append(
            f"- {fit.label(*key)}: error {ci('error_at_d_max')} at {d_max:g} examples (the "
            f"largest run); doubling to {2 * d_max:g} gives {ci('error_at_2d_max')}, "
            f"x{ci('per_doubling')} (the reducible part x{ci('reducible_per_doubling')}); "
            f"error {fit.target:.3g}: {fit.reach(key)}."
        )
    lines += [
        f"- {fit.label(s['init'], s['size'])}: not fitted ({s['reason']})." for s in fit.skipped
    ]
    lines += [f"- warning: {w}" for w in fit.warnings()]
    joint = _estimate_lines(fit.joint_estimates()) or f"skipped ({fit.joint_skipped})"
    lines += [
        "",
        f"Joint law, {JOINT_LAW}: {joint}" + (f"; rmse {fit.joint.rmse:.3g}." if fit.joint else ""),
    ]
    lines += ["", f"Effective data transferred, {TRANSFER_LAW}: "]
    if fit.transfer is None:
        lines[-1] += f"skipped ({fit.transfer_skipped})."
    else:
        lines[-1] += (
            f"{_estimate_lines(fit.transfer_estimates())} ({fit.transfer.extrapolated} "
            "cell(s) with D_E beyond the largest from-scratch run)."
        )
        lines += ["", markdown_table(*transfer_table(fit))]
    return "\n".join(lines) + "\n"


def finetune_latex(fit: FinetuneFit) -> str:
    pct = f"{fit.ci * 100:g}%"
    out = latex_table(
        *size_table(fit),
        caption=f"Fine-tuning error per model size, {LAW}, with {pct} bootstrap intervals.",
        size="scriptsize",
    )
    rows = [
        [e.law, k, fmt_ci(*e[:3], ".4g")]
        for est in (fit.joint_estimates(), fit.transfer_estimates())
        for k, e in est.items()
    ]
    if rows:
        out += latex_table(
            ["law", "parameter", f"estimate [{pct}]"],
            rows,
            caption="Joint law (Zhang et al. 2024) and effective data "
            "transferred (Hernandez et al. 2021).",
        )
    return out


def write_tables(fit: FinetuneFit, stem: Path) -> list[Path]:
    """stem.md, stem.tex, stem.csv."""
    paths = [Path(f"{stem}.{ext}") for ext in ("md", "tex", "csv")]
    paths[0].write_text(finetune_markdown(fit))
    paths[1].write_text(finetune_latex(fit))
    long_rows(fit).to_csv(paths[2], index=False)
    return paths


def write_finetune(results: pd.DataFrame, out_dir, **boot) -> dict:
    """The fine-tuning section of a sweep report: one fit per task / design setting of the
    results' fine-tune rows (preferred fraction-correct metric); never raises: a fit the rows
    cannot support is a skip with its reason. {"markdown", "files", "skipped"}."""
    out, files, skipped, text = Path(out_dir), [], [], []
    try:
        rows = finetune_rows(results)
        rows = rows[rows["metric"] == preferred_metric(rows)]
        keys = [c for c in DESIGN_COLS if c in rows and rows[c].nunique() > 1]
        groups = rows.groupby(keys, sort=True) if keys else [((), rows)]
    except ConfigError as e:
        return {"markdown": "", "files": [], "skipped": [{"fit": "finetune", "reason": str(e)}]}
    for values, sub in groups:
        values = values if isinstance(values, tuple) else (values,)
        name = "-".join(f"{k}_{v}" for k, v in zip(keys, values))
        stem = out / ("finetune" + (f"-{name}" if name else ""))
        try:
            size = "params_non_embedding" if "params_non_embedding" in sub else "params"
            fit = fit_finetune(read_runs(sub, FinetuneColumns(size=size)), **boot)
        except ConfigError as e:
            skipped.append({"fit": f"finetune {name}".strip(), "reason": str(e)})
            continue
        paths = [Path(f"{stem}_error_vs_examples.png"), Path(f"{stem}_heatmap.png")]
        plot_finetune(fit, *paths)
        files += paths + write_tables(fit, stem)
        text.append(
            finetune_markdown(fit, heading="##" + (f" {name}:" if name else ""))
            + "".join(f"\n![{p.stem}]({p.name})\n" for p in paths)
        )
    return {"markdown": "\n".join(text), "files": files, "skipped": skipped}
