"""Metrics reach TensorBoard event files and, in offline mode with no network, Weights & Biases."""

import glob
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_run

pytestmark = pytest.mark.slow


def tensorboard_scalars(run_dir) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} read back from the event files (TFRecord framing, Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = {}
    for path in glob.glob(f"{run_dir}/tensorboard/events.out.tfevents.*"):
        data, at = Path(path).read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4  # length, its crc, the record, its crc
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_metrics_go_to_tensorboard_and_to_wandb_offline(tmp_path):
    pytest.importorskip("wandb")
    sweep = tmp_path / "tracked.yaml"
    sweep.write_text(
        yaml.safe_dump({"name": "tracked", "base": tiny_run(20), "grid": {"train.seed": [0]}})
    )
    env = os.environ | {"JAX_PLATFORMS": "cpu", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)
    cmd = [sys.executable, "-m", "experiments", "sweep", str(sweep), "--no-report"]
    cmd += ["--runs-dir", str(tmp_path / "runs"), "--wandb", "scaling-test"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_dir,) = glob.glob(f"{tmp_path}/runs/tracked/*/")
    rows = [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]
    heldout = [r for r in rows if r["split"] == "heldout"]

    logged = tensorboard_scalars(run_dir)["heldout/loss"]
    assert logged == pytest.approx({r["step"]: r["loss"] for r in heldout}, rel=1e-6)

    # W&B offline: the run's log holds every held-out loss as a (key, JSON value) record.
    (wandb_log,) = glob.glob(f"{run_dir}/wandb/offline-run-*/run-*.wandb")
    data = Path(wandb_log).read_bytes()
    for row in heldout:
        value = json.dumps(row["loss"]).encode()
        assert b"\x0cheldout/loss\x82\x01" + bytes([len(value)]) + value in data, row
