"""The TPU executor end to end against a fake `gcloud`: `scaling sweep --executor tpu` sends
each run to a free slice through tpu/launch.py run --wait; the fake runs the ssh command on
every "worker" of the slice (local processes joined by jax.distributed on 127.0.0.1, each in
its own home with ~/scaling/.venv), as gcloud compute tpus tpu-vm ssh --worker=all does."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_run

from experiments import store
from experiments.executors import TASKS_DIR, TpuExecutor

pytestmark = pytest.mark.slow
VENV = Path(sys.executable).parent.parent

# Slice "pod" has 2 workers, any other 1. Each worker gets 2 CPU devices; a run's fsdp spans them.
FAKE_GCLOUD = """\
import os, socket, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
assert args[:4] == ["compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in args, args
name, command = args[4], args[args.index("--command") + 1]
workers = 2 if name == "pod" else 1
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
procs = []
for i in range(workers):
    home = os.path.join(os.environ["FAKE_HOMES"], f"{name}-{i}")
    os.makedirs(os.path.join(home, "scaling"), exist_ok=True)
    venv = os.path.join(home, "scaling", ".venv")
    if not os.path.exists(venv):
        os.symlink(os.environ["FAKE_VENV"], venv)
    env = os.environ | {
        "HOME": home,
        "SCALING_COORDINATOR": f"127.0.0.1:{port}",
        "SCALING_NUM_PROCESSES": str(workers),
        "SCALING_PROCESS_ID": str(i),
    }
    procs.append(subprocess.Popen(["bash", "-c", command], env=env))
sys.exit(max(p.wait() for p in procs))
"""


@pytest.fixture
def fake_gcloud(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(f"#!{sys.executable}\n{FAKE_GCLOUD}")
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
    return os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "gcloud.log"),
        "FAKE_HOMES": str(tmp_path / "homes"),
        "FAKE_VENV": str(VENV),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }


def test_the_command_sent_to_a_slice():
    executor = TpuExecutor(("pod",), "us-central2-b", "proj")
    cmd = executor.command("pod", "gs://b/runs/s/.tasks/r-1.pkl", "r-1")
    assert cmd[2:] == [
        "run",
        "pod",
        "--zone",
        "us-central2-b",
        "--project",
        "proj",
        "--job",
        "r-1",
        "--wait",
        "--",
        "task",
        "gs://b/runs/s/.tasks/r-1.pkl",
    ]


def test_a_sweep_on_two_fake_slices_trains_every_run_once(tmp_path, fake_gcloud):
    sweep = {
        "name": "tpus",
        "base": tiny_run(20) | {"mesh": {"data": -1, "fsdp": 2}},
        "grid": {"train.seed": [0, 1]},  # one run per slice: they take one each at once
    }
    path = tmp_path / "tpus.yaml"
    path.write_text(yaml.safe_dump(sweep))
    cmd = [sys.executable, "-m", "experiments", "sweep", str(path), "--no-report"]
    cmd += ["--runs-dir", str(tmp_path / "runs"), "--no-tensorboard", "--executor", "tpu"]
    cmd += ["--slices", "pod,vm", "--zone", "us-central2-b"]
    run = subprocess.run(cmd, env=fake_gcloud, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "trained 2, already done 0, failed 0" in run.stdout

    sweep_dir = tmp_path / "runs" / "tpus"
    devices = set()
    for run_dir in store.run_dirs(sweep_dir):
        status = store.status(run_dir)
        assert status["state"] == "done" and store.attempts(run_dir) == [1]
        devices.add(status["provenance"]["device_count"])
    assert devices == {4, 2} and len(store.run_dirs(sweep_dir)) == 2  # both slices trained
    calls = (tmp_path / "gcloud.log").read_text().splitlines()
    assert len(calls) == 2 and {c.split()[4] for c in calls} == {"pod", "vm"}
    assert all("--worker=all" in c and "SCALING_CLUSTER=tpu" in c for c in calls)
    assert not list((sweep_dir / TASKS_DIR).iterdir())  # tasks and results cleaned up
    logs = list((tmp_path / "homes").glob("*/scaling/logs/*.log"))
    assert logs  # each worker's output went to its own ~/scaling/logs/JOB.log


def test_a_slice_that_fails_to_start_gives_a_lost_run_with_the_reason(tmp_path, fake_gcloud):
    sweep = {"name": "gone", "base": tiny_run(20), "grid": {"train.seed": [0]}}
    path = tmp_path / "gone.yaml"
    path.write_text(yaml.safe_dump(sweep))
    env = fake_gcloud | {"FAKE_VENV": str(tmp_path / "no-venv")}  # the worker cannot start it
    cmd = [sys.executable, "-m", "experiments", "sweep", str(path), "--no-report"]
    cmd += ["--runs-dir", str(tmp_path / "runs"), "--executor", "tpu", "--slices", "vm"]
    cmd += ["--zone", "z", "--max-attempts", "1"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "held elsewhere 1" in run.stdout
    assert "slice vm: exit 127" in run.stderr  # the reason, from the launcher's output
