"""Emergence tables (CSV, Markdown, LaTeX booktabs), plot grid and class counts.

One entry point, `write_emergence`, used by `scaling emergence` and by the sweep report:
classify every curve (analysis.emergence), forecast one decade beyond the largest model and,
if asked, backtest by holding out the largest models (analysis.forecast), then write

    emergence.csv            one row per curve: keys, baseline, class, confidence, threshold
                             [interval], trend z, linearity, breakthroughness, forecast, and
                             one `score[model]` column per model (in increasing x)
    emergence.md / .tex      the same per family (that family's models as columns), with the
                             method, the axis and every setting stated above the tables
    emergence_counts.csv     curves per class per family and shots
    emergence_metrics.csv    metric sensitivity (Schaeffer et al. 2023)
    emergence_skipped.csv    what was not classified, and why
    emergence_backtest.csv   held-out points, predicted vs actual (with --holdout-largest)
    emergence_backtest_curves.csv   per-curve backtest outcome
    emergence.png (+ emergence_p2.png, ...)   score vs x per task (one metric), families in colour,
                             baselines dashed, emergence thresholds marked
    emergence.json           the summary returned
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from analysis.emergence import Classification, classify, metric_sensitivity, x_transform
from analysis.emergence_stats import CLASSES, Settings
from analysis.forecast import backtest, forecast, logprob_table
from analysis.scores import PROPORTION_METRICS, metric_name
from analysis.tables import fmt, fmt_ci, json_safe, latex_table, markdown_table

PANELS_PER_PAGE = 48
COLS = 6
DPI = 90


def _curve_name(r) -> str:
    sub = f"/{r['subtask']}" if r["subtask"] else ""
    return f"{r['task']}{sub}"


def emergence_table(c: Classification, fc: pd.DataFrame) -> pd.DataFrame:
    """One row per curve: the classification, the forecast, and score[model] columns."""
    order = c.points.sort_values(["family", "x", "model"]).drop_duplicates("model")["model"]
    wide = c.points.pivot_table(index="curve", columns="model", values="value", aggfunc="first")
    wide = wide.reindex(columns=order).add_prefix("score[").rename(columns=lambda s: s + "]")
    return c.curves.join(fc).join(wide)


def _threshold(r) -> str:
    if r["class"] != "emergent":
        return "–"
    return fmt_ci(r["threshold_x"], r["threshold_lo"], r["threshold_hi"], ".2e")


def _backtest_by_fit(points: pd.DataFrame, curves: pd.DataFrame) -> dict:
    """Per kind of fit: held-out points, mean absolute error and interval coverage (for
    "none", the points not forecast and why)."""
    joined = points.merge(curves[["curve", "fit", "reason"]], on="curve")
    out = {}
    for kind, g in joined.groupby("fit"):
        if kind == "none":
            out[kind] = {"n": len(g), "reasons": g["reason"].value_counts().to_dict()}
        else:
            out[kind] = {
                "n": len(g),
                "mean_abs_error": float(g["error"].abs().mean()),
                "coverage": float(g["inside"].mean()),
            }
    return out


def _by_fit_text(by_fit: dict, ci: float) -> str:
    """One line per kind of fit: points, error and coverage, or why none was made."""
    return "\n".join(
        f"- {kind}: {v['n']} points, "
        + (
            f"mean |error| {v['mean_abs_error']:.3f}, {v['coverage']:.0%} inside the nominal "
            f"{ci:.0%} interval"
            if kind != "none"
            else "; ".join(f"{r} ({k})" for r, k in v["reasons"].items())
        )
        for kind, v in by_fit.items()
    )


def _forecast(r) -> str:
    if not np.isfinite(r["forecast"]):
        return str(r["forecast_note"])
    return fmt_ci(r["forecast"], r["forecast_lo"], r["forecast_hi"], ".3f")


def _family_rows(table: pd.DataFrame, fam: str, c: Classification):
    """(header, rows) of one family's table: its models as score columns, in increasing x."""
    models = c.points[c.points["family"] == fam].sort_values("x")["model"].drop_duplicates()
    header = [
        "task",
        "metric",
        "shots",
        "baseline",
        *models,
        "class",
        "conf.",
        f"threshold {c.x} [interval]",
        "L",
        "B",
        "forecast ×10",
    ]
    rows = [
        [
            _curve_name(r),
            r["metric"],
            int(r["shots"]),
            fmt(r["random_baseline"]),
            *(fmt(r[f"score[{m}]"], ".3f") for m in models),
            r["class"],
            fmt(r["confidence"], ".2f"),
            _threshold(r),
            fmt(r["linearity"], ".2f"),
            fmt(r["breakthroughness"], ".2f"),
            _forecast(r),
        ]
        for r in table[table["family"] == fam].to_dict("records")
    ]
    return header, rows


