"""Checks on the tables handed to the analysis, run before any fitting.

Every failure is a `ConfigError` (one line: field, problem, fix) so the CLI reports it with
exit code 2, the same as a bad run config.
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from scaling.config import ConfigError

__all__ = ["ConfigError", "require_columns", "require_positive_finite", "require_min_rows"]


def require_columns(df: pd.DataFrame, columns, where: str = "input") -> None:
    """Every name in `columns` is a column of df, else an error listing what there is."""
    for col in columns:
        if col not in df.columns:
            close = difflib.get_close_matches(str(col), map(str, df.columns), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{where}.{col}",
                f"no column {col!r}",
                f"{hint}choose one of {', '.join(map(str, df.columns))}",
            )


def require_positive_finite(df: pd.DataFrame, columns, where: str = "input") -> None:
    """Values in `columns` are finite and > 0 (log-space fits), else an error naming a bad row."""
    for col in columns:
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigError(
                f"{where}.{col}",
                f"{int(bad.sum())} value(s) not finite and positive "
                f"(first: row {df.index[i]!r} = {df[col].iloc[i]!r})",
                "drop or correct those rows; log-space fits need values > 0",
            )


def require_min_rows(n_rows: int, n_needed: int, what: str, where: str = "input") -> None:
    """At least `n_needed` rows (e.g. more points than fitted parameters)."""
    if n_rows < n_needed:
        raise ConfigError(
            where,
            f"{n_rows} point(s) is too few for {what} (needs >= {n_needed})",
            "add runs or loosen the point selection",
        )
