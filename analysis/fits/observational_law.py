"""The arrays of observational scaling (Ruan, Maddison & Hashimoto 2024): one fit of the
capability measures, the sigmoid link and the families' compute lines on a set of models, and
predictive draws from it. analysis.fits.observational bootstraps these fits.

Imputation (as the paper's code, ryoungj/ObsScaling utils/data.py `pca_impute`): benchmarks
z-scored over the models that report them, missing entries started at the mean and then
replaced by their rank-r PCA reconstruction until it stops changing (r = 1 there). A model
outside the fit (held out) gets its missing entries from the fitted rank-r basis, by least
squares on the entries it has: the fixed point of the same iteration with the basis held.

Capability measures: the first K principal components of the benchmark matrix, by SVD, each
benchmark centred and (by default) scaled to unit variance over the fitted models; the paper's
code centres only (standardize=False), which weights benchmarks by their spread. Each
component's sign makes its loadings sum > 0, so PC1 grows with capability.

Link (the paper's "sigmoid-parametric", its height tied to the floor as there):
    y = b + (1 - b) sigmoid(eta),  eta = alpha + beta . S,
the floor b fitted in [0, chance] (the paper's in [0, 0.2]; here up to the target's random
baseline, as small models often score below it: ARC-Challenge, LogiQA), by least squares in y
from the logit-OLS start (scipy least_squares, Levenberg-Marquardt with the analytic Jacobian;
b = chance sigmoid(u) keeps the bounds). Models scatter around the link by more than the
target's sampling noise; that extra scatter is a normal tau in eta, estimated by moments from
residuals r_i, taken out of sample (out_of_sample: each model left out of a refit):
E r_i^2 ~ g_i^2 tau^2 + v_i, g_i = dy/deta, v_i = p_i (1 - p_i) / n_i the binomial variance,
so tau^2 = max(0, sum(r^2 - v) / sum g^2); without example counts (v = 0) tau absorbs the
sampling noise too.

Compute lines: per family, each PC is a line in x = log10 compute, S = theta_f x + nu_f (OLS
per family with >= 2 distinct x); the residual covariance of S about the lines is pooled over
the families (dof: points - 2 per family).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit

from analysis.fits.bootstrap import percentile_interval, resample_counts

IMPUTE_STEPS, IMPUTE_TOL = 500, 1e-6  # iterations and max change (in sd units) of imputation
LOGIT_CLIP = 0.02  # the logit-OLS start clips (y - b) / (1 - b) into [clip, 1 - clip]


@dataclass(frozen=True)
class Pca:
    """The imputation model (z-scores and a rank-r basis about their centre) and the K
    capability components of the completed benchmarks (centred, scaled by `scale`)."""

    z_mean: np.ndarray  # (J,) z = (X - z_mean) / z_sd
    z_sd: np.ndarray
    z_centre: np.ndarray  # (J,) of the completed z matrix
    basis: np.ndarray  # (r, J)
    centre: np.ndarray  # (J,) of the completed X
    scale: np.ndarray  # (J,) sd, or ones (centred only)
    components: np.ndarray  # (K, J)
    explained: np.ndarray  # (K,) share of the variance

    def complete(self, X) -> np.ndarray:
        """X (M, J) with each row's missing entries from the basis, by least squares on the
        entries it has (a row with none stays NaN)."""
        Z = (np.asarray(X, float) - self.z_mean) / self.z_sd
        for i in np.flatnonzero(np.isnan(Z).any(axis=1)):
            seen = ~np.isnan(Z[i])
            if seen.any():
                d = Z[i, seen] - self.z_centre[seen]
                w = np.linalg.lstsq(self.basis[:, seen].T, d, rcond=None)[0]
                Z[i, ~seen] = self.z_centre[~seen] + w @ self.basis[:, ~seen]
        return self.z_mean + Z * self.z_sd

    def transform(self, X) -> np.ndarray:
        """Capability measures S (M, K) of benchmark rows X (M, J)."""
        return (self.complete(X) - self.centre) / self.scale @ self.components.T


def _impute(Z: np.ndarray, rank: int) -> np.ndarray:
    """Iterative rank-r SVD imputation of the NaNs of a z-scored matrix (see module doc)."""
    missing = np.isnan(Z)
    Z = np.where(missing, 0.0, Z)
    if not missing.any():
        return Z
    for _ in range(IMPUTE_STEPS):
        mu = Z.mean(axis=0)
        U, s, Vt = np.linalg.svd(Z - mu, full_matrices=False)
        recon = mu + (U[:, :rank] * s[:rank]) @ Vt[:rank]
        change = np.max(np.abs(recon[missing] - Z[missing]))
        Z[missing] = recon[missing]
        if change < IMPUTE_TOL:
            break
    return Z


def _unit(sd: np.ndarray) -> np.ndarray:
    return np.where(sd > 0, sd, 1.0)  # a constant benchmark: no direction, no division by 0


def fit_pca(X, k: int, standardize: bool = True, rank: int = 1) -> Pca:
    """The imputation model and first k components of benchmark rows X (M, J), NaN missing."""
    X = np.asarray(X, float)
    z_mean, z_sd = np.nanmean(X, axis=0), _unit(np.nanstd(X, axis=0))
    Z = _impute((X - z_mean) / z_sd, rank)
    z_centre = Z.mean(axis=0)
    basis = np.linalg.svd(Z - z_centre, full_matrices=False)[2][:rank]
    full = z_mean + Z * z_sd
    centre = full.mean(axis=0)
    scale = _unit(full.std(axis=0)) if standardize else np.ones(X.shape[1])
    _, s, Vt = np.linalg.svd((full - centre) / scale, full_matrices=False)
    Vt = Vt * np.where(Vt.sum(axis=1) < 0, -1.0, 1.0)[:, None]  # PC1 grows with the scores
    explained = s[:k] ** 2 / max(float(np.sum(s**2)), 1e-300)
    return Pca(z_mean, z_sd, z_centre, basis, centre, scale, Vt[:k], explained)


def link_mean(params, S, delta=0.0) -> np.ndarray:
    """y = b + (1 - b) sigmoid(alpha + beta . S + delta); params = (alpha, *beta, b)."""
    eta = params[0] + np.asarray(S, float) @ params[1:-1] + delta
    return params[-1] + (1 - params[-1]) * expit(eta)


@dataclass(frozen=True)
class Link:
    params: np.ndarray  # (alpha, beta_1..K, b)
    rmse: float

    def slope(self, S) -> np.ndarray:
        """g = dy/deta at S."""
        p = self.params
        s = expit(p[0] + np.asarray(S, float) @ p[1:-1])
        return (1 - p[-1]) * s * (1 - s)


def scatter_terms(y, mu, g, n) -> tuple[np.ndarray, np.ndarray]:
    """Per model (r^2 - v, g^2): tau^2 = max(0, sum of the first / sum of the second)."""
    y, mu, n = (np.asarray(v, float) for v in (y, mu, n))
    v = np.where(np.isfinite(n), mu * (1 - mu) / np.where(np.isfinite(n), n, 1.0), 0.0)
    return (y - mu) ** 2 - v, np.asarray(g, float) ** 2


def fit_link(S, y, chance: float) -> Link | None:
    """Least-squares sigmoid link of y on S with its floor b in [0, chance] (b = 0 when chance
    is 0). None when it does not converge."""
    S, y = np.asarray(S, float), np.asarray(y, float)
    A = np.column_stack([np.ones(len(y)), S])
    b0 = min(chance, 0.9 * float(np.min(y))) if chance > 0 else 0.0
    t = logit(np.clip((y - b0) / (1 - b0), LOGIT_CLIP, 1 - LOGIT_CLIP))
    start = np.linalg.lstsq(A, t, rcond=None)[0]
    if chance > 0:  # b = chance sigmoid(u): the bound without a bounded solver (MINPACK's LM)
        start = np.append(start, logit(np.clip(b0 / chance, LOGIT_CLIP, 1 - LOGIT_CLIP)))
    params = lambda q: np.append(q[: A.shape[1]], chance * expit(q[-1]) if chance > 0 else 0.0)

    def jac(q):
        s, p = expit(A @ q[: A.shape[1]]), params(q)
        J = ((1 - p[-1]) * s * (1 - s))[:, None] * A
        if chance <= 0:
            return J
        return np.column_stack([J, (1 - s) * p[-1] * (1 - p[-1] / chance)])

    res = least_squares(lambda q: link_mean(params(q), S) - y, start, jac=jac, method="lm")
    if not res.success or not np.all(np.isfinite(res.x)):
        return None
    p = params(res.x)
    return Link(p, float(np.sqrt(np.mean((link_mean(p, S) - y) ** 2))))


@dataclass(frozen=True)
class Lines:
    """Per family, S = theta x + nu (theta, nu: (K,)); the pooled residual covariance (K, K),
    None when no family has a point beyond its line's two."""

    theta: dict
    nu: dict
    resid_cov: np.ndarray | None
    k: int

    def at(self, family, x) -> np.ndarray:
        """S (len(x), K) on each family's line at x (NaN without a line); family and x per row."""
        family, x = np.atleast_1d(family), np.atleast_1d(np.asarray(x, float))
        out = np.full((len(x), self.k), np.nan)
        for i, (f, v) in enumerate(zip(family, x)):
            if f in self.theta:
                out[i] = self.theta[f] * v + self.nu[f]
        return out


