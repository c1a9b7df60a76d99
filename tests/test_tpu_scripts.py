"""tpu/ launchers: the exact commands their dry runs print for a few topologies, the remote
shell snippets run for real against a fake worker, and the SLURM template run with a fake srun
whose tasks find their coordinator."""

import configparser
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaling import distributed

ROOT = Path(__file__).resolve().parent.parent
LAUNCH, SUBMIT = ROOT / "tpu" / "launch.py", ROOT / "tpu" / "slurm" / "submit.py"
SBATCH = ROOT / "tpu" / "slurm" / "train.sbatch"


def dry_run(script: Path, *args: str) -> list[list[str]]:
    """The commands a dry run prints, split as the shell would ('#' lines are comments)."""
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=True
    ).stdout
    return [shlex.split(line) for line in out.splitlines() if not line.startswith("#")]


def comment(*args: str) -> str:
    out = subprocess.run([sys.executable, str(LAUNCH), *args], capture_output=True, text=True)
    return out.stdout.splitlines()[0]


@pytest.mark.parametrize(
    "accelerator, gcloud_type, summary, version",
    [
        ("v4-8", "v4-8", "4 chips, 1 worker, 4 devices", "tpu-ubuntu2204-base"),
        ("v4-32", "v4-32", "16 chips, 4 workers, 16 devices", "tpu-ubuntu2204-base"),
        ("v5e-16", "v5litepod-16", "16 chips, 4 workers, 16 devices", "v2-alpha-tpuv5-lite"),
        ("v6e-8", "v6e-8", "8 chips, 1 worker, 8 devices", "v2-alpha-tpuv6e"),
    ],
)
def test_create_names_the_slice_and_its_topology(accelerator, gcloud_type, summary, version):
    args = ["create", "exp1", "--zone", "us-central2-b", "--accelerator-type", accelerator]
    assert dry_run(LAUNCH, *args, "--dry-run") == [
        ["gcloud", "compute", "tpus", "tpu-vm", "create", "exp1", "--zone", "us-central2-b"]
        + ["--accelerator-type", gcloud_type, "--version", version]
    ]
    assert comment(*args, "--dry-run") == f"# {gcloud_type}: {summary}"


def test_queued_spot_slice_is_created_waited_for_and_deleted_with_its_node():
    where = ["--zone", "us-west4-a", "--project", "p"]
    create = dry_run(
        LAUNCH,
        "create",
        "q",
        *where,
        "--accelerator-type",
        "v5e-16",
        "--queued",
        "--spot",
        "--dry-run",
    )
    assert create == [
        ["gcloud", "compute", "tpus", "queued-resources", "create", "q", "--node-id", "q"]
        + where
        + ["--accelerator-type", "v5litepod-16", "--runtime-version", "v2-alpha-tpuv5-lite"]
        + ["--spot"],
        ["gcloud", "compute", "tpus", "queued-resources", "describe", "q", *where]
        + ["--format", "value(state.state)"],
    ]
    assert dry_run(LAUNCH, "delete", "q", *where, "--queued", "--dry-run") == [
        ["gcloud", "compute", "tpus", "queued-resources", "delete", "q", *where]
        + ["--force", "--quiet"]
    ]
    assert dry_run(LAUNCH, "delete", "q", "--zone", "z", "--dry-run") == [
        ["gcloud", "compute", "tpus", "tpu-vm", "delete", "q", "--zone", "z", "--quiet"]
    ]


def test_unknown_accelerator_is_refused():
    run = subprocess.run(
        [sys.executable, str(LAUNCH), "create", "x", "--zone", "z", "--accelerator-type", "v9-8"],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and "unknown accelerator type 'v9-8'" in run.stderr


def test_install_copies_the_checkout_to_every_worker_with_the_pinned_jax():
    pack, copy, setup = dry_run(LAUNCH, "install", "exp1", "--zone", "z", "--dry-run")
    assert pack[:2] == ["bash", "-c"] and "git ls-files -z -co --exclude-standard" in pack[2]
    assert copy == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "/tmp/exp1-scaling.tar.gz"] + [
        "exp1:~/scaling.tar.gz",
        "--zone",
        "z",
        "--worker=all",
    ]
    assert setup[:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "exp1", "--zone", "z"] + [
        "--worker=all"
    ]
    pins = configparser.ConfigParser()
    pins.read(ROOT / "setup.cfg")
    jax_pin = next(r for r in pins["options"]["install_requires"].split() if r.startswith("jax=="))
    assert f"'jax[tpu]=={jax_pin.split('==')[1]}'" in setup[-1]
    assert "tar -xzf ~/scaling.tar.gz -C ~/scaling" in setup[-1]
    clone = dry_run(
        LAUNCH, "install", "exp1", "--zone", "z", "--git", "https://g/r", "--ref", "v1", "--dry-run"
    )
    assert "git clone -q https://g/r ~/scaling && git -C ~/scaling checkout -q v1" in clone[0][-1]


