"""The run store: `<runs_dir>/<sweep>/<label>-<run_id>/` on a local or shared filesystem or any
fsspec URL (`gs://…`, `s3://…`, `memory://…`), through one path abstraction (fsspec). The label
(the run's name in the sweep, e.g. `s3-400000`) makes a listing readable; the run id after the
last '-' is the run's identity (`run_id_of`). `locate` finds a run's directory whatever its label
and also in the bare `<run_id>/` form earlier versions wrote, so an old sweep resumes.

    config.json     the run's resolved config
    design.json     how the sweep's design chose the run (IsoFLOP budget, cooldown role)
    status.json     state (pending → running → done | failed), attempt, error and traceback,
                    final numbers and provenance
    attempts/<n>    one file per claim of the run: its owner (host, pid, worker) and heartbeat
                    (time, step, loss, tokens/s), rewritten by that owner while it trains
    metrics.jsonl · eval.jsonl · checkpoints/   written by training and evaluation
    test_items.jsonl   a fine-tune's score on each of its test items

A worker claims a run by creating attempts/<n+1> exclusively (O_EXCL on a filesystem, a create
that fails if the object exists on an object store), n being the newest attempt: of any number
of launchers or workers racing for a run, exactly one wins. A run can be claimed when it is
pending, failed with a retryable error, or owned by a dead worker: its heartbeat is older than
`stale_after` seconds, or its owner ran on this host and that process is gone (kill -9). The
number of attempts is the retry limit. An owner that finds a newer attempt than its own has
been replaced; it stops (`LostClaim`) and writes nothing more. Small files are replaced whole
(a temporary file and a rename on a filesystem, one PUT on an object store), so a kill never
leaves a half-written status.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import fsspec
from fsspec.implementations.local import LocalFileSystem

CONFIG, STATUS, EVAL, ATTEMPTS = "config.json", "status.json", "eval.jsonl", "attempts"
DESIGN = "design.json"
TEST_ITEMS = "test_items.jsonl"  # a fine-tune's score on each of its test items
REFUSED = "refused_runs.json"  # in the sweep directory: run id -> why its claim was refused
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
HOST = socket.gethostname()
# Config fields that do not change the numbers a run produces: its display name and its device
# layout. Neither is part of a run's identity (experiments.sweep.run_id, claim_config).
NOT_IDENTITY = ("name", "mesh")
RUN_ID = re.compile(r"[0-9a-f]{12}")  # experiments.sweep.run_id
LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
LABEL_MAX = 64  # characters of a label kept in a directory name
LOST_ATTEMPTS = 20  # killed or stale attempts of one run before it is left alone (claimable)


class LostClaim(RuntimeError):
    """Another worker reclaimed this run (our heartbeat went stale): stop without writing."""


def _fs(url) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(str(url))


def join(url, *parts: str) -> str:
    """A child path of a local path or URL, as a string (fsspec paths are '/'-separated)."""
    return posixpath.join(str(url), *parts)


def exists(url) -> bool:
    fs, path = _fs(url)
    return fs.exists(path)


def write_atomic(url, content: str | bytes) -> None:
    fs, path = _fs(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:  # an object PUT is atomic by itself
        fs.pipe_file(path, data)


def create_exclusive(url, text: str) -> bool:
    """Create the file with this content unless it exists; True if we created it. On a
    filesystem: write a temporary file and hard-link it into place (atomic and exclusive, also
    on NFS), so nobody ever reads it half-written; on an object store: a conditional create."""
    fs, path = _fs(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    try:
        if isinstance(fs, LocalFileSystem):
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(text)
            try:
                os.link(tmp, path)
            finally:
                os.remove(tmp)
        else:
            with fs.open(path, "xb") as f:
                f.write(text.encode())
    except FileExistsError:
        return False
    return True


def read_bytes(url, default: bytes | None = None) -> bytes | None:
    fs, path = _fs(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return default


def remove(url) -> None:
    """Delete a file if it exists."""
    fs, path = _fs(url)
    if fs.exists(path):
        fs.rm_file(path)


def read_text(url, default: str | None = None) -> str | None:
    data = read_bytes(url)
    return default if data is None else data.decode()


def read_json(url, default=None):
    text = read_text(url)
    return default if text is None else json.loads(text)


def read_jsonl(url) -> list[dict]:
    return [json.loads(r) for r in (read_text(url) or "").splitlines() if r]


def basename(url) -> str:
    return str(url).rstrip("/").rsplit("/", 1)[-1]


def children(url) -> list[str]:
    """The names in a directory; [] when it does not exist."""
    fs, path = _fs(url)
    try:
        return [basename(p) for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []


def run_dirs(sweep_dir) -> list[str]:
    """Every run directory (one holding config.json) under a sweep directory, sorted."""
    dirs = sorted(children(sweep_dir))
    return [join(sweep_dir, d) for d in dirs if exists(join(sweep_dir, d, CONFIG))]


def dir_name(run_id: str, label: str = "") -> str:
    """`<label>-<run_id>`, the label made safe for any filesystem or bucket ([A-Za-z0-9._-],
    at most LABEL_MAX characters); the bare run id when there is no label left."""
    label = LABEL_UNSAFE.sub("_", label)[:LABEL_MAX].strip("._-")
    return f"{label}-{run_id}" if label else run_id


def run_id_of(run_dir) -> str:
    """The run id a run directory's name carries: what follows the last '-' when it is a run
    id, else the whole name (a bare-id directory of an earlier version, or a --run-dir)."""
    name = basename(run_dir)
    label, _, tail = name.rpartition("-")
    return tail if label and RUN_ID.fullmatch(tail) else name


def locate(sweep_dir, run_id: str, label: str = "") -> str:
    """The directory of run `run_id` under sweep_dir: the one that exists, whatever its label
    (renaming a run keeps its id, hence its directory) or in the bare-id form of earlier
    versions, so that a re-run resumes it; else a new `<label>-<run_id>`."""
    wanted = dir_name(run_id, label)
    found = sorted(n for n in children(sweep_dir) if run_id_of(n) == run_id)
    return join(sweep_dir, wanted if wanted in found or not found else found[0])


def status(run_dir) -> dict:
    return read_json(join(run_dir, STATUS), {"state": PENDING})


def set_status(run_dir, state: str, **info) -> None:
    record = status(run_dir) | info | {"state": state, "updated": time.time()}
    record = {k: v for k, v in record.items() if v is not None}  # None clears a field
    write_atomic(join(run_dir, STATUS), json.dumps(record, indent=1) + "\n")


def write_eval(run_dir, rows: list[dict]) -> None:
    write_atomic(join(run_dir, EVAL), "".join(json.dumps(r) + "\n" for r in rows))


def read_eval(run_dir) -> list[dict]:
    return read_jsonl(join(run_dir, EVAL))


def claim_config(run_dir, config: dict, normalize: Callable[[dict], dict] | None = None) -> None:
    """Write config.json, or check that the directory already holds this very run: the stored
    config equals this one, name and mesh aside, values compared as JSON writes them (so a NaN
    in a config equals the NaN stored for it, where NaN != NaN in Python). `normalize` (the
    config loader) first fills in fields added to the schema since the stored file was
    written."""
    fs, path = _fs(run_dir)
    fs.makedirs(path, exist_ok=True)
    existing = read_json(join(run_dir, CONFIG))
    if existing is None:
        write_atomic(join(run_dir, CONFIG), json.dumps(config, indent=1) + "\n")
        return
    ours, stored = (
        _flat(json.loads(json.dumps(c)))  # tuples become lists, as JSON stores them
        for c in (config, normalize(existing) if normalize else existing)
    )
    same = lambda a, b: json.dumps(a) == json.dumps(b)  # noqa: E731 — NaN equals NaN here
    differ = sorted(k for k in ours.keys() | stored.keys() if not same(ours.get(k), stored.get(k)))
    if differ:
        raise ClaimRefused(
            f"{run_dir} holds a different run's config.json ({', '.join(differ)} differ); "
            "move it away or use another --runs-dir"
        )


class ClaimRefused(RuntimeError):
    """The run's directory holds another run: not ours to train or to mark. The sweep records
    the refusal in its own REFUSED file (failed_runs.csv lists it) and never retries it."""


def _flat(config: dict, prefix: str = "") -> dict:
    """{'train.seed': 0, ...}, the NOT_IDENTITY fields left out."""
    out = {}
    for key, value in config.items():
        if prefix or key not in NOT_IDENTITY:
            if isinstance(value, dict):
                out |= _flat(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
    return out


def attempts(run_dir) -> list[int]:
    return sorted(int(n) for n in children(join(run_dir, ATTEMPTS)) if n.isdigit())


def owner(run_dir) -> dict | None:
    """The newest attempt's record (owner and heartbeat), None when the run was never claimed."""
    n = attempts(run_dir)
    return read_json(join(run_dir, ATTEMPTS, str(n[-1]))) if n else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def owner_dead(record: dict, stale_after: float, now: float | None = None) -> bool:
    """No heartbeat for stale_after seconds, or the owner ran on this host and is gone."""
    now = time.time() if now is None else now
    if now - record["heartbeat"] > stale_after:
        return True
    return record["host"] == HOST and not _pid_alive(record["pid"])


