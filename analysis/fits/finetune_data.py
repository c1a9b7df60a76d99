"""The fine-tuning table the fine-tuning laws read (analysis.fits.finetune), its checks, and the
bootstrap of its cell means over seeds and test items.

The table: one row per fine-tune run (x metric, in this project's results table) with
    params     the model size N (the parent's parameter count; --size picks the column, e.g.
               params_non_embedding in this project's results)
    examples   the number of fine-tuning examples D
    seed       the fine-tune's seed (runs of one cell differ by it)
    error      1 - accuracy on the task's test items, in [0, 1]
    n_items    how many test items the error was measured on
and optionally
    correct    per-item correctness: a string of 0/1 (or a list), one entry per test item in the
               task's item order, the same items for every run
    init       "pretrained" (the default) or "scratch": a model of the same size trained on the
               task alone, the baseline of the effective data transferred (Hernandez et al.)
    epochs, learning_rate_mult, task, metric: design columns; one value per fit (--filter or
               --group when a table holds several).
`finetune_rows` turns this project's results table (eval rows: task, metric, value, n_examples)
into it.

A cell is one (init, size, examples); its runs are its seeds. The bootstrap resamples both:
- items: the runs of a task are scored on one test set, so a resample draws one new test set
  for all of them. With per-item correctness, the items are resampled with replacement.
  Without, a test set of n_items items with difficulties u_i ~ U(0, 1) is drawn, item i wrong
  for a run of error p iff u_i < p: each run's error becomes #{u_i < p} / n_items, Binomial(
  n_items, p) / n_items as a binomial resample, but one draw shared by all runs (a hard item is
  hard for every run), so the uncertainty from the choice of test items moves every cell
  together, as it does on a fixed test split;
- seeds: case resampling of each cell's k runs, the deviation of the resampled mean from the
  cell's mean scaled by sqrt(k / (k - 1)): plain case resampling gives (k - 1) / k of the
  variance of a mean (half with 2 seeds); the scaling is that of modified residuals (Davison &
  Hinkley 1997, ch. 6, leverage 1 / k). A cell with one seed has no seed spread to resample.
The item noise a run's own spread already holds is counted once more (conservative). The
coverage this gives under independent and shared item noise is measured in
tests/test_analysis_finetune.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.inputs import ConfigError, require_columns

PRETRAINED, SCRATCH = "pretrained", "scratch"
DESIGN_COLS = ("epochs", "learning_rate_mult", "task", "metric")  # not the parent's learning_rate:
# a width rule gives every size its own, and each size is one line of the same fit
# Metrics that are a fraction of items right (scaling.evaluate): error = 1 - value.
FRACTION_CORRECT = ("acc", "exact_match", "acc_norm", "pass@1:greedy")
MIN_EXAMPLE_COUNTS = 3  # three parameters per size
FLAGS = {
    "size": "--size",
    "examples": "--examples",
    "error": "--error",
    "seed": "--run-seed",
    "items": "--items",
    "correct": "--correct",
    "init": "--init",
}  # the CLI's, for errors


@dataclass(frozen=True)
class FinetuneColumns:
    """The column of each field of the table (None: absent, where optional)."""

    size: str = "params"
    examples: str = "examples"
    error: str = "error"
    seed: str = "seed"
    items: str = "n_items"
    correct: str | None = "correct"
    init: str | None = "init"


def finetune_rows(results: pd.DataFrame, examples: str = "examples") -> pd.DataFrame:
    """The fine-tune rows of this project's results table (those with an `examples` count)
    whose metric is a fraction of items right, with error = 1 - value, n_items = n_examples."""
    require_columns(results, [examples, "metric", "value", "n_examples"], "results")
    rows = results[results[examples].notna() & results["metric"].isin(FRACTION_CORRECT)]
    return rows.assign(error=1.0 - rows["value"], n_items=rows["n_examples"])


def preferred_metric(rows: pd.DataFrame) -> str | None:
    """The first of FRACTION_CORRECT the rows hold (the report's choice)."""
    return next((m for m in FRACTION_CORRECT if (rows["metric"] == m).any()), None)


@dataclass
class Runs:
    """The checked runs as arrays, and their cells (one row per init, size, examples)."""

    cols: FinetuneColumns
    init: np.ndarray  # (R,) PRETRAINED or SCRATCH
    size: np.ndarray
    examples: np.ndarray
    error: np.ndarray
    n_items: np.ndarray
    cell: np.ndarray  # (R,) index into cells
    cells: pd.DataFrame  # init, size, examples, k, error (mean), lo, hi (min, max), n_items
    correct: np.ndarray | None = field(default=None, repr=False)  # (R, n) 0/1

    def of(self, init: str, size=None) -> np.ndarray:
        """Indices of the cells of an init (and size), by examples."""
        c = self.cells
        mask = (c["init"] == init) & (True if size is None else c["size"] == size)
        return np.flatnonzero(mask.to_numpy())

    def weights(self) -> np.ndarray:
        """Inverse variance of each cell mean: k / (binomial + seed variance of one run). The
        binomial part uses the error smoothed by half an item (no infinite weight at 0); the
        seed part is the pooled within-cell variance beyond it, per init, floored at 0."""
        c = self.cells
        n = c["n_items"].to_numpy(float)
        p = (c["error"].to_numpy() * n + 0.5) / (n + 1)
        binomial = p * (1 - p) / n
        seed, dof = np.zeros(len(c)), c["k"].to_numpy() - 1
        run_var = pd.Series(self.error).groupby(self.cell).var(ddof=1).to_numpy()
        for init in c["init"].unique():
            at = (c["init"] == init).to_numpy()
            ok = at & (dof > 0)
            if ok.any():
                pooled = np.sum(dof[ok] * run_var[ok]) / dof[ok].sum()
                seed[at] = max(pooled - np.mean(binomial[ok]), 0.0)
        return c["k"].to_numpy() / (binomial + seed)


def _column(table, cols: FinetuneColumns, name: str) -> str:
    col = getattr(cols, name)
    try:
        require_columns(table, [col], "input")
    except ConfigError as e:
        raise ConfigError(f"{FLAGS[name]} {col!r}", e.problem, e.fix) from None
    return col


def _numbers(table, cols, name, lo, hi, what) -> np.ndarray:
    col = _column(table, cols, name)
    v = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
    bad = ~(np.isfinite(v) & (v >= lo) & (v <= hi))
    if name in ("size", "examples", "items"):
        bad |= v <= 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"{FLAGS[name]} {col!r}",
            f"{int(bad.sum())} value(s) not {what} (first: row {table.index[i]!r} = "
            f"{table[col].iloc[i]!r})",
            "drop or correct those rows (e.g. with --filter)",
        )
    return v


