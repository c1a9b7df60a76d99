"""Every kind of misbehaving program is contained: with the layers this machine has, and with
the weaker sets a machine without namespaces (or without root) falls back to."""

import dataclasses
import dis
import os
import shutil
import signal
import socket
import subprocess
import types
import uuid
from pathlib import Path

import pytest

from evaluation import sandbox
from evaluation.sandbox import Limits, run_many, run_program
from evaluation.sandbox_child import DENIED_EXIT
from evaluation.sandbox_layers import sandbox_setup
from scaling.config import ConfigError

QUICK = Limits(timeout_s=1.0)
# A project file every user may read: only the sandbox keeps a program from it.
PROJECT_FILE = Path(sandbox.__file__)
PROJECT_TEXT = PROJECT_FILE.read_text().splitlines()[0]


@pytest.fixture(params=["detected", "no-namespaces", "hook-only"])
def setup(request, monkeypatch):
    """The detected setup, then as if unshare were missing, then as if we were neither root
    nor had Landlock (the candidate keeps our uid: only the audit hook and rlimits remain)."""
    detected = sandbox_setup()
    setups = {
        "detected": detected,
        "no-namespaces": dataclasses.replace(detected, unshare=(), namespaces=()),
        "hook-only": dataclasses.replace(
            detected, unshare=(), namespaces=(), dedicated_uid=False, landlock=0
        ),
    }
    monkeypatch.setattr(sandbox, "sandbox_setup", lambda: setups[request.param])  # where used
    return setups[request.param]


