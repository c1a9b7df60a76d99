"""scaling.train.train() itself on a device mesh: the same held-out losses as on one device,
and a run resumed on a different mesh ends where an uninterrupted one does."""

import json
import os
import subprocess
import sys

import pytest

from scaling.config import run_config
from scaling.train import read_metrics, train

RUN = {
    "model": {"n_layer": 2, "d_model": 64, "n_head": 4, "d_ff": 256, "seq_len": 64},
    "data": {"synthetic_chars": 100_000},
    "train": {
        "tokens": 12 * 8 * 64,
        "batch_size": 8,
        "warmup_steps": 2,
        "log_every": 4,
        "eval_every": 4,
        "checkpoint_every": 6,
        "eval_batches": 2,
    },
}
WORKER = """
import json, sys
from pathlib import Path
from scaling.config import run_config
from scaling.train import read_metrics, train
raw, run_dir, stop = json.loads(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
class Stop(Exception): pass
def on_step(done, params):
    if done == stop: raise Stop
try:
    train(run_config(raw), run_dir, on_step=on_step)
except Stop:
    pass
print(json.dumps([r["loss"] for r in read_metrics(run_dir) if r["split"] == "heldout"]))
"""


def _on_mesh(raw: dict, run_dir, mesh: dict, stop: int = 0) -> list[float]:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps({**raw, "mesh": mesh}), str(run_dir), str(stop)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_train_on_meshes_matches_one_device_and_resumes_across_meshes(tmp_path):
    train(run_config(RUN), tmp_path / "one")
    one = [r["loss"] for r in read_metrics(tmp_path / "one") if r["split"] == "heldout"]
    mesh = _on_mesh(RUN, tmp_path / "mesh", {"data": 2, "fsdp": 2, "tensor": 2})
    assert mesh == pytest.approx(one, abs=1e-5)
    # killed at step 8 (checkpoint at 6) on dp2×fsdp2×tp2, resumed on fsdp4×tp2
    _on_mesh(RUN, tmp_path / "moved", {"data": 2, "fsdp": 2, "tensor": 2}, stop=8)
    moved = _on_mesh(RUN, tmp_path / "moved", {"data": 1, "fsdp": 4, "tensor": 2})
    assert moved == pytest.approx(one, abs=1e-5)
