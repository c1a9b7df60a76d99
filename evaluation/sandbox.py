"""Run untrusted generated Python programs, each in its own process, contained in layers.

Code evaluation (Chen et al. 2021) executes model completions, which may loop forever, fork,
allocate without bound or touch files and the network. Every program runs as a fresh
`python -I -S` (isolated mode, no site-packages) in a new temporary directory with a minimal
environment (HOME and TMPDIR are that directory), under these layers, each detected at runtime
(`evaluation.sandbox_layers.sandbox_setup`) and named in every result's `isolation`:

  user/network/pid/mount-namespace  `unshare`: a network namespace with no interface up (no
                  network, loopback included), a pid namespace whose processes all die with
                  it, and a private /proc
  landlock        the kernel's allow-list (Linux 5.13+): the program may write only in its
                  directory, read and execute only system software and the interpreter (not
                  /tmp, home directories or the project), and with newer kernels neither
                  connect over TCP nor signal anything outside the sandbox
  dedicated-uid   when the harness runs as root: an unused uid of the program's own, so
                  RLIMIT_NPROC binds, the user's files are unreadable unless world-readable and
                  unwritable unless world-writable (like /tmp), and its processes are found by
                  owner
  rlimits         CPU seconds, address space, file size, open files, processes, no core dumps
  process-group   the program leads its own session; its group is killed when it ends
  wall-clock      after timeout_s everything the program started is killed
  audit-hook      inside the program, a `sys.addaudithook` hook ends it with status 'denied' on
                  process creation, network use, ctypes, a write outside its directory or a
                  read outside it and the standard library, and on what would switch the hook
                  off (the garbage collector's object graph, tracers, sub-interpreters, native
                  code, rewriting the hook's code or defaults); frames are refused. Its state
                  is immutable, so a program that reaches the hook cannot change it.

The audit hook names the misbehaviour; the operating-system layers are the containment
(Python's documentation warns that audit hooks alone are no sandbox: some operations raise no
event, e.g. os.mkfifo and os.mknod create files wherever the user may; Landlock stops them, as
it stops whatever else slips past the hook). Without user namespaces, Landlock or root the
outer layers degrade to rlimits, the process group and the hook. Not covered: disk use inside
the program's directory is bounded per file (RLIMIT_FSIZE), not in total. Linux only (pidfds:
kernel 5.3 or later).

A caller may talk to a running program (`talk`): it writes to the program's stdin and reads
what the program writes to descriptor TALK_FD, while the program runs (evaluation.code_eval
judges completions this way: the verdict is reached in the harness, out of the program's reach).

This module is the parent's side: it launches each program, enforces the wall clock, kills
everything the program left and reads its result. The program that runs inside (supervisor,
Landlock, rlimits, audit hook) is `evaluation.sandbox_child`; which namespaces, Landlock version and
uid this machine allows is `evaluation.sandbox_layers`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from evaluation.sandbox_child import CHILD_PROGRAM, DENIED_EXIT, TALK_FD
from evaluation.sandbox_layers import UID_SLOTS, Setup, as_user, sandbox_setup, sandbox_uid
from scaling.config import ConfigError

STATUSES = ("ok", "failed", "timeout", "crashed", "killed", "denied")
_SIGNAL_STATUS = {signal.SIGXCPU: "timeout", signal.SIGKILL: "killed"}  # other signals: crashed
Talk = Callable[[BinaryIO, BinaryIO], None]  # talk(the program's stdin, its answers)


@dataclass(frozen=True)
class Limits:
    """Per-program limits. The wall clock always applies; the rlimits back it up."""

    timeout_s: float = 5.0  # wall clock
    cpu_s: float | None = None  # RLIMIT_CPU, rounded up to whole seconds; None: timeout_s
    memory_mb: int = 512  # RLIMIT_AS (address space, so a little above what a program uses)
    file_mb: int = 16  # RLIMIT_FSIZE: the largest file, stdout and stderr included
    open_files: int = 64  # RLIMIT_NOFILE
    processes: int = 16  # RLIMIT_NPROC: counts every process of the uid (and never root's)
    output_bytes: int = 64_000  # kept of each of stdout and stderr (its head and tail)

    def validate(self, where: str = "sandbox") -> None:
        minimums = {
            "timeout_s": (self.timeout_s, 0.01),
            "cpu_s": (1 if self.cpu_s is None else self.cpu_s, 1),
            "memory_mb": (self.memory_mb, 64),
            "file_mb": (self.file_mb, 1),
            "open_files": (self.open_files, 16),
            "processes": (self.processes, 1),
            "output_bytes": (self.output_bytes, 100),
        }
        for name, (value, least) in minimums.items():
            if not value >= least:
                raise ConfigError(
                    f"{where}.{name}",
                    f"{value} is below the least workable value {least}",
                    f"use at least {least}",
                )

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """(soft, hard) per resource name. The hard CPU limit is a second later: SIGXCPU at
        the soft limit, SIGKILL should a program ignore that."""
        cpu = math.ceil(self.timeout_s if self.cpu_s is None else self.cpu_s)
        same = lambda value: (value, value)
        return {
            "RLIMIT_CPU": (cpu, cpu + 1),
            "RLIMIT_AS": same(self.memory_mb << 20),
            "RLIMIT_FSIZE": same(self.file_mb << 20),
            "RLIMIT_NOFILE": same(self.open_files),
            "RLIMIT_NPROC": same(self.processes),
            "RLIMIT_CORE": same(0),
        }


@dataclass(frozen=True)
class SandboxResult:
    """How one program ended. returncode: its exit code, -signal when a signal ended it,
    None on timeout or when the sandbox could not report it."""

    status: str  # one of STATUSES
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    isolation: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.status == "ok"


def run_program(
    source: str, limits: Limits = Limits(), *, audit_hook: bool = True, talk: Talk | None = None
):
    """Run one Python program in the sandbox and say how it ended. audit_hook=False leaves
    only the operating-system layers (for programs that must start processes, and to test
    those layers). With `talk`, talk(to_program, answers) runs in a thread while the program
    runs: binary pipes to the program's stdin and from its descriptor TALK_FD (its stdout
    stays its own). The program's stdin closes when talk returns, and what talk raises is
    raised here once the program has ended. Returns a SandboxResult."""
    limits.validate()
    setup = sandbox_setup()
    with sandbox_uid(setup) as uid, _run_dir(uid) as (run_dir, workdir):
        main = workdir / "main.py"
        main.write_text(source, encoding="utf-8")
        if uid is not None:
            os.chown(main, uid, uid)
        return _execute(setup, limits, audit_hook, talk, uid, run_dir, workdir)


def run_many(
    sources: Sequence[str],
    limits: Limits = Limits(),
    *,
    workers: int | None = None,
    audit_hook: bool = True,
    talks: Sequence[Talk] | None = None,
) -> list[SandboxResult]:
    """run_program over many programs, `workers` at a time (default: one per core), in order;
    talks, if given, has one talk per program."""
    workers = workers or os.cpu_count() or 1
    if not 1 <= workers <= UID_SLOTS:
        raise ConfigError(
            "sandbox.workers",
            f"{workers} is outside 1..{UID_SLOTS}",
            f"use 1 to {UID_SLOTS} workers",
        )
    run = functools.partial(run_program, limits=limits, audit_hook=audit_hook)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda s, t: run(s, talk=t), sources, talks or [None] * len(sources)))


@contextmanager
def _run_dir(uid: int | None) -> Iterator[tuple[Path, Path]]:
    """A fresh directory holding the program's working directory (the only place it may
    write) and, beside it, its output files, which the program reaches only as descriptors."""
    run_dir = Path(tempfile.mkdtemp(prefix="sandbox-")).resolve()
    try:
        run_dir.chmod(0o711)  # the sandbox uid may pass through, not list
        workdir = run_dir / "work"
        workdir.mkdir(mode=0o700)
        if uid is not None:
            os.chown(workdir, uid, uid)
        yield run_dir, workdir
    finally:
        shutil.rmtree(run_dir, onerror=_unlock_and_retry)


def _unlock_and_retry(function, path, _exc_info) -> None:
    """A program may have taken away its own permissions on something it made (root needs no
    such help): give them back to the parent directory and the path, and try again."""
    for p in (os.path.dirname(path), path):
        with suppress(OSError):
            os.chmod(p, 0o700)
    with suppress(FileNotFoundError):
        function(path)


def _execute(
    setup: Setup,
    limits: Limits,
    audit_hook: bool,
    talk: Talk | None,
    uid: int | None,
    run_dir: Path,
    workdir: Path,
) -> SandboxResult:
    paths = {name: run_dir / name for name in ("stdout", "stderr", "status")}
    with ExitStack() as files:
        out, err, status = (files.enter_context(open(paths[n], "wb")) for n in paths)
        answers = talk_fd = None
        if talk:
            answers_fd, talk_fd = os.pipe()
            answers = files.enter_context(open(answers_fd, "rb"))
        config = {
            "status_fd": status.fileno(),
            "talk_fd": talk_fd,
            "talk_at": TALK_FD,
            "rlimits": limits.rlimits(),
            "audit_hook": audit_hook,
            "denied_exit": DENIED_EXIT,
            "landlock": setup.landlock,
        }
        command = [
            *setup.unshare,
            setup.python,
            "-I",
            "-S",
            "-c",
            CHILD_PROGRAM,
            json.dumps(config),
        ]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir)},
                stdin=subprocess.DEVNULL if talk is None else subprocess.PIPE,
                stdout=out,
                stderr=err,
                pass_fds=(status.fileno(),) + ((talk_fd,) if talk else ()),
                start_new_session=True,
                **as_user(uid),
            )
        finally:
            if talk_fd is not None:  # only the program may hold it, or answers never end
                os.close(talk_fd)
        finish_talk = _talk(talk, proc.stdin, answers) if talk else None
        timed_out = _ran_out_of_time(proc.pid, limits.timeout_s)
        duration = time.monotonic() - start
        _kill_everything(proc, uid)
        if finish_talk:
            finish_talk()
    wait_status = paths["status"].read_bytes()
    state, returncode = _status(int(wait_status) if wait_status else None, timed_out)
    return SandboxResult(
        state,
        returncode,
        _read_capped(paths["stdout"], limits.output_bytes),
        _read_capped(paths["stderr"], limits.output_bytes),
        duration,
        setup.layers(audit_hook),
    )


def _talk(talk: Talk, to_program: BinaryIO, answers: BinaryIO) -> Callable[[], None]:
    """Start talk(to_program, answers) in a thread; the function returned waits for it once the
    program is dead (its pipes then end, so talk cannot block) and raises what it raised."""
    raised = []

    def converse():
        try:
            talk(to_program, answers)
        except BaseException as e:  # raised in the caller's thread by finish()
            raised.append(e)
        finally:
            with suppress(OSError):
                to_program.close()  # the end of the program's input

    thread = threading.Thread(target=converse, daemon=True)
    thread.start()

    def finish():
        thread.join()
        if raised:
            raise raised[0]

    return finish


def _ran_out_of_time(pid: int, timeout_s: float) -> bool:
    """Wait on a pidfd, which does not reap the process: until we reap it, its process-group
    id cannot be recycled, so killing the group cannot hit a stranger."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return not poller.poll(timeout_s * 1000)
    finally:
        os.close(fd)