def _single_design(table) -> None:
    for col in DESIGN_COLS:
        if col in table.columns and table[col].nunique(dropna=True) > 1:
            values = ", ".join(map(str, sorted(table[col].dropna().unique(), key=str)[:6]))
            raise ConfigError(
                f"input.{col}",
                f"the rows hold several {col} values ({values})",
                f"fit one at a time: --group {col} or --filter {col}=VALUE",
            )


def _correct(table, cols, n_items) -> np.ndarray | None:
    """(R, n) per-item correctness, or None without the column."""
    if cols.correct is None or cols.correct not in table.columns:
        return None
    as_list = lambda v: [int(ch) for ch in v] if isinstance(v, str) else [int(x) for x in v]
    try:
        rows = [as_list(v) for v in table[cols.correct]]
    except (TypeError, ValueError):
        rows = None
    lengths = {len(r) for r in rows} if rows else set()
    if not rows or lengths != {int(n_items[0])} or np.any(n_items != n_items[0]):
        raise ConfigError(
            f"--correct {cols.correct!r}",
            "per-item correctness must be 0/1 strings or lists of n_items entries, the same "
            "test items in every run",
            "fix the column, or drop it (binomial resampling from n_items then)",
        )
    correct = np.array(rows, float)
    if np.any((correct != 0) & (correct != 1)):
        raise ConfigError(f"--correct {cols.correct!r}", "entries other than 0/1", "fix them")
    return correct


def _init(table, cols) -> np.ndarray:
    if cols.init is None or cols.init not in table.columns:
        return np.full(len(table), PRETRAINED, object)
    init = table[cols.init].fillna(PRETRAINED).astype(str).to_numpy(object)
    unknown = sorted(set(init) - {PRETRAINED, SCRATCH})
    if unknown:
        raise ConfigError(
            f"--init {cols.init!r}",
            f"unknown value(s) {unknown}",
            f"use {PRETRAINED!r} or {SCRATCH!r} (from-scratch baselines)",
        )
    return init


