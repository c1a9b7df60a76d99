"""The fit forms by name: what each needs (column roles, tables, parameters), how it fits, what
it draws and which flags it adds to `scaling fit NAME`. A new form is one new module with its
fit plus one FitForm entry in FORMS (written here, or beside its fit with its CLI glue, as
analysis.fits.data_constrained_form).
"""

from __future__ import annotations

import numpy as np

from analysis.fit_plots import (
    plot_allocation,
    plot_chinchilla_loss,
    plot_envelope,
    plot_isoflop,
    plot_kaplan,
)
from analysis.fits.base import FitForm, FitRequest, Target
from analysis.fits.chinchilla import fit_chinchilla
from analysis.fits.columns import BUDGET_COL
from analysis.fits.data_constrained_form import FORM as DATA_CONSTRAINED
from analysis.fits.downstream import ErrorFromCompute, fit_downstream_error
from analysis.fits.envelope import fit_envelope
from analysis.fits.finetune_form import FORM as FINETUNE
from analysis.fits.isoflop import METHODS, RESAMPLES, fit_isoflop
from analysis.fits.kaplan_laws import LAW_NAMES, LAW_PARAMS, LAW_ROLES, fit_kaplan_laws
from analysis.fits.observational_form import FORM as OBSERVATIONAL
from analysis.fits.overtraining import fit_overtraining
from analysis.fits.selection import DEFAULT_BUDGET_TOLERANCE
from analysis.law_plots import plot_error_vs_loss, plot_law_vs_compute
from scaling.config import ConfigError

NO_LOSS_LAW = "use chinchilla or kaplan, whose laws predict the loss"


def budget_grid(C) -> np.ndarray:
    """Budgets for allocation plots: [min C, 100 x max C], 40 log-spaced."""
    C = np.asarray(C, float)
    return np.geomspace(float(np.min(C)), 100.0 * float(np.max(C)), 40)


def _fit_chinchilla(table, r: FitRequest):
    d = r.columns.given("d")
    return fit_chinchilla(
        table, n_col=r.columns.n, d_col=d, c_col=None if d else r.columns.c,
        loss_col=r.columns.loss, delta=r.options.get("delta", 1e-3),
        budgets=r.options.get("budgets"), **r.boot.to_dict(),
    )  # fmt: skip


def _plot_chinchilla(fit, table, r: FitRequest, out):
    alloc = fit.allocation(budget_grid(table[r.columns.c]))
    paths = [out("allocation"), out("loss_vs_compute")]
    plot_allocation({"chinchilla": alloc}, path=paths[0])
    cols = r.columns
    plot_chinchilla_loss(
        table, fit, alloc, n_col=cols.n, c_col=cols.c, loss_col=cols.loss, path=paths[1]
    )
    return paths


def _chinchilla_args(p) -> None:
    p.add_argument("--delta", type=float, default=1e-3, help="Huber loss delta (default 1e-3)")


def _fit_overtraining(table, r: FitRequest):
    cols = r.columns
    return fit_overtraining(
        table, n_col=cols.n, d_col=cols.d, loss_col=cols.loss,
        delta=r.options.get("delta", 1e-3), budgets=r.options.get("budgets"), **r.boot.to_dict(),
    )  # fmt: skip


def _plot_overtraining(fit, table, r: FitRequest, out):
    cols, paths = r.columns, [out("overtraining"), out("allocation")]
    N, D = table[cols.n].to_numpy(float), table[cols.d].to_numpy(float)  # int64 6ND overflows
    plot_law_vs_compute(fit, N, D, table[cols.loss], y_label=cols.loss, path=paths[0])
    plot_allocation({"overtraining": fit.allocation(budget_grid(6 * N * D))}, path=paths[1])
    return paths


def _plot_law_holdout(result, r: FitRequest, path) -> None:
    """The law fitted on the cheaper runs against the held-out ones, along each multiplier."""
    tr = result.train
    plot_law_vs_compute(
        result.fit, tr["N"], tr["D"], tr[result.target], y_label=result.target,
        heldout=result.points, path=path,
    )  # fmt: skip


