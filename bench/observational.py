"""Observational scaling (Ruan et al. 2024) backtested on the Pythia/OPT/BLOOM evals, and its
time with a full bootstrap.

    python bench/observational.py [--n-boot 1000] [--holdout largest largest:2 pc1:0.2]

Each of the nine standard tasks of /work/shared/data/pythia_evals (0-shot accuracy; MMLU as the
mean of its 57 subjects) is the target in turn, the other eight the benchmarks of the PCA; the
29 models fall into four families (Pythia, Pythia-deduped, OPT, BLOOM), sized by total
parameters (tokens are constant within each family, so log N is log C up to each family's
offset). Per hold-out rule, the forecasts of the held-out models' scores from their benchmarks
and from their size: how many got one, the coverage of the nominal 90% prediction intervals
and the mean absolute error, per target and pooled (kind: "link", or "flat" where the link does
not beat the mean out of sample); and the seconds per fit (--n-boot refits and the
leave-one-out check).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from analysis.fits.bootstrap import Bootstrap
from analysis.fits.pipeline import fit_table
from analysis.fits.registry import get_form
from analysis.fits.selection import Selection

DATA = Path("/work/shared/data/pythia_evals/pythia_evals_final.csv")
TASKS = ["lambada_openai", "piqa", "arc_easy", "arc_challenge", "sciq", "logiqa",
         "winogrande", "wsc", "hendrycksTest-*"]  # fmt: skip
MODES = ("benchmarks", "compute")


def backtest(form, tables, target: str, holdout: str, n_boot: int):
    options = {
        "target": target, "benchmarks": ",".join(t for t in TASKS if t != target),
        "family": "model_family", "metric": "acc", "holdout": holdout, "n": "total_params",
    }  # fmt: skip
    t0 = time.perf_counter()
    run = fit_table(
        form, tables, {"n": "total_params"}, Selection(filters=[("shots", "0")]), options,
        Bootstrap(n_boot, 0.9, 0),
    )  # fmt: skip
    fit = run.groups[0].fit
    return fit.backtest(), fit.kind, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--holdout", nargs="+", default=["largest", "largest:2", "pc1:0.2"])
    args = p.parse_args()
    form = get_form("observational")
    tables = form.load(DATA, {})
    for holdout in args.holdout:
        print(f"\n--holdout {holdout}, nominal 90% intervals, {args.n_boot} resamples")
        print("| target | kind | held out | forecast (b/c) | covered (b/c) | MAE (b/c) | s/fit |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        total, times = {m: np.zeros(4) for m in MODES}, []
        for target in TASKS:
            bt, kind, secs = backtest(form, tables, target, holdout, args.n_boot)
            times.append(secs)
            cells = [f"{bt[m][k]}" for k in ("n_forecast", "n_covered") for m in MODES]
            maes = "/".join(f"{bt[m]['mae']:.3f}" for m in MODES)
            held = bt["benchmarks"]["n_heldout"]
            print(f"| {target} | {kind} | {held} | {cells[0]}/{cells[1]} | {cells[2]}/{cells[3]} "
                  f"| {maes} | {secs:.1f} |")  # fmt: skip
            for m in MODES:
                b = bt[m]
                total[m] += [b["n_heldout"], b["n_forecast"], b["n_covered"],
                             b["mae"] * b["n_forecast"] if b["n_forecast"] else 0]  # fmt: skip
        for m, (held, fc, cov, err) in total.items():
            print(
                f"pooled, from {m}: {int(fc)}/{int(held)} forecast ({fc / held:.0%}), "
                f"coverage {cov / fc:.1%} ({int(cov)}/{int(fc)}), MAE {err / fc:.4f}"
            )
        print(f"seconds per fit: median {np.median(times):.1f}, max {max(times):.1f}")


if __name__ == "__main__":
    main()