def _processes_in(directory: str) -> list[int]:
    """Live processes whose working directory is (or was) inside `directory`."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
            state = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if cwd.startswith(directory) and state != "Z":
            found.append(int(name))
    return found


def test_a_correct_program_passes_in_a_directory_that_is_then_deleted(setup):
    result = run_program("import os\nprint(6 * 7, os.getcwd(), os.environ.get('HOME'))")
    answer, cwd, home = result.stdout.split()
    assert result.status == "ok" and result.passed and result.returncode == 0
    assert answer == "42" and home == cwd and not Path(cwd).parent.exists()
    expected = {f"{name}-namespace" for name in setup.namespaces} | {"rlimits", "audit-hook"}
    assert expected <= set(result.isolation)
    assert ("dedicated-uid" in result.isolation) == setup.dedicated_uid
    assert ("landlock" in result.isolation) == bool(setup.landlock)


def test_the_standard_library_works_without_frames(setup):
    """The hook refuses frames with the errors these modules fall back on."""
    program = (
        "import collections, enum, logging, typing\nP = collections.namedtuple('P', 'x')\n"
        "T = typing.TypeVar('T')\nC = enum.Enum('C', 'A B')\nlogging.warning('w')\n"
        "print(P(1).x, C.B.value)"
    )
    result = run_program(program)
    assert result.status == "ok" and result.stdout == "1 2\n" and "w" in result.stderr


def test_exceptions_fail_and_signals_crash(setup):
    failed, syntax, abort, segfault, exit0 = run_many(
        [
            "raise ValueError('no')",
            "def f(:\n    pass",
            "import os\nos.abort()",
            "import faulthandler\nfaulthandler._sigsegv()",
            "raise SystemExit(0)",
        ]
    )
    assert failed.status == "failed" and failed.returncode == 1
    assert 'File "main.py", line 1' in failed.stderr and "ValueError: no" in failed.stderr
    assert syntax.status == "failed" and "SyntaxError" in syntax.stderr
    assert (abort.status, abort.returncode) == ("crashed", -6)
    assert (segfault.status, segfault.returncode) == ("crashed", -11)
    assert exit0.status == "ok"
    suicide = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    assert run_program(suicide, audit_hook=False).status == "killed"


def test_loops_and_sleeps_time_out_near_the_limit(setup):
    for result in run_many(["while True:\n    pass", "import time\ntime.sleep(100)"], QUICK):
        # the wall clock (returncode None) or, on an idle machine where a busy loop's CPU time
        # keeps pace with it, the CPU limit (SIGXCPU) ends it first: both are the timeout
        assert result.status == "timeout" and result.returncode in (None, -signal.SIGXCPU)
        assert 1.0 <= result.duration_s < 2.0


def test_the_cpu_limit_backs_up_the_wall_clock(setup):
    result = run_program("while True:\n    pass", Limits(timeout_s=30.0, cpu_s=1))
    assert result.status == "timeout" and result.returncode == -24  # SIGXCPU, not the clock


def test_process_creation_network_and_ctypes_are_denied(setup):
    programs = [
        "import os\nwhile True:\n    os.fork()",
        "import subprocess\nsubprocess.run(['true'])",
        "import os\nos.system('true')",
        "import socket\nsocket.socket()",
        "import ctypes\nctypes.string_at(0)",
        "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))",
        "import os\nos.listdir('/')",
        # A directory descriptor from outside would let os.open(..., dir_fd=) write anywhere.
        "import os\nos.open(os.path.dirname(os.__file__), os.O_RDONLY)",
        # Re-pointing the hook's code: the hook sees the attempt, and it can't be removed.
        "import gc\nhook = [f for f in gc.get_objects() if getattr(f, '__name__', '') =="
        " 'sandbox_hook'][0]\nhook.__code__ = (lambda event, args: None).__code__",
    ]
    for result in run_many(programs):
        assert result.status == "denied" and result.returncode == DENIED_EXIT
        assert "sandbox: denied" in result.stderr


def test_memory_bombs_fail(setup):
    programs = ["x = bytearray(10**10)", "x = []\nwhile True:\n    x.append(bytearray(10**7))"]
    for result in run_many(programs, Limits(memory_mb=256)):
        assert result.status in ("failed", "killed")
        assert result.status == "killed" or "MemoryError" in result.stderr


def test_output_is_capped_and_files_are_size_limited(setup):
    flood, big_file, own_files = run_many(
        [
            "print('x' * 10**6)",
            "open('big', 'wb').write(bytes(2 << 20))",
            "import os, pathlib\npathlib.Path('a.txt').write_text('hi')\n"
            "open(os.devnull, 'w').write('gone')\nprint(open('a.txt').read())",
        ],
        Limits(file_mb=1, output_bytes=1000),
    )
    assert flood.status == "ok" and len(flood.stdout) < 1100 and "bytes cut" in flood.stdout
    assert big_file.status == "failed" and "File too large" in big_file.stderr
    assert own_files.status == "ok" and own_files.stdout == "hi\n"


def _without_hook_only_if(layer_present: bool, audit_hook: bool) -> None:
    if not (audit_hook or layer_present):
        pytest.skip("this setup has no operating-system layer for this case")


@pytest.mark.parametrize("audit_hook", [True, False])
def test_writes_outside_the_directory_are_stopped(setup, audit_hook, tmp_path):
    _without_hook_only_if(setup.dedicated_uid or setup.landlock, audit_hook)
    target = tmp_path / "escaped.txt"
    program = f"open({str(target)!r}, 'w').write('x')"
    result = run_program(program, audit_hook=audit_hook)
    assert result.status == ("denied" if audit_hook else "failed")
    assert not target.exists()


@pytest.mark.parametrize("audit_hook", [True, False])
def test_the_users_private_files_are_unreadable(setup, audit_hook, tmp_path):
    _without_hook_only_if(setup.dedicated_uid or setup.landlock, audit_hook)
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    secret.chmod(0o600)
    result = run_program(f"print(open({str(secret)!r}).read())", audit_hook=audit_hook)
    assert result.status == ("denied" if audit_hook else "failed")
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("audit_hook", [True, False])
def test_no_network_connection_reaches_a_local_listener(setup, audit_hook):
    _without_hook_only_if("network" in setup.namespaces, audit_hook)
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
        result = run_program(program, QUICK, audit_hook=audit_hook)
        assert result.status == ("denied" if audit_hook else "failed")
        with pytest.raises(BlockingIOError):
            server.accept()


def test_a_fork_bomb_without_the_hook_leaves_nothing_behind(setup):
    """Processes that fork until the process limit, leave the group (setsid) and hold their
    slots: all of them die at the timeout, and the machine can still start processes."""
    _without_hook_only_if(setup.dedicated_uid or "pid" in setup.namespaces, audit_hook=False)
    program = (
        "import os, time\nprint(os.getcwd(), flush=True)\nwhile True:\n    try:\n"
        "        if os.fork() == 0:\n            os.setsid()\n"
        "    except OSError:\n        time.sleep(100)\n"
    )
    result = run_program(program, QUICK, audit_hook=False)
    workdir = result.stdout.split()[0]
    assert result.status == "timeout" and result.duration_s < 2.0
    assert _processes_in(workdir) == [] and not Path(workdir).exists()
    assert subprocess.run(["true"], check=False).returncode == 0


@pytest.fixture
def host_tmp():
    """A path in the host's /tmp, where every user may write."""
    path = Path("/tmp") / f"sandbox-escape-{uuid.uuid4().hex}"
    yield path
    for left in path.parent.glob(path.name + "*"):  # what an escape left, if one did
        if left.is_dir() and not left.is_symlink():
            shutil.rmtree(left)
        else:
            left.unlink()


