"""What `scaling fit` writes: fit.json (every group's record with the input, columns, FLOP
convention and selection), fit.md and fit.tex (estimates with intervals, allocation tables),
extrapolation.json and the forms' plots.
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.extrapolation import plot_extrapolation
from analysis.fits.pipeline import FitRun
from analysis.fits.selection import group_suffix
from analysis.tables import TeX, fmt, json_safe, latex_table, markdown_table

# LaTeX of the parameters in fit.tex (other names are escaped).
TEX_NAMES = {
    k: TeX(v)
    for k, v in {
        "alpha": r"$\alpha$", "beta": r"$\beta$", "alpha_N": r"$\alpha_N$",
        "alpha_D": r"$\alpha_D$", "N_c": r"$N_c$", "D_c": r"$D_c$", "x_c": r"$x_c$",
        "n_coef": r"$N_\mathrm{opt}$ coef.", "d_coef": r"$D_\mathrm{opt}$ coef.",
        "R_D_star": r"$R_D^*$", "R_N_star": r"$R_N^*$",
    }.items()
}  # fmt: skip


def estimate_rows(run: FitRun) -> list[tuple]:
    """(group, law, parameter, estimate, lo, hi) of every group's estimates."""
    return [
        (g.key, e.law, name.removeprefix(f"{e.law} ") if e.law else name, e.value, e.lo, e.hi)
        for g in run.groups
        for name, e in g.fit.estimates().items()
    ]


def _estimate_table(rows, header: list[str], names=None) -> tuple[list, list[list]]:
    """(header, cells); the group and law columns are kept only where used."""
    used = [any(r[0] for r in rows), any(r[1] for r in rows), True, True, True]
    pick = lambda cells: [c for c, u in zip(cells, used) if u]
    cells = [
        pick([g, law, (names or {}).get(k, k), fmt(v, ".4g"),
              f"[{fmt(lo, '.4g')}, {fmt(hi, '.4g')}]"])
        for g, law, k, v, lo, hi in rows
    ]  # fmt: skip
    return pick(header), cells


def fit_markdown(rows, approach: str, ci: float, meta: str, allocations) -> str:
    header = ["group", "law", "parameter", "estimate", f"{ci:g} interval"]
    text = f"# {approach} fit\n\n{meta}\n\n" + markdown_table(*_estimate_table(rows, header))
    for key, table in allocations:
        cols = [c for c in table.columns if c != "approach"]
        text += f"\n## Compute-optimal allocation{f' ({key})' if key else ''}\n\n"
        text += markdown_table(
            cols, [[fmt(float(r[c]), ".4g") for c in cols] for _, r in table.iterrows()]
        )
    return text


def fit_latex(rows, approach: str, ci: float) -> str:
    header = ["Group", "Law", "Parameter", "Estimate", f"{ci * 100:g}% interval"]
    header, cells = _estimate_table(rows, header, TEX_NAMES)
    caption = f"{approach} fit: estimates with {ci * 100:g}% bootstrap percentile intervals."
    return latex_table(header, cells, caption, align="l" * (len(header) - 2) + "rr")


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n")


def summary_line(run: FitRun) -> str:
    m, cm = run.meta, run.meta["column_mapping"]
    conv = m["flop_convention"]
    names = {"n": "N", "c": "C", "d": "D", "loss": "loss"}
    roles = ", ".join(f"{v} = {cm[k]!r}" for k, v in names.items() if cm[k] or k != "loss")
    return (
        f"{run.form.name} fit on {m['n_points_used']} of {m['selection']['n_rows_input']} rows "
        f"of {m['input']} ({roles})" + (f"; {conv}" if conv else "")
    )


def write_fit_outputs(run: FitRun, out: Path, budgets, extra_meta: dict) -> list[Path]:
    """Write every output of a FitRun into `out`; returns the files, fit.json first."""
    records, allocations, extrap, plots = {}, [], {}, []
    for g in run.groups:
        suffix = group_suffix(g.values)
        path_of = lambda stem, suffix=suffix: out / f"{stem}{suffix}.png"
        plots += run.form.plot(g.fit, g.table, g.request, path_of)
        record = {**g.fit.to_dict(), "n_points_used": len(g.table)}
        record["dropped_highest_loss"] = g.dropped
        table = g.fit.allocation(budgets) if budgets else None
        if table is not None:
            record["allocation"] = table.to_dict(orient="records")
            allocations.append((g.key, table))
        if g.extrapolation is not None:
            extrap[g.key] = g.extrapolation.to_dict()
            record["extrapolation"] = {k: v for k, v in extrap[g.key].items() if k != "points"}
            plots.append(out / f"extrapolation{suffix}.png")
            plot_extrapolation(g.extrapolation, plots[-1])
            if run.form.plot_holdout:
                plots.append(out / f"{run.form.name}_holdout{suffix}.png")
                run.form.plot_holdout(g.extrapolation, g.request, plots[-1])
        records[g.key] = record
    meta = {**run.meta, **extra_meta}
    grouped = bool(run.groups[0].key)
    write_json(
        out / "fit.json", {**meta, "groups": records} if grouped else {**meta, **records[""]}
    )
    rows, ci = estimate_rows(run), run.groups[0].request.boot.ci
    (out / "fit.md").write_text(
        fit_markdown(rows, run.form.name, ci, summary_line(run), allocations)
    )
    (out / "fit.tex").write_text(fit_latex(rows, run.form.name, ci))
    files = [out / "fit.json", out / "fit.md", out / "fit.tex"]
    if extrap:
        write_json(
            out / "extrapolation.json",
            {**meta, "groups": extrap} if grouped else {**meta, **extrap[""]},
        )
        files.append(out / "extrapolation.json")
    return files + plots