def _fit_downstream(table, r: FitRequest):
    error_law = fit_downstream_error(
        table, loss_col=r.columns.loss, error_col=r.options.get("error", "error"),
        **r.boot.to_dict(),
    )  # fmt: skip
    if not r.options.get("from_compute"):
        return error_law
    return ErrorFromCompute(_fit_overtraining(table, r), error_law)


def _downstream_target(r: FitRequest) -> Target:
    """The error, from the measured loss, or from N and D through the loss law."""
    inputs = () if r.options.get("from_compute") else (r.columns.loss,)
    return Target(r.options.get("error", "error"), inputs)


def _plot_downstream(fit, table, r: FitRequest, out):
    cols, error_col = r.columns, r.options.get("error", "error")
    paths = [out("downstream_error")]
    plot_error_vs_loss(
        getattr(fit, "error_law", fit), table[cols.loss], table[error_col],
        x_label=cols.loss, y_label=error_col, path=paths[0],
    )  # fmt: skip
    if r.options.get("from_compute"):
        paths.append(out("error_vs_compute"))
        N, D = table[cols.n].to_numpy(float), table[cols.d].to_numpy(float)
        plot_law_vs_compute(fit, N, D, table[error_col], y_label=error_col, path=paths[1])
    return paths


def _plot_downstream_holdout(result, r: FitRequest, path) -> None:
    if r.options.get("from_compute"):
        return _plot_law_holdout(result, r, path)
    tr, loss_col = result.train, r.columns.loss
    plot_error_vs_loss(
        result.fit, tr[loss_col], tr[result.target], x_label=loss_col, y_label=result.target,
        heldout=result.points, path=path,
    )  # fmt: skip


def _downstream_args(p) -> None:
    p.add_argument("--error", metavar="COL", default="error", help="top-1 error (default error)")
    p.add_argument(
        "--from-compute", action="store_true",
        help="also fit the over-training law on the same runs and predict the error from "
        "compute, Err(L(C, M)) (Gadre et al. 2024, Fig. 1): the hold-out check then predicts "
        "held-out runs from N and D alone, not from their measured loss",
    )  # fmt: skip
    _chinchilla_args(p)


def _fit_isoflop(table, r: FitRequest):
    if "c" in r.columns.derived or r.columns.c is None:
        raise ConfigError(
            "--c", "IsoFLOP profiles need the compute-budget column", "pass --c COL (the budget)"
        )
    return fit_isoflop(
        table, n_col=r.columns.n, c_col=r.columns.c, loss_col=r.columns.loss,
        d_col=r.columns.d, budget_col=BUDGET_COL,
        budget_tolerance=r.options.get("budget_tolerance", DEFAULT_BUDGET_TOLERANCE),
        method=r.options.get("method", "parabola"), resample=r.options.get("resample"),
        **r.boot.to_dict(),
    )  # fmt: skip


def _plot_isoflop(fit, table, r: FitRequest, out):
    paths = [out("isoflop"), out("allocation")]
    plot_isoflop(fit, table, path=paths[0])
    used = fit.budgets[fit.budgets["used"]]
    alloc = fit.allocation(budget_grid(fit.budgets["C"]))
    plot_allocation({"isoflop": alloc}, points={"isoflop": used}, path=paths[1])
    return paths


def _isoflop_args(p) -> None:
    p.add_argument("--method", choices=METHODS, default="parabola")
    p.add_argument(
        "--resample", choices=RESAMPLES, help="bootstrap (default: residuals/parabola, noise/akima)"
    )
    p.add_argument(
        "--budget-tolerance", type=float, default=DEFAULT_BUDGET_TOLERANCE, metavar="T",
        help=f"without a {BUDGET_COL} column, C values within a factor 1 + T of their sorted "
        f"neighbour are one budget (default {DEFAULT_BUDGET_TOLERANCE:g}: ±10%%)",
    )  # fmt: skip


