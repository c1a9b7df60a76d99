"""The data-constrained law of Muennighoff et al. 2023 as arrays (analysis.fits.data_constrained
fits it): the repetitions of a run, its effective parameters and data, the loss, and the Huber
objective with its gradient in the two decay constants for the batched L-BFGS.

The fitted vector is (a, b, e, alpha, beta, log R_D*, log R_N*): the Chinchilla base law
(a = log A, b = log B, e = log E, as analysis.fits.chinchilla) and the decay constants in log,
so that every value of the search is a valid R* > 0. Every function takes the array module
`xp` (numpy for predictions, jax.numpy inside the search) and theta of shape (..., 7) or, for
the repetitions, the base (..., 5); rows of theta broadcast against the runs.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from analysis.fits.chinchilla_search import huber_loss

PARAMS = ("a", "b", "e", "alpha", "beta", "log_rd", "log_rn")
N_BASE = 5  # the leading base-law parameters, held fixed while the decay constants are fitted
RD, RN = 5, 6  # where log R_D* and log R_N* sit in theta


def _col(theta, i):
    """Parameter i of every row of theta, as a column that broadcasts against the runs."""
    return theta[..., i : i + 1]


def log_base_size(base, log_u, xp=np):
    """log N_opt(U): the compute-optimal parameters for U tokens under the base law's
    allocation (C = 6 N D; Hoffmann et al. 2022, App. D.2): D_opt(C) = U solved for C gives
    N = G (G U)^(beta / alpha), G = (alpha A / (beta B))^(1 / (alpha + beta))."""
    a, b, alpha, beta = (_col(base, i) for i in (0, 1, 3, 4))
    log_g = (xp.log(alpha / beta) + a - b) / (alpha + beta)
    return log_g + beta / alpha * (log_g + log_u)


def repetitions(base, log_n, log_d, log_u, xp=np):
    """(log U_N, R_N, log U_D, R_D) of every run: U_D = min(U, D) the unique tokens it saw,
    R_D = D / U_D - 1 its repeated epochs; U_N = min(N, N_opt(U_D)), R_N = N / U_N - 1 its
    parameters beyond the compute-optimal size for its unique data, in multiples of U_N."""
    log_ud = xp.minimum(log_u, log_d)
    log_un = xp.minimum(log_n, log_base_size(base, log_ud, xp))
    return log_un, xp.expm1(log_n - log_un), log_ud, xp.expm1(log_d - log_ud)


def excess(r, log_star, xp=np):
    """(s, ds / d log R*): R repetitions are worth s = R* (1 - exp(-R / R*)) new ones (the
    k-th worth exp(-k / R*) of a new one, integrated). expm1 keeps s accurate for R << R*."""
    star = xp.exp(log_star)
    s = -star * xp.expm1(-r / star)
    return s, s - r * xp.exp(-r / star)


def terms(theta, log_n, log_d, log_u, xp=np):
    """The law's terms A / N'^alpha, B / D'^beta, E of every run, and d log N' / d log R_N*,
    d log D' / d log R_D* (N' = U_N (1 + s_N), D' = U_D (1 + s_D))."""
    log_un, r_n, log_ud, r_d = repetitions(theta, log_n, log_d, log_u, xp)
    s_n, ds_n = excess(r_n, _col(theta, RN), xp)
    s_d, ds_d = excess(r_d, _col(theta, RD), xp)
    t_n = xp.exp(_col(theta, 0) - _col(theta, 3) * (log_un + xp.log1p(s_n)))
    t_d = xp.exp(_col(theta, 1) - _col(theta, 4) * (log_ud + xp.log1p(s_d)))
    return t_n, t_d, xp.exp(_col(theta, 2)), ds_n / (1 + s_n), ds_d / (1 + s_d)


def loss_curves(theta, N, D, U) -> np.ndarray:
    """L(N, D, U) for theta (7,) or, per row, for resampled optima (n, 7) -> (n, len(N)); a
    NaN row (a resample left out) gives a NaN curve."""
    theta = np.asarray(theta, float)
    logs = (np.log(np.asarray(v, float)) for v in (N, D, U))
    with np.errstate(all="ignore"):
        t_n, t_d, t_e, _, _ = terms(theta, *logs)
        return t_n + t_d + t_e


def data_multiplier(theta, epochs) -> np.ndarray:
    """D' / U_D = 1 + s(R_D) at `epochs` = D / U_D, for theta (7,) or rows (n, 7)."""
    theta = np.asarray(theta, float)
    with np.errstate(all="ignore"):
        return 1 + excess(np.asarray(epochs, float) - 1, _col(theta, RD))[0]


def objective(theta, w, log_n, log_d, log_u, log_l, delta):
    """Huber objective in log L and its gradient for lanes theta (L, 7), weights w (L, runs).

    Only log R_D* and log R_N* move (the base law's gradient is zero): each lane holds its own
    base, so that one batched search serves every bootstrap resample's refitted base."""
    t_n, t_d, t_e, dn, dd = terms(theta, log_n, log_d, log_u, jnp)
    f, psi = huber_loss(t_e + t_n + t_d, w, log_l, delta)
    g_rd = -(psi * t_d * theta[:, 4:5] * dd).sum(1)
    g_rn = -(psi * t_n * theta[:, 3:4] * dn).sum(1)
    held = jnp.zeros_like(theta[:, :N_BASE])
    return f, jnp.concatenate([held, g_rd[:, None], g_rn[:, None]], axis=1)
