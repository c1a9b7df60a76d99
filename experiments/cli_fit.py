"""`scaling fit`: compute-optimal and loss-law fits on this project's results or on any CSV.

    scaling fit chinchilla|isoflop|envelope|kaplan INPUT [--out DIR]
        [--n COL] [--d COL] [--c COL] [--loss COL] [--run COL]
        [--filter COL=VALUE ...] [--group COL[,COL...]]
        [--min-c C] [--max-c C] [--drop-highest-loss K]
        [--n-boot B] [--seed S] [--ci P] [--budgets C1,C2,...]
    chinchilla: [--delta H] [--holdout-above C | --holdout-frac F] [--tolerance T]
    isoflop:    [--method parabola|akima] [--resample residuals|noise|points]
    envelope:   [--bins K] [--keep-edge-models]
    kaplan:     [--law n,d,c,nd] [--irreducible] [--bins K]
                [--holdout-above C | --holdout-frac F] [--tolerance T]

INPUT: a sweep directory (runs/<sweep>: results.parquet or results.csv for chinchilla, isoflop
and kaplan; curves.csv for envelope and Kaplan's L(C_min)), or any .csv / .parquet table.
Writes fit.json, fit.md, fit.tex and plots to --out; bad input exits with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import textwrap
from pathlib import Path

from analysis.tables import TeX, fmt, fmt_ci, latex_table, markdown_table
from scaling.config import ConfigError

APPROACHES = ("chinchilla", "isoflop", "envelope", "kaplan")
KAPLAN_LAWS = ("n", "d", "c", "nd")
DEFAULT_N, DEFAULT_C = "params_non_embedding", "flops_6n"
DEFAULT_LOSS, DEFAULT_RUN = "loss", "run_id"
DERIVED_C, DERIVED_D = "C (=6ND)", "D (=C/6N)"
# Fitted parameters per approach: a point needs more points than these (approach 3: E, A, B,
# alpha, beta; Kaplan L(N, D): N_c, D_c, alpha_N, alpha_D).
N_PARAMS = {"chinchilla": 5, "isoflop": 2, "envelope": 2}
KAPLAN_N_PARAMS = {"n": 2, "d": 2, "c": 2, "nd": 4}
KAPLAN_NAMES = {"n": "L(N)", "d": "L(D)", "c": "L(C_min)", "nd": "L(N,D)"}
ESTIMATES = {
    "chinchilla": ("E", "A", "B", "alpha", "beta", "a", "b"),
    "isoflop": ("a", "b", "n_coef", "d_coef"),
    "envelope": ("a", "b", "n_coef", "d_coef"),
    "kaplan_1d": ("alpha", "x_c", "E"),
    "kaplan_nd": ("alpha_N", "alpha_D", "N_c", "D_c"),
}
# LaTeX of the parameters in fit.tex (other names are escaped).
TEX_NAMES = {
    k: TeX(v)
    for k, v in {
        "alpha": r"$\alpha$",
        "beta": r"$\beta$",
        "alpha_N": r"$\alpha_N$",
        "alpha_D": r"$\alpha_D$",
        "N_c": r"$N_c$",
        "D_c": r"$D_c$",
        "x_c": r"$x_c$",
        "n_coef": r"$N_\mathrm{opt}$ coef.",
        "d_coef": r"$D_\mathrm{opt}$ coef.",
    }.items()
}
HOLDOUT_FLAGS = {"holdout_above": "--holdout-above", "holdout_frac": "--holdout-frac"}


# --- input ----------------------------------------------------------------------------------------


def _read_table(path: Path):
    import pandas as pd

    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as e:  # unreadable file: one line, exit code 2
        problem = f"cannot read {path}: {e}".splitlines()[0]
        raise ConfigError("INPUT", problem, "check the file") from None


def _load(path: Path, approach: str, laws: tuple[str, ...]) -> dict:
    """{"runs": table of final results, "curves": training-curve table, "paths": {...}} (the
    tables that the approach needs; a file serves as both)."""
    if not path.exists():
        raise ConfigError(
            "INPUT", f"{path} does not exist", "give a sweep directory, .csv or .parquet"
        )
    if path.is_file():
        if path.suffix not in (".csv", ".parquet"):
            raise ConfigError(
                "INPUT", f"unknown file type {path.suffix!r}", "give .csv or .parquet"
            )
        t = _read_table(path)
        return {"runs": t, "curves": t, "paths": {"runs": str(path), "curves": str(path)}}
    out = {"runs": None, "curves": None, "paths": {}}
    if approach != "envelope" and (approach != "kaplan" or set(laws) - {"c"}):
        found = [path / n for n in ("results.parquet", "results.csv") if (path / n).exists()]
        if not found:
            raise ConfigError(
                "INPUT", f"no results.parquet or results.csv in {path}", "run `scaling sweep` first"
            )
        out["runs"], out["paths"]["runs"] = _read_table(found[0]), str(found[0])
    if approach == "envelope" or (approach == "kaplan" and "c" in laws):
        if not (path / "curves.csv").exists():
            raise ConfigError("INPUT", f"no curves.csv in {path}", "run `scaling sweep` first")
        out["curves"] = _read_table(path / "curves.csv")
        out["paths"]["curves"] = str(path / "curves.csv")
    return out


def _final_rows(table):
    """One row per run for this project's results table (one row per run x eval metric)."""
    from analysis.fits.powerlaw import final_runs

    if (
        "run_id" in table.columns
        and "step" not in table.columns
        and table["run_id"].duplicated().any()
    ):
        return final_runs(table)
    return table


