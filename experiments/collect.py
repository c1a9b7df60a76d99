"""Collect a sweep's finished runs into the results table and the training-curve table.

results (results.csv, results.parquet): one row per run × eval metric, carrying the run's three
parameter counts, tokens, FLOPs in both conventions (scaling.flops) and final held-out loss.
curves (curves.csv): one row per held-out evaluation during training, for frontier fits.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments import store
from scaling import zoo
from scaling.config import run_config
from scaling.flops import flops_per_token, param_counts
from scaling.train import read_metrics

RESULTS_CSV, RESULTS_PARQUET, CURVES_CSV = "results.csv", "results.parquet", "curves.csv"


def _run_columns(sweep: str, run_dir: Path) -> dict:
    cfg = run_config(store.read_json(run_dir / store.CONFIG))
    m = cfg.model
    counts, per_token = param_counts(m), flops_per_token(m)
    tokens = cfg.tokens_trained
    return {
        "sweep": sweep,
        "run_id": run_dir.name,
        "model": zoo.label(m.n_layer, m.d_model, m.n_head, m.d_ff),
        "name": cfg.name,
        "n_layer": m.n_layer,
        "d_model": m.d_model,
        "n_head": m.n_head,
        "d_ff": m.d_ff,
        "seq_len": m.seq_len,
        "vocab_size": m.vocab_size,
        "params_total": counts.total,
        "params_non_embedding": counts.non_embedding,
        "params_embedding": counts.embedding,
        "tokens": tokens,
        "flops_6n": per_token.six_n * tokens,
        "flops_detailed": per_token.detailed * tokens,
    }


def collect(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build (results, curves) from every finished run under sweep_dir and write them there."""
    results, curves = [], []
    for run_dir in sorted(p for p in sweep_dir.iterdir() if (p / store.CONFIG).exists()):
        status = store.status(run_dir)
        if status["state"] != store.DONE:
            continue
        run = _run_columns(sweep_dir.name, run_dir)
        run["loss"] = status["heldout_loss"]
        results += [run | row for row in store.read_eval(run_dir)]
        keep = ("step", "tokens", "flops_6n", "flops_detailed", "loss")
        curves += [
            {
                k: run[k]
                for k in (
                    "sweep",
                    "run_id",
                    "model",
                    "name",
                    "params_total",
                    "params_non_embedding",
                    "params_embedding",
                )
            }
            | {"tokens_budget": run["tokens"]}
            | {k: m[k] for k in keep}
            for m in read_metrics(run_dir)
            if m["split"] == "heldout"
        ]
    if not results:
        raise FileNotFoundError(f"no finished run under {sweep_dir}; run `scaling sweep` first")
    results_df, curves_df = pd.DataFrame(results), pd.DataFrame(curves)
    results_df.to_csv(sweep_dir / RESULTS_CSV, index=False)
    results_df.to_parquet(sweep_dir / RESULTS_PARQUET, index=False)
    curves_df.to_csv(sweep_dir / CURVES_CSV, index=False)
    return results_df, curves_df
