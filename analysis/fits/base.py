"""What every fit form implements, so that the CLI, the report and the hold-out check can use
any of them without knowing which it is.

A fit is built from a selected table by its registered form (analysis.fits.registry) and then
answers: its estimates with intervals, the compute-optimal allocation (the forms that give one),
predictions of the law and their bootstrap band, and a JSON-safe record that names the columns
and FLOP convention it used.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd

from analysis.fits.bootstrap import Bootstrap
from analysis.fits.columns import Columns


class Estimate(NamedTuple):
    """One fitted quantity with its bootstrap percentile interval; `law` names the law it
    belongs to where a fit holds several (Kaplan's L(N), L(D), ...), else ""."""

    value: float
    lo: float
    hi: float
    law: str = ""


class Fit(Protocol):
    def estimates(self) -> dict[str, Estimate]:
        """Reported quantities by name, each with its interval (fit.md, fit.tex, the CLI)."""

    def allocation(self, C) -> pd.DataFrame | None:
        """N_opt, D_opt (n_lo, n_hi, d_lo, d_hi) at budgets C; None for a law that gives none."""

    def predict(self, *x) -> np.ndarray:
        """The law at x: loss at (N, D) for the loss laws, N_opt at C for approaches 1 and 2."""

    def band(self, *x) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise bootstrap percentile band of predict(*x)."""

    def to_dict(self) -> dict:
        """JSON-safe record: estimates, intervals, settings, columns and FLOP convention."""


class Target(NamedTuple):
    """What the extrapolation check compares a form's predictions with: the column of the
    actual values, and the columns its predict/band take (none: N and D)."""

    column: str
    inputs: tuple[str, ...] = ()


def estimates_of(fit, names, law: str = "") -> dict[str, Estimate]:
    """Estimates of a fit that stores each quantity k as attribute k and its interval as k_ci."""
    return {k: Estimate(float(getattr(fit, k)), *getattr(fit, f"{k}_ci"), law) for k in names}


@dataclass(frozen=True)
class FitRequest:
    """What a form's fit gets besides the selected rows: the columns of each role, the form's
    own settings (its CLI flags by dest name), the bootstrap settings and, for a form that
    reads training curves beside the final results, those curves (selected the same way)."""

    columns: Columns
    options: dict
    boot: Bootstrap
    curves: pd.DataFrame | None = None


@dataclass(frozen=True)
class FitForm:
    """One registered fit form: what it needs, how it fits, what it draws, its CLI flags.

    roles(options): the column roles it reads ("n", "d", "c", "loss", "run"); tables(options):
    the tables it reads, the first one fitted ("runs": one row per run, "curves": training
    curves); n_params(options): fitted parameters (a fit needs more points than these).
    plot(fit, table, request, path_of): draws the form's figures, path_of(stem) -> file.
    holdout(options): None when the extrapolation check applies (predict gives the loss from
    (N, D), or what `target` names), else the fix to name when the check is asked for.
    target(request): for a law of something other than the loss from (N, D), what the check
    predicts and from which columns (default: the loss column, from N and D).
    plot_holdout(result, request, path): a figure of the check drawn the form's way (the law
    fitted on the cheaper runs with its band, and the held-out runs), besides the generic one.
    holdout_split(table, request): (name, values per row) to hold out the largest values of
    instead of C (the most-repeated runs), or None for C.
    load(path, options): the Tables a form reads from INPUT, for a form that reads more than
    tables (lm-evaluation-harness JSON); default analysis.fits.pipeline.load_tables.
    reads_loss: False for a form with no loss column (its fits read scores).
    resolve(table, options): for a form whose columns are not the N/D/C/loss roles (finetune:
    size, examples, error from its own flags), the rows it fits from the table as read and the
    Columns to record; the pipeline then leaves the role defaults, derivations, one-row-per-run
    and the generic group checks to the form's fit.
    """

    name: str
    summary: str
    details: str
    roles: Callable[[dict], set[str]]
    tables: Callable[[dict], tuple[str, ...]]
    n_params: Callable[[dict], int]
    fit: Callable[[pd.DataFrame, FitRequest], Fit]
    plot: Callable[[Fit, pd.DataFrame, FitRequest, Callable[[str], Path]], list[Path]]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    holdout: Callable[[dict], str | None]
    target: Callable[[FitRequest], Target] | None = None
    plot_holdout: Callable[..., None] | None = None
    holdout_split: Callable[[pd.DataFrame, FitRequest], tuple | None] | None = None
    load: Callable[[Path, dict], object] | None = None
    reads_loss: bool = True
    resolve: Callable[[pd.DataFrame, dict], tuple[pd.DataFrame, Columns]] | None = None