@contextlib.contextmanager
def _as_flag(flag: str, col: str, fix: str | None = None):
    """Re-raise analysis.inputs' errors (field 'input.COL') under the CLI's name, "--n 'COL'"."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{flag} {col!r}", e.problem, fix or e.fix) from None


def _require(table, mapping: dict[str, str | None]) -> None:
    """The mapped columns (flag -> column, None: not used) are in the table."""
    from analysis.inputs import require_columns

    for flag, col in mapping.items():
        if col is not None:
            with _as_flag(flag, col):
                require_columns(table, [col])


def _require_positive(table, mapping: dict[str, str | None]) -> None:
    """The mapped columns, except derived ones, hold finite values > 0 (log-space fits)."""
    from analysis.inputs import require_positive_finite

    fix = "drop or correct those rows (e.g. with --filter); log-space fits need values > 0"
    for flag, col in mapping.items():
        if col is not None and col not in (DERIVED_C, DERIVED_D):
            with _as_flag(flag, col, fix):
                require_positive_finite(table, [col])


def _parse_filters(items: list[str] | None) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        col, sep, value = item.partition("=")
        if not sep or not col:
            raise ConfigError("--filter", f"expected COL=VALUE, got {item!r}", "e.g. --filter a=b")
        out.append((col, value))
    return out


def _apply_filter(table, col: str, value: str):
    import numpy as np
    import pandas as pd

    _require(table, {"--filter": col})
    s = table[col]
    mask = s.astype(str) == value
    if not mask.any() and pd.api.types.is_numeric_dtype(s):
        with contextlib.suppress(ValueError):
            mask = pd.Series(np.isclose(s.to_numpy(float), float(value), rtol=1e-9), s.index)
    if not mask.any():
        known = sorted(map(str, s.unique()))
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise ConfigError(
            f"--filter {col}={value}", f"no rows with {col} = {value!r}", f"values: {shown}"
        )
    return table[mask]


def _parse_budgets(text: str | None):
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError("--budgets", f"not numbers: {text!r}", "e.g. 1e21,1e22") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(
            "--budgets", f"budgets must be finite and > 0: {text!r}", "e.g. 1e21,1e22"
        )
    return values


def _check_args(args) -> None:
    if args.n_boot < 0:
        raise ConfigError("--n-boot", f"must be >= 0, got {args.n_boot}", "e.g. --n-boot 1000")
    if not 0 < args.ci < 1:
        raise ConfigError("--ci", f"must be in (0, 1), got {args.ci}", "e.g. --ci 0.95")
    if args.drop_highest_loss < 0:
        raise ConfigError("--drop-highest-loss", "must be >= 0", "e.g. --drop-highest-loss 5")
    for flag, v in (("--min-c", args.min_c), ("--max-c", args.max_c)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ConfigError(flag, f"must be a finite C > 0, got {v}", "e.g. 1e18")
    if args.min_c is not None and args.max_c is not None and args.min_c > args.max_c:
        raise ConfigError("--min-c", f"{args.min_c:g} > --max-c {args.max_c:g}", "swap them")
    if getattr(args, "holdout_above", None) is not None and args.holdout_frac is not None:
        raise ConfigError(
            "--holdout-above", "given together with --holdout-frac", "choose one of the two"
        )


# --- column mapping -------------------------------------------------------------------------------


def _columns(args, table, approach: str, laws: tuple[str, ...], extrapolate: bool) -> dict:
    """Resolve --n/--d/--c/--loss/--run against the table; derive C = 6ND or D = C/(6N) where
    the approach needs a column that was not given. Returns the mapping (flag -> column)."""
    n, d, c, loss = args.n or DEFAULT_N, args.d, args.c, args.loss or DEFAULT_LOSS
    if c is None and d is None:
        c = DEFAULT_C
    cols = {"--n": n, "--loss": loss, "--c": c, "--d": d}
    if approach == "envelope":
        run = args.run or (DEFAULT_RUN if DEFAULT_RUN in table.columns else None)
        cols["--run"] = run  # None: one run per model size (see --help)
    # Kaplan's one-variable laws need N only to derive C = 6ND or D = C/(6N).
    needs_n = (
        approach != "kaplan"
        or extrapolate
        or bool({"n", "nd"} & set(laws))
        or ("c" in laws and c is None)
        or ("d" in laws and d is None)
    )
    if not needs_n:
        cols["--n"] = None
    _require(table, cols)
    if approach == "isoflop" and c is None:
        raise ConfigError(
            "--c", "IsoFLOP profiles need the compute-budget column", "pass --c COL (the budget)"
        )
    return cols


def _derive(table, cols: dict, need_c: bool, need_d: bool):
    """Add C = 6 N D or D = C / (6 N) when needed and not mapped; returns (table, cols)."""
    table = table.copy()
    cols = dict(cols)
    if need_c and cols["--c"] is None:
        table[DERIVED_C] = 6.0 * table[cols["--n"]].astype(float) * table[cols["--d"]].astype(float)
        cols["C"] = DERIVED_C
    else:
        cols["C"] = cols["--c"]
    if need_d and cols["--d"] is None:
        n = table[cols["--n"]].astype(float)
        table[DERIVED_D] = table[cols["--c"]].astype(float) / (6.0 * n)
        cols["D"] = DERIVED_D
    else:
        cols["D"] = cols["--d"]
    return table, cols


# --- selection ------------------------------------------------------------------------------------


def _groups(table, group: str | None):
    """[(key, {col: value}, sub-table)]; key '' without --group, else 'col=value, ...'."""
    if not group:
        return [("", {}, table)]
    gcols = [g.strip() for g in group.split(",") if g.strip()]
    for g in gcols:
        _require(table, {"--group": g})
    out = []
    for vals, sub in table.groupby(gcols, sort=True, dropna=False):
        vals = vals if isinstance(vals, tuple) else (vals,)
        key = ", ".join(f"{c}={v}" for c, v in zip(gcols, vals))
        out.append((key, dict(zip(gcols, vals)), sub))
    return out


def _select_c(table, c_col: str | None, args):
    import pandas as pd

    if args.min_c is None and args.max_c is None:
        return table
    if c_col is None:
        raise ConfigError("--min-c", "no compute column to select on", "pass --c COL or --d COL")
    c = pd.to_numeric(table[c_col], errors="coerce")
    keep = pd.Series(True, index=table.index)
    if args.min_c is not None:
        keep &= c >= args.min_c
    if args.max_c is not None:
        keep &= c <= args.max_c
    return table[keep]


def _drop_highest(table, loss_col: str, k: int):
    import pandas as pd

    if k <= 0:
        return table, []
    order = pd.to_numeric(table[loss_col], errors="coerce").sort_values(ascending=False)
    dropped = list(order.index[:k])
    return table.drop(index=dropped), dropped


def _validate_group(sub, cols: dict, approach: str, laws, key: str) -> None:
    where = f" in group {key}" if key else ""
    flags = {f: cols[f] for f in ("--n", "--d", "--c", "--loss") if cols.get(f)}
    _require_positive(sub, flags)
    n_params = (
        max(KAPLAN_N_PARAMS[law] for law in laws) if approach == "kaplan" else N_PARAMS[approach]
    )
    if len(sub) < n_params + 1:
        raise ConfigError(
            "INPUT",
            f"{len(sub)} point(s){where} after selection is too few for the {approach} fit "
            f"({n_params} parameters; needs >= {n_params + 1})",
            "add runs or loosen the selection (--filter, --min-c, --max-c, --drop-highest-loss)",
        )
    if cols.get("--n") and sub[cols["--n"]].nunique() < 2:
        raise ConfigError(
            f"--n {cols['--n']!r}",
            f"a single model size ({sub[cols['--n']].iloc[0]}){where}: the {approach} fit needs "
            "several",
            "train runs of at least 3 model sizes, or map --n to the parameter-count column",
        )


# --- fits -----------------------------------------------------------------------------------------


def _budget_grid(C, budgets):
    import numpy as np

    if budgets:
        return np.asarray(budgets, float)
    return np.geomspace(float(np.min(C)), 100.0 * float(np.max(C)), 40)


def _slug(key_values: dict) -> str:
    """File-name suffix of a group: its values, e.g. '-rw_tuned_short_const_standard_val'."""
    text = "_".join(str(v) for v in key_values.values())
    return "-" + re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") if key_values else ""


def _boot(args) -> dict:
    return {"n_boot": args.n_boot, "ci": args.ci, "seed": args.seed}


def _entry(approach: str, fit, args, plots: list[Path], fit_fn=None) -> dict:
    """What cmd_fit needs of one group's fit: its record, estimates, plot files and, for the
    extrapolation check, fit_fn(table) -> a fit with predict(N, D)."""
    entry = {"fit": fit.to_dict(), "estimates": ESTIMATES[approach], "plots": plots}
    if args.budgets:
        entry["allocation"] = fit.allocation(args.budgets)
    if fit_fn is not None:
        entry["fit_fn"] = fit_fn
    return entry


def _fit_chinchilla(sub, cols, args, out: Path, suffix: str) -> dict:
    from analysis.fit_plots import plot_allocation, plot_chinchilla_loss

    def fit_fn(t):
        from analysis.fits.chinchilla import fit_chinchilla  # approach 3

        return fit_chinchilla(
            t,
            n_col=cols["--n"],
            d_col=cols["--d"],
            c_col=None if cols["--d"] else cols["--c"],
            loss_col=cols["--loss"],
            delta=args.delta,
            budgets=args.budgets,
            **_boot(args),
        )

    fit = fit_fn(sub)
    alloc = fit.allocation(_budget_grid(sub[cols["C"]].to_numpy(float), None))
    plots = [out / f"allocation{suffix}.png", out / f"loss_vs_compute{suffix}.png"]
    plot_allocation({"chinchilla": alloc}, path=plots[0])
    plot_chinchilla_loss(
        sub, fit, alloc, n_col=cols["--n"], c_col=cols["C"], loss_col=cols["--loss"], path=plots[1]
    )
    return _entry("chinchilla", fit, args, plots, fit_fn)


def _fit_isoflop(sub, cols, args, out: Path, suffix: str) -> dict:
    from analysis.fit_plots import plot_allocation, plot_isoflop
    from analysis.fits.isoflop import fit_isoflop

    fit = fit_isoflop(
        sub,
        n_col=cols["--n"],
        c_col=cols["--c"],
        loss_col=cols["--loss"],
        d_col=cols["--d"],
        method=args.method,
        resample=args.resample,
        **_boot(args),
    )
    plots = [out / f"isoflop{suffix}.png", out / f"allocation{suffix}.png"]
    plot_isoflop(fit, sub, path=plots[0])
    used = fit.budgets[fit.budgets["used"]]
    grid = _budget_grid(fit.budgets["C"], None)
    plot_allocation({"isoflop": fit.allocation(grid)}, points={"isoflop": used}, path=plots[1])
    return _entry("isoflop", fit, args, plots)


def _fit_envelope(sub, cols, args, out: Path, suffix: str) -> dict:
    from analysis.fits.envelope import fit_envelope
    from analysis.fit_plots import plot_allocation, plot_envelope

    run = cols["--run"] or cols["--n"]
    names = dict(n_col=cols["--n"], c_col=cols["C"], loss_col=cols["--loss"], group_col=run)
    fit = fit_envelope(
        sub,
        **names,
        d_col=cols["--d"],
        n_bins=args.bins,
        exclude_edge_models=not args.keep_edge_models,
        **_boot(args),
    )
    plots = [out / f"envelope{suffix}.png", out / f"allocation{suffix}.png"]
    plot_envelope(sub, fit.envelope, None, **names, path=plots[0])
    env = fit.envelope[fit.envelope["used"]]
    pts = {"C": env[cols["C"]], "n_opt": env[cols["--n"]], "d_opt": env["d"]}
    grid = _budget_grid(sub[cols["C"]][sub[cols["C"]] > 0], None)
    plot_allocation({"envelope": fit.allocation(grid)}, points={"envelope": pts}, path=plots[1])
    return _entry("envelope", fit, args, plots)


def _fit_kaplan(sub, curves, cols, args, out: Path, suffix: str) -> dict:
    from analysis.fit_plots import plot_kaplan
    from analysis.fits.kaplan import fit_kaplan_1d, fit_kaplan_compute, fit_kaplan_nd

    kw = _boot(args)
    loss = cols["--loss"]

    def fit_nd(t):
        return fit_kaplan_nd(t, n_col=cols["--n"], d_col=cols["D"], loss_col=loss, **kw)

    laws, plots = {}, []
    for law in args.laws:
        name, path = KAPLAN_NAMES[law], out / f"kaplan_{law}{suffix}.png"
        if law == "nd":
            f = fit_nd(sub)
            plot_kaplan(f, sub, n_col=cols["--n"], d_col=cols["D"], loss_col=loss, path=path)
        elif law == "c":
            frontier, f = fit_kaplan_compute(
                curves,
                cols["C"],
                loss_col=loss,
                n_bins=args.bins,
                irreducible=args.irreducible,
                **kw,
            )
            plot_kaplan(f, frontier, x_col=cols["C"], loss_col=loss, curves=curves, path=path)
        else:
            x_col = cols["--n"] if law == "n" else cols["D"]
            f = fit_kaplan_1d(
                sub, x_col, loss_col=loss, law=name, irreducible=args.irreducible, **kw
            )
            plot_kaplan(f, sub, x_col=x_col, loss_col=loss, path=path)
        laws[name] = f.to_dict()
        plots.append(path)
    entry = {"fit": {"laws": laws}, "plots": plots, "estimates": None}
    if "nd" in args.laws:
        entry["fit_fn"] = fit_nd
    return entry


# --- tables ---------------------------------------------------------------------------------------


def _estimate_rows(entry: dict, group: str) -> list[tuple]:
    """(group, law, parameter, estimate, lo, hi) rows of one group's fit."""
    rows = []
    if entry["estimates"] is None:  # kaplan: one block per law
        for name, d in entry["fit"]["laws"].items():
            keys = ESTIMATES["kaplan_nd" if name == "L(N,D)" else "kaplan_1d"]
            if name != "L(N,D)" and not d.get("irreducible"):
                keys = keys[:2]
            rows += [(group, name, k, d.get(k), *(d.get(f"{k}_ci") or (None, None))) for k in keys]
        return rows
    d = entry["fit"]
    return [
        (group, "", k, d.get(k), *(d.get(f"{k}_ci") or (None, None))) for k in entry["estimates"]
    ]


