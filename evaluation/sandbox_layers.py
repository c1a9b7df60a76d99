"""Which operating-system layers of the sandbox (evaluation.sandbox) this machine allows, found once
per process: user, network, pid and mount namespaces through `unshare`, the kernel's Landlock
filesystem allow-list, and, when the harness runs as root, a dedicated uid per program from a
pool of slots, with an interpreter that uid may execute.

Separate from the launcher because it is probing, not running: it asks the machine once and
hands each run its command prefix and its uid.
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Dedicated uids (root only): 64 slots per harness process, handed out first in, first out so a
# uid is reused as late as possible. Below 2**31, above the ranges distributions and container
# runtimes allocate; the pid term (read at each use, so forked harnesses differ) keeps concurrent
# harness processes apart.
UID_SLOTS = 64
_FREE_SLOTS: queue.SimpleQueue[int] = queue.SimpleQueue()
for _slot in range(UID_SLOTS):
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


@dataclass(frozen=True)
class Setup:
    """What this machine allows, found once per process by `sandbox_setup`."""

    python: str  # the interpreter that runs programs (one the sandbox uid can execute)
    unshare: tuple[str, ...]  # command prefix entering the namespaces, () without them
    namespaces: tuple[str, ...]
    dedicated_uid: bool
    landlock: int  # the kernel's Landlock ABI version, 0 without Landlock

    def layers(self, audit_hook: bool) -> tuple[str, ...]:
        spaces = tuple(f"{name}-namespace" for name in self.namespaces)
        uid = ("dedicated-uid",) if self.dedicated_uid else ()
        landlock = ("landlock",) if self.landlock else ()
        return spaces + uid + landlock + _ALWAYS + (("audit-hook",) if audit_hook else ())


_SETUP_LOCK = threading.Lock()


def sandbox_setup() -> Setup:
    """The strongest isolation this machine allows (probed once, a few tens of ms)."""
    with _SETUP_LOCK:
        return _detect()


@functools.cache
def _detect() -> Setup:
    uid = _uid(UID_SLOTS - 1) if os.geteuid() == 0 else None
    python = _find_python(uid)
    if python is None:  # no interpreter the dedicated uid may execute: stay as we are
        uid, python = None, os.path.realpath(sys.executable)
    unshare, namespaces = _find_namespaces(python, uid)
    return Setup(python, unshare, namespaces, uid is not None, _landlock_abi(python, uid))


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


def _landlock_abi(python: str, uid: int | None) -> int:
    """The Landlock ABI version the kernel offers (0: none, or a seccomp filter forbids it)."""
    probe = (
        "import ctypes; r = ctypes.CDLL(None).syscall(444, None, ctypes.c_long(0),"
        " ctypes.c_long(1)); print(max(r, 0))"  # LANDLOCK_CREATE_RULESET_VERSION
    )
    done = _run([python, "-I", "-S", "-c", probe], uid)
    return int(done.stdout) if done is not None and done.returncode == 0 else 0


def _runs(command: list[str], uid: int | None) -> bool:
    done = _run(command, uid)
    return done is not None and done.returncode == 0


def _run(command: list[str], uid: int | None) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            command,
            cwd="/",
            env={},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
            **as_user(uid),
        )
    except (OSError, subprocess.SubprocessError):
        return None


def as_user(uid: int | None) -> dict:
    """subprocess arguments that run a command as `uid` (None: as ourselves)."""
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


@contextmanager
def sandbox_uid(setup: Setup) -> Iterator[int | None]:
    """A dedicated uid for one run, taken from the pool while it runs (None without one)."""
    if not setup.dedicated_uid:
        yield None
        return
    slot = _FREE_SLOTS.get()
    try:
        yield _uid(slot)
    finally:
        _FREE_SLOTS.put(slot)


def _uid(slot: int) -> int:
    return 2_000_000_000 + (os.getpid() % 2**21) * UID_SLOTS + slot
