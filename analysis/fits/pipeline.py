"""One fit pipeline for the CLI (`scaling fit`) and the sweep report: load the tables a form
reads, resolve and derive its columns, select the rows, fit every group, and run the
extrapolation check where asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.extrapolation import ExtrapolationResult, extrapolation_check
from analysis.fits.base import Fit, FitForm, FitRequest
from analysis.fits.bootstrap import Bootstrap
from analysis.fits.columns import DERIVED_C, DERIVED_D, FLAGS, derive_columns, resolve_columns
from analysis.fits.selection import (
    Selection,
    after_step_0,
    drop_highest_loss,
    final_rows,
    rows_of_group,
    select_rows,
    split_groups,
)
from analysis.inputs import read_table
from scaling.config import ConfigError

TABLE_FILES = {"runs": ("results.parquet", "results.csv"), "curves": ("curves.csv",)}
HOLDOUT_FLAGS = {"holdout_above": "--holdout-above", "holdout_frac": "--holdout-frac"}


@dataclass(frozen=True)
class Holdout:
    """The extrapolation check: hold out C > above, or the largest-compute fraction frac (or
    the form's own split variable, FitForm.holdout_split, in place of C)."""

    above: float | None = None
    frac: float | None = None
    tolerance: float = 0.02


@dataclass
class Tables:
    """The tables a form reads (None: not read) and the file each came from."""

    runs: pd.DataFrame | None = None
    curves: pd.DataFrame | None = None
    paths: dict = field(default_factory=dict)


@dataclass
class GroupFit:
    key: str  # "" without groups, else "col=value, ..."
    values: dict
    table: pd.DataFrame  # the rows fitted
    request: FitRequest
    fit: Fit
    dropped: list[dict]
    extrapolation: ExtrapolationResult | None = None


@dataclass
class FitRun:
    """Every group's fit with what was read and selected (the meta of fit.json)."""

    form: FitForm
    groups: list[GroupFit]
    meta: dict


def load_tables(path: Path, kinds: tuple[str, ...]) -> Tables:
    """The tables of `kinds` from a sweep directory, or a .csv / .parquet file serving as all."""
    if not path.exists():
        raise ConfigError(
            "INPUT", f"{path} does not exist", "give a sweep directory, .csv or .parquet"
        )
    if not path.is_dir():
        if path.suffix not in (".csv", ".parquet"):
            raise ConfigError(
                "INPUT", f"unknown file type {path.suffix!r}", "give .csv or .parquet"
            )
        t = read_table(path)
        return Tables(t, t, {kind: str(path) for kind in kinds})
    tables = Tables()
    for kind in kinds:
        found = [path / n for n in TABLE_FILES[kind] if (path / n).exists()]
        if not found:
            names = " or ".join(TABLE_FILES[kind])
            raise ConfigError("INPUT", f"no {names} in {path}", "run `scaling sweep` first")
        setattr(tables, kind, read_table(found[0]))
        tables.paths[kind] = str(found[0])
    return tables


def _check_group(form: FitForm, sub, request: FitRequest, key: str) -> None:
    """Values > 0, more points than parameters and several model sizes, in one group."""
    cols, where = request.columns, f" in group {key}" if key else ""
    cols.require_positive(sub)
    n_params = form.n_params(request.options)
    if len(sub) < n_params + 1:
        raise ConfigError(
            "INPUT",
            f"{len(sub)} point(s){where} after selection is too few for the {form.name} fit "
            f"({n_params} parameters; needs >= {n_params + 1})",
            "add runs or loosen the selection (--filter, --min-c, --max-c, --drop-highest-loss)",
        )
    if cols.n and cols.n in sub.columns and sub[cols.n].nunique() < 2:
        raise ConfigError(
            f"--n {cols.n!r}",
            f"a single model size ({sub[cols.n].iloc[0]}){where}: the {form.name} fit needs "
            "several",
            "train runs of at least 3 model sizes, or map --n to the parameter-count column",
        )


def _extrapolate(form, sub, request: FitRequest, holdout: Holdout) -> ExtrapolationResult:
    cols = request.columns
    target = form.target(request) if form.target else None
    split = form.holdout_split(sub, request) if form.holdout_split else None
    return extrapolation_check(
        sub,
        lambda t: form.fit(t, request),
        n_col=cols.n,
        loss_col=cols.loss,
        c_col=None if cols.c == DERIVED_C else cols.c,
        d_col=None if cols.d == DERIVED_D else cols.d,
        holdout_above=holdout.above,
        holdout_frac=holdout.frac,
        min_train=form.n_params(request.options) + 1,
        tolerance=holdout.tolerance,
        ci=request.boot.ci,
        flag_names=HOLDOUT_FLAGS,
        target_col=target.column if target else None,
        input_cols=target.inputs if target else (),
        split_by=split,
    )


def _prepared(form, tables: Tables, given: dict, options: dict, holdout):
    """(main table, extra curves or None, columns, kind) after defaults and derivations."""
    kinds = form.tables(options)
    main_kind = kinds[0]
    table = getattr(tables, main_kind)
    if form.resolve is not None:  # the form's own columns, on the table as read
        table, cols = form.resolve(table, options)
        return table, None, cols, main_kind
    table = final_rows(table) if main_kind == "runs" else table
    roles = form.roles(options) | ({"n", "d", "c"} if holdout else set())
    cols = resolve_columns(table, given, roles, loss=form.reads_loss)
    table, cols = derive_columns(table, cols, roles)
    if main_kind == "curves":
        table = after_step_0(table, cols.c)
    curves = None
    if len(kinds) > 1 and tables.curves is not tables.runs:
        curves, _ = derive_columns(tables.curves, cols, {"c"})
        curves = after_step_0(curves, cols.c)
    return table, curves, cols, main_kind


def fit_table(
    form: FitForm,
    tables: Tables,
    given: dict,
    selection: Selection,
    options: dict,
    boot: Bootstrap,
    holdout: Holdout | None = None,
) -> FitRun:
    """Fit `form` to every group of the selected rows; given: role -> column from the user."""
    if holdout is not None and (fix := form.holdout(options)):
        flag = "--holdout-above" if holdout.above is not None else "--holdout-frac"
        raise ConfigError(flag, "the check needs a law with predict(N, D)", fix)
    if selection.drop_highest_loss and not form.reads_loss:
        raise ConfigError(
            "--drop-highest-loss", f"the {form.name} fit reads no loss", "drop the flag"
        )
    table, curves, cols, kind = _prepared(form, tables, given, options, holdout)
    n_input = len(table)
    table = select_rows(table, cols.c, selection)
    if curves is not None:
        for flag, col in (("--c" if cols.given("c") else "--d", cols.c), ("--loss", cols.loss)):
            if col not in curves.columns:
                raise ConfigError(f"{flag} {col!r}", "not a column of curves.csv", "check --c")
        curves = select_rows(curves, cols.c, selection, strict=False)
    if table.empty:
        raise ConfigError(
            "INPUT", "no rows left after the selection", "loosen --filter, --min-c, --max-c"
        )
    groups = []
    for key, values, sub in split_groups(table, selection.group):
        sub, dropped = drop_highest_loss(sub, cols.loss, selection.drop_highest_loss)
        group_curves = None if curves is None else rows_of_group(curves, values)
        request = FitRequest(cols, options, boot, group_curves)
        if form.resolve is None:  # a form with its own columns checks them in its fit
            _check_group(form, sub, request, key)
        dropped = [{"row": _label(i), cols.loss: float(table.loc[i, cols.loss])} for i in dropped]
        g = GroupFit(key, values, sub, request, form.fit(sub, request), dropped)
        if holdout is not None:
            g.extrapolation = _extrapolate(form, sub, request, holdout)
        groups.append(g)
    meta = {
        "approach": form.name,
        "input": tables.paths[kind],
        **({"curves_input": tables.paths["curves"]} if curves is not None else {}),
        "column_mapping": {
            **cols.mapping(),
            **({"run": cols.run or cols.n} if "run" in form.roles(options) else {}),
        },
        **cols.conventions(),
        "selection": {
            **selection.to_dict(),
            "one_row_per_run_id": kind == "runs"
            and form.resolve is None
            and n_input != len(getattr(tables, kind)),
            "n_rows_input": int(n_input),
            "n_rows_selected": int(len(table)),
        },
        "n_points_used": int(sum(len(g.table) for g in groups)),
    }
    return FitRun(form, groups, meta)


def _label(index_label):
    """An index label as plain JSON (numpy integers become int)."""
    return index_label.item() if hasattr(index_label, "item") else index_label


def given_columns(args) -> dict:
    """role -> column from parsed CLI args (--n, --d, --c, --loss, --run)."""
    return {role: getattr(args, flag[2:], None) for role, flag in FLAGS.items()}