def fit_lines(S, x, family) -> Lines:
    """Each family's OLS line of every PC on x (families with >= 2 distinct finite x)."""
    S, x, family = np.asarray(S, float), np.asarray(x, float), np.asarray(family)
    theta, nu, resid, dof = {}, {}, [], 0
    for f in np.unique(family):
        rows = (family == f) & np.isfinite(x)
        if len(np.unique(x[rows])) < 2:
            continue
        xf, Sf = x[rows], S[rows]
        xc = xf - xf.mean()
        theta[f] = xc @ (Sf - Sf.mean(axis=0)) / (xc @ xc)
        nu[f] = Sf.mean(axis=0) - theta[f] * xf.mean()
        resid.append(Sf - (theta[f] * xf[:, None] + nu[f]))
        dof += rows.sum() - 2
    cov = None
    if dof > 0:
        R = np.concatenate(resid)
        cov = R.T @ R / dof
    return Lines(theta, nu, cov, S.shape[1])


@dataclass(frozen=True)
class Model:
    """One fit on a set of models: capability measures, link and compute lines."""

    pca: Pca
    link: Link
    lines: Lines

    def draws(self, S, n, rng, k: int, tau: float, S_cov=None) -> np.ndarray:
        """(k, M) draws of what models at S (M, K) would measure: scatter tau in eta (plus,
        with S_cov, normal scatter of S about a compute line), then binomial noise of n
        examples where n is finite."""
        S, M = np.asarray(S, float), len(S)
        if S_cov is not None:
            S = S + rng.multivariate_normal(np.zeros(S.shape[1]), S_cov, size=(k, M))
        delta = tau * rng.standard_normal((k, M))
        p = link_mean(self.link.params, S, delta)
        n = np.broadcast_to(np.asarray(n, float), p.shape)
        ok = np.isfinite(n) & np.isfinite(p)
        k_hits = rng.binomial(np.where(ok, n, 0).astype(int), np.where(ok, p, 0.0))
        return np.where(ok, k_hits / np.where(ok, n, 1.0), p)


