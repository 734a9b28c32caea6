"""Ways to isolate a sandboxed run on Linux, tried in order, each proven by a probe before use.

- `bwrap-root`: the server is root. bubblewrap (privileged mode) creates mount, PID, network, IPC and
  UTS namespaces; `setpriv` then drops to a real unprivileged host uid, so RLIMIT_NPROC is enforced
  (the kernel never enforces it for uid 0, even inside a user namespace).
- `bwrap-userns`: the server is not root. bubblewrap with a user namespace maps the sandbox to uid
  65534 inside; RLIMIT_NPROC then counts only that namespace's processes.
- `unshare-root`: the server is root and bubblewrap is missing. util-linux `unshare` creates the
  namespaces and `launcher.py` builds the same minimal root by hand, chroots and drops the uid.

Every mode shows the program the same file system: the base Python installation, /usr (with the
/bin, /lib, /lib64, /sbin links), numpy if the server has it, a synthetic /etc/passwd and /etc/group,
a fresh /proc, a few device nodes and a size-limited tmpfs at /sandbox (also /tmp). Nothing else of
the host, so no DATA_DIR, no repository and no home folders. In every mode `launcher.py` installs the
seccomp filter of `seccomp.py` before the program starts. The probe checks all of it, down to a new
user namespace and the kernel keyrings being refused; if no mode passes, the tool is unavailable:
code never runs unconfined.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backend.tools.sandbox.ceiling import LAUNCH_OVERHEAD_TASKS, RunCgroups
from backend.tools.sandbox.seccomp import AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64, SYSCALLS, filter_program

LAUNCHER = Path(__file__).with_name("launcher.py")
SCRATCH = "/sandbox"
PROGRAM = f"{SCRATCH}/main.py"
PACKAGES_MOUNT = "/opt/sandbox-packages"
SHARED_PACKAGES = ("numpy",)
"""Packages of the server's environment the sandbox may import (read-only); absent ones are skipped."""
NOBODY = 65534
SANDBOX_UID_BASE = 2_000_000_000
"""Root modes run each run as a fresh uid from here up to 2**31 more: far from any real account or subuid
range, and new per run so neither a process budget nor per-uid kernel state is ever shared."""
PROBE_UID = SANDBOX_UID_BASE - 1
HOST_LINKS = ("/bin", "/lib", "/lib64", "/sbin")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Mount:
    source: str
    target: str


@dataclass(frozen=True)
class RunFiles:
    """Host files one run needs inside the sandbox: the program and the synthetic /etc entries."""

    program: Path
    passwd: Path
    group: Path


@dataclass
class FileSystemView:
    """The read-only host paths the sandbox sees, and the links that stand in for merged-/usr dirs."""

    binds: list[Mount] = field(default_factory=list)
    symlinks: list[tuple[str, str]] = field(default_factory=list)
    python: str = ""
    package_paths: list[str] = field(default_factory=list)


def base_python() -> tuple[Path, Path]:
    """The base interpreter and its prefix: the venv itself stays invisible (it lives in the repo)."""
    prefix = Path(sys.base_prefix).resolve()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (prefix / "bin" / version, prefix / "bin" / "python3"):
        if candidate.is_file():
            return candidate, prefix
    resolved = Path(sys.executable).resolve()
    return resolved, resolved.parent.parent


def shared_package_dirs() -> list[Path]:
    dirs: list[Path] = []
    for name in SHARED_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        package = Path(next(iter(spec.submodule_search_locations))).resolve()
        dirs.append(package)
        libs = package.parent / f"{name}.libs"  # wheels keep their bundled shared libraries here
        if libs.is_dir():
            dirs.append(libs)
    return dirs


def file_system_view() -> FileSystemView:
    python, prefix = base_python()
    view = FileSystemView(python=str(python))
    view.binds.append(Mount("/usr", "/usr"))
    for link in HOST_LINKS:
        path = Path(link)
        if path.is_symlink():
            view.symlinks.append((link, os.readlink(path)))
        elif path.is_dir():
            view.binds.append(Mount(link, link))
    if not str(prefix).startswith("/usr/") and str(prefix) != "/usr":
        view.binds.append(Mount(str(prefix), str(prefix)))
    packages = shared_package_dirs()
    for package in packages:
        view.binds.append(Mount(str(package), f"{PACKAGES_MOUNT}/{package.name}"))
    if packages:
        view.package_paths.append(PACKAGES_MOUNT)
    return view


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parents
    return [str(p) for p in reversed(parts) if str(p) != "/"]


