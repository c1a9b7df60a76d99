"""Many small L-BFGS minimisations at once, in JAX: one lane per starting point.

Scaling-law fits are thousands of tiny problems (5 parameters, a few hundred points) - a
multi-start grid times bootstrap resamples. A Python loop over scipy spends its time in
per-call overhead; here a pool of lanes advances together in one jitted array program.

The algorithm is L-BFGS (Nocedal & Wright 2006, alg. 7.4, two-loop recursion, memory
`MEMORY`) with a backtracking Armijo line search. To keep every iteration exactly one
function-and-gradient evaluation for all lanes, the line search is spread over iterations:
a lane whose trial step fails the Armijo test stays where it is and retries next iteration with
a smaller step (quadratic interpolation, clipped to [0.1, 0.5] of the failed step) along the
same direction. A lane whose step shrinks below `MIN_STEP` restarts from steepest descent with
its memory cleared; if that fails too it has converged to working precision.

Scheduling: the lanes form a pool of fixed width. Every `CHUNK` iterations the host takes
finished lanes out and puts waiting starting points in their slots, so one compiled program
serves any number of starts, and the cost follows the total number of iterations rather than
the slowest lane times the number of starts. When nothing is waiting, the survivors move to a
narrower pool (`DRAIN_WIDTH`) for the long tail.

Stopping rules, per lane (scipy L-BFGS-B's, without the absolute floor in its ftol test -
the Chinchilla objective is ~1e-3, and that floor is why default scipy settings stop almost at
once, Besiroglu et al. 2024): max |grad| <= gtol, or an accepted step that lowers f by no more
than ftol * |f|, or `max_iter` iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

MEMORY = 10  # (s, y) pairs kept; scipy's default is 10 too
CHUNK = 20  # iterations between refills of the pool
POOL_WIDTH = 1024  # lanes advanced together
DRAIN_WIDTH = 64  # pool width once no starting point is waiting
ARMIJO_C1 = 1e-4
MIN_STEP = 1e-10
MEMORY_KEYS = ("S", "Y", "rho")  # state arrays that hold lanes on axis 1
RESULT_KEYS = ("x", "f", "g", "n_iter", "converged")


@dataclass
class Result:
    x: np.ndarray  # (S, P) final parameters
    f: np.ndarray  # (S,) final objective
    grad_max: np.ndarray  # (S,) max |gradient| at x
    n_iter: np.ndarray  # (S,) iterations used
    converged: np.ndarray  # (S,) stopped by a tolerance, not by max_iter


def _steepest(g):
    """Steepest descent scaled to unit length: the first step, before any curvature is known."""
    norm = jnp.sqrt(jnp.sum(g * g, -1, keepdims=True))
    return -g / jnp.where(norm > 0, norm, 1.0)


def _direction(g, S, Y, rho, n_mem):
    """-H g by the two-loop recursion; S, Y (M, L, P) newest first; slots >= n_mem unused."""
    valid = jnp.arange(S.shape[0])[:, None] < n_mem[None, :]  # (M, L)

    def newest_first(q, mem):
        s, y, r, v = mem
        a = jnp.where(v, r * jnp.sum(s * q, -1), 0.0)
        return q - a[:, None] * y, a

    q, alphas = jax.lax.scan(newest_first, g, (S, Y, rho, valid))
    sy, yy = jnp.sum(S[0] * Y[0], -1), jnp.sum(Y[0] * Y[0], -1)
    gamma = sy / jnp.where(yy > 0, yy, 1.0)

    def oldest_first(r, mem):
        s, y, rh, v, a = mem
        b = jnp.where(v, rh * jnp.sum(y * r, -1), 0.0)
        return r + (a - b)[:, None] * s, None

    r, _ = jax.lax.scan(oldest_first, gamma[:, None] * q, (S, Y, rho, valid, alphas), reverse=True)
    return jnp.where((n_mem > 0)[:, None], -r, _steepest(g))


def _fresh_state(x: np.ndarray) -> dict:
    """Host-side state of lanes about to start at x: f = inf, zero step, so the first iteration
    only evaluates f and grad at x (accepted unconditionally) and then picks a direction."""
    lanes, p = x.shape
    return dict(
        x=x,
        f=np.full(lanes, np.inf, x.dtype),
        g=np.zeros_like(x),
        d=np.zeros_like(x),
        t=np.ones(lanes, x.dtype),
        S=np.zeros((MEMORY, lanes, p), x.dtype),
        Y=np.zeros((MEMORY, lanes, p), x.dtype),
        rho=np.zeros((MEMORY, lanes), x.dtype),
        n_mem=np.zeros(lanes, np.int32),
        n_iter=np.zeros(lanes, np.int32),
        done=np.zeros(lanes, bool),
        converged=np.zeros(lanes, bool),
    )


def _iteration(st, data, fg, gtol, ftol, max_iter):
    active = ~st["done"]
    x, f, g, d, t = st["x"], st["f"], st["g"], st["d"], st["t"]
    gd = jnp.sum(g * d, -1)
    x_try = x + t[:, None] * d
    f_try, g_try = fg(x_try, *data)
    ok = jnp.isfinite(f_try) & jnp.all(jnp.isfinite(g_try), -1)
    starting = jnp.isinf(f)  # a fresh lane: x_try == x, take its f and grad
    accept = active & ok & (starting | (f_try <= f + ARMIJO_C1 * t * gd))

    # Curvature pair; skipped when s'y is not clearly positive (keeps H positive definite).
    s, y = x_try - x, g_try - g
    sy = jnp.sum(s * y, -1)
    store = accept & ~starting & (sy > 1e-10 * jnp.sum(y * y, -1))
    roll = lambda M, new: jnp.concatenate([new[None], M[:-1]])
    S = jnp.where(store[:, None], roll(st["S"], s), st["S"])
    Y = jnp.where(store[:, None], roll(st["Y"], y), st["Y"])
    rho = jnp.where(store, roll(st["rho"], 1.0 / jnp.where(store, sy, 1.0)), st["rho"])
    n_mem = jnp.where(store, jnp.minimum(st["n_mem"] + 1, MEMORY), st["n_mem"])

    x_new = jnp.where(accept[:, None], x_try, x)
    f_new = jnp.where(accept, f_try, f)
    g_new = jnp.where(accept[:, None], g_try, g)

    # Rejected: shrink the step by quadratic interpolation of f along d, within [0.1t, 0.5t].
    curv = jnp.where(ok, f_try - f - gd * t, jnp.inf)
    t_quad = jnp.where(curv > 0, -gd * t * t / (2 * curv), 0.1 * t)
    t_shrunk = jnp.clip(t_quad, 0.1 * t, 0.5 * t)
    failed = active & ~accept & (t_shrunk < MIN_STEP)
    stuck = failed & (st["n_mem"] == 0)  # steepest descent failed too: working precision
    restart = failed & ~stuck
    n_mem = jnp.where(restart, 0, n_mem)

    d_lbfgs = _direction(g_new, S, Y, rho, n_mem)
    descent = jnp.sum(d_lbfgs * g_new, -1) < 0
    n_mem = jnp.where(accept & ~descent, 0, n_mem)
    fresh = jnp.where(descent[:, None], d_lbfgs, _steepest(g_new))
    d_new = jnp.where((accept | restart)[:, None], fresh, d)
    t_new = jnp.where(accept | restart, 1.0, t_shrunk)

    n_iter = st["n_iter"] + active
    small_grad = jnp.max(jnp.abs(g_new), -1) <= gtol
    small_drop = accept & ~starting & (f - f_new <= ftol * jnp.abs(f))
    converged = st["converged"] | (active & (small_grad | small_drop | stuck))
    done = st["done"] | converged | (n_iter >= max_iter)
    return dict(
        x=x_new, f=f_new, g=g_new, d=d_new, t=t_new, S=S, Y=Y, rho=rho, n_mem=n_mem,
        n_iter=n_iter, done=done, converged=converged,
    )  # fmt: skip


@partial(jax.jit, static_argnames=("fg",))
def _run_chunk(st, lane_data, shared, fg, gtol, ftol, max_iter):
    step = lambda _, s: _iteration(s, (*lane_data, *shared), fg, gtol, ftol, max_iter)
    return jax.lax.fori_loop(0, CHUNK, step, st)


def _select(st: dict, idx) -> dict:
    return {k: v[:, idx] if k in MEMORY_KEYS else v[idx] for k, v in st.items()}


def _set_lanes(st: dict, slots: np.ndarray, new: dict) -> None:
    """Write the lanes `new` into slots of st (host arrays, in place)."""
    for k in st:
        if k in MEMORY_KEYS:
            st[k][:, slots] = new[k]
        else:
            st[k][slots] = new[k]


def minimize(
    fg: Callable,
    x0: np.ndarray,
    shared: tuple,
    lane_data: tuple = (),
    *,
    gtol: float,
    ftol: float,
    max_iter: int = 2000,
    dtype=np.float32,
    width: int = POOL_WIDTH,
) -> Result:
    """Minimise fg from every row of x0 (one lane each); returns the end point of every lane.

    fg(x (L, P), *lane_arrays (L, ...), *shared) -> (f (L,), grad (L, P)) is a pure jnp
    function defined at module level (it is a static jit argument). `lane_data` holds arrays
    with one row per start (e.g. bootstrap weights), moved with their lane; `shared` is common
    to all lanes. Runs in `dtype`: float32 for speed, float64 to polish.
    """
    x0 = np.array(x0, dtype)  # a copy: results are written into `out`, built from it
    lane_data = tuple(np.asarray(a, dtype) for a in lane_data)
    n, p = x0.shape
    out = {k: v for k, v in _fresh_state(x0).items() if k in RESULT_KEYS}
    width = min(width, max(DRAIN_WIDTH, n))
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        shared = tuple(jnp.asarray(a, dtype) for a in shared)
        tol = (jnp.asarray(gtol, dtype), jnp.asarray(ftol, dtype), jnp.asarray(max_iter))
        owner = np.full(width, -1)  # start index held by each slot, -1 = empty
        pool = _fresh_state(np.zeros((width, p), dtype))
        pool["done"][:] = True
        lanes = tuple(np.zeros((width, *a.shape[1:]), dtype) for a in lane_data)
        waiting = 0  # next start to schedule
        while True:
            empty = np.flatnonzero(owner < 0)
            fill = empty[: n - waiting]
            if len(fill):
                new = np.arange(waiting, waiting + len(fill))
                _set_lanes(pool, fill, _fresh_state(x0[new]))
                for lane, a in zip(lanes, lane_data, strict=True):
                    lane[fill] = a[new]
                owner[fill], waiting = new, waiting + len(fill)
            if waiting == n and width > DRAIN_WIDTH and (owner >= 0).sum() <= DRAIN_WIDTH:
                keep = np.concatenate([np.flatnonzero(owner >= 0), np.flatnonzero(owner < 0)])
                keep = keep[:DRAIN_WIDTH]
                pool = _select(pool, keep)
                lanes = tuple(a[keep] for a in lanes)
                owner, width = owner[keep], DRAIN_WIDTH
            if (owner < 0).all():
                break
            pool = _run_chunk(pool, lanes, shared, fg, *tol)
            pool = {k: np.array(v) for k, v in pool.items()}
            finished = np.flatnonzero(pool["done"] & (owner >= 0))
            _set_lanes(out, owner[finished], _select(pool, finished))
            owner[finished] = -1
            pool["done"][owner < 0] = True
    return Result(
        x=out["x"].astype(np.float64),
        f=out["f"].astype(np.float64),
        grad_max=np.abs(out["g"]).max(-1).astype(np.float64),
        n_iter=out["n_iter"],
        converged=out["converged"],
    )
