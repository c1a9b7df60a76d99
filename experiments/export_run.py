"""A trained run handed to the field's tools, and a published small model brought in to be
evaluated like our own runs (`scaling export`, `scaling import-hf`: experiments/cli_export.py).

`export_run` restores a checkpoint of the run (the newest by default) and writes, with
scaling.export, a transformers checkpoint (`hf`: config.json, model.safetensors, tokenizer
files) or our parameters flattened (`npz`), plus a model card (README.md: the run's config,
parameter counts, tokens, FLOPs and held-out loss) and `scaling_run.json`, the same facts as data.

`import_hf` reads a local GPT-2- or Llama-layout checkpoint and writes a finished run
directory: config.json, an orbax checkpoint (the parameters, a fresh optimizer state) at the
run's last step, status.json and the tokenizer file. `scaling eval DIR` over the directory that
holds it evaluates it beside any other imported models. A checkpoint this project exported
comes back with its run's train and eval settings, step and held-out loss.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from experiments import store
from scaling import export
from scaling.config import ConfigError, ModelConfig, RunConfig, run_config
from scaling.families import label
from scaling.families.layers import mup_ratio
from scaling.flops import flops_per_token, param_counts
from scaling.tokenizer import BYTES
from scaling.train import checkpoint_manager, optimizer, optimizer_args, read_metrics, restore
from scaling.typed import build


def export_run(run_dir: Path, out: Path, step: int | None, fmt: str) -> str:
    """Write the run's checkpoint at `step` (None: the newest) into `out` as `fmt` (hf|npz);
    returns a line saying what was written."""
    if not (run_dir / store.CONFIG).is_file():
        raise ConfigError("RUN_DIR", f"no {store.CONFIG} in {run_dir}", "give a run's directory")
    cfg = run_config(store.read_json(store.join(run_dir, store.CONFIG)))
    if fmt == "hf":
        export.hf_family(cfg.model)  # a family without a layout fails before anything is read
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("OUT", f"{out} is not empty", "give a new directory or empty it")
    params, step = _restore(run_dir, cfg, step)
    tok = cfg.data.run_tokenizer()
    record = run_record(run_dir, cfg, step)
    if fmt == "hf":
        files = export.write_hf(out, params, cfg.model, tok)
    else:
        files = export.write_npz(out, params, cfg.to_dict())
    (out / export.RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    (out / "README.md").write_text(model_card(record, cfg, tok, fmt))
    listing = ", ".join([*files, export.RUN_RECORD, "README.md"])
    return f"{out}: step {step} of {run_dir.name} as {fmt} ({listing})"


def _restore(run_dir: Path, cfg: RunConfig, step: int | None):
    """(parameters, step) of the run's checkpoint at `step` (None: the newest)."""
    manager = checkpoint_manager(run_dir, cfg.train)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise ConfigError("RUN_DIR", f"no checkpoint in {run_dir}", "train the run first")
        step = steps[-1] if step is None else step
        if step not in steps:
            raise ConfigError("--step", f"no checkpoint at step {step}", f"use one of {steps}")
        return restore(manager, cfg, step)["params"], step
    finally:
        manager.close()


def run_record(run_dir: Path, cfg: RunConfig, step: int) -> dict:
    """What a reader of the export needs to know of its run, at `step`: the conventions are
    scaling.flops's (parameters after Kaplan et al. 2020; FLOPs 6·N·D and Hoffmann et al.
    2022's detailed count). The held-out loss is the one logged at that step, if any."""
    m = cfg.model
    tokens = step * cfg.train.batch_size * m.seq_len
    per_token = flops_per_token(m)
    heldout = [r for r in read_metrics(run_dir) if r["split"] == "heldout" and r["step"] == step]
    keep = ("task", "shots", "metric", "value", "stderr", "n_examples")
    scores = [
        {k: r.get(k) for k in keep} for r in store.read_eval(run_dir) if r.get("step") == step
    ]
    return {
        "run": run_dir.name,
        "git_commit": store.status(run_dir).get("provenance", {}).get("git_commit"),
        "step": step,
        "steps": cfg.steps,
        "tokens": tokens,
        "heldout_loss": heldout[-1]["loss"] if heldout else None,
        "heldout_bits_per_byte": heldout[-1].get("bpb") if heldout else None,
        "params": vars(param_counts(m)),
        "flops_6n": per_token.six_n * tokens,
        "flops_detailed": per_token.detailed * tokens,
        "few_shot": scores,
        "config": cfg.to_dict(),
    }


