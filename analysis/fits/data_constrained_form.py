"""`scaling fit data_constrained`: the registry entry of the data-constrained law
(analysis.fits.data_constrained) - its columns, figures, flags and hold-out split.

The unique tokens are a column role of this form only (--unique COL, default unique_tokens, as
the project's results table names it); the epochs D / min(U, D) follow from it.
"""

from __future__ import annotations

import numpy as np

from analysis.fits.base import FitForm, FitRequest, Target
from analysis.fits.chinchilla_search import DELTA
from analysis.fits.data_constrained import fit_data_constrained, parse_base
from analysis.law_plots import plot_data_constrained

DEFAULT_UNIQUE = "unique_tokens"


def _unique(r: FitRequest) -> str:
    return r.options.get("unique", DEFAULT_UNIQUE)


def _fit(table, r: FitRequest):
    cols, o = r.columns, r.options
    return fit_data_constrained(
        table, n_col=cols.n, d_col=cols.d, unique_col=_unique(r), loss_col=cols.loss,
        delta=o.get("delta", DELTA), max_epochs_base=o.get("max_epochs_base", 1.0),
        tie=o.get("tie_exponents", False), base=parse_base(o["base"]) if o.get("base") else None,
        **r.boot.to_dict(),
    )  # fmt: skip


def _plot(fit, table, r: FitRequest, out):
    cols, paths = r.columns, [out("data_constrained")]
    runs = (table[c] for c in (cols.n, cols.d, _unique(r), cols.loss))
    plot_data_constrained(fit, *runs, y_label=cols.loss, path=paths[0])
    return paths


def _plot_holdout(result, r: FitRequest, path) -> None:
    """The law fitted on the runs kept, with the held-out runs along their epochs."""
    tr, u, y = result.train, _unique(r), result.target
    held = result.points.assign(U=result.points[u])
    plot_data_constrained(
        result.fit, tr["N"], tr["D"], tr[u], tr[y], y_label=y, heldout=held, path=path
    )


def _epochs_split(table, r: FitRequest):
    """With --holdout-by epochs, hold out the most-repeated runs: by D / min(U, D)."""
    if r.options.get("holdout_by") != "epochs":
        return None
    D, U = (table[c].to_numpy(float) for c in (r.columns.d, _unique(r)))
    return "epochs", D / np.minimum(U, D)


def _arguments(p) -> None:
    p.add_argument(
        "--unique",
        metavar="COL",
        default=DEFAULT_UNIQUE,
        help=f"unique tokens U of each run's data (default {DEFAULT_UNIQUE})",
    )
    p.add_argument(
        "--max-epochs-base",
        type=float,
        default=1.0,
        metavar="E",
        help="fit the base law to the runs of at most E epochs (default 1)",
    )
    p.add_argument(
        "--tie-exponents",
        action="store_true",
        help="alpha = beta in the base law, as the paper's fits",
    )
    p.add_argument(
        "--base",
        metavar="E,A,B,ALPHA,BETA",
        help="the base law as given instead of fitted (the paper's, from "
        "Chinchilla's C4 runs: 1.87,521,1488,0.353,0.353)",
    )
    p.add_argument(
        "--holdout-by",
        choices=("compute", "epochs"),
        default="compute",
        help="hold out the largest compute (default) or the most-repeated runs",
    )
    p.add_argument("--delta", type=float, default=DELTA, help="Huber loss delta (default 1e-3)")


FORM = FitForm(
    name="data_constrained",
    summary="Muennighoff et al. 2023: L(N, D, U), repeated data and excess parameters worth less",
    details="E + A / N'^alpha + B / D'^beta: D' = U_D (1 + R_D* (1 - exp(-R_D / R_D*))) for "
    "U_D = min(U, D) unique tokens (--unique COL) repeated R_D = D / U_D - 1 times, N' alike "
    "beyond U_N = min(N, N_opt(U_D)) (analysis/fits/data_constrained.py). The base law is "
    "fitted first (approach 3 on the runs of at most --max-epochs-base epochs, or given with "
    "--base), then R_D*, R_N* on every run; each bootstrap resample refits both. --holdout-by "
    "epochs holds out the most-repeated runs (--holdout-above/--holdout-frac on D / U_D). "
    "Writes data_constrained.png (loss along epochs with bands; effective data D' / U_D) and, "
    "with a hold-out check, data_constrained_holdout.png.",
    roles=lambda o: {"n", "d", "loss"},
    tables=lambda o: ("runs",),
    n_params=lambda o: 2 if o.get("base") else 7,
    fit=_fit,
    plot=_plot,
    add_arguments=_arguments,
    holdout=lambda o: None,
    target=lambda r: Target(r.columns.loss, (r.columns.n, r.columns.d, _unique(r))),
    plot_holdout=_plot_holdout,
    holdout_split=_epochs_split,
)