def _fit_envelope(table, r: FitRequest):
    cols = r.columns
    return fit_envelope(
        table, n_col=cols.n, c_col=cols.c, loss_col=cols.loss, group_col=cols.run or cols.n,
        d_col=cols.d, n_bins=r.options.get("bins", 20),
        exclude_edge_models=not r.options.get("keep_edge_models", False), **r.boot.to_dict(),
    )  # fmt: skip


def _plot_envelope(fit, table, r: FitRequest, out):
    cols = r.columns
    names = dict(n_col=cols.n, c_col=cols.c, loss_col=cols.loss, group_col=cols.run or cols.n)
    paths = [out("envelope"), out("allocation")]
    plot_envelope(table, fit.envelope, None, **names, path=paths[0])
    env = fit.envelope[fit.envelope["used"]]
    points = {"envelope": {"C": env[cols.c], "n_opt": env[cols.n], "d_opt": env["d"]}}
    alloc = fit.allocation(budget_grid(table[cols.c]))
    plot_allocation({"envelope": alloc}, points=points, path=paths[1])
    return paths


def _bins_arg(p) -> None:
    p.add_argument("--bins", type=int, default=20, help="log-spaced FLOP bins (default 20)")


def _envelope_args(p) -> None:
    _bins_arg(p)
    p.add_argument("--run", metavar="COL", help="column telling runs apart (default run_id)")
    p.add_argument(
        "--keep-edge-models", action="store_true",
        help="fit envelope points of the smallest/largest model too",
    )  # fmt: skip


def _plot_kaplan(fit, table, r: FitRequest, out):
    cols, paths = r.columns, []
    for law, f in fit.laws.items():
        paths.append(out(f"kaplan_{law}"))
        if law == "nd":
            plot_kaplan(f, table, n_col=cols.n, d_col=cols.d, loss_col=cols.loss, path=paths[-1])
        elif law == "c":
            curves = table if r.curves is None else r.curves
            plot_kaplan(
                f, fit.frontier, x_col=cols.c, loss_col=cols.loss, curves=curves, path=paths[-1]
            )
        else:
            x_col = cols.n if law == "n" else cols.d
            plot_kaplan(f, table, x_col=x_col, loss_col=cols.loss, path=paths[-1])
    return paths


def _kaplan_args(p) -> None:
    _bins_arg(p)
    p.add_argument("--law", default="nd,c", help="comma list of n, d, c, nd (default nd,c)")
    p.add_argument("--irreducible", action="store_true", help="one-variable laws with a constant E")


def _kaplan_tables(opts) -> tuple[str, ...]:
    laws = set(opts.get("laws", ("nd", "c")))
    if laws == {"c"}:
        return ("curves",)
    return ("runs", "curves") if "c" in laws else ("runs",)


def _kaplan_roles(opts) -> set[str]:
    return set().union(*(LAW_ROLES[law] for law in opts.get("laws", ("nd", "c"))))