def _estimate_table(rows, header: list[str], names=None) -> tuple[list, list[list]]:
    """(header, cells) of the estimate rows; header names the group, law, parameter, estimate
    and interval columns; the group and law columns are kept only where used. names: how to
    write a parameter, where not as is."""
    used = [any(r[0] for r in rows), any(r[1] for r in rows), True, True, True]

    def pick(cells: list) -> list:
        return [c for c, u in zip(cells, used) if u]

    cells = [
        pick(
            [
                g,
                law,
                (names or {}).get(k, k),
                fmt(v, ".4g"),
                f"[{fmt(lo, '.4g')}, {fmt(hi, '.4g')}]",
            ]
        )
        for g, law, k, v, lo, hi in rows
    ]
    return pick(header), cells


def _markdown(rows, approach: str, ci: float, meta: str, allocations) -> str:
    header = ["group", "law", "parameter", "estimate", f"{ci:g} interval"]
    text = f"# {approach} fit\n\n{meta}\n\n" + markdown_table(*_estimate_table(rows, header))
    for key, table in allocations:
        cols = [c for c in table.columns if c != "approach"]
        text += f"\n## Compute-optimal allocation{f' ({key})' if key else ''}\n\n"
        text += markdown_table(
            cols, [[fmt(float(r[c]), ".4g") for c in cols] for _, r in table.iterrows()]
        )
    return text