def _kill_everything(proc: subprocess.Popen, uid: int | None) -> None:
    """Kill the program's process group, reap its leader, then kill whatever of the run is
    still alive (in the group, or owned by the dedicated uid) until nothing is. With a pid
    namespace the kernel does most of this: its processes die with its first process."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5.0
    while (left := _members(proc.pid, uid)) and time.monotonic() < deadline:
        for pid in left:
            _kill(pid, proc.pid, uid)
        time.sleep(0.005)


def _member(pid: int, pgid: int, uid: int | None) -> bool:
    """Whether a live (not yet zombie) process belongs to the run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return False
    state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
    return state != "Z" and (int(pgrp) == pgid or owner == uid)


def _members(pgid: int, uid: int | None) -> list[int]:
    pids = (int(name) for name in os.listdir("/proc") if name.isdigit())
    return [pid for pid in pids if _member(pid, pgid, uid)]


def _kill(pid: int, pgid: int, uid: int | None) -> None:
    """SIGKILL through a pidfd, checked after it is opened, so a recycled pid is never hit."""
    with suppress(ProcessLookupError):
        fd = os.pidfd_open(pid)
        try:
            if _member(pid, pgid, uid):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)


def _status(wait_status: int | None, timed_out: bool) -> tuple[str, int | None]:
    if timed_out:
        return "timeout", None
    if wait_status is None:  # the supervisor died before reporting: the program took it down
        return "crashed", None
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return _SIGNAL_STATUS.get(-code, "crashed"), code
    return {0: "ok", DENIED_EXIT: "denied"}.get(code, "failed"), code


def _read_capped(path: Path, limit: int) -> str:
    """The file's text, or its head and tail with a note of what was cut."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if size <= limit:
            return f.read().decode("utf-8", "replace")
        head = f.read(limit // 2)
        f.seek(size - limit // 2)
        tail = f.read()
    cut = f"\n[... {size - len(head) - len(tail)} bytes cut ...]\n"
    return head.decode("utf-8", "replace") + cut + tail.decode("utf-8", "replace")