def class_counts(curves: pd.DataFrame) -> pd.DataFrame:
    """Curves per class, per family and shots (every class a column, zeros included)."""
    counts = pd.crosstab([curves["family"], curves["shots"]], curves["class"])
    return counts.reindex(columns=list(CLASSES), fill_value=0).reset_index()


def _method(c: Classification, holdout: int, logprob: bool) -> str:
    st = c.settings
    return (
        f"x axis: `{c.x}` ({'log10' if c.x_scale == 'log' else 'lower loss to the right'}). "
        f"A point is above the random baseline by a one-sided exact binomial test "
        f"(proportion metrics; chance floored at {st.min_rate}) or a z-test on its stderr, "
        f"Holm-corrected per curve at alpha = {st.alpha}; a curve needs {st.min_above} such "
        f"points to be anything but flat and {st.min_points} models to be classified. "
        f"Classes after Wei et al. 2022 / 2023 (see analysis/emergence.py). Confidence: share "
        f"of {st.n_boot} parametric bootstrap replicates (seed {st.seed}) with the same class; "
        f"threshold intervals cover the {st.ci:.0%} bootstrap range. L, B: BIG-bench linearity "
        f"and breakthroughness. Forecast, one decade beyond the largest model: sigmoid in "
        f"log x (proportions, from {st.min_above} points above baseline; else the trend, a "
        f"line), or line (other metrics){' or via the target log-probability' if logprob else ''}"
        f"; {st.ci:.0%} intervals from {st.forecast_boot} parametric bootstrap replicates of "
        f"points, form and the new measurement (analysis/forecast.py)."
        + (f" Backtest: the {holdout} largest models of each curve held out." if holdout else "")
    )