def _latex(rows, approach: str, ci: float) -> str:
    header = ["Group", "Law", "Parameter", "Estimate", f"{ci * 100:g}% interval"]
    header, cells = _estimate_table(rows, header, TEX_NAMES)
    caption = f"{approach} fit: estimates with {ci * 100:g}% bootstrap percentile intervals."
    return latex_table(header, cells, caption, align="l" * (len(header) - 2) + "rr")


# --- command --------------------------------------------------------------------------------------


def _extrapolate(entry, sub, cols, args, out: Path, suffix: str, min_train: int):
    from analysis.extrapolation import extrapolation_check, plot_extrapolation

    res = extrapolation_check(
        sub,
        entry["fit_fn"],
        n_col=cols["--n"],
        loss_col=cols["--loss"],
        c_col=None if cols["C"] == DERIVED_C else cols["C"],
        d_col=None if cols["D"] == DERIVED_D else cols["D"],
        holdout_above=args.holdout_above,
        holdout_frac=args.holdout_frac,
        min_train=min_train,
        tolerance=args.tolerance,
        ci=args.ci,
        flag_names=HOLDOUT_FLAGS,
    )
    p = out / f"extrapolation{suffix}.png"
    plot_extrapolation(res, p)
    return res, p


def _after_step_0(curves, c_col: str):
    """Training curves without their step-0 evaluations (C = 0 carries no information)."""
    import pandas as pd

    return curves[pd.to_numeric(curves[c_col], errors="coerce") > 0]


