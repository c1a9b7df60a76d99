"""The program that runs inside the sandbox (scaling.sandbox), as source text: a supervisor that
fences itself in with Landlock, forks the candidate and reports its wait status, and the
candidate's own hardening, its lowered rlimits and the audit hook (the `landlock`, `rlimits` and
`audit-hook` layers).

It is separate because it is code for another process: it runs as `python -I -S -c` in the
sandbox and may import nothing but the standard library, so it is kept as text, not imported.
"""

DENIED_EXIT = 86  # exit code of a program the audit hook stopped

# The program inside the sandbox: a supervisor that applies Landlock (inherited by all it forks),
# forks the candidate, waits for it and writes its wait status to a descriptor the candidate never
# holds (so a candidate can neither forge its status nor, as pid 1 of a namespace, ignore
# signals). The candidate lowers its rlimits, installs the audit hook and executes main.py.
# Everything the hook calls is bound as a default argument when it is defined, so patching
# modules or builtins does not change what it checks.
CHILD_PROGRAM = r'''
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
# What Landlock lets the program read and execute besides the interpreter: system software and
# the dynamic loader's files, not /tmp, /home, /root or the project.
LANDLOCK_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                 "/etc/ld.so.cache", "/etc/localtime")
LANDLOCK_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


def sandbox_absolute(path, dir_fd, _fspath=os.fspath, _getcwd=os.getcwd,
                     _readlink=os.readlink, _bytes=bytes, _isinstance=isinstance, _str=str):
    """The absolute path, normalised lexically: the program cannot create links, so no link
    inside its directory leads out of it."""
    path = _fspath("." if path is None else path)
    if _isinstance(path, _bytes):
        path = path.decode("utf-8", "surrogateescape")
    if not path.startswith("/"):
        if dir_fd is None or dir_fd == -1:  # the audit events' "no dir_fd"
            base = _getcwd()
        else:
            base = _readlink("/proc/self/fd/" + _str(dir_fd))
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
    if config["landlock"]:
        prefixes = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
        roots = sorted(prefixes) + [p for p in sys.path if p]
        sandbox_landlock(config["landlock"], os.getcwd(), roots)
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
