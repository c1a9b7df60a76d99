"""`scaling fit`: compute-optimal and loss-law fits on this project's results or on any CSV.

    scaling fit chinchilla|isoflop|envelope|kaplan|overtraining|downstream_error|data_constrained|
        observational|finetune INPUT [--out DIR]
        [--n COL] [--d COL] [--c COL] [--loss COL]
        [--filter COL=VALUE ...] [--group COL[,COL...]]
        [--min-c C] [--max-c C] [--drop-highest-loss K]
        [--n-boot B] [--seed S] [--ci P] [--budgets C1,C2,...]
    chinchilla: [--delta H] [--holdout-above C | --holdout-frac F] [--tolerance T]
    isoflop:    [--method parabola|akima] [--resample residuals|noise|points]
                [--budget-tolerance T]
    envelope:   [--run COL] [--bins K] [--keep-edge-models]
    kaplan:     [--law n,d,c,nd] [--irreducible] [--bins K]
                [--holdout-above C | --holdout-frac F] [--tolerance T]
    overtraining: [--delta H] [--holdout-above C | --holdout-frac F] [--tolerance T]
    downstream_error: [--error COL] [--from-compute] [--delta H]
                [--holdout-above C | --holdout-frac F] [--tolerance T]
    data_constrained: [--unique COL] [--max-epochs-base E] [--tie-exponents]
                [--base E,A,B,ALPHA,BETA] [--delta H] [--holdout-by compute|epochs]
                [--holdout-above X | --holdout-frac F] [--tolerance T]
    observational: --target TASK[:METRIC] [--benchmarks A,B,...] [--family COL] [--metric M]
                [--model-col COL] [--models FILE] [--pcs K] [--no-standardize]
                [--impute-rank R] [--max-missing K] [--baseline B] [--n-examples N]
                [--holdout largest[:K]|above:C|pc1:F]  (INPUT may be lm-eval JSON)
    finetune:   [--size COL] [--examples COL] [--error COL] [--run-seed COL] [--items COL]
                [--correct COL] [--init COL] [--target ERR]

A thin adapter: the fits, their registry and the pipeline are in analysis/fits.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

from scaling.config import ConfigError

COMMON_HELP = """\
INPUT is a sweep directory (runs/<sweep>: final results from results.parquet or results.csv,
deduplicated to one row per run_id; training curves from curves.csv for envelope and Kaplan's
L(C_min)), or any .csv / .parquet table (used as is; a table with run_id and one step per run
is deduplicated by run_id).