def _envelope_curves(curves, cols: dict, filters, args):
    """Kaplan's L(C_min) on a sweep directory: the training curves (curves.csv, a table apart
    from the final results) with C derived where needed, after step 0, and selected as the
    results are (the filters on the columns it has, --min-c/--max-c)."""
    _require(curves, {"--c" if cols["--c"] else "--d": cols["--c"] or cols["--d"]})
    _require(curves, {"--loss": cols["--loss"]})
    curves, _ = _derive(curves, cols, True, False)
    curves = _after_step_0(curves, cols["C"])
    for col, value in filters:
        if col in curves.columns:
            curves = _apply_filter(curves, col, value)
    return _select_c(curves, cols["C"], args)


def _conventions(cols: dict) -> dict:
    """How C, D and N were obtained (fit.json's *_convention fields)."""
    from analysis.fits.powerlaw import CONVENTIONS

    c, d, n = cols["C"], cols["D"], cols["--n"]
    if c is None:
        flops = None
    elif c == DERIVED_C:
        flops = f"C = 6 N D from {n!r} and {cols['--d']!r} (Kaplan et al. 2020)"
    else:
        flops = CONVENTIONS.get(c, f"C = column {c!r} as given")
    if d == DERIVED_D:
        tokens = f"D = C / (6 N) from {c!r} and {n!r}"
    else:
        tokens = f"D = column {d!r}" if d else None
    params = CONVENTIONS.get(n, f"N = column {n!r}") if n else None
    return {"flop_convention": flops, "tokens_convention": tokens, "params_convention": params}


