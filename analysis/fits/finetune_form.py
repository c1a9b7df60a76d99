"""`scaling fit finetune`: the registry entry of the fine-tuning laws (analysis.fits.finetune) -
its columns, flags, figures and tables.

Its columns are not the N/D/C/loss roles of the other forms: --size (an alias of --n), --examples
(of --d) and --error (of --loss) name them, with the fine-tuning table's defaults (params, else
params_non_embedding; examples; error), and FitForm.resolve reads them. On this project's results
table (eval rows: metric, value, n_examples) the fine-tune rows of fraction-correct metrics are
taken, error = 1 - value; several metrics or tasks are fitted one at a time (--filter, --group).
"""

from __future__ import annotations

import pandas as pd

from analysis.finetune_report import plot_finetune, write_tables
from analysis.fits.base import FitForm, FitRequest
from analysis.fits.columns import Columns
from analysis.fits.finetune import fit_finetune
from analysis.fits.finetune_data import FinetuneColumns, finetune_rows, read_runs

DEFAULTS = FinetuneColumns()


def columns(options: dict, table: pd.DataFrame | None = None) -> FinetuneColumns:
    """The fine-tuning table's columns from the flags (module docstring)."""
    size = options.get("n")
    if size is None:
        size = (
            "params_non_embedding"
            if table is not None
            and DEFAULTS.size not in table
            and ("params_non_embedding" in table)
            else DEFAULTS.size
        )
    return FinetuneColumns(
        size=size,
        examples=options.get("d") or DEFAULTS.examples,
        error=options.get("loss") or DEFAULTS.error,
        seed=options.get("run_seed", DEFAULTS.seed),
        items=options.get("items", DEFAULTS.items),
        correct=options.get("correct", DEFAULTS.correct),
        init=options.get("init", DEFAULTS.init),
    )


def _resolve(table: pd.DataFrame, options: dict) -> tuple[pd.DataFrame, Columns]:
    """The fine-tune rows (this project's results: eval rows made into errors) and columns."""
    cols = columns(options, table)
    if cols.error not in table and {"metric", "value", "n_examples"} <= set(table.columns):
        table = finetune_rows(table, cols.examples).rename(columns={"error": cols.error})
    elif cols.examples in table:
        table = table[table[cols.examples].notna()]
    return table, Columns(n=cols.size, loss=cols.error, d=cols.examples)


def _fit(table, r: FitRequest):
    runs = read_runs(table, columns(r.options, table))
    return fit_finetune(runs, target=r.options.get("target"), **r.boot.to_dict())


def _plot(fit, table, r: FitRequest, out):
    """The two figures, and the tables finetune.md, .tex, .csv beside them."""
    paths = [out("error_vs_examples"), out("error_heatmap")]
    plot_finetune(fit, *paths)
    return paths + write_tables(fit, out("finetune").with_suffix(""))


def _arguments(p) -> None:
    g = p.add_argument_group("fine-tuning table")
    g.add_argument(
        "--size",
        dest="n",
        metavar="COL",
        help="model size N (default params, else params_non_embedding)",
    )
    g.add_argument(
        "--examples", dest="d", metavar="COL", help="fine-tuning examples D (default examples)"
    )
    g.add_argument(
        "--error",
        dest="loss",
        metavar="COL",
        help="1 - accuracy (default error; on this project's results 1 - value)",
    )
    g.add_argument(
        "--run-seed",
        default=DEFAULTS.seed,
        metavar="COL",
        help="the fine-tune's seed (default seed)",
    )
    g.add_argument(
        "--items",
        default=DEFAULTS.items,
        metavar="COL",
        help="test items behind each error (default n_items)",
    )
    g.add_argument(
        "--correct",
        default=DEFAULTS.correct,
        metavar="COL",
        help="per-item 0/1 correctness, if present: items resampled (default correct)",
    )
    g.add_argument(
        "--init",
        default=DEFAULTS.init,
        metavar="COL",
        help="pretrained or scratch (default init; absent: all pretrained)",
    )
    g.add_argument(
        "--target",
        type=float,
        metavar="ERR",
        help="error to reach: examples needed per size (default: the best cell's)",
    )


FORM = FitForm(
    name="finetune",
    summary="fine-tuning error vs examples per size, E + A D^-alpha; Zhang et al.'s joint law; "
    "Hernandez et al.'s effective data transferred",
    details="Per model size error(D) = E + A D^-alpha, weighted least squares on the mean "
    "error of each (size, examples) over its seeds, with the per-doubling change and the "
    "examples to reach --target; Zhang et al. 2024's A N^-alpha D^-beta + E across sizes; with "
    "from-scratch rows (--init), D_T = k D_F^alpha N^beta (Hernandez et al. 2021). Intervals: "
    "bootstrap over seeds and test items (analysis/fits/finetune.py, finetune_data.py). "
    "Writes error_vs_examples.png, error_heatmap.png and finetune.md, .tex, .csv.",
    roles=lambda o: {"n", "d", "loss"},
    tables=lambda o: ("runs",),
    n_params=lambda o: 3,
    fit=_fit,
    plot=_plot,
    add_arguments=_arguments,
    holdout=lambda o: (
        "the fine-tuning laws predict the error from examples; the hold-out check "
        "is for laws of the loss in (N, D)"
    ),
    resolve=_resolve,
)