@dataclass
class Isolation:
    """One way to start a sandboxed process; `command` builds the argv for a run."""

    mode: str
    view: FileSystemView
    bwrap: str | None = None
    unshare: str | None = None
    setpriv: str | None = None

    def runs_as_root(self) -> bool:
        return self.mode in ("bwrap-root", "unshare-root")

    def launcher_env(self) -> dict[str, str]:
        """The launcher's own environment: bubblewrap clears it for the program; `unshare` passes it on."""
        return dict(SANDBOX_ENV) if self.mode == "unshare-root" else {"PATH": os.defpath}

    def command(self, files: RunFiles, config: Mapping[str, object], uid: int, scratch_bytes: int) -> list[str]:
        launcher = LAUNCHER.read_text(encoding="utf-8")
        if self.mode == "unshare-root":
            assert self.unshare
            jail = {
                "root": str(files.program.parent / "root"),
                "binds": [[m.source, m.target] for m in self.view.binds]
                + [[str(files.program), PROGRAM], [str(files.passwd), "/etc/passwd"], [str(files.group), "/etc/group"]]
                + [[device, device] for device in DEVICES],
                "symlinks": self.view.symlinks,
                "scratch_bytes": scratch_bytes,
                "uid": uid,
            }
            payload = json.dumps({**config, "jail": jail})
            return [
                self.unshare, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                "--propagation", "private", "--", self.view.python, "-I", "-c", launcher, payload,
            ]
        assert self.bwrap
        argv = [self.bwrap, "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
        if self.mode == "bwrap-userns":
            argv += ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        else:
            argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        made: set[str] = set()
        for mount in self.view.binds:
            for ancestor in _ancestors(mount.target):
                if ancestor not in made:  # readable parents even where the host's are 0700 (e.g. /root)
                    argv += ["--perms", "0755", "--dir", ancestor]
                    made.add(ancestor)
            argv += ["--ro-bind", mount.source, mount.target]
        for link, target in self.view.symlinks:
            argv += ["--symlink", target, link]
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(scratch_bytes), "--tmpfs", SCRATCH,
            "--symlink", SCRATCH, "/tmp",
            "--ro-bind", str(files.program), PROGRAM,
            "--ro-bind", str(files.passwd), "/etc/passwd", "--ro-bind", str(files.group), "/etc/group",
            # /dev is a tmpfs of no size limit, writable by the sandbox user in a user namespace: read-only.
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SCRATCH,
        ]
        for name, value in SANDBOX_ENV.items():
            argv += ["--setenv", name, value]
        python = [self.view.python, "-I", "-c", launcher, json.dumps(config)]
        if self.mode == "bwrap-userns":
            return [*argv, "--", *python]
        assert self.setpriv
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        drop = [
            self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        ]
        return [*argv, "--", *drop, *python]


SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": SCRATCH,
    "TMPDIR": SCRATCH,
    "LANG": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    # numpy's BLAS would otherwise start a thread per core, each reserving address space.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The whole environment of the program: no secret, key or DATA_DIR of the server reaches it."""


def candidates(view: FileSystemView) -> list[Isolation]:
    """The modes worth probing on this host, best first."""
    bwrap, unshare, setpriv = shutil.which("bwrap"), shutil.which("unshare"), shutil.which("setpriv")
    is_root = os.geteuid() == 0
    found: list[Isolation] = []
    if bwrap and is_root and setpriv:
        found.append(Isolation("bwrap-root", view, bwrap=bwrap, setpriv=setpriv))
    if bwrap and not is_root:
        found.append(Isolation("bwrap-userns", view, bwrap=bwrap))
    if unshare and is_root:
        found.append(Isolation("unshare-root", view, unshare=unshare))
    return found


def passwd_files(folder: Path, uid: int) -> tuple[Path, Path]:
    passwd, group = folder / "passwd", folder / "group"
    passwd.write_text(f"sandbox:x:{uid}:{uid}:sandbox:{SCRATCH}:/usr/sbin/nologin\n", encoding="utf-8")
    group.write_text(f"sandbox:x:{uid}:\n", encoding="utf-8")
    for path in (passwd, group):
        path.chmod(0o644)
    return passwd, group


