"""Observational scaling across model families (Ruan, Maddison & Hashimoto 2024, "Observational
Scaling Laws and the Predictability of Language Model Performance"): from many models' scores
on standard benchmarks, a few capability measures (principal components), each family's
log-linear line of them in compute (its compute efficiency), and a sigmoid link from them to a
target task; forecasts of held-out models' target scores, with intervals, and their backtest.

The law (arrays in analysis.fits.observational_law):
    S_m = PCA_K(benchmarks of m)                     capability measures, K = 3 by default
    S_m ~ theta_f log10 C_m + nu_f                    per family f (its compute efficiency)
    y_m = b + (1 - b) sigmoid(alpha + beta . S_m)    b in [0, the target's random baseline]

Missing benchmarks: a model missing more than `max_missing` of them (default: half) is left
out; the others are imputed by iterative rank-1 PCA (the paper's rule), fitted on the models
the law is fitted on.

Forecasts of a model's target score, two ways: from its benchmark scores (the paper's: its S
through the link; what its stronger benchmarks say it will score on the target), and from its
compute alone (S on its family's line, which needs >= 2 of the family's sizes in the fit).

Intervals: a case bootstrap over models, resampled within each family (so every family keeps
its size), refits imputation, PCA, link and lines; the prediction interval of a model's score
adds, in every resample, the link's extra scatter tau in eta, the scatter of S about the family
line (compute forecasts), and the binomial noise of the target's examples where counts are
known. Percentile intervals at `ci`. tau comes from leave-one-model-out residuals: with the
in-sample ones (n / (n - p) corrected), nominal 90% intervals covered 80-85% of held-out scores
on data drawn from the law itself, the bootstrap's spread of a small-sample fit at its extremes
being too narrow; out of sample, 91.5% from benchmarks and 95% from compute
(tests/test_analysis_observational.py, 200 held-out models).

A target the link predicts no better than the mean, leaving each fitted model out (R^2 <= 0:
a task at chance for every model, or one whose scores jump about), is forecast flat: the fitted
models' mean, with a bootstrap of that mean plus their spread as the interval; fit.json says so.

Backtest: hold out the strongest models (the largest of each family, those above a compute
cut-off, or the top fraction by PC1, as the paper's cut-offs on FLOPs or PC1), fit on the rest,
and report over the held-out models with a target score: how many got a forecast, the coverage
of the nominal intervals and the mean absolute error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.fits.base import Estimate
from analysis.fits.bootstrap import percentile_interval, resample_indices
from analysis.fits.observational_law import (
    Model,
    OutOfSample,
    fit_model,
    fit_pca,
    link_mean,
    out_of_sample,
)
from analysis.tables import json_safe
from scaling.config import ConfigError

LAW = "y = b + (1 - b) sigmoid(alpha + beta . S), S = PCA(benchmarks) ~ theta_f log10 C + nu_f"
HOLDOUT_KINDS = ("largest", "above", "pc1")
MIN_BOOT_SHARE = 0.5  # an interval needs this share of the resamples to give a value


@dataclass(frozen=True)
class Settings:
    n_pcs: int = 3
    standardize: bool = True
    impute_rank: int = 1
    chance: float = 0.0  # the largest floor b: the target's random baseline
    draws: int = 4  # predictive draws per bootstrap resample


@dataclass(frozen=True)
class Scores:
    """One row per model: family, x = log10 of its scale, benchmark scores X (NaN: missing),
    the target y (NaN: not evaluated) and its number of examples n (NaN: unknown)."""

    models: np.ndarray
    family: np.ndarray
    x: np.ndarray
    X: np.ndarray
    y: np.ndarray
    n: np.ndarray
    benchmarks: tuple[str, ...]
    target: str
    scale: str = "log10 C"

    def subset(self, keep) -> Scores:
        cols = ("models", "family", "x", "X", "y", "n")
        return Scores(**{c: getattr(self, c)[keep] for c in cols},
                      benchmarks=self.benchmarks, target=self.target, scale=self.scale)  # fmt: skip


def drop_incomplete(sc: Scores, max_missing: int | None) -> tuple[Scores, list[str]]:
    """(the models missing at most max_missing benchmarks (default half), the others)."""
    limit = len(sc.benchmarks) // 2 if max_missing is None else max_missing
    keep = np.isnan(sc.X).sum(axis=1) <= limit
    return sc.subset(keep), [str(m) for m in sc.models[~keep]]


def holdout_mask(sc: Scores, spec: str | None, settings: Settings) -> np.ndarray:
    """Held-out models of `spec`: largest[:K] (the K largest of every family), above:C (scale
    above C), pc1:F (the fraction F with the largest PC1 of a PCA over every model)."""
    if not spec:
        return np.zeros(len(sc.models), bool)
    kind, _, arg = spec.partition(":")
    fix = "e.g. --holdout largest, largest:2, above:1e22 or pc1:0.2"
    try:
        value = float(arg) if arg else (1.0 if kind == "largest" else math.nan)
    except ValueError:
        raise ConfigError("--holdout", f"{arg!r} is not a number", fix) from None
    if kind not in HOLDOUT_KINDS or not math.isfinite(value) or value <= 0:
        raise ConfigError("--holdout", f"cannot read {spec!r}", fix)
    if kind == "largest":
        rank = pd.Series(sc.x).groupby(sc.family).rank(method="first", ascending=False)
        return (rank <= int(value)).to_numpy()
    if kind == "above":
        return np.nan_to_num(sc.x, nan=-np.inf) > math.log10(value)
    pc1 = fit_pca(sc.X, 1, settings.standardize, settings.impute_rank).transform(sc.X)[:, 0]
    return pc1 >= np.sort(pc1)[-max(1, math.ceil(value * len(pc1)))]


def _strata(train: np.ndarray, family: np.ndarray) -> list[np.ndarray]:
    idx = np.flatnonzero(train)
    return [idx[family[idx] == f] for f in np.unique(family[idx])]


def _fit(sc: Scores, rows, s: Settings) -> Model | None:
    return fit_model(
        sc.X[rows], sc.y[rows], sc.x[rows], sc.family[rows], k=s.n_pcs,
        standardize=s.standardize, rank=s.impute_rank, chance=s.chance,
    )  # fmt: skip


def _wilson(hits: int, n: int, ci: float) -> tuple[float, float]:
    """Wilson score interval of a proportion hits / n."""
    if n == 0:
        return (math.nan, math.nan)
    z, p = norm.ppf(0.5 + ci / 2), hits / n
    mid, half = p + z**2 / (2 * n), z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return ((mid - half) / (1 + z**2 / n), (mid + half) / (1 + z**2 / n))


@dataclass
class ObservationalFit:
    """The law fitted on the `train` models of `scores`, its bootstrap refits (`boot`, None
    where a refit failed) and, with held-out models, the backtest."""

    scores: Scores
    train: np.ndarray
    settings: Settings
    full: Model
    boot: list = field(repr=False)
    boot_means: np.ndarray = field(repr=False)  # the target's mean over each resample
    loo: OutOfSample
    ci: float = 0.95
    seed: int = 0
    dropped: list = field(default_factory=list)

    @property
    def heldout(self) -> np.ndarray:
        return ~self.train

    @property
    def kind(self) -> str:
        """ "link", or "flat" where the link predicts the fitted models out of sample no better
        than their mean (R^2 <= 0): the target does not follow the capability measures, and a
        model is forecast to score as the others do."""
        return "link" if self.loo.r2 > 0 else "flat"

    def _flat(self, m: int) -> np.ndarray:
        return np.full(m, np.nanmean(self.scores.y[self.train]))

    def signs(self, m: Model) -> np.ndarray:
        """Sign of each resample component against the full fit's (for the estimates)."""
        return np.where(np.sum(m.pca.components * self.full.pca.components, axis=1) < 0, -1, 1)

    def capabilities(self, X=None) -> np.ndarray:
        return self.full.pca.transform(self.scores.X if X is None else X)

    def eta(self, X=None) -> np.ndarray:
        p = self.full.link.params
        return p[0] + self.capabilities(X) @ p[1:-1]

    def predict(self, X=None) -> np.ndarray:
        """The target from benchmark rows X (M, J) (default: every model's)."""
        S = self.capabilities(X)
        return self._flat(len(S)) if self.kind == "flat" else link_mean(self.full.link.params, S)

    def predict_from_compute(self, family, x) -> np.ndarray:
        S = self.full.lines.at(family, x)
        return self._flat(len(S)) if self.kind == "flat" else link_mean(self.full.link.params, S)

    def _spread(self, fn, k: int) -> np.ndarray:
        """(resamples x k, M) of fn(model, rng) over the refits, NaN rows where one failed."""
        rng = np.random.default_rng([self.seed, 1])
        rows = [fn(m, rng) if m is not None else None for m in self.boot]
        width = next((r.shape[-1] for r in rows if r is not None), 0)
        nan = np.full((k, width), np.nan)
        return np.vstack([nan if r is None else r.reshape(k, -1) for r in rows] or [nan])

    def _interval(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval per column, NaN where under MIN_BOOT_SHARE of rows are finite."""
        q = 50 * (1 - self.ci)
        ok = np.isfinite(values).mean(axis=0) >= MIN_BOOT_SHARE
        with np.errstate(all="ignore"):
            lo, hi = np.nanpercentile(np.where(ok, values, 0.0), [q, 100 - q], axis=0)
        return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)

    def band(self, X=None) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap band of the mean target from benchmark rows X."""
        X = self.scores.X if X is None else X
        mean = lambda m, rng: link_mean(m.link.params, m.pca.transform(X))
        return self._interval(self._spread(mean, 1))

    def _n(self) -> np.ndarray:
        """Examples of each model's target: its own count, else the median over models."""
        n = self.scores.n
        return np.where(np.isfinite(n), n, np.nanmedian(n) if np.isfinite(n).any() else np.nan)

    def prediction_interval(self, from_compute: bool = False):
        """(lo, hi) per model of the score it would measure (module docstring)."""
        sc, k, n = self.scores, self.settings.draws, self._n()
        if self.kind == "flat":  # the resampled means plus the fitted models' spread
            rng, sd = np.random.default_rng([self.seed, 1]), np.nanstd(sc.y[self.train], ddof=1)
            noise = sd * rng.standard_normal((len(self.boot_means), k, len(n)))
            return self._interval((self.boot_means[:, None, None] + noise).reshape(-1, len(n)))

        def draw(m: Model, rng):
            if not from_compute:
                return m.draws(m.pca.transform(sc.X), n, rng, k, self.loo.tau)
            if m.lines.resid_cov is None:
                return np.full((k, len(n)), np.nan)
            S = m.lines.at(sc.family, sc.x)
            return m.draws(S, n, rng, k, self.loo.tau, S_cov=m.lines.resid_cov)

        return self._interval(self._spread(draw, k))

    def backtest_points(self) -> pd.DataFrame:
        """Per held-out model with a target score: actual, both forecasts, intervals."""
        sc, held = self.scores, self.heldout & np.isfinite(self.scores.y)
        out = {"model": sc.models, "family": sc.family, sc.scale: sc.x, "actual": sc.y}
        for mode, pred, (lo, hi) in (
            ("benchmarks", self.predict(), self.prediction_interval()),
            ("compute", self.predict_from_compute(sc.family, sc.x), self.prediction_interval(True)),
        ):
            ok = np.isfinite(pred) & np.isfinite(lo)
            out |= {f"{mode}_predicted": np.where(ok, pred, np.nan), f"{mode}_lo": lo,
                    f"{mode}_hi": hi}  # fmt: skip
        return pd.DataFrame(out)[held].reset_index(drop=True)

    def backtest(self) -> dict:
        """Per forecast mode: held out, forecast, covered, coverage and MAE with intervals."""
        pts, out = self.backtest_points(), {}
        rng = np.random.default_rng([self.seed, 2])
        for mode in ("benchmarks", "compute"):
            p = pts[np.isfinite(pts[f"{mode}_predicted"])]
            hit = (p[f"{mode}_lo"] <= p["actual"]) & (p["actual"] <= p[f"{mode}_hi"])
            err = np.abs(p[f"{mode}_predicted"] - p["actual"]).to_numpy()
            idx = resample_indices(rng, len(err), len(self.boot)) if len(err) else None
            out[mode] = {
                "n_heldout": len(pts), "n_forecast": len(p), "n_covered": int(hit.sum()),
                "coverage": hit.mean() if len(p) else math.nan,
                "coverage_ci": _wilson(int(hit.sum()), len(p), self.ci),
                "mae": err.mean() if len(p) else math.nan,
                "mae_ci": percentile_interval(err[idx].mean(axis=1), self.ci) if len(p) else
                (math.nan, math.nan),
            }  # fmt: skip
        return out

    def _boot_params(self) -> dict[str, np.ndarray]:
        """Per resample (rows) each reported quantity, signs aligned with the full fit."""
        x_ref, rows = self.x_ref, []
        for m in [self.full, *self.boot]:
            if m is None:
                rows.append({})
                continue
            sg = self.signs(m)
            r = {f"PC{i + 1} variance share": v for i, v in enumerate(m.pca.explained)}
            p = m.link.params
            r |= {"alpha": p[0]}
            r |= {"floor b": p[-1]} if self.settings.chance > 0 else {}
            r |= {f"beta_{i + 1}": b * s for i, (b, s) in enumerate(zip(p[1:-1], sg))}
            for f, th in m.lines.theta.items():
                r[f"{f}|PC1 per decade"] = th[0] * sg[0]
                r[f"{f}|PC1 at 10^{x_ref:.3g}"] = (th[0] * x_ref + m.lines.nu[f][0]) * sg[0]
            rows.append(r)
        return pd.DataFrame(rows).to_dict("series")

    @property
    def x_ref(self) -> float:
        """Where the families' PC1 levels are compared: the median x of the fitted models."""
        return float(np.nanmedian(self.scores.x[self.train]))

    def estimates(self) -> dict[str, Estimate]:
        out = {}
        for name, v in self._boot_params().items():
            family, _, param = name.rpartition("|")
            law = f"family {family}" if family else ("PCA" if name.startswith("PC") else "link")
            lo, hi = percentile_interval(v.to_numpy(float)[1:], self.ci)
            out[f"{law} {param}"] = Estimate(float(v.iloc[0]), lo, hi, law)
        out["link tau"] = Estimate(self.loo.tau, *self.loo.tau_ci, "link")
        if self.heldout.any():
            for mode, b in self.backtest().items():
                law = f"backtest ({mode})"
                out[f"{law} coverage"] = Estimate(b["coverage"], *b["coverage_ci"], law)
                out[f"{law} MAE"] = Estimate(b["mae"], *b["mae_ci"], law)
        return out

    def allocation(self, C) -> None:
        """An observational law gives no compute-optimal allocation."""

    def to_dict(self) -> dict:
        sc, s, full = self.scores, self.settings, self.full
        models = pd.DataFrame(
            {"model": sc.models, "family": sc.family, sc.scale: sc.x, "heldout": self.heldout,
             sc.target: sc.y, "n_examples": sc.n}
        )  # fmt: skip
        S = self.capabilities()
        for i in range(S.shape[1]):
            models[f"PC{i + 1}"] = S[:, i]
        models["predicted"], (models["lo"], models["hi"]) = (
            self.predict(),
            self.prediction_interval(),
        )
        out = {"status": "ok", "law": LAW, "target": sc.target, "benchmarks": list(sc.benchmarks),
               "scale": sc.scale, "n_models": len(sc.models), "n_fitted": int(self.train.sum()),
               "dropped_models": self.dropped}  # fmt: skip
        out["estimates"] = {}
        for name, e in self.estimates().items():
            param = {"value": e.value, "ci": [e.lo, e.hi]}
            out["estimates"].setdefault(e.law, {})[name.removeprefix(f"{e.law} ")] = param
        out["loadings"] = {f"PC{i + 1}": dict(zip(sc.benchmarks, c))
                           for i, c in enumerate(full.pca.components)}  # fmt: skip
        failed = sum(m is None for m in self.boot)
        warnings = []
        if failed > MIN_BOOT_SHARE * len(self.boot):
            warnings.append(f"{failed}/{len(self.boot)} bootstrap refits failed: unreliable")
        if self.kind == "flat":
            warnings.append(
                f"the link predicts the fitted models out of sample no better than their mean "
                f"(leave-one-out R^2 = {self.loo.r2:.3g}): {sc.target} does not follow the "
                "capability measures; forecasts are flat (the models' mean and spread)"
            )
        out["diagnostics"] = {
            "forecast": self.kind, "loo_r2": self.loo.r2, "boot_failed": failed,
            "link_rmse": full.link.rmse, "warnings": warnings,
            "families_without_line": sorted(set(sc.family[self.train]) - set(full.lines.theta)),
        }  # fmt: skip
        if self.heldout.any():
            out["backtest"] = self.backtest()
            out["backtest"]["points"] = self.backtest_points().to_dict(orient="records")
        out["models"] = models.to_dict(orient="records")
        out["settings"] = {
            **s.__dict__, "ci": self.ci, "n_boot": len(self.boot), "seed": self.seed,
            "missing": "models missing more than half the benchmarks (or --max-missing) left "
            "out; the rest imputed by iterative rank-r PCA on the fitted models",
            "bootstrap": "models resampled with replacement within each family; each resample "
            "refits imputation, PCA, link and family lines; percentile intervals",
            "prediction interval": "bootstrap refits + link scatter tau in eta (+ scatter of S "
            "about the family line from compute) + binomial noise of the target's examples",
        }  # fmt: skip
        return json_safe(out)


def fit_observational(
    sc: Scores, heldout=None, *, settings: Settings = Settings(), n_boot: int = 1000,
    ci: float = 0.95, seed: int = 0, dropped=(),
) -> ObservationalFit:  # fmt: skip
    """The law on the models not held out, with n_boot family-stratified bootstrap refits."""
    train = np.ones(len(sc.models), bool) if heldout is None else ~np.asarray(heldout, bool)
    n_y = int(np.isfinite(sc.y[train]).sum())
    k = min(settings.n_pcs, len(sc.benchmarks), int(train.sum()) - 1)
    if k < 1 or n_y < k + 3:
        raise ConfigError(
            "--holdout" if not train.all() else "INPUT",
            f"{int(train.sum())} model(s) to fit, {n_y} with a {sc.target} score: too few for "
            f"{settings.n_pcs} PCs and the link (needs >= {settings.n_pcs + 3} scored)",
            "add models, hold out fewer, or lower --pcs",
        )
    settings = Settings(**{**settings.__dict__, "n_pcs": k})
    full = _fit(sc, np.flatnonzero(train), settings)
    if full is None:
        raise ConfigError("--target", "the sigmoid link did not converge", "check the target")
    rng, strata = np.random.default_rng(seed), _strata(train, sc.family)
    boot, means = [], []
    for _ in range(n_boot):
        rows = np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata])
        boot.append(_fit(sc, rows, settings))
        means.append(np.nanmean(sc.y[rows]))
    fit_rows = lambda rows: _fit(sc, rows, settings)  # noqa: E731
    loo = out_of_sample(fit_rows, sc.X, sc.y, sc.n, np.flatnonzero(train), n_boot, ci, seed)
    return ObservationalFit(
        sc, train, settings, full, boot, np.array(means), loo, ci, seed, list(dropped)
    )
