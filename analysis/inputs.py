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
from scaling.config_io import json_type, load_json, read_input

__all__ = [
    "ConfigError",
    "json_document",
    "json_section",
    "lookalike",
    "read_table",
    "require_columns",
    "require_positive_finite",
    "require_min_rows",
]

# Names under which tables commonly carry a field of the score schema (analysis.scores) or of
# the fits' inputs: a missing field whose look-alike is present is named in the error.
ALIASES = {
    "params": ["n_params", "num_params", "nparams", "parameters", "num_parameters",
               "n_parameters", "model_num_parameters", "total_params", "params_total",
               "model_size", "size"],
    "non_embedding_params": ["non_embedding", "params_non_embedding", "nonembedding_params",
                             "n_params_non_embedding"],
    "tokens": ["n_tokens", "num_tokens", "train_tokens", "training_tokens", "tokens_seen",
               "data_size"],
    "flops": ["compute", "train_flops", "training_flops", "flop", "total_flops"],
    "random_baseline": ["baseline", "chance", "random", "chance_level", "random_chance",
                        "random_score", "low_score"],
    "n_examples": ["n", "n_samples", "num_samples", "num_examples", "sample_len", "samples",
                   "count", "n_items"],
    "stderr": ["se", "std_err", "standard_error", "sem", "stderror", "acc_stderr"],
    "value": ["score", "accuracy", "acc", "result"],
    "shots": ["k", "num_fewshot", "n_shot", "n_shots", "fewshot", "k_shot", "nshot"],
    "task": ["benchmark", "dataset", "task_name"],
    "model": ["model_name", "name", "checkpoint"],
    "metric": ["metric_name", "measure"],
    "higher_is_better": ["higher_better", "direction", "hib"],
    "subtask": ["subset", "part", "subtask_name"],
    "family": ["model_family", "series"],
}  # fmt: skip


def lookalike(name: str, columns) -> str | None:
    """A column of `columns` that looks like field `name` under another name: one of its
    ALIASES (case-insensitive), else the closest spelling (difflib); None if none."""
    columns = [str(c) for c in columns if str(c) != name]
    lower = {c.lower(): c for c in columns}
    for alias in ALIASES.get(name, []):
        if alias in lower:
            return lower[alias]
    close = difflib.get_close_matches(name, columns, n=1)
    return close[0] if close else None


def json_document(source, kind: str) -> tuple[dict, Path | None, str]:
    """(the JSON object, its path or None, the name errors give it) of a path or a dict."""
    path = None if isinstance(source, dict) else Path(source)
    where = str(path) if path else kind
    d = source if path is None else load_json(path, "INPUT")
    if not isinstance(d, dict):
        raise ConfigError(where, f"holds a JSON {json_type(d)}, not an object", f"give {kind}")
    return d, path, where


def json_section(d: dict, key, where: str, kind: type = dict):
    """d[key] when it is a JSON object (or list); absent or null is an empty one. Anything else
    is a ConfigError naming the field: the file is not what its tool writes."""
    value = d.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise ConfigError(
            f"{where}.{key}",
            f"is a JSON {json_type(value)}, not {'an object' if kind is dict else 'a list'}",
            "give the file as the harness or BIG-bench wrote it",
        )
    return value


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
            close = lookalike(str(col), df.columns)
            hint = f"did you mean {close!r}? " if close else ""
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