def make_run_folder(code: str, uid: int) -> tuple[Path, RunFiles]:
    """A fresh private host folder holding the program; removed by the caller after the run."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-run-"))
    folder.chmod(0o711)  # the sandbox uid (unshare mode) must reach the program file, not list the folder
    (folder / "root").mkdir(mode=0o755)  # mount point of the jail's root in the `unshare` mode
    program = folder / "main.py"
    program.write_text(code, encoding="utf-8")
    program.chmod(0o644)
    passwd, group = passwd_files(folder, uid)
    return folder, RunFiles(program=program, passwd=passwd, group=group)


PROBE_PROGRAM = """
import ctypes, errno, os, socket, sys
problems = []
if os.getuid() == 0 or os.geteuid() == 0:
    problems.append("runs as root")
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
    problems.append("can create user namespaces")
elif ctypes.get_errno() != errno.EPERM:
    problems.append("user namespaces are not refused by the seccomp filter")
add_key, keyctl = sys.argv_syscalls[os.uname().machine]
if libc.syscall(add_key, b"user", b"probe", b"x", 1, -4) != -1 or ctypes.get_errno() != errno.EPERM:
    problems.append("can add kernel keys")
if libc.syscall(keyctl, 0, -4, 0) != -1 or ctypes.get_errno() != errno.EPERM:  # KEYCTL_GET_KEYRING_ID, user
    problems.append("can reach the kernel keyrings")
with open("/proc/self/status") as status:
    if "Seccomp:\t2" not in status.read():
        problems.append("runs without the seccomp filter")
if [name for _, name in socket.if_nameindex() if name != "lo"]:
    problems.append("has network interfaces")
for path in sys.argv_hidden:
    if os.path.exists(path):
        problems.append("sees " + path)
if os.getpid() > 10:
    problems.append("shares the host's process list")
print("PROBE-OK" if not problems else "PROBE-FAIL: " + ", ".join(problems))
"""


def probe(
    isolation: Isolation, hidden_paths: list[str], cgroups: RunCgroups | None = None,
    limits: Mapping[str, int] | None = None,
) -> str | None:
    """Run a program that checks its own confinement, under a run's rlimits and in a run cgroup when given;
    None when it holds, else why not."""
    syscalls = {"x86_64": SYSCALLS[AUDIT_ARCH_X86_64], "aarch64": SYSCALLS[AUDIT_ARCH_AARCH64]}
    numbers = {machine: (table["add_key"], table["keyctl"]) for machine, table in syscalls.items()}
    program = PROBE_PROGRAM.replace("sys.argv_hidden", repr(hidden_paths)).replace("sys.argv_syscalls", repr(numbers))
    uid = PROBE_UID if isolation.runs_as_root() else NOBODY
    folder, files = make_run_folder(program, uid)
    config = {
        "limits": dict(limits or {"RLIMIT_NPROC": 8}), "paths": isolation.view.package_paths, "program": PROGRAM,
        "seccomp": filter_program().hex(),
    }
    cgroup: Path | None = None
    try:
        argv = isolation.command(files, config, uid, 1024 * 1024)
        if cgroups is not None:
            cgroup = cgroups.create(f"sandbox-probe-{os.getpid()}", 256 * 1024 * 1024, 8 + LAUNCH_OVERHEAD_TASKS)
            argv = cgroups.wrap(cgroup, argv)
        completed = subprocess.run(
            argv, capture_output=True, timeout=PROBE_TIMEOUT_S, env=isolation.launcher_env(), start_new_session=True,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{isolation.mode}: {error}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if cgroup is not None and cgroups is not None:
            cgroups.remove(cgroup)
    output = completed.stdout.decode(errors="replace").strip()
    if output == "PROBE-OK":
        return None
    errors = completed.stderr.decode(errors="replace").strip().splitlines()
    return f"{isolation.mode}: {output or (errors[-1] if errors else f'exit status {completed.returncode}')}"


def find_isolation(
    hidden_paths: list[str], cgroups: RunCgroups | None = None, limits: Mapping[str, int] | None = None
) -> tuple[Isolation | None, str]:
    """The first mode whose probe passes, or None with the reasons every mode failed."""
    if sys.platform != "linux":
        return None, "the sandbox needs Linux namespaces"
    view = file_system_view()
    modes = candidates(view)
    if not modes:
        return None, "neither bubblewrap (`bwrap`) nor util-linux `unshare` as root is available"
    failures = []
    for isolation in modes:
        failure = probe(isolation, hidden_paths, cgroups, limits)
        if failure is None:
            return isolation, isolation.mode
        failures.append(failure)
    return None, "no isolation works here: " + "; ".join(failures)
