"""Speed of Gadre et al.'s, Muennighoff et al.'s and the fine-tuning laws with a full bootstrap:
the over-training law L(C, M) and the downstream-error law Err(L) on Gadre et al.'s RedPajama
runs (tests/data/gadre2024), the data-constrained law L(N, D, U) on Muennighoff et al.'s C4 runs
(tests/data/muennighoff2023), the fine-tuning laws on synthetic fine-tunes
(tests/data/finetune/runs.csv).

    python bench/fit_laws.py [--n-boot 1000] [--boot-starts 25] [--repeats 3]

Times, after one call that compiles the L-BFGS programs: the over-training law on the 33 runs
below 1e21 FLOPs (900-start grid, then --n-boot resamples x --boot-starts starts), the error law
on the 35 runs (17-task average error vs C4 loss, --n-boot resamples), and one error-law fit per
task on the 17 tasks; the data-constrained law on the 182 runs of Muennighoff et al.'s fit with
their base law given (25 starts of R_D*, R_N*, then --n-boot resamples x --boot-starts), and on
all 295 runs with the base fitted too (alpha = beta, 900 starts, on the 62 runs of at most 2.5
epochs; each resample refits both stages); the fine-tuning laws on 108 runs (3 sizes x 6
example counts x 3 seeds, fine-tuned and from scratch): the per-size laws, Zhang et al.'s joint
law and Hernandez et al.'s transfer, resampling seeds and items --n-boot times. Best of
--repeats.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.fits.data_constrained import fit_data_constrained
from analysis.fits.downstream import fit_downstream_error
from analysis.fits.finetune import fit_finetune
from analysis.fits.finetune_data import read_runs
from analysis.fits.overtraining import fit_overtraining

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "gadre2024"
MUENNIGHOFF = DATA.parent / "muennighoff2023" / "runs.csv"
FINETUNE = DATA.parent / "finetune" / "runs.csv"
PAPER_BASE = np.array([6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596])  # their C4 law


def best_of(repeats: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--boot-starts", type=int, default=25)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    runs = pd.read_csv(DATA / "models.csv")
    tasks = pd.read_csv(DATA / "downstream.csv")
    cheap = runs[runs["flops"] < 1e21]
    loss_law = lambda n_boot: fit_overtraining(
        cheap, n_col="params", d_col="tokens", loss_col="loss_c4_val", n_boot=n_boot,
        boot_starts=args.boot_starts,
    )  # fmt: skip
    error_law = lambda t, col: fit_downstream_error(
        t, loss_col="loss_c4_val", error_col=col, n_boot=args.n_boot
    )

    t0 = time.perf_counter()
    loss_law(20)  # compiles the screen and polish programs for these shapes
    print(f"first call (compilation): {time.perf_counter() - t0:.1f} s")
    full_s, _ = best_of(args.repeats, lambda: loss_law(0))
    boot_s, fit = best_of(args.repeats, lambda: loss_law(args.n_boot))
    est = fit.estimates()
    print(
        f"overtraining, {len(cheap)} runs: fit {full_s:.2f} s, fit + {args.n_boot} resamples x "
        f"{args.boot_starts} starts {boot_s:.2f} s; eta {est['eta'].value:.4f} "
        f"[{est['eta'].lo:.4f}, {est['eta'].hi:.4f}], M_opt {est['M_opt'].value:.2f}"
    )
    err_s, fit = best_of(args.repeats, lambda: error_law(runs, "err_avg17"))
    est = fit.estimates()
    print(
        f"downstream_error, {len(runs)} runs (17-task average), fit + {args.n_boot} resamples: "
        f"{err_s:.3f} s; gamma {est['gamma'].value:.4f} "
        f"[{est['gamma'].lo:.4f}, {est['gamma'].hi:.4f}]"
    )
    subset = tasks[tasks["in_subset17"]]
    per_task = lambda: [error_law(g, "error") for _, g in subset.groupby("task")]
    task_s, _ = best_of(args.repeats, per_task)
    print(f"downstream_error per task, 17 fits + {args.n_boot} resamples each: {task_s:.2f} s")
    bench_data_constrained(args)
    bench_finetune(args)


def bench_data_constrained(args) -> None:
    runs = pd.read_csv(MUENNIGHOFF)
    theirs = runs[runs["in_decay_fit"] == 1]
    law = lambda t, n_boot, **kw: fit_data_constrained(
        t, n_col="params", d_col="tokens", n_boot=n_boot, boot_starts=args.boot_starts, **kw
    )
    for name, table, kw in (
        ("base given", theirs, {"base": PAPER_BASE}),
        ("base fitted", runs, {"max_epochs_base": 2.5, "tie": True}),
    ):
        full_s, _ = best_of(args.repeats, lambda t=table, k=kw: law(t, 0, **k))
        boot_s, fit = best_of(args.repeats, lambda t=table, k=kw: law(t, args.n_boot, **k))
        est = fit.estimates()
        print(
            f"data_constrained, {name}, {len(table)} runs: fit {full_s:.2f} s, fit + "
            f"{args.n_boot} resamples x {args.boot_starts} starts {boot_s:.2f} s; "
            + ", ".join(f"{k} {est[k].value:.3g} [{est[k].lo:.3g}, {est[k].hi:.3g}]"
                        for k in ("R_D_star", "R_N_star"))
        )  # fmt: skip


def bench_finetune(args) -> None:
    runs = read_runs(pd.read_csv(FINETUNE))
    boot_s, fit = best_of(args.repeats, lambda: fit_finetune(runs, n_boot=args.n_boot))
    est = fit.estimates()
    beta = est["joint (Zhang et al.) beta"]
    print(
        f"finetune, {len(runs.error)} runs: per-size, joint and transfer laws + {args.n_boot} "
        f"resamples of seeds and items {boot_s:.2f} s; joint beta {beta.value:.3f} "
        f"[{beta.lo:.3f}, {beta.hi:.3f}]"
    )


if __name__ == "__main__":
    main()
