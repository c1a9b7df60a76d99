"""Checks on the tables handed to the analysis, run before any fitting.

Every failure is a `ConfigError` (one line: field, problem, fix) so the CLI reports it with
exit code 2, the same as a bad run config.
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.config import ConfigError
from scaling.config_io import read_input

__all__ = [
    "ConfigError",
    "read_table",
    "require_columns",
    "require_positive_finite",
    "require_min_rows",
]


def read_table(path, where: str = "INPUT") -> pd.DataFrame:
    """A .parquet or CSV table; a file that is missing, unreadable, empty or not a table is a
    ConfigError naming `where` (the flag or input it came from) and the file."""
    path = Path(path)
    parquet = path.suffix == ".parquet"
    raw = read_input(path, where, text=not parquet)
    if not raw.strip():
        raise ConfigError(where, f"{path} is empty", "give a table with a header row")
    try:
        return pd.read_parquet(io.BytesIO(raw)) if parquet else pd.read_csv(io.StringIO(raw))
    except (ValueError, OSError) as e:  # pandas' and pyarrow's parse errors are ValueErrors
        problem = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise ConfigError(where, f"{path} is not a table ({problem})", "fix the file") from None


def require_columns(df: pd.DataFrame, columns, where: str = "input") -> None:
    """Every name in `columns` is a column of df, else an error listing what there is."""
    if len(df.columns) == 0:
        raise ConfigError(where, "the table has no columns", "give a table with a header row")
    for col in columns:
        if col not in df.columns:
            close = difflib.get_close_matches(str(col), map(str, df.columns), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{where}.{col}",
                f"no column {col!r}",
                f"{hint}choose one of {', '.join(map(str, df.columns))}",
            )


# Above this no column is a count of parameters, tokens or FLOPs, or a loss; below it the fits'
# products (C = 6 N D) and logs stay finite floats.
MAX_VALUE = 1e100


def require_positive_finite(df: pd.DataFrame, columns, where: str = "input") -> None:
    """Values in `columns` are finite, > 0 (log-space fits) and below MAX_VALUE, else an error
    naming a bad row."""
    for col in columns:
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        bad = ~(np.isfinite(v) & (v > 0) & (v < MAX_VALUE))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = df[col].iloc[i]
            value = value.item() if isinstance(value, np.generic) else value  # 1.0, not np.float64
            raise ConfigError(
                f"{where}.{col}",
                f"{int(bad.sum())} value(s) not finite and positive below {MAX_VALUE:.0e} "
                f"(first: row {df.index[i]!r} = {value!r})",
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
