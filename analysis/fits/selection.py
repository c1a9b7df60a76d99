"""Which rows a fit sees, written once for the CLI and the report.

In this order: one row per run for this project's results table (one row per run x eval
metric); --filter COL=VALUE (all must hold; numeric columns also match numerically); C within
[--min-c, --max-c]; then per --group, the --drop-highest-loss K highest losses. Approach 2 then
groups the runs into compute budgets (`group_budgets`).
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from analysis.fits.columns import require
from scaling.config import ConfigError

DEFAULT_BUDGET_TOLERANCE = 0.1


@dataclass(frozen=True)
class Selection:
    filters: list[tuple[str, str]] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    min_c: float | None = None
    max_c: float | None = None
    drop_highest_loss: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["filters"] = [f"{c}={v}" for c, v in self.filters]
        return d


def parse_filters(items) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        col, sep, value = item.partition("=")
        if not sep or not col:
            raise ConfigError("--filter", f"expected COL=VALUE, got {item!r}", "e.g. --filter a=b")
        out.append((col, value))
    return out


def parse_group(text: str | None) -> list[str]:
    return [g.strip() for g in (text or "").split(",") if g.strip()]


def final_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run for this project's results table (one row per run x eval metric; the
    run's columns repeat); any other table, such as training curves (several steps per run),
    as it is."""
    if "run_id" not in table.columns or not table["run_id"].duplicated().any():
        return table
    if "step" in table.columns and (table.groupby("run_id")["step"].nunique() > 1).any():
        return table
    return table.drop_duplicates("run_id").reset_index(drop=True)


def apply_filter(table: pd.DataFrame, col: str, value: str) -> pd.DataFrame:
    require(table, "--filter", col)
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


def select_rows(table: pd.DataFrame, c_col: str | None, sel: Selection, strict=True):
    """The filters (strict=False: only those on columns the table has) and the C range."""
    for col, value in sel.filters:
        if strict or col in table.columns:
            table = apply_filter(table, col, value)
    if sel.min_c is None and sel.max_c is None:
        return table
    if c_col is None:
        raise ConfigError("--min-c", "no compute column to select on", "pass --c COL or --d COL")
    c = pd.to_numeric(table[c_col], errors="coerce")
    keep = pd.Series(True, index=table.index)
    if sel.min_c is not None:
        keep &= c >= sel.min_c
    if sel.max_c is not None:
        keep &= c <= sel.max_c
    return table[keep]


def split_groups(table: pd.DataFrame, group: list[str]):
    """[(key, {col: value}, sub-table)]; key '' without groups, else 'col=value, ...'."""
    if not group:
        return [("", {}, table)]
    for g in group:
        require(table, "--group", g)
    out = []
    for vals, sub in table.groupby(group, sort=True, dropna=False):
        vals = vals if isinstance(vals, tuple) else (vals,)
        key = ", ".join(f"{c}={v}" for c, v in zip(group, vals))
        out.append((key, dict(zip(group, vals)), sub))
    return out


def rows_of_group(table: pd.DataFrame, key_values: dict) -> pd.DataFrame:
    """The rows of another table (training curves) in a group, by the columns it has."""
    for col, value in key_values.items():
        if col in table.columns:
            table = table[table[col].astype(str) == str(value)]
    return table


def group_suffix(key_values: dict) -> str:
    """File-name suffix of a group: its values, e.g. '-rw_tuned_short_const_standard_val'."""
    text = "_".join(str(v) for v in key_values.values())
    return "-" + re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") if key_values else ""


def drop_highest_loss(table: pd.DataFrame, loss_col: str, k: int):
    """(table without its k highest losses, the dropped index labels)."""
    if k <= 0:
        return table, []
    order = pd.to_numeric(table[loss_col], errors="coerce").sort_values(ascending=False)
    dropped = list(order.index[:k])
    return table.drop(index=dropped), dropped


def after_step_0(curves: pd.DataFrame, c_col: str) -> pd.DataFrame:
    """Training curves without their step-0 evaluations (C = 0 carries no information)."""
    return curves[pd.to_numeric(curves[c_col], errors="coerce") > 0]


def group_budgets(table, c_col: str, budget_col: str | None, tolerance: float):
    """(compute budget of every row, how the budgets were formed), for IsoFLOP profiles.

    The runs of one IsoFLOP profile share a nominal budget but not their exact FLOPs (the
    token count is rounded to whole batches, the detailed count adds attention). So: by the
    design's budget column when the table has it with a value in every row; otherwise C values
    whose sorted neighbours are within a factor (1 + tolerance) are one budget (single linkage
    in log C), and a budget whose runs span more than a factor (1 + tolerance)^2 is refused (a
    chain of close values, not a profile). A budget's C is the geometric mean of c_col over
    its runs, in the fit's FLOP convention.
    """
    logc = np.log(table[c_col].to_numpy(float))
    if budget_col in table.columns and table[budget_col].notna().all():
        keys = pd.factorize(table[budget_col])[0]
        how = f"runs grouped by the design's budget column {budget_col!r}"
    else:
        keys = _cluster_log_c(logc, tolerance)
        how = (
            f"{c_col!r} values within a factor {1 + tolerance:g} of their sorted neighbour are "
            f"one budget (--budget-tolerance {tolerance:g})"
        )
    by_budget = pd.Series(logc).groupby(keys)
    lo, hi = by_budget.transform("min").to_numpy(), by_budget.transform("max").to_numpy()
    mean_log_c = by_budget.transform("mean").to_numpy()
    c = table[c_col].to_numpy(float)  # equal FLOPs keep their exact value (no exp-log rounding)
    budget = pd.Series(np.where(lo == hi, c, np.exp(mean_log_c)), index=table.index)
    return budget, f"{how}; a budget's C is the geometric mean of {c_col!r} over its runs"


def _cluster_log_c(logc: np.ndarray, tolerance: float) -> np.ndarray:
    if not (math.isfinite(tolerance) and 0 <= tolerance < 1):
        raise ConfigError(
            "--budget-tolerance", f"must be in [0, 1), got {tolerance}", "e.g. 0.1 (±10%)"
        )
    order = np.argsort(logc, kind="stable")
    step = np.diff(logc[order]) > np.log1p(tolerance)
    sorted_keys = np.concatenate([[0], np.cumsum(step)])
    keys = np.empty(len(logc), int)
    keys[order] = sorted_keys
    for k in np.unique(keys):
        c = np.exp(logc[keys == k])
        if c.max() / c.min() > (1 + tolerance) ** 2 * (1 + 1e-12):
            raise ConfigError(
                "--budget-tolerance",
                f"runs from C = {c.min():.4g} to {c.max():.4g} chain into one budget (more "
                f"than a factor {(1 + tolerance) ** 2:.3g})",
                "lower --budget-tolerance, or give the design's budget column",
            )
    return keys