def _escape(target: Path) -> str:
    """Program text that writes to the host's /tmp and prints a project file."""
    return (
        f"import os\nos.mkdir({str(target)!r})\nopen({str(target / 'f')!r}, 'w').write('x')\n"
        f"print(open({str(PROJECT_FILE)!r}).read())\n"
    )


# Each tries to switch the audit hook off or slip past it; the escape follows.
HOOK_TRICKS = {
    # (a) the hook found through the garbage collector, its defaults and closure rewritten
    "gc": "import gc\nhook = next(f for f in gc.get_objects()\n"
    "            if getattr(f, '__name__', '') == 'sandbox_hook')\n"
    "for value in hook.__defaults__:\n    if isinstance(value, dict):\n"
    "        value.update(w=ROOTS, r=ROOTS)\n"
    "for cell in hook.__closure__ or ():\n    cell.cell_contents = 0",
    # (b) frames walked up to the supervisor, whose globals hold the hook's tables
    "getframe": "import sys\nframe = sys._getframe()\nwhile frame.f_back:\n"
    "    frame = frame.f_back\nframe.f_globals['PATH_EVENTS'].clear()",
    "traceback": "try:\n    raise ValueError\nexcept ValueError as e:\n"
    "    frame = e.__traceback__.tb_frame\nwhile frame.f_back:\n    frame = frame.f_back\n"
    "frame.f_globals['PATH_EVENTS'].clear()",
    # (c) other ways in
    "main-module": "import __main__\n__main__.PATH_EVENTS.clear()",
    # a signal handler is handed the running frame, with no audit event
    "signal-frame": "import signal\nframes = []\n"
    "signal.signal(signal.SIGUSR1, lambda n, frame: frames.append(frame))\n"
    "signal.raise_signal(signal.SIGUSR1)\nframe = frames[0]\nwhile frame.f_back:\n"
    "    frame = frame.f_back\nframe.f_globals['PATH_EVENTS'].clear()",
    "builtins": "import builtins\nbuiltins.any = builtins.isinstance = lambda *a: True\n"
    "builtins.str = type('S', (str,), {})",
    "reload": "import importlib, sys\nimportlib.reload(sys.modules['__main__'])",
    "str-subclass": "import os\nclass S(str):\n    def split(self, sep):\n"
    "        return os.getcwd().split(sep) + ['x']\nopen(S(TARGET + '-s'), 'w').write('x')",
    "sub-interpreter": "import _xxsubinterpreters as i\ni.run_string(i.create(), ESCAPE)",
    "sqlite": "import sqlite3\nsqlite3.connect(TARGET + '-db').execute('create table t (x)')",
    "native-module": "import importlib.machinery as m, sys\n"
    "open('x' + m.EXTENSION_SUFFIXES[0], 'wb').write(b'\\x7fELF')\n"
    "sys.path.insert(0, '.')\nimport x",
}


def test_the_audit_hook_cannot_be_switched_off(setup, host_tmp):
    """Every trick fails or is denied, and the hook still denies the escape after it."""
    roots = ("/tmp", str(PROJECT_FILE.parent))
    names = {"ROOTS": roots, "TARGET": str(host_tmp), "ESCAPE": _escape(host_tmp)}
    define = "".join(f"{name} = {value!r}\n" for name, value in names.items())
    programs = [
        f"{define}try:\n"
        + "".join(f"    {line}\n" for line in trick.splitlines())
        + "except Exception as e:\n    print('trick failed:', type(e).__name__)\n"
        + _escape(host_tmp)
        for trick in HOOK_TRICKS.values()
    ]
    for name, result in zip(HOOK_TRICKS, run_many(programs)):
        assert result.status == "denied", (name, result)
        assert PROJECT_TEXT not in result.stdout, name
    assert not list(host_tmp.parent.glob(host_tmp.name + "*"))


def test_the_hook_holds_no_state_a_program_could_change():
    """No globals, closure or mutable defaults: nothing reachable that would change it."""
    namespace = {"__name__": "sandbox_child"}
    exec(sandbox.CHILD_PROGRAM, namespace)
    hook = namespace["make_hook"]("/work", ["/lib"], ["/lib"], DENIED_EXIT)
    _assert_frozen(hook)


