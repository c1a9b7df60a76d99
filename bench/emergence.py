"""Emergence classifier throughput, and the cost of a forecast per curve.

    python bench/emergence.py [--curves 10000] [--points 10] [--n-boot 200]
        [--forecast-curves 1000] [--forecast-boot 1000]

Curves are a mix of flat, smooth and sharp (sigmoid in log FLOPs) accuracy curves on a
4-choice task, 500 examples per point, classified with the default Settings (bootstrap
confidence and threshold intervals included), as `scaling emergence` runs them. The forecast
(analysis.forecast: a decade beyond the largest model, with its parametric-bootstrap interval
of --forecast-boot replicates) runs on the first --forecast-curves of them; wall and CPU
seconds per curve are printed (CPU time is the figure to compare on a shared machine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from analysis.emergence import classify
from analysis.emergence_stats import Settings
from analysis.forecast import forecast


def synthetic_scores(n_curves: int, n_points: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.linspace(18, 23, n_points)
    mid = rng.uniform(18, 23, n_curves)
    width = rng.choice([0.15, 1.0], n_curves)  # sharp or smooth
    p = 0.25 + 0.7 / (1 + np.exp(-(t[None] - mid[:, None]) / width[:, None]))
    p[rng.random(n_curves) < 1 / 3] = 0.25  # flat
    return pd.DataFrame(
        {
            "model": np.tile([f"m{i}" for i in range(n_points)], n_curves),
            "family": "synthetic",
            "task": np.repeat([f"task{i}" for i in range(n_curves)], n_points),
            "subtask": "",
            "metric": "acc",
            "shots": 0,
            "flops": np.tile(10.0**t, n_curves),
            "value": rng.binomial(500, p).ravel() / 500,
            "stderr": np.nan,
            "n_examples": 500,
            "random_baseline": 0.25,
            "higher_is_better": 1.0,
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--curves", type=int, default=10_000)
    p.add_argument("--points", type=int, default=10)
    p.add_argument("--n-boot", type=int, default=Settings().n_boot)
    p.add_argument("--forecast-curves", type=int, default=1000)
    p.add_argument("--forecast-boot", type=int, default=Settings().forecast_boot)
    args = p.parse_args()
    scores = synthetic_scores(args.curves, args.points)
    start = time.perf_counter()
    result = classify(scores, settings=Settings(n_boot=args.n_boot))
    seconds = time.perf_counter() - start
    counts = result.curves["class"].value_counts().to_dict()
    print(
        f"{args.curves} curves x {args.points} points, n_boot={args.n_boot}: {seconds:.2f} s, "
        f"{args.curves / seconds:,.0f} curves/s"
    )
    print("classes:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    settings = Settings(n_boot=0, forecast_boot=args.forecast_boot)
    c = classify(scores.iloc[: args.forecast_curves * args.points], settings=settings)
    wall, cpu = time.perf_counter(), time.process_time()
    notes = forecast(c)["forecast_note"].value_counts().to_dict()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(c.curves)
    print(
        f"forecast of {n} curves, {args.forecast_boot} bootstrap replicates each: "
        f"{1e3 * wall / n:.1f} ms/curve wall, {1e3 * cpu / n:.1f} ms/curve CPU"
    )
    print("forms:", ", ".join(f"{k} {v}" for k, v in sorted(notes.items())))


if __name__ == "__main__":
    main()
