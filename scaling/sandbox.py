"""Run untrusted generated Python programs, each in its own process, contained in layers.

Code evaluation (Chen et al. 2021) executes model completions, which may loop forever, fork,
allocate without bound or touch files and the network. Every program runs as a fresh
`python -I -S` (isolated mode, no site-packages) in a new temporary directory with a minimal
environment (HOME and TMPDIR are that directory), under these layers, each detected at runtime
(`sandbox_setup`) and named in every result's `isolation`:

  user/network/pid/mount-namespace  `unshare`: a network namespace with no interface up (no
                  network, loopback included), a pid namespace whose processes all die with
                  it, and a private /proc
  dedicated-uid   when the harness runs as root: an unused uid of the program's own, so
                  RLIMIT_NPROC binds, the user's files are unreadable unless world-readable and
                  unwritable unless world-writable (like /tmp), and its processes are found by
                  owner
  rlimits         CPU seconds, address space, file size, open files, processes, no core dumps
  process-group   the program leads its own session; its group is killed when it ends
  wall-clock      after timeout_s everything the program started is killed
  audit-hook      inside the program, a `sys.addaudithook` hook (Python code cannot remove it)
                  ends it with status 'denied' on process creation, network use, ctypes, a
                  write outside its directory or a read outside it and the standard library

The audit hook names the misbehaviour; the operating-system layers are the containment
(Python's documentation warns that audit hooks alone are no sandbox: a determined program can
fool one, e.g. with a path object that answers differently each time it is asked). Without
user namespaces or root the outer layers degrade to rlimits, the process group and the hook.
Not covered: disk use inside the program's directory is bounded per file (RLIMIT_FSIZE), not in
total. Linux only (pidfds: kernel 5.3 or later).
"""

from __future__ import annotations

import functools
import json
import math
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from scaling.config import ConfigError

STATUSES = ("ok", "failed", "timeout", "crashed", "killed", "denied")
DENIED_EXIT = 86  # exit code of a program the audit hook stopped
_SIGNAL_STATUS = {signal.SIGXCPU: "timeout", signal.SIGKILL: "killed"}  # other signals: crashed

# Dedicated uids (root only): 64 slots per harness process, handed out first in, first out so a
# uid is reused as late as possible. Below 2**31, above the ranges distributions and container
# runtimes allocate; the pid term (read at each use, so forked harnesses differ) keeps concurrent
# harness processes apart.
_SLOTS = 64
_FREE_SLOTS: queue.SimpleQueue[int] = queue.SimpleQueue()
for _slot in range(_SLOTS):
    _FREE_SLOTS.put(_slot)

# unshare flag sets, strongest first; util-linux < 2.38 lacks --map-current-user.
_NAMESPACE_CHOICES = tuple(
    (("--user", mapping, "--net", *pid), ("user", "network", *names))
    for pid, names in (
        (("--pid", "--fork", "--kill-child", "--mount-proc"), ("pid", "mount")),
        ((), ()),
    )
    for mapping in ("--map-current-user", "--map-root-user")
)
_ALWAYS = ("rlimits", "process-group", "wall-clock", "fresh-tmpdir", "isolated-python")

