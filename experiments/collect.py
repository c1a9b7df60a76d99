"""Collect a sweep's finished runs into the results table and the training-curve table.

results (results.csv, results.parquet): one row per run × eval metric, carrying the run's model
family and four parameter counts (total, non-embedding, embedding, and active: the
non-embedding parameters one token uses, fewer than non-embedding with routed experts; a fit
takes either as N), tokens, unique train tokens and epochs, FLOPs in both conventions
(scaling.flops), final held-out loss,
how the design chose it (IsoFLOP budget, tokens per parameter, cooldown branch) and
provenance: git commit, config hash (the run id), package versions, device kind and count,
wall time and achieved tokens/s. curves (curves.csv): one row per held-out evaluation during
training. eval_over_training.csv: the eval rows of earlier checkpoints (eval.every_steps, or
`scaling eval --checkpoints`), with `step` and `tokens_seen`, for emergence over training.
failed (failed_runs.csv): the failed runs, left out of both tables, with their reasons, for the
report to mention, and the runs whose claim the last launch refused (their directory holds
another run's config: store.REFUSED). Stable runs of a cooldown design are left out too: they
never cooled down, their branches are the runs. Fine-tunes (a sweep's finetune design) carry
their parent's N, D and C and their own examples, epochs, init, accuracy, error and n_items
(_finetune_columns), and, for a metric that scores each test item right or wrong, `correct`:
the items' 0/1 in order (a bootstrap over items). Collect is re-run as runs finish, so the
tables grow.
"""

from __future__ import annotations

import pandas as pd

from experiments import store
from scaling.config import ConfigError, RunConfig, run_config
from scaling.families import label
from scaling.flops import flops_per_token, param_counts
from scaling.train import METRICS_FILE

RESULTS_CSV, RESULTS_PARQUET, CURVES_CSV = "results.csv", "results.parquet", "curves.csv"
FAILED_CSV, EVAL_CURVES_CSV = "failed_runs.csv", "eval_over_training.csv"
RUN_KEYS = (
    "sweep",
    "run_id",
    "model",
    "family",
    "name",
    "params_total",
    "params_non_embedding",
    "params_embedding",
    "params_active",
)


def _run_columns(sweep: str, run_dir: str, cfg: RunConfig) -> dict:
    m = cfg.model
    counts, per_token = param_counts(m), flops_per_token(m)
    tokens = cfg.tokens_trained
    return {
        "sweep": sweep,
        "run_id": store.run_id_of(run_dir),
        "model": label(m),
        "family": m.family,
        "name": cfg.name,
        "n_layer": m.n_layer,
        "d_model": m.d_model,
        "n_head": m.n_head,
        "d_ff": m.d_ff,
        "seq_len": m.seq_len,
        "vocab_size": m.vocab_size,
        "tokenizer": cfg.data.run_tokenizer().name,
        "params_total": counts.total,
        "params_non_embedding": counts.non_embedding,
        "params_embedding": counts.embedding,
        "params_active": counts.active,
        "steps": cfg.steps,
        "tokens": tokens,
        "flops_6n": per_token.six_n * tokens,
        "flops_detailed": per_token.detailed * tokens,
        "schedule": cfg.train.schedule,
        "learning_rate": cfg.train.learning_rate,
        "seed": cfg.train.seed,
    }


def _provenance(status: dict) -> dict:
    p = status.get("provenance", {})
    return {
        "git_commit": p.get("git_commit"),
        "packages": " ".join(f"{k}=={v}" for k, v in sorted(p.get("packages", {}).items())),
        "device_kind": p.get("device_kind"),
        "device_count": p.get("device_count"),
        "train_s": status.get("train_s"),
        "eval_s": status.get("eval_s"),
        "tokens_per_s": status.get("tokens_per_s"),
        "attempts": status.get("attempt"),
    }


def _repetition(status: dict, tokens: int) -> dict:
    """Unique train tokens and epochs (tokens / unique tokens; exact with data.sampling epochs),
    for data-constrained studies (Muennighoff et al. 2023). Runs from before: unknown."""
    unique = status.get("unique_tokens")
    return {"unique_tokens": unique, "epochs": tokens / unique if unique else None}