def test_run_logs_and_stop_address_every_worker_or_one():
    where = ["exp1", "--zone", "z"]
    (run,) = dry_run(LAUNCH, "run", *where, "--dry-run", "--", "train", "r.yaml")
    assert run[-3:-1] == ["--worker=all", "--command"] and "logs/scaling.log" in run[-1]
    (run,) = dry_run(
        LAUNCH,
        "run",
        *where,
        "--job",
        "demo",
        "--dry-run",
        "--",
        "sweep",
        "s.yaml",
        "--runs-dir",
        "/mnt/runs",
    )
    assert ".venv/bin/scaling sweep s.yaml --runs-dir /mnt/runs > logs/demo.log" in run[-1]
    (logs,) = dry_run(LAUNCH, "logs", *where, "--job", "demo", "--worker", "2", "--dry-run")
    assert logs[-3:] == ["--worker=2", "--command", "tail -n +1 -F ~/scaling/logs/demo.log"]
    (stop,) = dry_run(LAUNCH, "stop", *where, "--job", "demo", "--dry-run")
    assert stop[-3] == "--worker=all"


def test_run_needs_a_command():
    run = subprocess.run(
        [sys.executable, str(LAUNCH), "run", "x", "--zone", "z", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and "give the scaling command after --" in run.stderr


def test_the_remote_run_and_stop_snippets_work_on_a_worker(tmp_path):
    """Run the snippets `run` and `stop` send over ssh in a fake worker's home: the job starts
    detached with the TPU environment, logs, and stops by its process group."""
    fake = tmp_path / "scaling" / ".venv" / "bin" / "scaling"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/bash\necho "cluster=$SCALING_CLUSTER a=$A args=$*"\nsleep 60\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    home = {"HOME": str(tmp_path)}
    (run,) = dry_run(
        LAUNCH,
        "run",
        "x",
        "--zone",
        "z",
        "--job",
        "j",
        "--env",
        "A=1",
        "--dry-run",
        "--",
        "train",
        "my run.yaml",
    )
    subprocess.run(["bash", "-c", run[-1]], env=os.environ | home, check=True, timeout=10)
    log, pid = tmp_path / "scaling" / "logs" / "j.log", tmp_path / "scaling" / "logs" / "j.pid"
    for _ in range(100):
        if log.exists() and log.read_text():
            break
        time.sleep(0.05)
    assert log.read_text() == "cluster=tpu a=1 args=train my run.yaml\n"
    group = int(pid.read_text())
    assert os.getpgid(group) == group  # its own process group: stop can end all of it
    (stop,) = dry_run(LAUNCH, "stop", "x", "--zone", "z", "--job", "j", "--dry-run")
    try:
        subprocess.run(["bash", "-c", stop[-1]], env=os.environ | home, check=True, timeout=10)
        for _ in range(100):
            if _gone(group):
                break
            time.sleep(0.05)
        assert _gone(group)
    finally:
        if not _gone(group):
            os.killpg(group, signal.SIGKILL)


def _gone(pid: int) -> bool:
    """Exited (a zombie awaiting its reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_slurm_submit_asks_for_one_task_per_gpu():
    (cmd,) = dry_run(
        SUBMIT,
        "--nodes",
        "2",
        "--gpus-per-node",
        "8",
        "--partition",
        "gpu",
        "--time",
        "4:00:00",
        "--dry-run",
        "--",
        "train",
        "run.yaml",
    )
    assert cmd == [
        "sbatch",
        "--job-name=scaling",
        "--nodes=2",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--partition=gpu",
        "--time=4:00:00",
        str(SBATCH),
        "train",
        "run.yaml",
    ]


def test_slurm_template_runs_every_task_against_the_first_host(tmp_path):
    """The batch script under a fake srun that starts 2 nodes × 8 tasks' environments: every
    task's initialize_distributed finds the same coordinator and its own GPU."""
    srun = tmp_path / "srun"
    srun.write_text('#!/bin/bash\necho "srun $* port=$SCALING_COORDINATOR_PORT"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    job = {
        "SLURM_JOB_ID": "777",
        "SLURM_SUBMIT_DIR": str(ROOT),
        "PATH": f"{tmp_path}:/usr/bin:/bin",
    }
    out = subprocess.run(
        ["bash", str(SBATCH), "train", "run.yaml"],
        env=job,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    port = 61440 + 777 % 4096
    assert out.strip() == (
        f"srun --kill-on-bad-exit=1 --cpu-bind=none .venv/bin/scaling train run.yaml port={port}"
    )
    tasks = [
        job
        | {
            "SCALING_COORDINATOR_PORT": str(port),
            "SLURM_NTASKS": "16",
            "SLURM_PROCID": str(8 * node + gpu),
            "SLURM_LOCALID": str(gpu),
            "SLURM_STEP_NODELIST": "gpu[07-08]",
        }
        for node in range(2)
        for gpu in range(8)
    ]
    clusters = [distributed.detect_cluster(env) for env in tasks]
    assert {c.coordinator for c in clusters} == {f"gpu07:{port}"}
    assert [c.process_id for c in clusters] == list(range(16))
    assert [c.local_device_ids for c in clusters] == [(g,) for _ in range(2) for g in range(8)]