def plot_grid(c: Classification, path_stem: Path, fc: pd.DataFrame | None = None) -> list[Path]:
    """Score vs x per (task, subtask, shots), families in colour (class written in the
    family's colour), baseline dashed, emergence threshold dotted with its interval shaded;
    filled markers are above baseline; the forecast `fc` (analysis.forecast.forecast) a
    diamond with its interval. PANELS_PER_PAGE panels per PNG. One metric per task:
    the first proportion metric by name (acc before acc_norm), else the first by name; the
    other metrics' classes are in the tables and emergence_metrics.csv."""
    cur = c.curves.assign(_other=~c.curves["metric"].map(metric_name).isin(PROPORTION_METRICS))
    first = cur.sort_values(["_other", "metric"]).groupby(["task", "subtask", "shots"])["metric"]
    keep = cur.join(first.first().rename("_plotted"), on=["task", "subtask", "shots"])
    panels = c.curves[keep["metric"] == keep["_plotted"]].groupby(
        ["task", "subtask", "metric", "shots"], sort=True
    )
    colours = {
        f: colormaps["tab10"](i % 10) for i, f in enumerate(sorted(c.curves["family"].unique()))
    }
    # Plotted in t (log10 x, or -loss) on linear axes: log-scale tick placement on hundreds of
    # small axes costs most of the rendering time.
    _, to_t, _ = x_transform(c.x, c.x_scale)
    by_curve = dict(list(c.points.assign(x=to_t(c.points["x"].to_numpy(float))).groupby("curve")))
    keys = list(panels.groups)
    paths = []
    for page in range(max(1, math.ceil(len(keys) / PANELS_PER_PAGE))):
        chunk = keys[page * PANELS_PER_PAGE : (page + 1) * PANELS_PER_PAGE]
        ncols = min(COLS, max(len(chunk), 1))
        nrows = max(1, math.ceil(len(chunk) / ncols))
        fig = Figure(figsize=(2.4 * ncols, 2.0 * nrows + 0.4))
        fig.subplots_adjust(
            left=0.05,
            right=0.98,
            bottom=0.3 / (2.0 * nrows + 0.4) + 0.03,
            top=1 - 0.1 / nrows,
            hspace=0.6,
            wspace=0.3,
        )
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, key in zip(axes, chunk, strict=False):
            for line, (cid, r) in enumerate(panels.get_group(key).iterrows()):
                p, col = by_curve[cid], colours[r["family"]]
                up = p["above"].to_numpy()
                ax.plot(p["x"], p["value"], "-", color=col, lw=0.8)
                ax.plot(p["x"][up], p["value"][up], "o", color=col, ms=2.5)
                ax.plot(p["x"][~up], p["value"][~up], "o", color=col, mfc="none", ms=2.5)
                ax.axhline(r["random_baseline"], color=col, ls="--", lw=0.7, alpha=0.7)
                if fc is not None and np.isfinite(fc.at[cid, "forecast"]):
                    f = fc.loc[cid]
                    err = [[f["forecast"] - f["forecast_lo"]], [f["forecast_hi"] - f["forecast"]]]
                    ax.errorbar(
                        to_t(f["forecast_x"]),
                        f["forecast"],
                        yerr=err,
                        fmt="D",
                        color=col,
                        mfc="none",
                        ms=2.5,
                        lw=0.7,
                        capsize=1.5,
                    )
                if r["class"] == "emergent":
                    lo, hi = sorted(to_t(np.array([r["threshold_lo"], r["threshold_hi"]])))
                    ax.axvspan(lo, hi, color=col, alpha=0.12)
                    ax.axvline(to_t(r["threshold_x"]), color=col, ls=":", lw=0.8)
                ax.text(
                    0.02,
                    0.97 - 0.1 * line,
                    f"{r['family']}: {r['class']}",
                    color=col,
                    transform=ax.transAxes,
                    fontsize=5,
                    va="top",
                )
            task, sub, metric, shots = key
            ax.set_title(
                f"{task}{'/' + sub if sub else ''} ({metric}, {int(shots)}-shot)", fontsize=6
            )
            ax.tick_params(labelsize=5)
        for ax in axes[len(chunk) :]:
            ax.set_axis_off()
        if not keys:
            axes[0].text(0.5, 0.5, "no classified curves", ha="center", va="center")
        axis = f"log10 {c.x}" if c.x_scale == "log" else f"-{c.x}"
        fig.supxlabel(
            f"{axis} (filled: above baseline; dotted/shaded: emergence threshold; diamond: "
            f"forecast with its {c.settings.ci:.0%} interval)",
            fontsize=7,
        )
        path = path_stem.with_name(path_stem.name + (f"_p{page + 1}" if page else "") + ".png")
        fig.savefig(path, dpi=DPI)
        paths.append(path)
    return paths


