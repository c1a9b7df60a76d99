"""Synthetic fine-tuning tables drawn from known laws, for tests/test_analysis_finetune.py,
bench/fit_laws.py and the README's `scaling fit finetune` example.

The pretrained runs follow Zhang et al.'s joint law error = E + A N^-a D^-b (so each size's
curve is E + A_N D^-b); a run's error p is its cell's plus seed noise (normal, sd SEED_SD),
measured on one test set of n_items items: item i is wrong for a run iff v_i < p, where a
fraction `rho` of the items are shared (v_i = u_i ~ U(0, 1), the same for every run: a hard
item is hard for all) and the others drawn afresh per run. Each item is wrong with probability
p, so a run's error is Binomial(n_items, p) / n_items and the law's value is the population
error; rho = 1 is a fixed test split whose items order by difficulty, rho = 0 independent item
noise per run. From-scratch runs (transfer=True) follow E + A_S D^-C at every size, and the
fine-tunes then that law at D + D_T, D_T = K D^ALPHA_T N^BETA_T: the effective data
transferred of Hernandez et al.

    python tests/finetune_cases.py   # rewrites tests/data/finetune/runs.csv (seed 0, transfer)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LAW = {"E": 0.05, "A": 40.0, "a": 0.25, "b": 0.4}  # error = E + A N^-a D^-b
SIZES = (1e5, 1e6, 1e7)
EXAMPLES = (16, 32, 64, 128, 256, 512)
SEEDS = (0, 1, 2)
N_ITEMS, SEED_SD = 400, 0.01
SCRATCH = {"E": 0.05, "A": 1.5, "c": 0.3}  # from scratch: E + A_S D^-C
TRANSFER = {"K": 20.0, "alpha": 0.5, "beta": 0.1}  # D_T = K D^alpha N^beta
CSV = Path(__file__).resolve().parent / "data" / "finetune" / "runs.csv"


def law_error(N, D) -> np.ndarray:
    return (
        LAW["E"] + LAW["A"] * np.asarray(N, float) ** -LAW["a"] * np.asarray(D, float) ** -LAW["b"]
    )


def scratch_error(D) -> np.ndarray:
    return SCRATCH["E"] + SCRATCH["A"] * np.asarray(D, float) ** -SCRATCH["c"]


def transferred(N, D) -> np.ndarray:
    return TRANSFER["K"] * np.asarray(D, float) ** TRANSFER["alpha"] * N ** TRANSFER["beta"]


def table(
    rng,
    *,
    sizes=SIZES,
    examples=EXAMPLES,
    seeds=SEEDS,
    n_items=N_ITEMS,
    seed_sd=SEED_SD,
    rho=1.0,
    transfer=False,
    per_item=False,
) -> pd.DataFrame:
    """One row per run: init, params, examples, seed, error, n_items (and per-item `correct`
    with per_item=True)."""
    u, shared = rng.uniform(size=n_items), rng.uniform(size=n_items) < rho
    rows = []
    for init in ("pretrained", "scratch") if transfer else ("pretrained",):
        for N in sizes:
            for D in examples:
                if init == "scratch":
                    p = scratch_error(D)
                else:
                    p = scratch_error(D + transferred(N, D)) if transfer else law_error(N, D)
                for s in seeds:
                    q = float(np.clip(p + seed_sd * rng.standard_normal(), 0, 1))
                    row = {"init": init, "params": N, "examples": D, "seed": s, "n_items": n_items}
                    if rho == 0 and not per_item:  # independent items: one binomial draw
                        row["error"] = rng.binomial(n_items, q) / n_items
                    else:
                        wrong = np.where(shared, u, rng.uniform(size=n_items)) < q
                        row["error"] = wrong.mean()
                        row["correct"] = "".join("0" if w else "1" for w in wrong)
                    rows.append(row)
    out = pd.DataFrame(rows)
    return out if per_item else out.drop(columns="correct", errors="ignore")


if __name__ == "__main__":
    CSV.parent.mkdir(parents=True, exist_ok=True)
    table(np.random.default_rng(0), transfer=True).to_csv(CSV, index=False)
    print(f"wrote {CSV}")