def model_card(record: dict, cfg: RunConfig, tok, fmt: str) -> str:
    """README.md of an export: what the model is, how it was trained, how to load it."""
    m, p = cfg.model, record["params"]
    loss = record["heldout_loss"]
    loss_text = "not measured at this step"
    if loss is not None:
        bpb = record["heldout_bits_per_byte"]
        loss_text = f"{loss:.4f} nats/token" + (f" ({bpb:.4f} bits/byte)" if bpb else "")
    notes = [
        f"Vocabulary: the model's {m.vocab_size} rows hold the tokenizer's {tok.vocab_size} ids"
        + (", the rest are padding (never a target)." if m.vocab_size > tok.vocab_size else "."),
        f"Tokenizer `{tok.name}`"
        + (": ids are the UTF-8 byte values, no special tokens." if tok.spec == BYTES else ".")
        + " Our runs add no BOS or EOS when encoding text.",
    ]
    if fmt == "hf" and m.mup_base_width:
        notes.append(
            f"µP: the output multiplier {mup_ratio(m):g} (base width {m.mup_base_width}) is "
            "folded into the weights the logits are linear in; the logits are ours."
        )
    if fmt == "hf":
        load = (
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            'model = AutoModelForCausalLM.from_pretrained("PATH")\n'
            'tokenizer = AutoTokenizer.from_pretrained("PATH")\n```\n'
        )
    else:
        load = (
            "```python\nimport numpy as np\n"
            'params = dict(np.load("PATH/params.npz"))  # `block_0/attn/qkv/kernel` -> array\n'
            "```\nThe parameters are as trained (flax layout); config.json is the run config.\n"
        )
    rows = [
        (
            "model",
            f"{label(m)} ({m.family}: {m.n_layer} layers, d_model {m.d_model}, "
            f"{m.n_head} heads, context {m.seq_len})",
        ),
        (
            "parameters",
            f"{p['total']:,} total, {p['non_embedding']:,} non-embedding, "
            f"{p['embedding']:,} embedding, {p['active']:,} active",
        ),
        ("checkpoint", f"step {record['step']} of {record['steps']}"),
        ("tokens", f"{record['tokens']:,}"),
        (
            "training FLOPs",
            f"{record['flops_6n']:.3e} (6·N·D), "
            f"{record['flops_detailed']:.3e} (detailed, Hoffmann et al. 2022 App. F)",
        ),
        ("held-out loss", loss_text),
    ]
    table = "".join(f"| {k} | {v} |\n" for k, v in rows)
    scores = "".join(
        f"| {r['task']} | {r['shots']} | {r['metric']} | {r['value']:.4g} ± {r['stderr']:.2g} "
        f"| {r['n_examples']} |\n"
        for r in record["few_shot"]
    )
    if scores:
        scores = (
            "## Few-shot scores at this step\n\n| task | shots | metric | value ± stderr | n |\n"
            f"|---|---|---|---|---|\n{scores}\n"
        )
    config = json.dumps(record["config"], indent=2)
    front = "---\nlibrary_name: transformers\ntags: [scaling-laws, jax]\n---\n\n"  # the Hub's
    return (
        (front if fmt == "hf" else "") + f"# {record['run']} at step {record['step']}\n\n"
        f"Trained with `scaling` (JAX/Flax, commit {record['git_commit'] or 'unknown'}), "
        f"exported as `{fmt}`.\n\n"
        f"| | |\n|---|---|\n{table}\n"
        + "".join(f"- {n}\n" for n in notes)
        + "\nParameters: non-embedding excludes the token and position embeddings and an "
        "untied output layer (Kaplan et al. 2020). FLOPs: 6·N_active·D, and the detailed count "
        "with attention, embeddings and logits, backward = 2× forward, the causal mask not "
        "halving attention (scaling/flops.py).\n\n"
        f"{scores}## Load\n\n{load}\n## Run config\n\n```json\n{config}\n```\n"
    )