def fit_model(X, y, x, family, *, k: int, standardize: bool, rank: int, chance: float):
    """Model fitted on these rows (benchmarks X, target y, log10 compute x, family); None
    when the link does not converge."""
    pca = fit_pca(X, k, standardize, rank)
    S = pca.transform(X)
    has_y = np.isfinite(y)
    link = fit_link(S[has_y], y[has_y], chance)
    return None if link is None else Model(pca, link, fit_lines(S, x, family))


@dataclass(frozen=True)
class OutOfSample:
    """Leave-one-model-out check of the link (each fitted model predicted by a refit without
    it: imputation, PCA, link): the extra scatter tau with an interval over resampled models,
    and R^2 against predicting each model by the others' mean."""

    tau: float
    tau_ci: tuple
    r2: float


def out_of_sample(fit_rows, X, y, n, rows, n_boot: int, ci: float, seed: int) -> OutOfSample:
    """OutOfSample of the models `rows` (those with a finite y), fit_rows(rows) -> Model."""
    terms, sq, sq_mean = [], [], []
    for i in rows[np.isfinite(y[rows])]:
        others = rows[rows != i]
        m = fit_rows(others)
        if m is not None:
            S = m.pca.transform(X[i : i + 1])
            mu = link_mean(m.link.params, S)
            terms.append(scatter_terms(y[i : i + 1], mu, m.link.slope(S), n[i : i + 1]))
            sq.append(float(y[i] - mu[0]) ** 2)
            sq_mean.append(float(y[i] - np.nanmean(y[others])) ** 2)
    a, g2 = (np.concatenate(t) for t in zip(*terms))
    tau = lambda w: np.sqrt(np.maximum(0.0, (w @ a) / np.maximum(w @ g2, 1e-300)))  # noqa: E731
    counts = resample_counts(np.random.default_rng([seed, 3]), len(a), n_boot)
    r2 = 1 - sum(sq) / max(sum(sq_mean), 1e-300)
    return OutOfSample(float(tau(np.ones(len(a)))), percentile_interval(tau(counts), ci), r2)