def failures(run_dir, n: list[int]) -> int:
    """How many of attempts n ended in a failure of the run itself (Claim.finish(FAILED)). An
    attempt whose worker was killed, preempted or lost its heartbeat is not one: the run did
    nothing wrong, and a run preempted again and again must still finish."""
    records = (read_json(join(run_dir, ATTEMPTS, str(i)), {}) for i in n)
    return sum(r.get("outcome") == FAILED for r in records)


def claimable(run_dir, stale_after: float, max_attempts: int, n: list[int]) -> bool:
    """Whether the run, whose attempts so far are n, may be claimed now: not done, fewer than
    max_attempts failures, fewer than LOST_ATTEMPTS lost attempts besides (a bound on a run
    that kills its own worker every time, e.g. out of host memory), and no live owner."""
    state = status(run_dir)
    if state["state"] == DONE:
        return False
    failed = failures(run_dir, n)
    if failed >= max_attempts or len(n) - failed >= LOST_ATTEMPTS:
        return False
    if state["state"] == FAILED:
        return state.get("retryable", True)
    return not n or owner_dead(read_json(join(run_dir, ATTEMPTS, str(n[-1]))), stale_after)


@dataclass(frozen=True)
class Claim:
    run_dir: str
    attempt: int
    worker: str

    def record(self, **progress) -> dict:
        now = time.time()
        return {
            "worker": self.worker,
            "host": HOST,
            "pid": os.getpid(),
            "heartbeat": now,
        } | progress

    def owned(self) -> bool:
        return attempts(self.run_dir)[-1] == self.attempt

    def heartbeat(self, **progress) -> None:
        """Refresh our attempt record (step, loss, …); raise LostClaim if we were replaced."""
        if not self.owned():
            raise LostClaim(f"{self.run_dir}: attempt {self.attempt} was superseded")
        write_atomic(
            join(self.run_dir, ATTEMPTS, str(self.attempt)), json.dumps(self.record(**progress))
        )

    def finish(self, state: str, **info) -> None:
        """Write the final status, unless another worker took the run over meanwhile."""
        if not self.owned():
            raise LostClaim(f"{self.run_dir}: attempt {self.attempt} was superseded")
        record = read_json(join(self.run_dir, ATTEMPTS, str(self.attempt)), {})
        write_atomic(
            join(self.run_dir, ATTEMPTS, str(self.attempt)), json.dumps(record | {"outcome": state})
        )
        set_status(self.run_dir, state, attempt=self.attempt, **info)


def claim(run_dir, worker: str, stale_after: float, max_attempts: int) -> Claim | None:
    """Claim the run for this worker, or None when it is done, failed for good (max_attempts
    failures), lost too often, or being trained by a live worker (including one that won the
    race just now)."""
    n = attempts(run_dir)  # read once: the attempt we create must follow the one we judged
    if not claimable(run_dir, stale_after, max_attempts, n):
        return None
    attempt = (n[-1] if n else 0) + 1
    ours = Claim(str(run_dir), attempt, worker)
    if not create_exclusive(join(run_dir, ATTEMPTS, str(attempt)), json.dumps(ours.record())):
        return None  # another worker created this attempt first
    cleared = {"error": None, "traceback": None, "retryable": None}
    set_status(run_dir, RUNNING, attempt=attempt, worker=worker, started=time.time(), **cleared)
    return ours