FORMS = {
    f.name: f
    for f in (
        FitForm(
            name="chinchilla",
            summary="approach 3: L(N, D) = E + A/N^alpha + B/D^beta fitted to every run",
            details="Huber loss with --delta (analysis/fits/chinchilla.py). With both --c and "
            "--d, the fit takes D from --d and C (point selection, plots, held-out split) from "
            "--c. Writes allocation.png and loss_vs_compute.png.",
            roles=lambda o: {"n", "d", "c", "loss"},
            tables=lambda o: ("runs",),
            n_params=lambda o: 5,
            fit=_fit_chinchilla,
            plot=_plot_chinchilla,
            add_arguments=_chinchilla_args,
            holdout=lambda o: None,
        ),
        FitForm(
            name="overtraining",
            summary="Gadre et al. 2024: L(C, M) = E + (a M^eta + b M^-eta) C^-eta, M = D / N",
            details="The loss of over-trained runs from compute C = 6 N D and token multiplier "
            "M = D / N: Chinchilla's law with alpha = beta = 2 eta, fitted as approach 3 (Huber "
            "loss with --delta on log L; analysis/fits/overtraining.py). Needs >= 2 model sizes "
            "and >= 2 multipliers. Writes overtraining.png (the law along each M) and "
            "allocation.png; with a hold-out check also overtraining_holdout.png.",
            roles=lambda o: {"n", "d", "loss"},
            tables=lambda o: ("runs",),
            n_params=lambda o: 4,
            fit=_fit_overtraining,
            plot=_plot_overtraining,
            add_arguments=_chinchilla_args,
            holdout=lambda o: None,
            plot_holdout=_plot_law_holdout,
        ),
        FitForm(
            name="downstream_error",
            summary="Gadre et al. 2024: top-1 error from loss, Err(L) = eps - k exp(-gamma L)",
            details="Least squares in the error (--error COL, 1 - accuracy; a task or an "
            "average over tasks, --group task for one fit per task) against --loss "
            "(analysis/fits/downstream.py). --from-compute chains it with the overtraining law "
            "fitted on the same runs, so that the error is predicted from C and M; the hold-out "
            "check predicts the held-out runs' error (from their measured loss, or with "
            "--from-compute from N and D). Writes downstream_error.png (with --from-compute also "
            "error_vs_compute.png) and, with a hold-out check, downstream_error_holdout.png.",
            roles=lambda o: {"loss"} | ({"n", "d"} if o.get("from_compute") else set()),
            tables=lambda o: ("runs",),
            n_params=lambda o: 7 if o.get("from_compute") else 3,
            fit=_fit_downstream,
            plot=_plot_downstream,
            add_arguments=_downstream_args,
            holdout=lambda o: None,
            target=_downstream_target,
            plot_holdout=_plot_downstream_holdout,
        ),
        DATA_CONSTRAINED,
        OBSERVATIONAL,
        FINETUNE,
        FitForm(
            name="isoflop",
            summary="approach 2: IsoFLOP profiles, N_opt ∝ C^a from per-budget loss minima",
            details=f"Runs form budgets by the design's {BUDGET_COL} column where the table "
            "has it, else by --c within --budget-tolerance. Writes isoflop.png and "
            "allocation.png.",
            roles=lambda o: {"n", "c", "loss"},
            tables=lambda o: ("runs",),
            n_params=lambda o: 2,
            fit=_fit_isoflop,
            plot=_plot_isoflop,
            add_arguments=_isoflop_args,
            holdout=lambda o: NO_LOSS_LAW,
        ),
        FitForm(
            name="envelope",
            summary="approach 1: N_opt ∝ C^a from the loss-vs-FLOPs envelope of training curves",
            details="Needs training curves (curves.csv of a sweep, or a table with one row per "
            "evaluation). --run COL names the column telling runs apart (default run_id; "
            "without it, every model size is one run). Writes envelope.png and allocation.png.",
            roles=lambda o: {"n", "c", "loss", "run"},
            tables=lambda o: ("curves",),
            n_params=lambda o: 2,
            fit=_fit_envelope,
            plot=_plot_envelope,
            add_arguments=_envelope_args,
            holdout=lambda o: NO_LOSS_LAW,
        ),
        FitForm(
            name="kaplan",
            summary="Kaplan et al. 2020 laws: L(N), L(D), L(C_min), joint L(N, D)",
            details="--law picks the laws (comma list of n, d, c, nd; default nd,c). L(C_min) "
            "is fitted on the lower envelope of the training curves (curves.csv for a sweep "
            "directory, else the table itself). Writes kaplan_<law>.png. The extrapolation "
            f"check runs on the nd law. Laws: {', '.join(LAW_NAMES.values())}.",
            roles=_kaplan_roles,
            tables=_kaplan_tables,
            n_params=lambda o: max(LAW_PARAMS[law] for law in o.get("laws", ("nd", "c"))),
            fit=fit_kaplan_laws,
            plot=_plot_kaplan,
            add_arguments=_kaplan_args,
            holdout=lambda o: None if "nd" in o.get("laws", ("nd", "c")) else "add nd to --law",
        ),
    )
}


def get_form(name: str) -> FitForm:
    """The registered fit form called `name`, else a one-line error listing them."""
    if name not in FORMS:
        raise ConfigError("fit", f"unknown fit {name!r}", f"choose one of {', '.join(FORMS)}")
    return FORMS[name]