def _write_json(path: Path, doc: dict) -> None:
    from analysis.fits.powerlaw import json_safe

    path.write_text(json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n")


def _select_rows(t, filters, cols, args):
    for col, value in filters:
        t = _apply_filter(t, col, value)
    return _select_c(t, cols["C"], args)


def _group_curves(curves, key_values: dict):
    """The rows of a separate curves table that belong to a group (by the columns it has)."""
    for col, value in key_values.items():
        if col in curves.columns:
            curves = curves[curves[col].astype(str) == str(value)]
    return curves


def cmd_fit(args) -> int:
    approach = args.approach
    args.laws = tuple(dict.fromkeys(_parse_laws(args.law))) if approach == "kaplan" else ()
    args.budgets = _parse_budgets(args.budgets)
    _check_args(args)
    holdout_above = getattr(args, "holdout_above", None)
    holdout_frac = getattr(args, "holdout_frac", None)
    extrapolate = holdout_above is not None or holdout_frac is not None
    if extrapolate and approach == "kaplan" and "nd" not in args.laws:
        flag = "--holdout-above" if holdout_above is not None else "--holdout-frac"
        raise ConfigError(flag, "the check needs a law with predict(N, D)", "add nd to --law")
    filters = _parse_filters(args.filter)

    path = Path(args.input)
    tables = _load(path, approach, args.laws)
    main_key = "curves" if approach == "envelope" or tables["runs"] is None else "runs"
    table = tables[main_key]
    if main_key == "runs":
        table = _final_rows(table)
    n_input = len(table)
    cols = _columns(args, table, approach, args.laws, extrapolate)
    need_c = approach in ("chinchilla", "envelope") or extrapolate or "c" in args.laws
    need_d = (approach == "kaplan" and bool({"d", "nd"} & set(args.laws))) or extrapolate
    table, cols = _derive(table, cols, need_c, need_d)
    if main_key == "curves":
        table = _after_step_0(table, cols["C"])
    curves = None
    if approach == "kaplan" and "c" in args.laws and tables["curves"] is not tables[main_key]:
        curves = _envelope_curves(tables["curves"], cols, filters, args)

    table = _select_rows(table, filters, cols, args)
    if table.empty:
        raise ConfigError(
            "INPUT", "no rows left after the selection", "loosen --filter, --min-c, --max-c"
        )

    out = Path(args.out) if args.out else Path("reports") / f"fit-{approach}-{path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    fitters = {"chinchilla": _fit_chinchilla, "isoflop": _fit_isoflop, "envelope": _fit_envelope}
    entries, extrap, allocations, rows, files = {}, {}, [], [], []
    n_used = 0
    for key, key_values, sub in _groups(table, args.group):
        sub, dropped = _drop_highest(sub, cols["--loss"], args.drop_highest_loss)
        _validate_group(sub, cols, approach, args.laws, key)
        n_used += len(sub)
        suffix = _slug(key_values)
        if approach == "kaplan":
            cur = sub if curves is None else _group_curves(curves, key_values)
            entry = _fit_kaplan(sub, cur, cols, args, out, suffix)
        else:
            entry = fitters[approach](sub, cols, args, out, suffix)
        files += entry["plots"]
        record = {
            **entry["fit"],
            "n_points_used": int(len(sub)),
            "dropped_highest_loss": [
                {"row": _label(i), cols["--loss"]: float(table.loc[i, cols["--loss"]])}
                for i in dropped
            ],
        }
        if "allocation" in entry:
            record["allocation"] = entry["allocation"].to_dict(orient="records")
            allocations.append((key, entry["allocation"]))
        if extrapolate:
            min_train = (N_PARAMS["chinchilla"] if approach == "chinchilla" else 4) + 1
            res, p = _extrapolate(entry, sub, cols, args, out, suffix, min_train)
            extrap[key] = res
            files.append(p)
            record["extrapolation"] = {k: v for k, v in res.to_dict().items() if k != "points"}
        entries[key] = record
        rows += _estimate_rows(entry, key)

    conventions = _conventions(cols)
    c_conv = conventions["flop_convention"]
    meta = {
        "approach": approach,
        "input": tables["paths"][main_key],
        **({"curves_input": tables["paths"]["curves"]} if curves is not None else {}),
        "column_mapping": {
            "n": cols["--n"],
            "d": cols["D"],
            "c": cols["C"],
            "loss": cols["--loss"],
            **({"run": cols["--run"] or cols["--n"]} if approach == "envelope" else {}),
        },
        **conventions,
        "selection": {
            "filters": args.filter or [],
            "min_c": args.min_c,
            "max_c": args.max_c,
            "drop_highest_loss": args.drop_highest_loss,
            "one_row_per_run_id": main_key == "runs" and n_input != len(tables["runs"]),
            "n_rows_input": int(n_input),
            "n_rows_selected": int(len(table)),
        },
        "n_points_used": int(n_used),
        "cli_args": {k: v for k, v in vars(args).items() if k not in ("func", "command")},
    }
    if args.group:
        doc = {**meta, "group": args.group, "groups": entries}
    else:
        doc = {**meta, **entries[""]}
    _write_json(out / "fit.json", doc)
    summary = (
        f"{approach} fit on {n_used} of {n_input} rows of {tables['paths'][main_key]} "
        f"(N = {cols['--n']!r}, C = {cols['C']!r}, D = {cols['D']!r}, loss = {cols['--loss']!r})"
        + (f"; {c_conv}" if c_conv else "")
    )
    (out / "fit.md").write_text(_markdown(rows, approach, args.ci, summary, allocations))
    (out / "fit.tex").write_text(_latex(rows, approach, args.ci))
    files = [out / "fit.json", out / "fit.md", out / "fit.tex", *files]
    if extrapolate:
        ex = {k: v.to_dict() for k, v in extrap.items()}
        doc = {**meta, "groups": ex} if args.group else {**meta, **ex[""]}
        _write_json(out / "extrapolation.json", doc)
        files.insert(3, out / "extrapolation.json")

    print(summary)
    for g, law, k, v, lo, hi in rows:
        label = " ".join(x for x in (f"[{g}]" if g else "", law) if x)
        print(f"  {label + ' ' if label else ''}{k} = {fmt_ci(v, lo, hi, '.4g')}")
    for key, res in extrap.items():
        print(f"  extrapolation{f' [{key}]' if key else ''}: {res.verdict}")
    print(f"wrote {out}/: " + ", ".join(p.name for p in files))
    return 0


def _label(i):
    return i.item() if hasattr(i, "item") else i


def _parse_laws(text: str) -> list[str]:
    laws = [s.strip().lower() for s in text.split(",") if s.strip()]
    for law in laws:
        if law not in KAPLAN_LAWS:
            raise ConfigError("--law", f"unknown law {law!r}", f"use a comma list of {KAPLAN_LAWS}")
    if not laws:
        raise ConfigError("--law", "no law given", "e.g. --law nd,c")
    return laws


# --- parser ---------------------------------------------------------------------------------------

COMMON_HELP = """\
INPUT is a sweep directory (runs/<sweep>: final results from results.parquet or results.csv,
deduplicated to one row per run_id; training curves from curves.csv for envelope and Kaplan's
L(C_min)), or any .csv / .parquet table (used as is; a table with run_id and no step column is
deduplicated by run_id).

Columns: --n (default params_non_embedding), --loss (default loss), and the compute --c
(default flops_6n, C = 6 N D) and/or the tokens --d. Where an approach needs C and only --d is
given, C = 6 N D; where it needs D and only --c is given, D = C / (6 N) (Kaplan et al. 2020).

Point selection, in this order: --filter COL=VALUE (repeatable, all must hold; numeric
columns also match numerically, e.g. flops=1.25e16), --min-c/--max-c on C, then, within each
group, --drop-highest-loss K.

--group COL[,COL...]: fit separately for every combination of values of these columns (e.g. the
15 set-ups of Porian et al. 2024: --group dataset,hparams,warmup,decay,param_count,loss_split).
fit.json then holds one entry per group under "groups" (keyed "col=value, ..."), fit.md/fit.tex
one block per group, and every plot file gets the group as a suffix.

Outputs in --out (default reports/fit-<approach>-<input name>): fit.json (the fit's estimates
with intervals and diagnostics, the input, column mapping, FLOP convention, selection and
number of points used), fit.md (Markdown table), fit.tex (booktabs LaTeX table) and PNG plots.
Allocation plots span [min C, 100 x max C]; --budgets adds the allocation table at those C to
fit.json and fit.md. Bad input (unknown column, non-positive or non-finite N/D/C/loss, a single
model size, fewer points than parameters) is one line on stderr and exit code 2.
"""

APPROACH_HELP = {
    "chinchilla": (
        "approach 3: L(N, D) = E + A/N^alpha + B/D^beta fitted to every run",
        "Huber loss with --delta (analysis/chinchilla.py). With both --c and --d, the fit takes "
        "D from --d and C (point selection, plots, held-out split) from --c. Writes "
        "allocation.png and loss_vs_compute.png. With --holdout-above C or "
        "--holdout-frac F, also fits on the runs below the cutoff and predicts the held-out "
        "larger runs: extrapolation.json, extrapolation.png (analysis/extrapolation.py; "
        "default F = 0.2 when the check is asked for with either flag).",
    ),
    "isoflop": (
        "approach 2: IsoFLOP profiles, N_opt ∝ C^a from per-budget loss minima",
        "Groups runs by exact --c (the budget). Writes isoflop.png and allocation.png.",
    ),
    "envelope": (
        "approach 1: N_opt ∝ C^a from the loss-vs-FLOPs envelope of training curves",
        "Needs training curves (curves.csv of a sweep, or a table with one row per evaluation). "
        "--run COL names the column telling runs apart (default run_id; without it, every model "
        "size is one run). Writes envelope.png and allocation.png.",
    ),
    "kaplan": (
        "Kaplan et al. 2020 laws: L(N), L(D), L(C_min), joint L(N, D)",
        "--law picks the laws (comma list of n, d, c, nd; default nd,c). L(C_min) is fitted on "
        "the lower envelope of the training curves (curves.csv for a sweep directory, else the "
        "table itself). Writes kaplan_<law>.png. --holdout-above/--holdout-frac run the "
        "extrapolation check on the nd law.",
    ),
}


def _common(p) -> None:
    p.add_argument("input", metavar="INPUT", help="sweep directory, .csv or .parquet")
    p.add_argument("--out", help="output directory (default reports/fit-<approach>-<input>)")
    g = p.add_argument_group("columns")
    g.add_argument("--n", metavar="COL", help="model size N (default params_non_embedding)")
    g.add_argument("--d", metavar="COL", help="training tokens D")
    g.add_argument("--c", metavar="COL", help="compute C (default flops_6n when --d is not given)")
    g.add_argument("--loss", metavar="COL", help="loss (default loss)")
    s = p.add_argument_group("point selection")
    s.add_argument(
        "--filter", action="append", metavar="COL=VALUE", help="keep rows with COL = VALUE"
    )
    s.add_argument("--group", metavar="COL[,COL...]", help="fit separately per value (see above)")
    s.add_argument("--min-c", type=float, metavar="C", help="keep rows with C >= this")
    s.add_argument("--max-c", type=float, metavar="C", help="keep rows with C <= this")
    s.add_argument(
        "--drop-highest-loss",
        type=int,
        default=0,
        metavar="K",
        help="drop the K highest-loss points (per group); Epoch AI's Chinchilla replication: 5",
    )
    b = p.add_argument_group("estimation")
    b.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    b.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    b.add_argument("--ci", type=float, default=0.95, help="interval level (default 0.95)")
    b.add_argument(
        "--budgets",
        metavar="C1,C2,...",
        help="compute budgets for the allocation table (not kaplan)",
    )


def _holdout(p) -> None:
    h = p.add_argument_group("extrapolation check")
    h.add_argument(
        "--holdout-above", type=float, metavar="C", help="hold out the runs with C > this"
    )
    h.add_argument(
        "--holdout-frac",
        type=float,
        metavar="F",
        help="hold out the largest-compute fraction F of the runs, whole budgets (e.g. 0.2)",
    )
    h.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="flag the fit when a held-out loss is missed by more than this (default 0.02)",
    )


