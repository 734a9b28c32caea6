"""First code inside the sandbox (run as `python -I -c <this file> <json>`): seccomp filter, limits, then the program.

Standard library only: the sandbox sees the base interpreter, not the server's packages. In the
`unshare` mode this script also builds the jail (mounts, chroot, uid switch), since util-linux
`unshare` only creates the namespaces.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _mount(
    libc: ctypes.CDLL, source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes | None = None
) -> None:
    if libc.mount(source, target, fstype, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target.decode()}: {os.strerror(err)}")


def enter_jail(jail: dict[str, Any]) -> None:
    """As root in fresh mount/PID/net namespaces: build the minimal root, chroot, drop to the sandbox uid."""
    libc = ctypes.CDLL(None, use_errno=True)
    root = jail["root"]
    enc = os.fsencode
    _mount(libc, None, b"/", None, MS_REC | MS_PRIVATE)
    _mount(libc, b"tmpfs", enc(root), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755")
    os.makedirs(root + "/sandbox", mode=0o755)
    size = f"size={jail['scratch_bytes']},mode=1777".encode()
    _mount(libc, b"tmpfs", enc(root + "/sandbox"), b"tmpfs", MS_NOSUID | MS_NODEV, size)
    for source, target in jail["binds"]:
        path = root + target
        if os.path.isdir(source):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "a").close()
        _mount(libc, enc(source), enc(path), None, MS_BIND | MS_REC)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        if not source.startswith("/dev/"):
            flags |= MS_NODEV
        _mount(libc, None, enc(path), None, flags)
    for link, target in jail["symlinks"]:
        os.symlink(target, root + link)
    os.makedirs(root + "/proc", mode=0o755)
    _mount(libc, b"proc", enc(root + "/proc"), b"proc", MS_NOSUID | MS_NODEV)
    os.symlink("/sandbox", root + "/tmp")
    _mount(libc, None, enc(root), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, b"size=1m,mode=0755")
    os.chroot(root)
    os.chdir("/sandbox")
    uid = jail["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from root to another uid: the kernel clears every capability
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def install_filter(program: bytes) -> None:
    """The seccomp filter built by `seccomp.py`, for this process and every one it starts; it cannot be lifted."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    code = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(code))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def reap_as_init() -> None:
    """PID 1 of the namespace: fork the program, reap every orphan, exit with the program's status."""
    child = os.fork()
    if child == 0:
        return
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    while True:
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


def apply_limits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        which = getattr(resource, name)
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, then SIGKILL one second later
        resource.setrlimit(which, (value, hard))


def run_program(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    sys.argv = ["main.py"]
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    try:
        code = compile(source, "main.py", "exec", dont_inherit=True)  # no __future__ flags of ours
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as error:
        import traceback

        trace = error.__traceback__
        if trace is not None and trace.tb_frame.f_code.co_filename == "<string>":
            trace = trace.tb_next  # hide this launcher's own frame
        traceback.print_exception(type(error), error, trace)
        sys.exit(1)


def main() -> None:
    config = json.loads(sys.argv[1])
    if config.get("jail"):
        enter_jail(config["jail"])
    install_filter(bytes.fromhex(config["seccomp"]))  # before the program, and before init forks it
    if config.get("jail"):
        reap_as_init()
    apply_limits(config["limits"])
    sys.path[:0] = config["paths"]
    run_program(config["program"])


main()
