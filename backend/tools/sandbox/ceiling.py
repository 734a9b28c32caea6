"""How one run's memory and processes are bounded as a whole, not per process.

Where the host delegates a cgroup v2 with the memory and pids controllers, each run gets its own
cgroup: `memory.max` (the program's memory plus its in-memory scratch folder, no swap) and
`pids.max`. Elsewhere (cgroup v1 hosts, containers without delegation) every process gets
`RLIMIT_AS` = the run's memory divided by its process limit, so that `RLIMIT_NPROC` processes
together still fit the run's share; memory no rlimit counts (memfd, SysV shared memory) is refused
by the seccomp filter.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_FS = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids")
LAUNCH_OVERHEAD_TASKS = 2
"""Processes of a run that are not the program's: bubblewrap's (or `unshare`'s) monitor and the namespace's init."""
REMOVE_TIMEOUT_S = 2.0
ENTER_CGROUP = 'echo $$ > "$1" || exit 125; shift; exec "$@"'
"""A shell that moves itself into the run's cgroup, then becomes the sandbox: nothing of the run starts outside."""


@dataclass(frozen=True)
class RunCgroups:
    """The cgroup v2 folder whose children are the runs' cgroups."""

    parent: Path

    def create(self, name: str, memory_bytes: int, max_tasks: int) -> Path:
        path = self.parent / name
        path.mkdir(mode=0o755)
        try:
            (path / "memory.max").write_text(str(memory_bytes), encoding="ascii")
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0", encoding="ascii")
            (path / "pids.max").write_text(str(max_tasks), encoding="ascii")
        except OSError:
            self.remove(path)
            raise
        return path

    def remove(self, path: Path) -> None:
        """Kill whatever is left in the cgroup, then remove it (the kernel empties it asynchronously)."""
        deadline = time.monotonic() + REMOVE_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError):
                (path / "cgroup.kill").write_text("1", encoding="ascii")
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as error:
                if time.monotonic() > deadline:
                    logger.warning("sandbox cgroup %s could not be removed: %s", path, error)
                    return
                time.sleep(0.02)

    @staticmethod
    def wrap(cgroup: Path, argv: list[str]) -> list[str]:
        return ["/bin/sh", "-c", ENTER_CGROUP, "sh", str(cgroup / "cgroup.procs"), *argv]


@dataclass(frozen=True)
class RunCeiling:
    """What bounds a run as a whole on this host; `cgroups` is None when per-process rlimits must do it."""

    cgroups: RunCgroups | None
    why_not_cgroup: str = ""

    def per_process_memory(self, memory_bytes: int, max_processes: int) -> int:
        """RLIMIT_AS: the run's whole memory under a cgroup; else its share, so all processes together fit."""
        return memory_bytes if self.cgroups is not None else memory_bytes // max_processes

    def describe(self, memory_bytes: int, scratch_bytes: int, max_processes: int) -> str:
        mb = 1024 * 1024
        if self.cgroups is not None:
            return (
                f"per-run cgroup v2: memory.max {(memory_bytes + scratch_bytes) // mb} MB "
                f"(memory + scratch), pids.max {max_processes}"
            )
        share = self.per_process_memory(memory_bytes, max_processes) // mb
        return (
            f"per-process limits ({self.why_not_cgroup}): {max_processes} processes x {share} MB "
            f"address space + {scratch_bytes // mb} MB scratch per run"
        )


def _own_cgroup() -> str | None:
    with open("/proc/self/cgroup", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def _enable_controllers(base: Path) -> None:
    (base / "cgroup.subtree_control").write_text(" ".join(f"+{name}" for name in CONTROLLERS), encoding="ascii")


def _delegate(base: Path, relative: str) -> str | None:
    """Enable memory and pids for the children of `base`; None when done, else why not."""
    enabled = (base / "cgroup.subtree_control").read_text(encoding="ascii").split()
    if all(name in enabled for name in CONTROLLERS):
        return None
    try:
        _enable_controllers(base)
        return None
    except OSError as error:
        if error.errno != errno.EBUSY:
            return f"cannot enable memory and pids in {relative}: {error.strerror}"
    # A non-root cgroup with processes of its own cannot delegate controllers. When this server is
    # alone there (a container or a service of its own), it moves into a leaf and delegates.
    others = set((base / "cgroup.procs").read_text(encoding="ascii").split()) - {str(os.getpid())}
    if others:
        return f"cgroup {relative} holds other processes, so it cannot delegate memory and pids"
    leaf = base / "server"
    try:
        leaf.mkdir(mode=0o755, exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()), encoding="ascii")
        _enable_controllers(base)
    except OSError as error:
        return f"cannot delegate memory and pids in {relative}: {error.strerror}"
    return None


def _check_entry(cgroups: RunCgroups) -> str | None:
    """Start a process through the entry shell and see the kernel report it inside a new run cgroup."""
    path = cgroups.create(f"probe-{os.getpid()}-{time.monotonic_ns()}", 64 * 1024 * 1024, 8)
    try:
        completed = subprocess.run(
            RunCgroups.wrap(path, ["/bin/cat", "/proc/self/cgroup"]), capture_output=True, timeout=10, check=False
        )
    finally:
        cgroups.remove(path)
    expected = "0::/" + str(path.relative_to(CGROUP_FS))
    if expected not in completed.stdout.decode(errors="replace").splitlines():
        return "a process could not be placed in a run cgroup"
    return None


def find_ceiling() -> RunCeiling:
    """A cgroup v2 per run if this host delegates one to the server, else per-process limits, with the reason."""
    if not (CGROUP_FS / "cgroup.controllers").is_file():
        return RunCeiling(None, f"no cgroup v2 hierarchy at {CGROUP_FS}")
    try:
        relative = _own_cgroup()
        if relative is None:
            return RunCeiling(None, "this server is in no cgroup v2")
        base = CGROUP_FS / relative.lstrip("/")
        available = (base / "cgroup.controllers").read_text(encoding="ascii").split()
        if not all(name in available for name in CONTROLLERS):
            return RunCeiling(None, f"the memory and pids controllers are not delegated to cgroup {relative}")
        if not os.access(base, os.W_OK):
            return RunCeiling(None, f"cgroup {relative} is not writable")
        problem = _delegate(base, relative)
        if problem is not None:
            return RunCeiling(None, problem)
        cgroups = RunCgroups(base)
        problem = _check_entry(cgroups)
    except (OSError, subprocess.SubprocessError) as error:
        return RunCeiling(None, f"cgroup v2 unusable: {error}")
    if problem is not None:
        return RunCeiling(None, problem)
    return RunCeiling(cgroups)


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