def add_parser(subparsers) -> None:
    f = subparsers.add_parser(
        "fit",
        help="fit Chinchilla approaches 1-3 or Kaplan laws to a results table or any CSV",
        description=__doc__.split("\n\n")[0],
        epilog=COMMON_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = f.add_subparsers(dest="approach", required=True, metavar="APPROACH")
    for name in APPROACHES:
        short, long = APPROACH_HELP[name]
        p = sub.add_parser(
            name,
            help=short,
            description=textwrap.fill(f"{short}. {long}", 96, break_on_hyphens=False),
            epilog=COMMON_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p)
        if name == "chinchilla":
            p.add_argument(
                "--delta", type=float, default=1e-3, help="Huber loss delta (default 1e-3)"
            )
        if name == "isoflop":
            p.add_argument("--method", choices=("parabola", "akima"), default="parabola")
            p.add_argument(
                "--resample",
                choices=("residuals", "noise", "points"),
                help="bootstrap (default: residuals for parabola, noise for akima)",
            )
        if name in ("envelope", "kaplan"):
            p.add_argument("--bins", type=int, default=20, help="log-spaced FLOP bins (default 20)")
        if name == "envelope":
            p.add_argument(
                "--run", metavar="COL", help="column telling runs apart (default run_id)"
            )
            p.add_argument(
                "--keep-edge-models",
                action="store_true",
                help="fit envelope points of the smallest/largest model too",
            )
        if name == "kaplan":
            p.add_argument("--law", default="nd,c", help="comma list of n, d, c, nd (default nd,c)")
            p.add_argument(
                "--irreducible", action="store_true", help="one-variable laws with a constant E"
            )
        if name in ("chinchilla", "kaplan"):
            _holdout(p)
        p.set_defaults(func=cmd_fit)