def _finetune_columns(cfg: RunConfig, status: dict) -> dict:
    """A fine-tune's own columns. N is its parent's (the same model); D and C are the parent's
    pretraining tokens and compute up to the checkpoint fine-tuned (0 for init: scratch), so
    that fine-tunes line up with the pretraining runs they start from. accuracy is the task's
    primary metric on the test items (acc for multiple choice, exact_match for generation),
    error = 1 - accuracy, over n_items items; unique_tokens: the completion tokens of its
    training items (what the loss counts)."""
    ft = cfg.finetune
    per_token = flops_per_token(cfg.model)
    return {
        "tokens": ft.parent_tokens,
        "flops_6n": per_token.six_n * ft.parent_tokens,
        "flops_detailed": per_token.detailed * ft.parent_tokens,
        "init": ft.init,
        "examples": ft.examples,
        "epochs": ft.epochs,
        "learning_rate_mult": ft.learning_rate_mult,
        "finetune_batch_size": ft.batch_size,
        "parent_step": ft.parent_step,
    } | {k: status.get("test", {}).get(k) for k in ("accuracy", "error", "n_items")}


def _correct(run_dir: str) -> dict[str, str]:
    """A fine-tune's per-item correctness by metric, as 0/1 strings in the test items' order
    (the same items for every fine-tune of a task: analysis.fits.finetune_data resamples
    them), for the metrics that score each item right or wrong (store.TEST_ITEMS)."""
    items = store.read_jsonl(store.join(run_dir, store.TEST_ITEMS))
    metrics = [k for k in (items[0] if items else {}) if k not in ("item", "input")]
    return {
        m: "".join(str(int(r[m])) for r in items)
        for m in metrics
        if all(r[m] in (0, 1) for r in items)
    }


def collect(sweep_dir, quiet: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build (results, curves) from every finished run under sweep_dir (a path or URL) and
    write them there, with failed_runs.csv. quiet: no error when nothing finished yet."""
    sweep = store.basename(sweep_dir)
    results, curves, failed, over_training = [], [], [], []
    for run_dir in store.run_dirs(sweep_dir):
        status = store.status(run_dir)
        design = store.read_json(store.join(run_dir, store.DESIGN), {})
        if status["state"] == store.FAILED:
            name = store.read_json(store.join(run_dir, store.CONFIG))["name"]
            failed.append(
                {"run_id": store.run_id_of(run_dir), "name": name}
                | {k: status.get(k) for k in ("error", "attempt", "retryable")}
            )
        if status["state"] != store.DONE or design.get("role") == "stable":
            continue
        cfg = run_config(store.read_json(store.join(run_dir, store.CONFIG)))
        run = _run_columns(sweep, run_dir, cfg) | design
        run |= _provenance(status) | {"config_hash": run["run_id"], "loss": status["heldout_loss"]}
        run |= _repetition(status, run["tokens"])
        correct = {}
        if cfg.finetune.task:
            run |= _finetune_columns(cfg, status)
            correct = _correct(run_dir)
        heldout = [
            m
            for m in store.read_jsonl(store.join(run_dir, METRICS_FILE))
            if m["split"] == "heldout"
        ]
        # bits per byte: the tokenizer-independent companion of the loss (scaling.tokenizer)
        run["loss_bpb"] = heldout[-1].get("bpb") if heldout else None
        for row in store.read_eval(run_dir):  # the final model's rows; earlier checkpoints'
            final = row.get("step", run["steps"]) == run["steps"]
            if final and row["metric"] in correct:
                row["correct"] = correct[row["metric"]]
            (results if final else over_training).append(run | row)
        curves += [
            {k: run[k] for k in RUN_KEYS}
            | {"tokens_budget": run["tokens"]}
            | {k: m.get(k) for k in ("step", "tokens", "flops_6n", "flops_detailed", "loss", "bpb")}
            for m in heldout
        ]
    refused = store.read_json(store.join(sweep_dir, store.REFUSED), {})
    failed += [
        {"run_id": rid, "name": r["name"], "error": r["error"], "retryable": False}
        for rid, r in refused.items()
    ]
    pd.DataFrame(failed, columns=["run_id", "name", "error", "attempt", "retryable"]).to_csv(
        store.join(sweep_dir, FAILED_CSV), index=False
    )
    if not results:
        if quiet:
            return pd.DataFrame(), pd.DataFrame()
        raise ConfigError(
            "SWEEP_DIR", f"no finished run under {sweep_dir}", "run `scaling sweep` first"
        )
    results_df, curves_df = pd.DataFrame(results), pd.DataFrame(curves)
    results_df.to_csv(store.join(sweep_dir, RESULTS_CSV), index=False)
    results_df.to_parquet(store.join(sweep_dir, RESULTS_PARQUET), index=False)
    curves_df.to_csv(store.join(sweep_dir, CURVES_CSV), index=False)
    if over_training:
        pd.DataFrame(over_training).to_csv(store.join(sweep_dir, EVAL_CURVES_CSV), index=False)
    return results_df, curves_df
