"""`scaling export` and `scaling import-hf` (the work: experiments/export_run.py).

scaling export RUN_DIR OUT [--step N] [--format hf|npz]
scaling import-hf HF_DIR OUT_RUN_DIR [--seq-len N] [--tokens N]
"""

from __future__ import annotations

from pathlib import Path


def count(text: str) -> int:
    """A whole number written as papers write it: 3e11 or 300000000000."""
    value = float(text)
    if value != int(value) or value < 0:
        raise ValueError(text)
    return int(value)


def cmd_export(args) -> int:
    from experiments.export_run import export_run

    print(export_run(Path(args.run_dir), Path(args.out), args.step, args.format))
    return 0


def cmd_import_hf(args) -> int:
    from experiments.export_run import import_hf

    print(import_hf(Path(args.hf_dir), Path(args.out_run_dir), args.seq_len, args.tokens))
    return 0


def add_parser(sub) -> None:
    e = sub.add_parser("export", help="a run's checkpoint as a Hugging Face model or an npz")
    e.add_argument("run_dir", help="a run directory (runs/<sweep>/<label>-<run_id>)")
    e.add_argument("out", help="the directory to write")
    e.add_argument("--step", type=int, help="the checkpoint's step (default: the newest)")
    e.add_argument("--format", choices=("hf", "npz"), default="hf", help="default: hf")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("import-hf", help="a local Hugging Face GPT-2/Llama checkpoint as a run")
    i.add_argument("hf_dir", help="config.json, model.safetensors, tokenizer.json or .model")
    i.add_argument("out_run_dir", help="the run directory to write (evaluate its parent)")
    i.add_argument("--seq-len", type=int, default=0, help="a shorter context than the model's")
    i.add_argument("--tokens", type=count, default=0, help="tokens it was trained on (3e11)")
    i.set_defaults(func=cmd_import_hf)
