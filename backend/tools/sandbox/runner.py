"""Run one program in the sandbox: capped output read as it comes, a wall clock, and a kill that reaches everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass

from backend.tools.sandbox.isolation import NOBODY, PROGRAM, SANDBOX_UID_BASE, Isolation, make_run_folder

READ_CHUNK = 65536
DRAIN_AFTER_KILL_S = 5.0
OPEN_FILES = 64


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

    def rlimits(self) -> dict[str, int]:
        return {
            "RLIMIT_CPU": self.cpu_seconds,
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_FSIZE": self.scratch_bytes,
            "RLIMIT_NOFILE": OPEN_FILES,
            "RLIMIT_CORE": 0,
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


class UidSlots:
    """One uid per concurrent run (root modes), so process limits and files never mix between runs.

    Thread-safe and loop-free on purpose: the tool may be used from more than one event loop (tests).
    """

    def __init__(self, size: int, base: int) -> None:
        self._free = list(range(base, base + size))
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            if not self._free:
                raise SandboxBusy("every sandbox slot is busy; try again in a moment")
            return self._free.pop(0)

    def give_back(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)


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


async def run_sandboxed(isolation: Isolation, code: str, limits: RunLimits, uid: int) -> RunReport:
    folder, files = await asyncio.to_thread(make_run_folder, code, uid)
    config = {"limits": limits.rlimits(), "paths": isolation.view.package_paths, "program": PROGRAM}
    argv = isolation.command(files, config, uid, limits.scratch_bytes)
    overflow = asyncio.Event()
    out, err = _Capture(limits.max_output_bytes, overflow), _Capture(limits.max_output_bytes, overflow)
    started = time.monotonic()
    kill_reason: str | None = None
    process: asyncio.subprocess.Process | None = None
    try:
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


def default_uid_slots(isolation: Isolation, size: int) -> UidSlots:
    """Root modes get distinct real uids; the user-namespace mode maps every run to `nobody` inside."""
    if isolation.runs_as_root():
        # Offset by our pid so that several server workers on one host never share a uid.
        return UidSlots(size, SANDBOX_UID_BASE + (os.getpid() % 1_000_000) * size)
    return _SameUid(size)


class _SameUid(UidSlots):
    """In a user namespace each run has its own process count, so one uid can serve every slot."""

    def __init__(self, size: int) -> None:
        super().__init__(0, NOBODY)
        self._free = [NOBODY] * size