def _assert_frozen(function) -> None:
    assert function.__closure__ is None and function.__kwdefaults__ is None
    codes = [function.__code__]
    for code in codes:
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        ops = {i.opname for i in dis.get_instructions(code)}
        assert not ops & {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF"}, code
    for value in function.__defaults__:
        _assert_immutable(value)


def _assert_immutable(value) -> None:
    if isinstance(value, (tuple, frozenset)):
        for item in value:
            _assert_immutable(item)
    elif isinstance(value, types.FunctionType):
        _assert_frozen(value)
    elif isinstance(value, type):
        assert value.__module__ == "builtins", value  # built-in types refuse new attributes
    else:
        kinds = (str, int, type(None), types.BuiltinFunctionType, types.WrapperDescriptorType)
        assert isinstance(value, (*kinds, types.MethodDescriptorType)), value


def test_relative_paths_and_descriptors_work_inside_the_directory(setup):
    program = (
        "import os\nos.mkdir('d')\nopen('d/f', 'w').write('x')\nos.rename('d/f', 'd/g')\n"
        "os.remove('d/g')\nfd = os.open('d', os.O_RDONLY)\nos.mkdir('e', dir_fd=fd)\n"
        "os.rename('e', 'h', src_dir_fd=fd, dst_dir_fd=fd)\nos.rmdir('h', dir_fd=fd)\n"
        "os.close(fd)\nos.rmdir('d')\nprint(sorted(os.listdir('.')))"
    )
    result = run_program(program)
    assert result.status == "ok" and result.stdout == "['main.py']\n", result


@pytest.mark.parametrize("audit_hook", [True, False])
def test_paths_outside_are_refused_however_they_are_spelled(setup, audit_hook, host_tmp):
    """Through `..`, a symlink (/proc/self/cwd, or one the program makes), a dir_fd inside with
    a path that climbs out, a dir_fd outside; a file outside is not removed either."""
    _without_hook_only_if(setup.landlock, audit_hook)
    victim = host_tmp.with_name(host_tmp.name + "-victim")
    victim.write_text("keep")
    up = f"os.path.relpath({str(host_tmp)!r})"
    spellings = [
        f"os.mkdir({up})",
        f"os.rename('main.py', {up})",
        f"open({up}, 'w').write('x')",
        f"open('/proc/self/cwd/' + {up}, 'w').write('x')",
        f"os.symlink('/tmp', 'link')\nopen('link/{host_tmp.name}', 'w').write('x')",
        f"os.mkdir({up}, dir_fd=os.open('.', os.O_RDONLY))",
        f"os.mkdir({host_tmp.name!r}, dir_fd=os.open('/tmp', os.O_RDONLY))",
        f"os.remove({str(victim)!r})",
    ]
    results = run_many([f"import os\n{s}" for s in spellings], audit_hook=audit_hook)
    for spelling, result in zip(spellings, results):
        assert result.status == ("denied" if audit_hook else "failed"), (spelling, result)
    assert not host_tmp.exists() and victim.read_text() == "keep"
    victim.unlink()


@pytest.mark.parametrize("audit_hook", [True, False])
def test_the_hosts_tmp_and_project_files_are_out_of_reach(setup, audit_hook, host_tmp):
    """World-writable /tmp and a world-readable project file: the hook, or else Landlock."""
    _without_hook_only_if(setup.landlock, audit_hook)
    result = run_program(_escape(host_tmp), audit_hook=audit_hook)
    assert result.status == ("denied" if audit_hook else "failed")
    assert not host_tmp.exists() and PROJECT_TEXT not in result.stdout


def test_landlock_stops_what_raises_no_audit_event(setup, host_tmp):
    """os.mkfifo and os.mknod raise no audit event: only Landlock keeps them inside."""
    _without_hook_only_if(setup.landlock, audit_hook=False)
    for call in (f"os.mkfifo({str(host_tmp)!r})", f"os.mknod({str(host_tmp)!r})"):
        result = run_program(f"import os\n{call}")
        assert result.status == "failed" and "PermissionError" in result.stderr
        assert not host_tmp.exists()


def test_bad_limits_name_the_field_and_the_fix():
    with pytest.raises(ConfigError, match=r"sandbox\.timeout_s: 0 .*fix: use at least"):
        run_program("pass", Limits(timeout_s=0))
    with pytest.raises(ConfigError, match=r"sandbox\.memory_mb"):
        Limits(memory_mb=8).validate()
    with pytest.raises(ConfigError, match=r"sandbox\.workers"):
        run_many(["pass"], workers=1000)
