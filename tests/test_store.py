"""The run store: atomic claims, heartbeats, reclaiming, retries, on a filesystem and memory://."""

import json
import multiprocessing as mp
import subprocess
import sys

import pytest

from experiments import store

ROOTS = ["memory://store-test", "local"]


@pytest.fixture(params=ROOTS)
def run_dir(request, tmp_path):
    root = str(tmp_path) if request.param == "local" else f"{request.param}/{tmp_path.name}"
    url = store.join(root, "sweep", "r1")
    store.claim_config(url, {"a": 1, "name": "x", "mesh": {}})
    return url


def test_one_claim_wins_and_finishing_ends_claims(run_dir):
    first = store.claim(run_dir, "w1", stale_after=60, max_attempts=3)
    assert first.attempt == 1 and store.status(run_dir)["state"] == store.RUNNING
    assert store.claim(run_dir, "w2", stale_after=60, max_attempts=3) is None  # alive owner
    first.heartbeat(step=5, train_loss=2.0)
    assert store.owner(run_dir)["step"] == 5
    first.finish(store.DONE, heldout_loss=1.5)
    assert store.claim(run_dir, "w2", stale_after=60, max_attempts=3) is None
    assert store.status(run_dir)["heldout_loss"] == 1.5
    assert store.run_dirs(run_dir.rsplit("/", 1)[0]) == [run_dir]


def test_stale_heartbeat_is_reclaimed_and_the_old_owner_stops(run_dir):
    old = store.claim(run_dir, "w1", stale_after=60, max_attempts=3)
    assert store.claim(run_dir, "w2", stale_after=60, max_attempts=3) is None
    new = store.claim(run_dir, "w2", stale_after=0, max_attempts=3)  # heartbeat now "stale"
    assert new.attempt == 2
    with pytest.raises(store.LostClaim):
        old.heartbeat(step=1)
    with pytest.raises(store.LostClaim):
        old.finish(store.DONE)
    assert store.status(run_dir)["state"] == store.RUNNING


def test_retries_stop_at_the_limit_and_divergence_is_not_retried(run_dir):
    for attempt in (1, 2):
        claim = store.claim(run_dir, "w", stale_after=60, max_attempts=2)
        assert claim.attempt == attempt
        claim.finish(store.FAILED, error="OSError: disk", retryable=True)
    assert store.claim(run_dir, "w", stale_after=60, max_attempts=2) is None
    other = store.join(run_dir.rsplit("/", 1)[0], "r2")
    store.claim_config(other, {"a": 2, "name": "y", "mesh": {}})
    store.claim(other, "w", 60, 3).finish(store.FAILED, error="Diverged", retryable=False)
    assert store.claim(other, "w", 60, 3) is None
    assert store.status(other)["error"] == "Diverged"


def test_lost_attempts_do_not_use_up_the_retries(run_dir):
    """Five stale (killed, preempted) attempts in a row: the run is still claimable with
    max_attempts=2, and a failure after them is the first that counts."""
    for attempt in range(1, 6):
        assert store.claim(run_dir, "w", stale_after=0, max_attempts=2).attempt == attempt
    claim = store.claim(run_dir, "w", stale_after=0, max_attempts=2)
    claim.finish(store.FAILED, error="OSError: disk", retryable=True)
    n = store.attempts(run_dir)
    assert len(n) == 6 and store.failures(run_dir, n) == 1
    assert store.claim(run_dir, "w", stale_after=0, max_attempts=2).attempt == 7
    for _ in range(store.LOST_ATTEMPTS):  # a run that kills its worker every time stops
        store.claim(run_dir, "w", stale_after=0, max_attempts=2)
    assert store.claim(run_dir, "w", stale_after=0, max_attempts=2) is None


def test_a_dead_owner_on_this_host_is_reclaimed_at_once(tmp_path):
    url = str(tmp_path / "r")
    store.claim_config(url, {"name": ""})
    code = (
        "from experiments import store; "
        f"store.claim({url!r}, 'doomed', stale_after=3600, max_attempts=3)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # claims, then exits
    assert store.owner(url)["worker"] == "doomed"
    assert store.claim(url, "heir", stale_after=3600, max_attempts=3).attempt == 2


def _race(url, barrier, results):
    barrier.wait()
    claim = store.claim(url, "racer", stale_after=3600, max_attempts=99)
    results.put(claim.attempt if claim else None)


def test_racing_processes_claim_a_run_once(tmp_path):
    url = str(tmp_path / "r")
    store.claim_config(url, {"name": ""})
    # spawn, not fork: other tests of this pytest process have started JAX's threads, and a
    # forked child of a multithreaded process can deadlock.
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(url, barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    won = [results.get() for _ in procs]
    assert sorted(won, key=str) == [1] + [None] * 7
    assert store.attempts(url) == [1]


def test_config_mismatch_and_atomic_status(tmp_path):
    store.claim_config(tmp_path, {"a": (1, 2), "name": "x"})
    store.claim_config(tmp_path, {"a": [1, 2], "name": "renamed"})  # same run
    with pytest.raises(RuntimeError, match="different run"):
        store.claim_config(tmp_path, {"a": [1, 3], "name": "x"})
    store.set_status(tmp_path, store.RUNNING, steps=3)
    store.set_status(tmp_path, store.DONE, heldout_loss=1.5)
    status = json.loads((tmp_path / store.STATUS).read_text())
    assert status["state"] == "done" and status["steps"] == 3 and status["heldout_loss"] == 1.5
    assert not list(tmp_path.glob("*.tmp*"))