# The program inside the sandbox: a supervisor that forks the candidate, waits for it and writes
# its wait status to a descriptor the candidate never holds (so a candidate can neither forge
# its status nor, as pid 1 of a namespace, ignore signals). The candidate lowers its rlimits,
# installs the audit hook and executes main.py. Everything the hook calls is bound as a default
# argument when it is defined, so patching modules or builtins does not change what it checks.
_CHILD = r'''
import json, os, resource, stat, sys

DENY_PREFIXES = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn",
                 "os.fork", "os.kill", "resource.", "pty.")
DENY_EVENTS = frozenset({"os.system", "os.chdir", "os.symlink", "os.link", "code.__new__"})
DENY_IMPORTS = frozenset({"_posixsubprocess", "_ctypes"})
# event -> (path argument, its dir_fd argument or None, "r"ead or "w"rite) per path it touches
PATH_EVENTS = {
    "os.remove": ((0, 1, "w"),), "os.rmdir": ((0, 1, "w"),), "shutil.rmtree": ((0, 1, "w"),),
    "os.rename": ((0, 2, "w"), (1, 3, "w")), "os.mkdir": ((0, 2, "w"),),
    "os.chmod": ((0, 2, "w"),), "os.chown": ((0, 3, "w"),), "os.utime": ((0, 3, "w"),),
    "os.truncate": ((0, None, "w"),), "os.setxattr": ((0, None, "w"),),
    "os.removexattr": ((0, None, "w"),), "os.listdir": ((0, None, "r"),),
    "os.scandir": ((0, None, "r"),),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def sandbox_absolute(path, dir_fd, _fspath=os.fspath, _getcwd=os.getcwd,
                     _readlink=os.readlink, _bytes=bytes, _isinstance=isinstance, _str=str):
    """The absolute path, normalised lexically: the program cannot create links, so no link
    inside its directory leads out of it."""
    path = _fspath("." if path is None else path)
    if _isinstance(path, _bytes):
        path = path.decode("utf-8", "surrogateescape")
    if not path.startswith("/"):
        base = _getcwd() if dir_fd is None else _readlink("/proc/self/fd/" + _str(dir_fd))
        path = base + "/" + path
    parts = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def sandbox_is_dir(path, _stat=os.stat, _is_dir=stat.S_ISDIR, _error=OSError):
    try:
        return _is_dir(_stat(path).st_mode)
    except _error:
        return False


def make_hook(workdir, read_roots, denied_exit):
    """Write roots: the working directory and /dev/null; read roots add the standard library.
    A directory outside the working directory may be listed but not opened: the "open" event
    does not carry the dir_fd of os.open, so a directory descriptor could aim a write anywhere."""
    def sandbox_hook(event, args, _absolute=sandbox_absolute, _is_dir=sandbox_is_dir,
                     _write=os.write, _exit=os._exit, _any=any, _isinstance=isinstance,
                     _type=type, _int=int, _str=str, _bytes=bytes,
                     _function=type(sandbox_absolute), _prefixes=DENY_PREFIXES,
                     _events=DENY_EVENTS, _imports=DENY_IMPORTS, _paths=PATH_EVENTS,
                     _write_flags=WRITE_FLAGS, _workdir=workdir,
                     _roots={"w": (workdir, "/dev/null"), "r": (workdir, *read_roots)}):
        checks = _paths.get(event, ())
        if event == "open":
            checks = ((0, None, "w" if args[2] & _write_flags else "r"),)
        denied = (
            event in _events
            or event.startswith(_prefixes)
            or (event == "import" and args[0] in _imports)
            or (event == "object.__setattr__" and _type(args[0]) is _function
                and args[0].__code__.co_name.startswith("sandbox_"))  # the hook's own code
        )
        for index, dir_fd_index, access in checks:
            path = args[index]
            if _isinstance(path, _int):  # an open descriptor, checked when it was opened
                continue
            path = _absolute(path, None if dir_fd_index is None else args[dir_fd_index])
            inside = _any(path == r or path.startswith(r + "/") for r in _roots[access])
            in_workdir = path == _workdir or path.startswith(_workdir + "/")
            directory = event == "open" and not in_workdir and _is_dir(path)
            denied = denied or not inside or directory
        if denied:
            what = " %r" % (args[0],) if args and _isinstance(args[0], (_str, _bytes)) else ""
            _write(2, ("\nsandbox: denied %s%s\n" % (event, what)).encode("utf-8", "replace"))
            _exit(denied_exit)

    return sandbox_hook


def main(config):
    with open("main.py", encoding="utf-8") as f:
        source = f.read()
    pid = os.fork()
    if pid:
        os.write(config["status_fd"], b"%d" % os.waitpid(pid, 0)[1])
        return
    os.close(config["status_fd"])
    for name, limit in config["rlimits"].items():
        resource.setrlimit(getattr(resource, name), tuple(limit))
    code = compile(source, "main.py", "exec")
    if config["audit_hook"]:
        roots = [p for p in sys.path if p] + ["/dev/null", "/dev/urandom", "/dev/zero",
                                               "/usr/share/zoneinfo"]
        sys.addaudithook(make_hook(os.getcwd(), roots, config["denied_exit"]))
    try:
        exec(code, {"__name__": "__main__", "__file__": "main.py"})
    except SystemExit:
        raise
    except BaseException as e:  # the traceback from main.py on, without this file's frames
        sys.excepthook(type(e), e, e.__traceback__.tb_next)
        sys.exit(1)


main(json.loads(sys.argv[1]))
'''


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


@dataclass(frozen=True)
class Setup:
    """What this machine allows, found once per process by `sandbox_setup`."""

    python: str  # the interpreter that runs programs (one the sandbox uid can execute)
    unshare: tuple[str, ...]  # command prefix entering the namespaces, () without them
    namespaces: tuple[str, ...]
    dedicated_uid: bool

    def layers(self, audit_hook: bool) -> tuple[str, ...]:
        spaces = tuple(f"{name}-namespace" for name in self.namespaces)
        uid = ("dedicated-uid",) if self.dedicated_uid else ()
        return spaces + uid + _ALWAYS + (("audit-hook",) if audit_hook else ())


