"""Run directories: `<runs_dir>/<sweep>/<run_id>/` with config.json, status.json, metrics.jsonl,
eval.jsonl and checkpoints/.

Small files are written atomically (a temporary file, then os.replace), so a kill never leaves a
half-written status or eval file. States: pending → running → done | failed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

CONFIG, STATUS, EVAL = "config.json", "status.json", "eval.jsonl"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.exists() else default


def status(run_dir: Path) -> dict:
    return read_json(run_dir / STATUS, {"state": PENDING})


def set_status(run_dir: Path, state: str, **info) -> None:
    record = status(run_dir) | info | {"state": state, "updated": time.time()}
    write_atomic(run_dir / STATUS, json.dumps(record, indent=1) + "\n")


def write_eval(run_dir: Path, rows: list[dict]) -> None:
    write_atomic(run_dir / EVAL, "".join(json.dumps(r) + "\n" for r in rows))


def read_eval(run_dir: Path) -> list[dict]:
    path = run_dir / EVAL
    return [json.loads(r) for r in path.read_text().splitlines() if r] if path.exists() else []


def claim_config(run_dir: Path, config: dict) -> None:
    """Write config.json, or check that the directory already holds this very run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(config))  # tuples become lists, as in the stored file
    existing = read_json(run_dir / CONFIG)
    if existing is None:
        write_atomic(run_dir / CONFIG, json.dumps(config, indent=1) + "\n")
    elif {**existing, "name": None, "mesh": None} != {**config, "name": None, "mesh": None}:
        raise RuntimeError(
            f"{run_dir} holds a different run's config.json; move it away or use another --runs-dir"
        )