# ---------------------------------------------------------------------------------------------
# import-hf


def import_hf(hf_dir: Path, out: Path, seq_len: int = 0, tokens: int = 0) -> str:
    """Write the run directory `out` of the checkpoint in hf_dir, with a context of seq_len
    (0: the model's) and `tokens` trained (0: unknown); returns a line saying what was done."""
    if (out / store.CONFIG).exists():
        raise ConfigError("OUT_RUN_DIR", f"{out} holds a run already", "give a new directory")
    checkpoint = export.read_hf(hf_dir)
    m, params = export.from_hf(checkpoint.config, checkpoint.tensors, str(hf_dir), seq_len)
    out.mkdir(parents=True, exist_ok=True)
    spec = checkpoint.tokenizer
    if spec != BYTES:  # the run's own copy, named by absolute path (configs name files so)
        spec = str((out / Path(spec).name).absolute())
        shutil.copyfile(checkpoint.tokenizer, spec)
    cfg = run_config(_imported_config(m, spec, checkpoint.run, tokens, hf_dir))
    _save(out, cfg, params)
    store.write_atomic(store.join(out, store.CONFIG), json.dumps(cfg.to_dict(), indent=1) + "\n")
    loss = (checkpoint.run or {}).get("heldout_loss")
    store.set_status(out, store.DONE, steps=cfg.steps, heldout_loss=loss, imported_from=str(hf_dir))
    return (
        f"{out}: {m.family} model of {hf_dir} at step {cfg.steps}; "
        f"evaluate it with `scaling eval {out.parent}`"
    )


def _imported_config(
    m: ModelConfig, spec: str, run: dict | None, tokens: int, hf_dir: Path
) -> dict:
    """The run config of an imported model. One we exported keeps its run's train and eval
    settings, its tokens ending at the exported step; another gets batches of one sequence and
    `tokens` (default: one context), so that eval rows carry the tokens it was trained on."""
    model = dataclasses.asdict(m)
    if run is not None:  # its own model config where it describes this model (d_ff, dtype)
        config = run["config"]
        own = build(ModelConfig, config["model"] | {"mup_base_width": 0, "seq_len": m.seq_len})
        model = dataclasses.asdict(own if export.same_model(own, m) else m)
        batch = config["train"]["batch_size"]
        train = config["train"] | {"tokens": run["step"] * batch * m.seq_len, "init_from": ""}
        return {
            "model": model,
            "data": {"tokenizer": spec},
            "train": train,
            "eval": config["eval"],
            "name": f"{run['run']} (imported)",
        }
    tokens = tokens or m.seq_len
    if tokens < m.seq_len:
        raise ConfigError("--tokens", f"{tokens} < one context of {m.seq_len}", "give more")
    train = {"tokens": tokens, "batch_size": 1, "warmup_steps": 0}
    return {"model": model, "data": {"tokenizer": spec}, "train": train, "name": hf_dir.name}


def _save(out: Path, cfg: RunConfig, params) -> None:
    """An orbax checkpoint of the train state at the run's last step: the imported parameters
    and a fresh optimizer state, the tree scaling.train.restore expects."""
    params = jax.tree.map(jnp.asarray, params)
    state = {"params": params, "opt_state": optimizer(*optimizer_args(cfg.train)).init(params)}
    manager = checkpoint_manager(out, cfg.train)
    try:
        manager.save(cfg.steps, args=ocp.args.StandardSave(state), force=True)
        manager.wait_until_finished()
    finally:
        manager.close()
