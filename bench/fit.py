"""Chinchilla approach-3 fit speed: the JAX fitter against a plain scipy L-BFGS-B loop.

    python bench/fit.py [--n-boot 1000] [--boot-starts 25] [--scipy-starts 4500]

On Epoch AI's 240 Chinchilla points (../shared/data/chinchilla_epoch): the full 4,500-start
fit (after compilation: the first call compiles), a bootstrap of --n-boot resamples with
--boot-starts starts each, and the same full fit done by scipy.optimize.minimize(L-BFGS-B) with
an analytic gradient, one start after another, in this process, with the tolerances under which
scipy reproduces Epoch's figures (gtol 1e-12, ftol 1e-15). --scipy-starts below 4500 times a
random subset and scales the time up (printed as such).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from analysis.fits import chinchilla, chinchilla_search

DATA = Path(__file__).resolve().parents[2] / "shared/data/chinchilla_epoch/svg_extracted_data.csv"


def epoch_arrays():
    df = pd.read_csv(DATA)
    df = df[df["loss"] < df["loss"].nlargest(5).min()]
    N = df["Model Size"].to_numpy(float)
    return N, df["Training FLOP"].to_numpy(float) / (6 * N), df["loss"].to_numpy(float)


def scipy_fit(N, D, loss, starts, delta=chinchilla_search.DELTA):
    """One scipy L-BFGS-B run per start on the same objective (numpy, analytic gradient)."""
    data = tuple(np.log(v)[None] for v in (N, D, loss))
    ones = np.ones((1, len(loss)))

    def fg(theta):
        with np.errstate(all="ignore"):  # overflow -> inf, which the line search rejects
            f, g = chinchilla_search.objective(theta[None], ones, *data, delta, xp=np)
        return float(f[0]), g[0]

    opts = {"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000}
    return [minimize(fg, s, jac=True, method="L-BFGS-B", options=opts) for s in starts]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--boot-starts", type=int, default=25)
    p.add_argument("--scipy-starts", type=int, default=4500)
    args = p.parse_args()
    N, D, loss = epoch_arrays()
    fit = lambda n_boot: chinchilla.fit_chinchilla_arrays(
        N, D, loss, n_boot=n_boot, boot_starts=args.boot_starts
    )

    t0 = time.perf_counter()
    fit(0)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = fit(0)
    full_s = time.perf_counter() - t0
    print(f"JAX full fit, {full.n_starts} starts x {full.n_points} points: {full_s:.2f} s "
          f"(first call incl. compilation {compile_s:.1f} s)")  # fmt: skip
    print(f"  E {full.E:.4f}  A {full.A:.1f}  B {full.B:.0f}  alpha {full.alpha:.4f}  "
          f"beta {full.beta:.4f}  objective {full.objective:.5e}  "
          f"starts at optimum {full.frac_at_optimum:.1%}")  # fmt: skip

    fit(20)  # compile the bootstrap's shapes
    t0 = time.perf_counter()
    boot = fit(args.n_boot)
    boot_s = time.perf_counter() - t0 - full_s
    d = boot.to_dict()
    print(f"JAX bootstrap, {args.n_boot} resamples x {args.boot_starts} starts: {boot_s:.1f} s "
          f"(fit + bootstrap {boot_s + full_s:.1f} s)")  # fmt: skip
    print("  SE " + "  ".join(f"{k} {d[k + '_se']:.4g}" for k in ("E", "alpha", "beta", "a")))

    rng = np.random.default_rng(0)
    starts = chinchilla_search.start_grid()
    subset = rng.choice(len(starts), min(args.scipy_starts, len(starts)), replace=False)
    t0 = time.perf_counter()
    runs = scipy_fit(N, D, loss, starts[subset])
    scipy_s = (time.perf_counter() - t0) * len(starts) / len(subset)
    f = np.array([r.fun for r in runs])
    best = runs[int(np.argmin(f))]
    scaled = "" if len(subset) == len(starts) else f" (timed {len(subset)}, scaled)"
    print(f"scipy L-BFGS-B loop, {len(starts)} starts: {scipy_s:.1f} s{scaled}")
    print(f"  E {np.exp(best.x[2]):.4f}  A {np.exp(best.x[0]):.1f}  B {np.exp(best.x[1]):.0f}  "
          f"alpha {best.x[3]:.4f}  beta {best.x[4]:.4f}  objective {best.fun:.5e}  "
          f"starts at optimum {np.mean(f <= best.fun * 1.001):.1%}")  # fmt: skip
    print(f"speed-up of the full fit, JAX vs scipy: {scipy_s / full_s:.0f}x")


if __name__ == "__main__":
    main()