Columns: --n (default params_non_embedding), --loss (default loss), the compute --c and the
tokens --d. With neither --c nor --d, C = flops_detailed (the detailed count of Hoffmann et al.
2022, App. F: this project's default FLOP convention) and D = tokens where the table has it.
Where a fit needs C and only --d is given, C = 6 N D; where it needs D and only --c is given,
D = C / (6 N) (Kaplan et al. 2020). fit.json states the convention used.

Point selection, in this order: --filter COL=VALUE (repeatable, all must hold; numeric
columns also match numerically, e.g. flops=1.25e16), --min-c/--max-c on C, then, within each
group, --drop-highest-loss K.

--group COL[,COL...]: fit separately for every combination of values of these columns (e.g. the
15 set-ups of Porian et al. 2024: --group dataset,hparams,warmup,decay,param_count,loss_split).
fit.json then holds one entry per group under "groups" (keyed "col=value, ..."), fit.md/fit.tex
one block per group, and every plot file gets the group as a suffix.

Outputs in --out (default reports/fit-<approach>-<input name>): fit.json (the fit's estimates
with intervals and diagnostics, the input, column mapping, FLOP convention, selection and
number of points used), fit.md (Markdown table), fit.tex (booktabs LaTeX table) and PNG plots.
Allocation plots span [min C, 100 x max C]; --budgets adds the allocation table at those C to
fit.json and fit.md. With --holdout-above C or --holdout-frac F (chinchilla, kaplan's nd law,
overtraining, downstream_error, data_constrained), the fit is also done on the runs below the
cutoff and predicts the held-out larger runs (data_constrained with --holdout-by epochs: the
most-repeated runs, the cutoff on epochs): extrapolation.json, extrapolation.png, and for
overtraining, downstream_error and data_constrained <approach>_holdout.png (the law fitted on
the cheaper runs with its band, and the held-out runs; downstream_error predicts their error,
from their measured loss or, with --from-compute, from N and D). Bad input (unknown column,
non-positive or non-finite N/D/C/loss, a single model size, fewer points than parameters) is
one line on stderr and exit code 2.
"""


def _budgets(text: str | None):
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError("--budgets", f"not numbers: {text!r}", "e.g. 1e21,1e22") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(
            "--budgets", f"budgets must be finite and > 0: {text!r}", "e.g. 1e21,1e22"
        )
    return values


def _check_args(args) -> None:
    if args.n_boot < 0:
        raise ConfigError("--n-boot", f"must be >= 0, got {args.n_boot}", "e.g. --n-boot 1000")
    if not 0 < args.ci < 1:
        raise ConfigError("--ci", f"must be in (0, 1), got {args.ci}", "e.g. --ci 0.95")
    if args.drop_highest_loss < 0:
        raise ConfigError("--drop-highest-loss", "must be >= 0", "e.g. --drop-highest-loss 5")
    for flag, v in (("--min-c", args.min_c), ("--max-c", args.max_c)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ConfigError(flag, f"must be a finite C > 0, got {v}", "e.g. 1e18")
    if args.min_c is not None and args.max_c is not None and args.min_c > args.max_c:
        raise ConfigError("--min-c", f"{args.min_c:g} > --max-c {args.max_c:g}", "swap them")
    if getattr(args, "holdout_above", None) is not None and args.holdout_frac is not None:
        raise ConfigError(
            "--holdout-above", "given together with --holdout-frac", "choose one of the two"
        )


def cmd_fit(args) -> int:
    from analysis.fits import pipeline as fp
    from analysis.fits.bootstrap import Bootstrap
    from analysis.fits.kaplan_laws import parse_laws
    from analysis.fits.outputs import summary_line, write_fit_outputs
    from analysis.fits.registry import get_form
    from analysis.fits.selection import Selection, parse_filters, parse_group
    from analysis.tables import fmt_ci

    form = get_form(args.approach)
    args.budgets = _budgets(args.budgets)
    _check_args(args)
    options = {**vars(args), **({"laws": parse_laws(args.law)} if "law" in vars(args) else {})}
    above, frac = getattr(args, "holdout_above", None), getattr(args, "holdout_frac", None)
    holdout = None
    if above is not None or frac is not None:
        holdout = fp.Holdout(above, frac, args.tolerance)
    selection = Selection(
        parse_filters(args.filter), parse_group(args.group), args.min_c, args.max_c,
        args.drop_highest_loss,
    )  # fmt: skip
    path = Path(args.input)
    load = form.load or (lambda p, o: fp.load_tables(p, form.tables(o)))
    tables = load(path, options)
    run = fp.fit_table(
        form, tables, fp.given_columns(args), selection, options,
        Bootstrap(args.n_boot, args.ci, args.seed), holdout,
    )  # fmt: skip
    out = Path(args.out) if args.out else Path("reports") / f"fit-{form.name}-{path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    cli_args = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    files = write_fit_outputs(run, out, args.budgets, {"cli_args": cli_args})

    print(summary_line(run))
    for g in run.groups:
        for name, (v, lo, hi, law) in g.fit.estimates().items():
            label = " ".join(x for x in (f"[{g.key}]" if g.key else "", law) if x)
            param = name.removeprefix(f"{law} ") if law else name
            print(f"  {label + ' ' if label else ''}{param} = {fmt_ci(v, lo, hi, '.4g')}")
        if g.extrapolation is not None:
            print(f"  extrapolation{f' [{g.key}]' if g.key else ''}: {g.extrapolation.verdict}")
    print(f"wrote {out}/: " + ", ".join(p.name for p in files))
    return 0


def _common(p) -> None:
    p.add_argument("input", metavar="INPUT", help="sweep directory, .csv or .parquet")
    p.add_argument("--out", help="output directory (default reports/fit-<approach>-<input>)")
    g = p.add_argument_group("columns")
    g.add_argument("--n", metavar="COL", help="model size N (default params_non_embedding)")
    g.add_argument("--d", metavar="COL", help="training tokens D (default tokens, see below)")
    g.add_argument("--c", metavar="COL", help="compute C (default flops_detailed, see below)")
    g.add_argument("--loss", metavar="COL", help="loss (default loss)")
    s = p.add_argument_group("point selection")
    s.add_argument(
        "--filter", action="append", metavar="COL=VALUE", help="keep rows with COL=VALUE"
    )
    s.add_argument("--group", metavar="COL[,COL...]", help="fit separately per value (see below)")
    s.add_argument("--min-c", type=float, metavar="C", help="keep rows with C >= this")
    s.add_argument("--max-c", type=float, metavar="C", help="keep rows with C <= this")
    s.add_argument(
        "--drop-highest-loss", type=int, default=0, metavar="K",
        help="drop the K highest-loss points (per group); Epoch AI's Chinchilla replication: 5",
    )  # fmt: skip
    b = p.add_argument_group("estimation")
    b.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    b.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    b.add_argument("--ci", type=float, default=0.95, help="interval level (default 0.95)")
    b.add_argument("--budgets", metavar="C1,C2,...", help="budgets for the allocation table")


def _holdout(p) -> None:
    h = p.add_argument_group("extrapolation check")
    h.add_argument("--holdout-above", type=float, metavar="C", help="hold out runs with C > this")
    h.add_argument(
        "--holdout-frac", type=float, metavar="F",
        help="hold out the largest-compute fraction F of the runs, whole budgets (e.g. 0.2)",
    )  # fmt: skip
    h.add_argument(
        "--tolerance", type=float, default=0.02,
        help="flag the fit when a held-out loss is missed by more than this (default 0.02)",
    )  # fmt: skip


def add_parser(subparsers, forms: bool = True) -> None:
    """`scaling fit` and, with `forms`, one subcommand per registered fit form (importing the
    registry, and with it the fits, only then: every other command starts in 0.1 s)."""
    f = subparsers.add_parser(
        "fit", help="fit Chinchilla approaches 1-3, Kaplan's, Gadre et al.'s or Muennighoff et "
        "al.'s laws to any table",
        description=__doc__.split("\n\n")[0], epilog=COMMON_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = f.add_subparsers(dest="approach", required=True, metavar="APPROACH")
    if not forms:
        return
    from analysis.fits.registry import FORMS

    for form in FORMS.values():
        p = sub.add_parser(
            form.name, help=form.summary, epilog=COMMON_HELP,
            description=textwrap.fill(f"{form.summary}. {form.details}", 96),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        _common(p)
        form.add_arguments(p)
        if form.holdout({}) is None:
            _holdout(p)
        p.set_defaults(func=cmd_fit)