def _cells(init, size, examples, error, n_items) -> tuple[np.ndarray, pd.DataFrame]:
    runs = pd.DataFrame(dict(init=init, size=size, examples=examples, error=error, n=n_items))
    keys = ["init", "size", "examples"]
    g = runs.groupby(keys, sort=True)
    cells = g["error"].agg(k="size", error="mean", lo="min", hi="max").reset_index()
    cells["n_items"] = g["n"].min().to_numpy()
    return g.ngroup().to_numpy(), cells


def check_sizes(cells: pd.DataFrame, cols: FinetuneColumns) -> None:
    """Every (init, size) has >= MIN_EXAMPLE_COUNTS example counts, else a one-line error."""
    counts = cells.groupby(["init", "size"])["examples"].nunique()
    few = counts[counts < MIN_EXAMPLE_COUNTS]
    if len(few):
        (init, size), n = few.index[0], int(few.iloc[0])
        raise ConfigError(
            f"{FLAGS['examples']} {cols.examples!r}",
            f"{n} example count(s) for {init} size {size:g}: error(D) = E + A D^-alpha has 3 "
            "parameters",
            f"fine-tune each size at >= {MIN_EXAMPLE_COUNTS} example counts (e.g. 16, 64, 256, "
            "1024), or drop that size with --filter",
        )


def read_runs(table: pd.DataFrame, cols: FinetuneColumns = FinetuneColumns()) -> Runs:
    """Check the table (module docstring) and return its runs and cells; ConfigError naming
    the column and the fix on bad input."""
    if table.empty:
        raise ConfigError("input", "no fine-tune rows", "give rows with an examples column")
    _single_design(table)
    size = _numbers(table, cols, "size", 0, np.inf, "finite and > 0")
    examples = _numbers(table, cols, "examples", 0, np.inf, "finite and > 0")
    error = _numbers(table, cols, "error", 0, 1, "an error in [0, 1] (1 - accuracy)")
    n_items = _numbers(table, cols, "items", 1, np.inf, "a count of test items >= 1")
    seed = table[_column(table, cols, "seed")].to_numpy()
    init = _init(table, cols)
    keys = pd.DataFrame({"i": init, "n": size, "d": examples, "s": seed})
    if keys.duplicated().any():
        i = int(np.flatnonzero(keys.duplicated().to_numpy())[0])
        raise ConfigError(
            f"{FLAGS['seed']} {cols.seed!r}",
            f"two rows for one run (size {size[i]:g}, {examples[i]:g} examples, seed {seed[i]})",
            "keep one metric per run (--filter metric=acc) or tell the runs' seeds apart",
        )
    correct = _correct(table, cols, n_items)
    if correct is not None and np.any(np.abs(1 - correct.mean(1) - error) > 1e-6):
        raise ConfigError(
            f"--correct {cols.correct!r}",
            "1 - mean(correct) differs from the error column",
            "give per-item correctness of the same runs and metric",
        )
    cell, cells = _cells(init, size, examples, error, n_items)
    if not (cells["init"] == PRETRAINED).any():
        raise ConfigError("input", "no pretrained fine-tune rows", "add fine-tunes of the zoo")
    check_sizes(cells, cols)
    return Runs(cols, init, size, examples, error, n_items, cell, cells, correct)


def _items(runs: Runs, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, R) run errors on resampled test items (module docstring)."""
    if runs.correct is not None:  # the same resampled items for every run
        n = runs.correct.shape[1]
        items = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (B, n) counts
        return 1 - items @ runs.correct.T / n
    out = np.empty((n_boot, len(runs.error)))
    for n in np.unique(runs.n_items):  # one test set of n items, item i wrong iff u_i < error
        at = np.flatnonzero(runs.n_items == n)
        order = at[np.argsort(runs.error[at], kind="stable")]
        p = runs.error[order]
        counts = rng.multinomial(int(n), np.diff(np.r_[0.0, p, 1.0]), size=n_boot)
        out[:, order] = np.cumsum(counts, axis=1)[:, : len(p)] / n  # #{u_i < p} / n
    return out


def resample_cells(runs: Runs, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_cells) cell means of resampled test items and seeds (module docstring)."""
    z = _items(runs, n_boot, rng)
    out = np.empty((n_boot, len(runs.cells)))
    for c in range(len(runs.cells)):
        zc = z[:, runs.cell == c]
        k, mean = zc.shape[1], zc.mean(axis=1)
        if k == 1:  # one seed: no seed spread to resample
            out[:, c] = mean
            continue
        drawn = (rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot) * zc).sum(axis=1) / k
        out[:, c] = mean + np.sqrt(k / (k - 1)) * (drawn - mean)
    return out
