"""Multi-host start-up: SLURM node lists, where a process finds its job (flags, SCALING_*,
SLURM, TPU VM), two local jax.distributed processes training like one, and a sweep launched on
both processes at once (as on a pod slice) trained like a single-process one."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import shard_cases as case
import yaml
from conftest import tiny_run

from experiments import store
from scaling import distributed
from scaling.config import ConfigError


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node01", ["node01"]),
        ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
        ("gpu[8-10],login1", ["gpu8", "gpu9", "gpu10", "login1"]),
        ("a[1-2]-ib,b3", ["a1-ib", "a2-ib", "b3"]),
        ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
        ("dgx-[009-011]", ["dgx-009", "dgx-010", "dgx-011"]),
    ],
)
def test_slurm_node_lists_expand_like_scontrol_show_hostnames(nodelist, hosts):
    assert distributed.expand_nodelist(nodelist) == hosts


def test_a_bad_range_in_a_node_list_is_an_error():
    with pytest.raises(ValueError, match="bad range"):
        distributed.expand_nodelist("node[04-01]")


SLURM = {
    "SLURM_NTASKS": "16",
    "SLURM_PROCID": "9",
    "SLURM_LOCALID": "1",
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
}


def test_slurm_tasks_find_the_first_host_and_their_gpu():
    c = distributed.detect_cluster(SLURM)
    assert (c.source, c.num_processes, c.process_id) == ("slurm", 16, 9)
    assert c.coordinator == f"gpu07:{61440 + 4242 % 4096}" and c.local_device_ids == (1,)
    port = distributed.detect_cluster(SLURM | {"SCALING_COORDINATOR_PORT": "1234"}).coordinator
    assert port == "gpu07:1234"
    # a task SLURM bound to one GPU (--gpus-per-task=1) sees only that one: no restriction
    bound = distributed.detect_cluster(SLURM | {"CUDA_VISIBLE_DEVICES": "1"})
    assert bound.local_device_ids is None
    unbound = distributed.detect_cluster(SLURM | {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert unbound.local_device_ids == (1,)


def test_a_single_slurm_task_is_a_single_process():
    assert distributed.detect_cluster(SLURM | {"SLURM_NTASKS": "1"}).source == "single"


def test_explicit_arguments_then_scaling_variables_take_precedence_over_slurm():
    c = distributed.detect_cluster(SLURM, coordinator="h:1", num_processes=2, process_id=1)
    assert (c.source, c.coordinator, c.process_id) == ("explicit", "h:1", 1)
    env = SLURM | {
        "SCALING_COORDINATOR": "10.0.0.1:8476",
        "SCALING_NUM_PROCESSES": "4",
        "SCALING_PROCESS_ID": "3",
    }
    c = distributed.detect_cluster(env)
    assert (c.source, c.coordinator, c.num_processes, c.process_id) == (
        "env",
        "10.0.0.1:8476",
        4,
        3,
    )


def test_tpu_vms_and_single_processes():
    assert distributed.detect_cluster({"SCALING_CLUSTER": "tpu"}).source == "tpu"
    assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "a,b"}).source == "tpu"
    assert distributed.detect_cluster({}) == distributed.Cluster("single")
    assert distributed.initialize_distributed(env={}) == distributed.Cluster("single")  # no-op


@pytest.mark.parametrize(
    "env, field",
    [
        ({"SCALING_NUM_PROCESSES": "2", "SCALING_PROCESS_ID": "0"}, "SCALING_COORDINATOR"),
        ({"SCALING_NUM_PROCESSES": "2", "SCALING_PROCESS_ID": "2"}, "SCALING_PROCESS_ID"),
        ({"SCALING_NUM_PROCESSES": "two"}, "SCALING_NUM_PROCESSES"),
        (SLURM | {"SLURM_JOB_NODELIST": "", "SLURM_STEP_NODELIST": ""}, "SLURM_JOB_NODELIST"),
    ],
)
def test_an_incomplete_environment_names_the_variable(env, field):
    with pytest.raises(ConfigError) as e:
        distributed.detect_cluster(env)
    assert e.value.field == field


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_process_local_batches_train_like_one():
    port = _free_port()
    procs = [
        case.run_worker(
            "multihost_worker.py",
            devices=2,
            env={
                "SCALING_COORDINATOR": f"127.0.0.1:{port}",
                "SCALING_NUM_PROCESSES": "2",
                "SCALING_PROCESS_ID": str(i),
            },
        )
        for i in range(2)
    ]
    try:
        reference = case.reference_losses()
    finally:
        results = [result for result, _ in case.results_of(procs, timeout=500)]
    for i, result in enumerate(results):
        assert result["cluster"] == ["env", i, 2] and result["main"] == (i == 0)
        assert result["devices"] == [4, 2]
        for losses in result["losses"].values():
            np.testing.assert_allclose(losses, reference, rtol=0, atol=1e-5)
    # both processes fetch the same whole state, whatever the mesh
    sums = [s for r in results for s in r["param_sum"].values()]
    np.testing.assert_allclose(sums, sums[0], rtol=1e-6)
    # each process built only its own half of every batch
    for mesh in ("dp4", "fsdp2_tp2"):
        assert [r["rows"][mesh] for r in results] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def _sweep(
    tmp_path, runs_dir: str, processes: int, devices: int
) -> list[subprocess.CompletedProcess]:
    """`scaling sweep` on `processes` jax.distributed processes of `devices` CPU devices each."""
    port = _free_port()
    cmd = [sys.executable, "-m", "experiments", "sweep", str(tmp_path / "sweep.yaml")]
    cmd += ["--runs-dir", str(tmp_path / runs_dir), "--no-report", "--no-tensorboard"]
    env = os.environ | {
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    if processes > 1:
        env |= {"SCALING_COORDINATOR": f"127.0.0.1:{port}", "SCALING_NUM_PROCESSES": str(processes)}
    procs = [
        subprocess.Popen(
            cmd,
            env=env | ({"SCALING_PROCESS_ID": str(i)} if processes > 1 else {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        done = [subprocess.CompletedProcess(p.args, 0, *p.communicate(timeout=400)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, d in zip(procs, done):
        assert p.returncode == 0, d.stderr[-4000:]
    return done


@pytest.mark.slow
def test_a_sweep_on_two_processes_trains_each_run_once_like_one_process(tmp_path):
    """Every process of the job runs the same `scaling sweep`; process 0 claims and the other
    follows. The parameters are split over both processes (fsdp 4), so checkpoints are written
    by both; the cooldown branches restore the stable run's. One process of 4 devices (dp4)
    gives the same numbers."""
    base = tiny_run(20) | {"mesh": {"data": 1, "fsdp": 4}}
    sweep = {
        "name": "pod",
        "base": base,
        "grid": {"train.tokens": [10 * 512, 20 * 512]},
        "cooldown": {"decay_fraction": 0.2},
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    lead, follower = _sweep(tmp_path, "pod_runs", processes=2, devices=2)
    assert "trained 3, already done 0, failed 0" in lead.stdout
    assert "sweep pod" not in follower.stdout and "trained" not in follower.stdout

    sweep_dir = tmp_path / "pod_runs" / "pod"
    runs = store.run_dirs(sweep_dir)
    assert len(runs) == 3
    for run_dir in runs:
        assert store.status(run_dir)["state"] == "done" and store.attempts(run_dir) == [1]
        rows = [(r["step"], r["split"]) for r in store.read_jsonl(f"{run_dir}/metrics.jsonl")]
        assert len(rows) == len(set(rows)) and rows  # written once, by process 0
        assert store.read_eval(run_dir)

    again = _sweep(tmp_path, "pod_runs", processes=2, devices=2)[0]
    assert "trained 0, already done 3" in again.stdout

    base["mesh"] = {"data": -1}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    _sweep(tmp_path, "one_runs", processes=1, devices=4)
    for run_dir in runs:
        one = tmp_path / "one_runs" / "pod" / run_dir.rsplit("/", 1)[-1]
        losses = [r["loss"] for r in store.read_jsonl(f"{run_dir}/metrics.jsonl")]
        reference = [r["loss"] for r in store.read_jsonl(f"{one}/metrics.jsonl")]
        np.testing.assert_allclose(losses, reference, rtol=0, atol=1e-5)