def write_emergence(
    scores: pd.DataFrame,
    out_dir,
    *,
    x: str = "flops",
    family: str = "family",
    pooled: bool = False,
    holdout_largest: int = 0,
    x_scale: str | None = None,
    missing_x: str = "error",
    groups: str = "subtasks",
    settings: Settings | None = None,
    plot: bool = True,
    forecast_logprob: bool = False,
) -> dict:
    """Classify, forecast, optionally backtest, and write the files of the module docstring
    into out_dir. `scores` is a tidy table (analysis.importers.load_scores,
    analysis.project_scores.from_project, ...) with baselines resolved. forecast_logprob:
    forecast accuracy through the target's log-probability where the table has it
    (analysis.forecast). Returns the summary (also written as emergence.json)."""
    settings = settings or Settings()
    out = Path(out_dir)
    c = classify(
        scores,
        x=x,
        family=family,
        pooled=pooled,
        x_scale=x_scale,
        missing_x=missing_x,
        groups=groups,
        settings=settings,
    )
    out.mkdir(parents=True, exist_ok=True)  # after classify: bad input writes nothing
    logprobs = logprob_table(scores, family, pooled) if forecast_logprob else None
    fc = forecast(c, logprobs=logprobs)
    table = emergence_table(c, fc)
    counts = class_counts(c.curves)
    sensitivity = metric_sensitivity(c.curves)
    files = {
        "table": out / "emergence.csv",
        "markdown": out / "emergence.md",
        "latex": out / "emergence.tex",
        "counts": out / "emergence_counts.csv",
        "metrics": out / "emergence_metrics.csv",
        "skipped": out / "emergence_skipped.csv",
    }
    table.to_csv(files["table"], index=False)
    counts.to_csv(files["counts"], index=False)
    sensitivity.to_csv(files["metrics"], index=False)
    c.skipped.to_csv(files["skipped"], index=False)

    method = _method(c, holdout_largest, logprobs is not None)
    md = [
        f"# Emergence\n\n{method}\n\n## Curves per class\n\n"
        + markdown_table(list(counts.columns), counts.astype(str).values.tolist())
    ]
    tex = [f"% {method}\n"]
    for fam in sorted(table["family"].unique()):
        header, rows = _family_rows(table, fam, c)
        md.append(f"\n## {fam}\n\n" + markdown_table(header, rows))
        caption = f"Emergence classes, {fam}, x = {x}"
        align = "l" * 3 + "r" * (len(header) - 3)
        tex.append(
            latex_table(header, rows, caption, align=align, placement="ht", size="scriptsize")
        )
    changed = sensitivity[sensitivity["changes"]]
    md.append(
        f"\n## Metric sensitivity\n\n{len(changed)} of {len(sensitivity)} curves with several "
        f"metrics change class with the metric.\n\n"
        + markdown_table(list(changed.columns), changed.astype(str).values.tolist())
    )

    summary = {
        "out_dir": str(out),
        "x": x,
        "x_scale": c.x_scale,
        "pooled": pooled,
        "settings": asdict(settings),
        "n_curves": len(c.curves),
        "counts": {f: g.value_counts().to_dict() for f, g in c.curves.groupby("family")["class"]},
        "classes": {
            f"{r['family']}/{r['task']}/{r['subtask']}/{r['metric']}/{int(r['shots'])}": r["class"]
            for r in c.curves.to_dict("records")
        },
        "n_skipped": len(c.skipped),
        "metric_changes": int(len(changed)),
    }
    if holdout_largest:
        bt_points, bt_curves = backtest(c, holdout_largest, logprobs=logprobs)
        files["backtest"] = out / "emergence_backtest.csv"
        files["backtest_curves"] = out / "emergence_backtest_curves.csv"
        bt_points.to_csv(files["backtest"], index=False)
        bt_curves.to_csv(files["backtest_curves"], index=False)
        fitted = bt_points.dropna(subset=["predicted"])
        summary["backtest"] = {
            "holdout_largest": holdout_largest,
            "n_points_predicted": len(fitted),
            "n_points_not_possible": int(bt_points["predicted"].isna().sum()),
            "mean_abs_error": float(np.abs(fitted["error"]).mean()) if len(fitted) else None,
            "share_inside_interval": float(fitted["inside"].mean()) if len(fitted) else None,
            "by_fit": _backtest_by_fit(bt_points, bt_curves),
            "outcomes": bt_curves["outcome"].value_counts().to_dict() if len(bt_curves) else {},
        }
        md.append(
            f"\n## Backtest (largest {holdout_largest} held out)\n\n"
            + markdown_table(
                ["family", "task", "metric", "shots", "model", "actual", "predicted [interval]"],
                [
                    [
                        r["family"],
                        _curve_name(r),
                        r["metric"],
                        int(r["shots"]),
                        r["model"],
                        f"{r['actual']:.3f}",
                        fmt_ci(r["predicted"], r["lo"], r["hi"], ".3f"),
                    ]
                    for r in fitted.to_dict("records")
                ],
            )
            + f"\n{len(fitted)} of {len(bt_points)} held-out points forecast"
            + (
                f", mean |error| {summary['backtest']['mean_abs_error']:.3f}, "
                f"{summary['backtest']['share_inside_interval']:.0%} inside the nominal "
                f"{c.settings.ci:.0%} interval"
                if len(fitted)
                else ""
            )
            + f". By kind of fit:\n\n{_by_fit_text(summary['backtest']['by_fit'], c.settings.ci)}\n"
            + "\nA trend forecast (a curve still at chance) cannot foresee a jump.\n"
            + "\nOutcomes: "
            + ", ".join(f"{k}: {v}" for k, v in summary["backtest"]["outcomes"].items())
            + "\n"
        )
    md.append(
        f"\n## Skipped\n\n{len(c.skipped)} entries, see emergence_skipped.csv.\n\n"
        + markdown_table(["reason", "count"], list(c.skipped["reason"].value_counts().items()))
    )
    files["markdown"].write_text("".join(md))
    files["latex"].write_text("\n".join(tex))
    if plot:
        files.update({f"grid{i}": p for i, p in enumerate(plot_grid(c, out / "emergence", fc))})
    files["summary"] = out / "emergence.json"
    summary["files"] = [str(p) for p in files.values()]
    files["summary"].write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
    return summary
