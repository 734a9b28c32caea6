"""Run one program in the sandbox: capped output read as it comes, a wall clock, and a kill that reaches everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backend.tools.sandbox.ceiling import LAUNCH_OVERHEAD_TASKS, RunCeiling
from backend.tools.sandbox.isolation import NOBODY, PROGRAM, SANDBOX_UID_BASE, Isolation, make_run_folder
from backend.tools.sandbox.seccomp import filter_program

READ_CHUNK = 65536
DRAIN_AFTER_KILL_S = 5.0
OPEN_FILES = 64
SECCOMP_FILTER = filter_program().hex()
PER_PROCESS = RunCeiling(None, "no cgroup chosen")


@dataclass(frozen=True)
class RunLimits:
    cpu_seconds: int
    memory_bytes: int
    max_processes: int
    scratch_bytes: int
    """Size of the /sandbox tmpfs, and the largest file the program may write."""
    wall_seconds: float
    max_output_bytes: int
    """Per stream (stdout, stderr)."""

    def rlimits(self, ceiling: RunCeiling) -> dict[str, int]:
        return {
            "RLIMIT_CPU": self.cpu_seconds,
            "RLIMIT_AS": ceiling.per_process_memory(self.memory_bytes, self.max_processes),
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_FSIZE": self.scratch_bytes,
            "RLIMIT_NOFILE": OPEN_FILES,
            "RLIMIT_CORE": 0,
            "RLIMIT_MSGQUEUE": 0,  # no POSIX message queues: nothing a run needs, memory of its own
        }


@dataclass
class RunReport:
    stdout: str
    stderr: str
    exit_status: int | None
    """The program's exit code; None when it was killed by the server."""
    signal: str | None
    """The signal that ended it (SIGXCPU: CPU limit; SIGKILL: killed), if any."""
    duration_s: float
    killed: bool
    kill_reason: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    isolation: str

    @property
    def succeeded(self) -> bool:
        return self.exit_status == 0 and not self.killed


class SandboxBusy(RuntimeError):
    """Every run slot is taken."""


class RunSlots:
    """At most `size` runs at once, refused rather than queued. Thread-safe and loop-free on purpose:
    the tool may be used from more than one event loop (tests)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._taken = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            if self._taken >= self.size:
                raise SandboxBusy("every sandbox slot is busy; try again in a moment")
            self._taken += 1
        try:
            yield
        finally:
            with self._lock:
                self._taken -= 1


class FreshUids:
    """A uid never used before by this server for each run (root modes), so nothing the kernel keeps per
    uid (keyrings, process, signal, inotify and message-queue counts) carries from one run to the next.

    uid = base + (a * n + b) mod 2**31 with a odd: a bijection on n, so no uid repeats within 2**31 runs;
    a and b are random per server process, so several workers or restarts are unlikely to meet.
    """

    SPAN = 2**31

    def __init__(self, base: int = SANDBOX_UID_BASE) -> None:
        self._base = base
        self._a = secrets.randbelow(self.SPAN // 2) * 2 + 1
        self._b = secrets.randbelow(self.SPAN)
        self._n = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            n, self._n = self._n, self._n + 1
        return self._base + (self._a * n + self._b) % self.SPAN


class _Capture:
    """One output stream, read as it arrives; beyond the cap it is not kept and the run is stopped."""

    def __init__(self, limit: int, overflow: asyncio.Event) -> None:
        self.data = bytearray()
        self.truncated = False
        self._limit = limit
        self._overflow = overflow

    async def drain(self, stream: asyncio.StreamReader) -> None:
        """Read to the end even past the cap (discarding), so the pipe never stalls the process's exit."""
        while chunk := await stream.read(READ_CHUNK):
            room = self._limit - len(self.data)
            if len(chunk) > room:
                self.data += chunk[: max(room, 0)]
                self.truncated = True
                self._overflow.set()
            else:
                self.data += chunk

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """The launcher leads its own process group; killing it ends the namespace's init, and with it
    every process in the PID namespace, including ones that left the group with setsid()."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _signal_of(status: int | None) -> str | None:
    if status is None or status <= 128:
        return None
    try:
        return signal.Signals(status - 128).name
    except ValueError:
        return None


async def run_sandboxed(
    isolation: Isolation, code: str, limits: RunLimits, uid: int, ceiling: RunCeiling = PER_PROCESS
) -> RunReport:
    """Run `code` as `uid` (a fresh one per run in root modes) within `limits`, in its own cgroup if any."""
    folder, files = await asyncio.to_thread(make_run_folder, code, uid)
    config = {"limits": limits.rlimits(ceiling), "paths": isolation.view.package_paths, "program": PROGRAM,
              "seccomp": SECCOMP_FILTER}
    argv = isolation.command(files, config, uid, limits.scratch_bytes)
    overflow = asyncio.Event()
    out, err = _Capture(limits.max_output_bytes, overflow), _Capture(limits.max_output_bytes, overflow)
    kill_reason: str | None = None
    process: asyncio.subprocess.Process | None = None
    cgroup: Path | None = None
    try:
        if ceiling.cgroups is not None:
            cgroup = await asyncio.to_thread(
                ceiling.cgroups.create, f"sandbox-run-{uid}", limits.memory_bytes + limits.scratch_bytes,
                limits.max_processes + LAUNCH_OVERHEAD_TASKS,
            )
            argv = ceiling.cgroups.wrap(cgroup, argv)
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=isolation.launcher_env(), start_new_session=True,
        )
        assert process.stdout is not None and process.stderr is not None
        readers = [asyncio.create_task(out.drain(process.stdout)), asyncio.create_task(err.drain(process.stderr))]
        exited = asyncio.create_task(process.wait())
        overflowed = asyncio.create_task(overflow.wait())
        done, _ = await asyncio.wait({exited, overflowed}, timeout=limits.wall_seconds, return_when="FIRST_COMPLETED")
        if exited not in done:
            kill_reason = (
                f"output exceeded {limits.max_output_bytes} bytes" if overflowed in done
                else f"wall-clock limit of {limits.wall_seconds:g} s reached"
            )
            _kill_group(process)
            await process.wait()
        overflowed.cancel()
        _, pending = await asyncio.wait(readers, timeout=DRAIN_AFTER_KILL_S)
        for reader in pending:
            reader.cancel()
        duration = time.monotonic() - started
    finally:
        if process is not None and process.returncode is None:  # cancelled from outside: leave nothing behind
            _kill_group(process)
            await process.wait()
        await asyncio.to_thread(shutil.rmtree, folder, True)
        if cgroup is not None and ceiling.cgroups is not None:
            await asyncio.to_thread(ceiling.cgroups.remove, cgroup)
    status = process.returncode
    killed = kill_reason is not None
    return RunReport(
        stdout=out.text(),
        stderr=err.text(),
        exit_status=None if killed else status,
        signal=_signal_of(status) if not killed else "SIGKILL",
        duration_s=round(duration, 3),
        killed=killed,
        kill_reason=kill_reason,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        isolation=isolation.mode,
    )


def uid_source(isolation: Isolation) -> Callable[[], int]:
    """Root modes get a fresh real uid per run; the user-namespace mode maps every run to `nobody` inside
    a user namespace of its own, whose keyrings and process counts are its own too."""
    if isolation.runs_as_root():
        return FreshUids().take
    return lambda: NOBODY
