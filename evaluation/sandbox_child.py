"""The program that runs inside the sandbox (evaluation.sandbox), as source text: a supervisor that
fences itself in with Landlock, forks the candidate and reports its wait status, and the
candidate's own hardening, its lowered rlimits and the audit hook (the `landlock`, `rlimits` and
`audit-hook` layers).

It is separate because it is code for another process: it runs as `python -I -S -c` in the
sandbox and may import nothing but the standard library, so it is kept as text, not imported.
"""

DENIED_EXIT = 86  # exit code of a program the audit hook stopped
TALK_FD = 3  # where a program that is talked to (evaluation.sandbox.run_program's talk) answers

# The program inside the sandbox: a supervisor that applies Landlock (inherited by all it forks),
# forks the candidate, waits for it and writes its wait status to a descriptor the candidate never
# holds (so a candidate can neither forge its status nor, as pid 1 of a namespace, ignore
# signals). The candidate lowers its rlimits, installs the audit hook and executes main.py as a
# fresh __main__ module.
#
# The hook must stay as it was installed whatever the program does. Denying the ways to objects
# is not enough (a signal handler is handed the running frame without any audit event), so the
# hook holds no state that can change: no globals, no closure, and defaults that are strings,
# numbers, tuples, frozensets, C functions and two functions built the same way. What would
# replace its code or defaults, switch it off or run code without it (tracers, sub-interpreters,
# native code) is denied.
CHILD_PROGRAM = r'''
import json, os, resource, stat, sys

DENY_PREFIXES = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn",
                 "os.fork", "os.kill", "resource.", "pty.", "syslog.", "sys.monitoring.")
DENY_EVENTS = frozenset({
    "os.system", "os.chdir", "os.symlink", "os.link", "code.__new__",
    # The object graph and other threads' stacks lead to the hook; a tracer may rewrite the
    # locals of a running frame; a sub-interpreter runs without this interpreter's hooks.
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames",
    "sys._current_exceptions", "sys.settrace", "sys.setprofile", "sys.addaudithook",
    "cpython.PyInterpreterState_New",
})
DENY_IMPORTS = frozenset({
    "_ctypes", "_posixsubprocess", "_testcapi", "_testinternalcapi",
    "_xxsubinterpreters", "_xxinterpchannels", "_interpreters",
    # these open files in C without an "open" event
    "_sqlite3", "_dbm", "_gdbm", "_posixshmem", "_multiprocessing", "ossaudiodev",
})
FUNCTION_STATE = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
# (event, per path it touches: (path argument, its dir_fd argument or None, "r"ead or "w"rite))
PATH_EVENTS = (
    ("os.remove", ((0, 1, "w"),)), ("os.rmdir", ((0, 1, "w"),)),
    ("shutil.rmtree", ((0, 1, "w"),)), ("os.rename", ((0, 2, "w"), (1, 3, "w"))),
    ("os.mkdir", ((0, 2, "w"),)), ("os.chmod", ((0, 2, "w"),)), ("os.chown", ((0, 3, "w"),)),
    ("os.utime", ((0, 3, "w"),)), ("os.truncate", ((0, None, "w"),)),
    ("os.setxattr", ((0, None, "w"),)), ("os.removexattr", ((0, None, "w"),)),
    ("os.getxattr", ((0, None, "r"),)), ("os.listxattr", ((0, None, "r"),)),
    ("os.listdir", ((0, None, "r"),)), ("os.scandir", ((0, None, "r"),)),
)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
HOOK_READ = ("/dev/null", "/dev/urandom", "/dev/zero", "/usr/share/zoneinfo")
# What Landlock lets the program read and execute besides the interpreter: system software and
# the dynamic loader's files, not /tmp, /home, /root or the project.
LANDLOCK_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                 "/etc/ld.so.cache", "/etc/localtime")
LANDLOCK_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


def sandbox_absolute(path, dir_fd, _fspath=os.fspath, _getcwd=os.getcwd, _readlink=os.readlink,
                     _issubclass=issubclass, _type=type, _bytes=bytes, _text=str.__str__,
                     _decode=bytes.decode, _number=int.__repr__):
    """The absolute path, normalised lexically (the program cannot create links, so no link
    inside its directory leads out of it). A str or bytes subclass is read as the plain value
    the system call uses, never through its own methods. dir_fd None or -1 (the audit events'
    "none") means the working directory."""
    path = _fspath("." if path is None else path)
    path = (_decode(path, "utf-8", "surrogateescape") if _issubclass(_type(path), _bytes)
            else _text(path))
    if not path.startswith("/"):
        if dir_fd is None or dir_fd == -1:
            base = _getcwd()
        else:
            base = _readlink("/proc/self/fd/" + _number(dir_fd))
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


def make_hook(workdir, read_roots, code_roots, denied_exit):
    """Write roots: the working directory and /dev/null; read roots add `read_roots`; extension
    modules load only from `code_roots`. A directory outside the working directory may be listed
    but not opened: the "open" event does not carry the dir_fd of os.open, so a directory
    descriptor could aim a write anywhere."""
    allowed = tuple(
        (access, frozenset(roots), tuple(root + "/" for root in roots))
        for access, roots in (("w", (workdir, "/dev/null")), ("r", (workdir, *read_roots)),
                              ("x", tuple(code_roots)))
    )

    def sandbox_hook(event, args, _absolute=sandbox_absolute, _is_dir=sandbox_is_dir,
                     _write=os.write, _exit=os._exit, _issubclass=issubclass, _type=type,
                     _int=int, _str=str, _bytes=bytes, _text=str.__str__,
                     _str_repr=str.__repr__, _bytes_repr=bytes.__repr__,
                     _function=type(sandbox_is_dir),
                     _no_frame=ValueError, _no_attribute=RuntimeError, _prefixes=DENY_PREFIXES,
                     _events=DENY_EVENTS, _imports=DENY_IMPORTS, _state=FUNCTION_STATE,
                     _frames=FRAME_ATTRIBUTES, _path_events=PATH_EVENTS,
                     _path_names=frozenset(name for name, _ in PATH_EVENTS),
                     _write_flags=WRITE_FLAGS, _allowed=allowed, _workdir=workdir + "/",
                     _denied_exit=denied_exit):
        # Frames are refused with the errors the standard library already handles when an
        # interpreter lacks them (namedtuple, typing, enum and logging fall back).
        if event == "sys._getframe":
            raise _no_frame("sandbox: frames are not available")
        if event == "object.__getattr__" and args[1] in _frames:
            raise _no_attribute("sandbox: frames are not available")
        denied = (
            event in _events
            or event.startswith(_prefixes)
            or (event == "import" and _text(args[0]) in _imports)
            or (event in ("object.__setattr__", "object.__delattr__") and args[1] in _state
                and _type(args[0]) is _function  # code names cannot change: __code__ cannot
                and args[0].__code__.co_name.startswith("sandbox_"))
        )
        checks = ()
        if event == "open":
            checks = ((0, None, "w" if args[2] & _write_flags else "r"),)
        elif event == "import" and args[1] is not None:  # an extension module's file
            checks = ((1, None, "x"),)
        elif event in _path_names:
            for name, found in _path_events:
                if name == event:
                    checks = found
        for index, dir_fd_index, access in checks:
            path = args[index]
            if _issubclass(_type(path), _int):  # an open descriptor, checked when it was opened
                continue
            path = _absolute(path, None if dir_fd_index is None else args[dir_fd_index])
            for kind, roots, prefixes in _allowed:
                if kind == access:
                    denied = denied or not (path in roots or path.startswith(prefixes))
            in_workdir = path.startswith(_workdir) or path == _workdir[:-1]
            denied = denied or (event == "open" and not in_workdir and _is_dir(path))
        if denied:  # named without calling the program's code (a subclass's __repr__)
            what = ""
            if args and _issubclass(_type(args[0]), _str):
                what = " " + _str_repr(_text(args[0]))
            elif args and _issubclass(_type(args[0]), _bytes):
                what = " " + _bytes_repr(args[0])
            _write(2, ("\nsandbox: denied %s%s\n" % (event, what)).encode("utf-8", "replace"))
            _exit(_denied_exit)

    return sandbox_hook


def sandbox_landlock(abi, workdir, read_roots):
    """Landlock (Linux 5.13+): the kernel lets this process and all it forks write only inside
    `workdir` and the harmless devices, read and execute only `read_roots` and the system's
    software, and, from its version 4 and 6 on, make no TCP connections and signal nothing
    outside. It holds even where the audit hook is fooled. ctypes is removed once done."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def call(function, *arguments):
        result = function(*(ctypes.c_long(a) if isinstance(a, int) else a for a in arguments))
        if result < 0:
            raise OSError(ctypes.get_errno(), "landlock: " + os.strerror(ctypes.get_errno()))
        return result

    fs = (1 << {1: 13, 2: 14, 3: 15, 4: 15}.get(abi, 16)) - 1  # every right this version knows
    handled = [fs] + [3] * (abi >= 4) + [3] * (abi >= 6)  # tcp bind+connect; signal+unix scope
    attr = b"".join(value.to_bytes(8, sys.byteorder) for value in handled)
    ruleset = call(libc.syscall, 444, attr, len(attr), 0)
    file_rights = 1 | 2 | 4 | 1 << 14 | 1 << 15  # execute, write, read, truncate, ioctl
    rules = [(workdir, fs)] + [(p, 2 | 4 | 1 << 14 | 1 << 15) for p in LANDLOCK_DEVICES]
    rules += [(p, 1 | 4 | 8) for p in (*read_roots, *LANDLOCK_READ)]  # execute, read, list
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:  # not on this machine
            continue
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= file_rights
        rule = (rights & fs).to_bytes(8, sys.byteorder) + fd.to_bytes(4, sys.byteorder)
        call(libc.syscall, 445, ruleset, 1, rule, 0)
        os.close(fd)
    call(libc.prctl, 38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, which restricting oneself needs
    call(libc.syscall, 446, ruleset, 0)
    os.close(ruleset)
    for name in [m for m in sys.modules if m.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[name]


def main(config):
    with open("main.py", encoding="utf-8") as f:
        source = f.read()
    workdir = os.getcwd()
    code_roots = [p for p in sys.path if p]
    if config["landlock"]:
        prefixes = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
        sandbox_landlock(config["landlock"], workdir, sorted(prefixes) + code_roots)
    talk_fd = config["talk_fd"]
    pid = os.fork()
    if pid:
        if talk_fd is not None:  # the program's answers end when the program does
            os.close(talk_fd)
        os.write(config["status_fd"], b"%d" % os.waitpid(pid, 0)[1])
        return
    os.close(config["status_fd"])
    if talk_fd is not None and talk_fd != config["talk_at"]:
        os.dup2(talk_fd, config["talk_at"])
        os.close(talk_fd)
    for name, limit in config["rlimits"].items():
        resource.setrlimit(getattr(resource, name), tuple(limit))
    code = compile(source, "main.py", "exec")
    program = type(sys)("__main__")  # the program's own module, not this one
    program.__file__ = "main.py"
    sys.modules["__main__"] = program
    if config["audit_hook"]:
        readable = code_roots + list(HOOK_READ)  # the hook itself is in no frame (a signal's)
        sys.addaudithook(make_hook(workdir, readable, code_roots, config["denied_exit"]))
    try:
        exec(code, vars(program))
    except SystemExit:
        raise
    except BaseException as e:  # the traceback from main.py on, without this file's frames
        sys.excepthook(type(e), e, e.__traceback__.tb_next)
        sys.exit(1)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
'''
