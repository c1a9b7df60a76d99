"""Extrapolation check: fit a loss law on the cheaper runs, predict the held-out expensive ones.

Before spending a large budget on the strength of a fitted law, check that the law, fitted only
on runs below a compute cutoff, predicts the runs above it. `extrapolation_check` splits the
runs by compute C, calls `fit_fn(train)` (anything returning a fit with `.predict(N, D)`, e.g.
analysis.fits.chinchilla.fit_chinchilla or analysis.fits.kaplan.fit_kaplan_nd), and reports, per
held-out run: C, N, D, actual loss, predicted loss, relative error (predicted - actual) / actual
and how many decades of compute beyond the largest training run it lies; and in summary: mean
and max absolute relative error, RMSE of log loss, and, when the fit provides an interval, the
number of held-out losses outside it.

Split
-----
Held out are the runs with C > `holdout_above`, or, with `holdout_frac` F, the most expensive
runs: whole compute values are taken from the top until at least ceil(F * n) runs are held out
(runs sharing a C, e.g. one IsoFLOP budget, stay on one side). Default: F = 0.2. A fraction
rather than "the top decade of compute" because it works whatever the sweep's span: a sweep over
1-2 decades (typical of small studies) would lose half or more of its runs to a top decade,
leaving too few to constrain a 5-parameter law, while 20% keeps 80% of the runs for the fit and
still tests extrapolation beyond the largest training run. How far the check extrapolates is
reported (`decades_beyond`), so the two can be compared: a law trusted over one decade was
not tested over two.

With `split_by` = (name, values per run) the split is on those values instead of C, the rest
unchanged: e.g. the epochs of runs on repeated data, to hold out the most-repeated runs.

C is `c_col` when given, else C = 6 N D (Kaplan et al. 2020, sec. 2.1); D is `d_col` when
given, else D = C / (6 N).

Interval
--------
A fit "provides an interval" when its `band(N, D) -> (lo, hi)` (analysis.fits.base.Fit: a
pointwise bootstrap band of the law) is finite somewhere, or a `band_fn` is passed. Such a
band is the uncertainty of the *mean* law only; the prediction interval for one new run also
has run-to-run noise, so the band's half-widths in
log L are combined in quadrature with z * s, s = RMS of the training runs' log-loss residuals
and z the normal quantile of `ci`. Without a band no interval is reported (and `interval_note`
says so); the errors are still reported in units of s (`z_score`).

Target
------
By default the law predicts the loss from (N, D). A law of something else (the downstream
error of analysis.fits.downstream) names the column it predicts (`target_col`) and, where its
predict takes other columns than (N, D), those (`input_cols`: e.g. the measured loss); the
held-out split, the errors and the interval are the same. The points then carry the target
under its column name and the input columns beside C, N and D.

Verdict: `flagged` when the largest absolute relative error exceeds `tolerance` (default 0.02:
residuals of good fits on LM sweeps are ~1% of the loss or below, and seed noise of final loss
is 0.1-0.5% (Porian et al. 2024 measured sd 0.002-0.01 nats), so a 2% miss is several times the
noise; pass a different tolerance where the loss is noisier).

All failures are ConfigError (one line, field = the flag in the CLI's naming when `flag_names`
maps them): no runs above the cutoff, too few below it, or a fit that fails on the training runs.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.fits.columns import CONVENTIONS
from analysis.inputs import ConfigError, require_columns, require_positive_finite
from analysis.tables import json_safe

DEFAULT_HOLDOUT_FRAC = 0.2
DEFAULT_TOLERANCE = 0.02
POINT_COLS = ["C", "N", "D", "loss", "predicted", "rel_error", "z_score", "decades_beyond"]


@dataclass
class ExtrapolationResult:
    """Held-out runs with their predicted losses and the summary errors (see module docstring)."""

    split: str  # how the held-out runs were chosen
    holdout_above: float  # held out: C (or split_by) > holdout_above, for holdout_frac too
    holdout_frac: float | None
    n_train: int
    n_holdout: int
    c_max_train: float
    c_max_holdout: float
    decades_beyond: float  # log10(largest held-out C / largest training C)
    c_convention: str
    d_convention: str
    mean_abs_rel_error: float
    max_abs_rel_error: float
    rmse_log: float  # RMSE of log(predicted) - log(actual) over the held-out runs
    train_rmse_log: float  # s: RMS of log-loss residuals on the training runs
    has_interval: bool
    interval_note: str
    n_outside: int | None  # held-out losses outside the prediction interval
    coverage: float | None  # fraction inside
    ci: float
    tolerance: float
    flagged: bool
    verdict: str
    points: pd.DataFrame = field(repr=False)  # one row per held-out run (POINT_COLS, lo, hi)
    train: pd.DataFrame = field(repr=False)  # C, N, D, loss, predicted of the training runs
    fit: object = field(repr=False, compare=False, default=None)
    target: str = "loss"  # the column of the actual values in points and train

    def to_dict(self) -> dict:
        skip = ("points", "train", "fit")
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        d["points"] = self.points.to_dict(orient="records")
        return json_safe(d)


def _split(C: np.ndarray, holdout_above, holdout_frac, flag, name: str = "C"):
    """Boolean held-out mask and the cutoff (held out: C > cutoff); C holds the values split
    on, called `name`."""
    if holdout_above is not None:
        if not (np.isfinite(holdout_above) and holdout_above > 0):
            raise ConfigError(flag["holdout_above"], f"must be a finite {name} > 0", "e.g. 1e20")
        cutoff = float(holdout_above)
        return np.greater(C, cutoff), cutoff, f"{name} > {cutoff:.4g}"
    if not (0 < holdout_frac < 1):
        raise ConfigError(
            flag["holdout_frac"], f"must be in (0, 1), got {holdout_frac}", "e.g. 0.2"
        )
    need = math.ceil(holdout_frac * len(C))
    values, counts = np.unique(C, return_counts=True)  # ascending
    held = np.cumsum(counts[::-1])  # runs held out when the top k values go
    k = int(np.searchsorted(held, need) + 1)  # smallest k with held[k-1] >= need
    if k >= len(values):
        raise ConfigError(
            flag["holdout_frac"],
            f"holding out {holdout_frac:g} of {len(C)} runs leaves no training runs "
            f"(only {len(values)} distinct {name} value(s))",
            "lower the fraction or add cheaper runs",
        )
    cutoff = float(values[-k - 1])
    return (
        np.greater(C, cutoff),
        cutoff,
        f"largest-{'compute' if name == 'C' else name} {holdout_frac:g} of runs "
        f"({name} > {cutoff:.4g})",
    )


def extrapolation_check(
    df: pd.DataFrame,
    fit_fn: Callable[[pd.DataFrame], object],
    *,
    n_col: str = "params_non_embedding",
    loss_col: str = "loss",
    c_col: str | None = None,
    d_col: str | None = None,
    holdout_above: float | None = None,
    holdout_frac: float | None = None,
    min_train: int = 6,
    tolerance: float = DEFAULT_TOLERANCE,
    ci: float = 0.95,
    band_fn: Callable | None = None,
    flag_names: dict[str, str] | None = None,
    target_col: str | None = None,
    input_cols: tuple[str, ...] = (),
    split_by: tuple[str, np.ndarray] | None = None,
    where: str = "extrapolation",
) -> ExtrapolationResult:
    """Fit on the runs with C <= cutoff, predict those above; see the module docstring.

    df: one row per run. At least one of c_col / d_col. fit_fn receives the training rows of df
    (all columns, same index) and returns a fit (analysis.fits.base.Fit) whose predict(N, D)
    and band(N, D) give the loss and its bootstrap band. min_train: the
    fewest training runs accepted (default 6: more points than the 5 parameters of the Chinchilla
    law). band_fn(fit, N, D) -> (lo, hi) overrides the interval lookup. flag_names maps
    "holdout_above" / "holdout_frac" to the names used in errors (e.g. the CLI's flags).
    target_col, input_cols: see "Target" in the module docstring. split_by: (name, values
    per row of df) to split on instead of C.
    """
    flag = {k: f"{where}.{k}" for k in ("holdout_above", "holdout_frac")}
    flag.update(flag_names or {})
    if holdout_above is not None and holdout_frac is not None:
        raise ConfigError(
            flag["holdout_above"],
            f"given together with {flag['holdout_frac']}",
            "choose one way to pick the held-out runs",
        )
    if c_col is None and d_col is None:
        raise ConfigError(where, "neither a compute nor a token column", "pass c_col or d_col")
    target = target_col or loss_col
    cols = [n_col, target, *input_cols] + [c for c in (c_col, d_col) if c]
    require_columns(df, cols, where)
    require_positive_finite(df, cols, where)
    N = df[n_col].to_numpy(float)
    loss = df[target].to_numpy(float)
    C = df[c_col].to_numpy(float) if c_col else 6 * N * df[d_col].to_numpy(float)
    D = df[d_col].to_numpy(float) if d_col else C / (6 * N)
    c_conv = (
        CONVENTIONS.get(c_col, f"C = column {c_col!r}")
        if c_col
        else f"C = 6 N D with N = {n_col!r}, D = {d_col!r} (Kaplan et al. 2020, sec. 2.1)"
    )
    d_conv = f"D = column {d_col!r}" if d_col else f"D = C / (6 N) with C = {c_col!r}"

    frac = DEFAULT_HOLDOUT_FRAC if holdout_above is None and holdout_frac is None else holdout_frac
    on, values = split_by or ("C", C)
    values = np.asarray(values, float)
    held, cutoff, split = _split(values, holdout_above, frac, flag, on)
    chosen = flag["holdout_above"] if holdout_above is not None else flag["holdout_frac"]
    if not held.any():
        raise ConfigError(
            chosen,
            f"no runs above {on} = {cutoff:.4g} (largest {on} is {values.max():.4g})",
            f"hold out above a lower {on}, so that some runs are left to predict",
        )
    n_train = int((~held).sum())
    if n_train < min_train:
        raise ConfigError(
            chosen,
            f"{n_train} run(s) with {on} <= {cutoff:.4g} is too few to fit on "
            f"(needs >= {min_train})",
            "hold out fewer runs (raise the cutoff or lower the fraction)",
        )
    train_df = df[~held]
    try:
        fit = fit_fn(train_df)
    except ConfigError as e:
        raise ConfigError(
            chosen,
            f"the fit on the {n_train} runs with {on} <= {cutoff:.4g} failed ({e})",
            "hold out fewer runs, or check the training runs",
        ) from e

    x = tuple(df[c].to_numpy(float) for c in input_cols) if input_cols else (N, D)
    pred = np.asarray(fit.predict(*x), float)
    with np.errstate(all="ignore"):
        log_res = np.log(pred) - np.log(loss)
        s = float(np.sqrt(np.mean(log_res[~held] ** 2)))
        rel = (pred - loss) / loss
        z = log_res / s if s > 0 else np.full(len(N), np.nan)
    c_max_train = float(C[~held].max())
    name = target_col or "loss"
    inputs = {c: df[c].to_numpy(float) for c in input_cols}
    points = pd.DataFrame(
        {
            "C": C,
            "N": N,
            "D": D,
            **inputs,
            name: loss,
            "predicted": pred,
            "rel_error": rel,
            "z_score": z,
            "decades_beyond": np.log10(C / c_max_train),
        }
    )[held]

    band = band_fn(fit, N[held], D[held]) if band_fn else fit.band(*(v[held] for v in x))
    if band is not None:
        lo_b, hi_b = (np.asarray(b, float) for b in band)
        if not np.isfinite(lo_b).any():
            band = None
    zq = float(norm.ppf(0.5 + ci / 2))
    if band is not None:
        p = pred[held]
        with np.errstate(all="ignore"):
            h_lo = np.sqrt(np.log(p / lo_b).clip(0) ** 2 + (zq * s) ** 2)
            h_hi = np.sqrt(np.log(hi_b / p).clip(0) ** 2 + (zq * s) ** 2)
        points["lo"] = p * np.exp(-h_lo)
        points["hi"] = p * np.exp(h_hi)
        inside = (points[name] >= points["lo"]) & (points[name] <= points["hi"])
        points["inside"] = inside
        n_outside, coverage = int((~inside).sum()), float(inside.mean())
        note = (
            f"{ci:g} prediction interval: the fit's bootstrap band of the law combined in "
            f"quadrature (in log L) with {zq:.2f} x the training runs' log-loss RMS ({s:.3g})"
        )
    else:
        n_outside = coverage = None
        note = (
            "the fit provides no interval (no band(N, D)); errors are also given in units of "
            f"the training runs' log-loss RMS ({s:.3g}) as z_score"
        )
    points = points.sort_values("C", kind="stable")

    abs_rel = np.abs(points["rel_error"].to_numpy())
    mean_err, max_err = float(np.mean(abs_rel)), float(np.max(abs_rel))
    rmse_log = float(np.sqrt(np.mean(log_res[held] ** 2)))
    beyond = float(np.log10(C[held].max() / c_max_train))
    flagged = not (max_err <= tolerance)  # NaN predictions are flagged too
    head = (
        f"FLAGGED: max |relative error| {max_err:.1%} > tolerance {tolerance:.1%}"
        if flagged
        else f"ok: max |relative error| {max_err:.1%} <= tolerance {tolerance:.1%}"
    )
    reach = (
        f"up to {beyond:.2f} decade(s) of compute beyond the largest of {n_train} training runs"
        if on == "C"
        else f"with {on} up to {values[held].max():.4g} (training runs: up to "
        f"{values[~held].max():.4g}, {n_train} runs)"
    )
    verdict = f"{head} (mean {mean_err:.1%}) on {int(held.sum())} held-out run(s) {reach}"
    if n_outside is not None:
        verdict += f"; {n_outside} outside the {ci:g} prediction interval"
    return ExtrapolationResult(
        split=split,
        holdout_above=cutoff,
        holdout_frac=None if holdout_above is not None else frac,
        n_train=n_train,
        n_holdout=int(held.sum()),
        c_max_train=c_max_train,
        c_max_holdout=float(C[held].max()),
        decades_beyond=beyond,
        c_convention=c_conv,
        d_convention=d_conv,
        mean_abs_rel_error=mean_err,
        max_abs_rel_error=max_err,
        rmse_log=rmse_log,
        train_rmse_log=s,
        has_interval=n_outside is not None,
        interval_note=note,
        n_outside=n_outside,
        coverage=coverage,
        ci=ci,
        tolerance=tolerance,
        flagged=flagged,
        verdict=verdict,
        points=points.reset_index(drop=True),
        train=pd.DataFrame({"C": C, "N": N, "D": D, **inputs, name: loss, "predicted": pred})[
            ~held
        ].reset_index(drop=True),
        fit=fit,
        target=name,
    )


def plot_extrapolation(result: ExtrapolationResult, path=None, title: str | None = None):
    """Left: loss vs C, training runs and held-out runs (actual, predicted with interval), the
    cutoff. Right: predicted vs actual loss with the y = x line and the tolerance band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    tr, ho, y = result.train, result.points, result.target
    ax.scatter(tr["C"], tr[y], s=12, color="0.55", label=f"fitted on ({len(tr)})")
    ax.scatter(ho["C"], ho[y], s=22, color="C3", label=f"held out, actual ({len(ho)})")
    yerr = None
    if "lo" in ho:
        yerr = [(ho["predicted"] - ho["lo"]).clip(lower=0), (ho["hi"] - ho["predicted"]).clip(0)]
    ax.errorbar(
        ho["C"],
        ho["predicted"],
        yerr=yerr,
        fmt="o",
        mfc="none",
        color="C0",
        ms=6,
        capsize=2,
        label="held out, predicted" + (f" ({result.ci:g} PI)" if yerr is not None else ""),
    )
    ax.axvline(result.c_max_train, color="0.3", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("C (FLOPs)")
    ax.set_ylabel(y)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)

    lo = float(np.nanmin([ho[y].min(), ho["predicted"].min(), tr[y].min()]))
    hi = float(np.nanmax([ho[y].max(), ho["predicted"].max(), tr[y].max()]))
    line = np.array([lo * 0.98, hi * 1.02])
    bx.plot(line, line, color="0.3", lw=1)
    bx.fill_between(
        line, line * (1 - result.tolerance), line * (1 + result.tolerance), color="0.85", lw=0
    )
    bx.scatter(tr[y], tr["predicted"], s=12, color="0.55", label="fitted on")
    bx.scatter(ho[y], ho["predicted"], s=22, color="C3", label="held out")
    bx.set_xlabel(f"actual {y}")
    bx.set_ylabel(f"predicted {y}")
    bx.legend(fontsize=8)
    bx.grid(True, alpha=0.2)
    fig.suptitle(textwrap.fill(title or result.verdict, 150), fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