_SETUP_LOCK = threading.Lock()


def sandbox_setup() -> Setup:
    """The strongest isolation this machine allows (probed once, a few tens of ms)."""
    with _SETUP_LOCK:
        return _detect()


@functools.cache
def _detect() -> Setup:
    uid = _uid(_SLOTS - 1) if os.geteuid() == 0 else None
    python = _find_python(uid)
    if python is None:  # no interpreter the dedicated uid may execute: stay as we are
        uid, python = None, os.path.realpath(sys.executable)
    unshare, namespaces = _find_namespaces(python, uid)
    return Setup(python, unshare, namespaces, uid is not None)


def _find_python(uid: int | None) -> str | None:
    """Our own interpreter if the sandbox uid may run it (a per-user install may sit in a
    private home), else the system's."""
    names = (os.path.realpath(sys.executable), shutil.which("python3"), "/usr/bin/python3")
    probe = "import json, resource, sys; assert sys.version_info >= (3, 8)"
    for python in dict.fromkeys(name for name in names if name):
        if _runs([python, "-I", "-S", "-c", probe], uid):
            return python
    return None


def _find_namespaces(python: str, uid: int | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    unshare = shutil.which("unshare")
    for flags, names in _NAMESPACE_CHOICES if unshare else ():
        command = (unshare, *flags)
        if _runs([*command, python, "-I", "-S", "-c", "pass"], uid):
            return command, names
    return (), ()


def _runs(command: list[str], uid: int | None) -> bool:
    try:
        done = subprocess.run(
            command,
            cwd="/",
            env={},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
            **_as_user(uid),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _as_user(uid: int | None) -> dict:
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


def run_program(source: str, limits: Limits = Limits(), *, audit_hook: bool = True):
    """Run one Python program in the sandbox and say how it ended. audit_hook=False leaves
    only the operating-system layers (for programs that must start processes, and to test
    those layers). Returns a SandboxResult."""
    limits.validate()
    setup = sandbox_setup()
    with _sandbox_uid(setup) as uid, _run_dir(uid) as (run_dir, workdir):
        main = workdir / "main.py"
        main.write_text(source, encoding="utf-8")
        if uid is not None:
            os.chown(main, uid, uid)
        return _execute(setup, limits, audit_hook, uid, run_dir, workdir)


def run_many(
    sources: Sequence[str],
    limits: Limits = Limits(),
    *,
    workers: int | None = None,
    audit_hook: bool = True,
) -> list[SandboxResult]:
    """run_program over many programs, `workers` at a time (default: one per core), in order."""
    workers = workers or os.cpu_count() or 1
    if not 1 <= workers <= _SLOTS:
        raise ConfigError(
            "sandbox.workers", f"{workers} is outside 1..{_SLOTS}", f"use 1 to {_SLOTS} workers"
        )
    run = functools.partial(run_program, limits=limits, audit_hook=audit_hook)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, sources))


@contextmanager
def _sandbox_uid(setup: Setup) -> Iterator[int | None]:
    if not setup.dedicated_uid:
        yield None
        return
    slot = _FREE_SLOTS.get()
    try:
        yield _uid(slot)
    finally:
        _FREE_SLOTS.put(slot)


def _uid(slot: int) -> int:
    return 2_000_000_000 + (os.getpid() % 2**21) * _SLOTS + slot


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
    setup: Setup, limits: Limits, audit_hook: bool, uid: int | None, run_dir: Path, workdir: Path
) -> SandboxResult:
    paths = {name: run_dir / name for name in ("stdout", "stderr", "status")}
    with (
        open(paths["stdout"], "wb") as out,
        open(paths["stderr"], "wb") as err,
        open(paths["status"], "wb") as status,
    ):
        config = {
            "status_fd": status.fileno(),
            "rlimits": limits.rlimits(),
            "audit_hook": audit_hook,
            "denied_exit": DENIED_EXIT,
        }
        command = [*setup.unshare, setup.python, "-I", "-S", "-c", _CHILD, json.dumps(config)]
        start = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=(status.fileno(),),
            start_new_session=True,
            **_as_user(uid),
        )
        timed_out = _ran_out_of_time(proc.pid, limits.timeout_s)
        duration = time.monotonic() - start
        _kill_everything(proc, uid)
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
