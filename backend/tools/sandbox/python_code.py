"""`python_code`: run model-written Python in the sandbox (`backend/tools/sandbox/`) and report what happened.

The tool fails closed: until a probe has shown that the sandbox really isolates a program on this
machine, it reports itself unavailable with the reason, and never runs code unconfined. At most
`SANDBOX_MAX_RUNS` run at once, `SANDBOX_MAX_RUNS_PER_USER` of them for any one user.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from backend.config import Settings
from backend.per_user_limits import PerUserLimit
from backend.tools.base import Availability, ToolContext, ToolResult
from backend.tools.sandbox.ceiling import RunCeiling, find_ceiling, machine_memory_bytes
from backend.tools.sandbox.isolation import Isolation, find_isolation
from backend.tools.sandbox.runner import RunLimits, RunReport, RunSlots, SandboxBusy, run_sandboxed, uid_source

REPO_ROOT = Path(__file__).resolve().parents[3]
MAX_CODE_CHARS = 100_000


class PythonCodeArgs(BaseModel):
    code: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CODE_CHARS)] = Field(
        description=(
            "A complete Python 3 program. Print what you want to see: only stdout and stderr come back. "
            "Standard library only (numpy when installed); no network, no files but a scratch folder."
        )
    )


def limits_from(settings: Settings) -> RunLimits:
    return RunLimits(
        cpu_seconds=settings.sandbox_cpu_seconds,
        memory_bytes=settings.sandbox_memory_mb * 1024 * 1024,
        max_processes=settings.sandbox_max_processes,
        scratch_bytes=settings.sandbox_disk_mb * 1024 * 1024,
        wall_seconds=settings.sandbox_wall_seconds,
        max_output_bytes=settings.sandbox_max_output_bytes,
    )


def render(report: RunReport) -> str:
    if report.killed:
        head = f"Stopped after {report.duration_s:g} s: {report.kill_reason}."
    elif report.signal == "SIGXCPU":
        head = f"Stopped after {report.duration_s:g} s: CPU time limit reached."
    elif report.signal:
        head = f"Ended by {report.signal} after {report.duration_s:g} s."
    else:
        head = f"Exit status {report.exit_status} after {report.duration_s:g} s."
    parts = [head]
    for name, text, cut in (("stdout", report.stdout, report.stdout_truncated),
                            ("stderr", report.stderr, report.stderr_truncated)):
        if text or cut:
            parts.append(f"--- {name}{' (truncated)' if cut else ''} ---\n{text.rstrip()}")
    if len(parts) == 1:
        parts.append("(no output)")
    return "\n".join(parts)


class PythonCodeTool:
    name = "python_code"
    description = (
        "Run a short Python 3 program in an isolated sandbox and get its stdout, stderr and exit status. "
        "Use it for calculations, data processing or checking code. It has no network and no access to "
        "the user's files; print the results you need."
    )
    args_model = PythonCodeArgs

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._limits = limits_from(settings)
        self._lock = threading.Lock()
        self._probed = False
        self._isolation: Isolation | None = None
        self._ceiling = RunCeiling(None, "not probed yet")
        self._reason = ""
        self._uids: Callable[[], int] | None = None
        self._slots = RunSlots(settings.sandbox_max_runs)
        per_user = min(settings.sandbox_max_runs_per_user, settings.sandbox_max_runs)
        self._per_user = PerUserLimit("python_code run(s)", per_user)

    def hidden_paths(self) -> list[str]:
        """What the probe must find invisible; if the sandbox would show any of it, the tool stays off."""
        data_dir = self._settings.data_dir.resolve()
        paths = {str(data_dir), str(REPO_ROOT), str(Path(sys.prefix).resolve())}
        return sorted(paths)

    def worst_case_bytes(self) -> int:
        """Every slot busy, each run at its ceiling: program memory plus its in-memory scratch folder."""
        return self._settings.sandbox_max_runs * (self._limits.memory_bytes + self._limits.scratch_bytes)

    def _probe(self) -> None:
        mb = 1024 * 1024
        if self.worst_case_bytes() > machine_memory_bytes():
            self._reason = (
                f"SANDBOX_MAX_RUNS x (SANDBOX_MEMORY_MB + SANDBOX_DISK_MB) = {self.worst_case_bytes() // mb} MB "
                f"exceeds this machine's {machine_memory_bytes() // mb} MB"
            )
            return
        ceiling = find_ceiling()
        isolation, reason = find_isolation(self.hidden_paths(), ceiling.cgroups, self._limits.rlimits(ceiling))
        if isolation is None and ceiling.cgroups is not None:  # the cgroup is a bonus, the isolation is not
            ceiling = RunCeiling(None, f"runs failed inside a cgroup ({reason})")
            isolation, reason = find_isolation(self.hidden_paths(), None, self._limits.rlimits(ceiling))
        self._isolation, self._reason, self._ceiling = isolation, reason, ceiling
        if isolation is not None:
            self._uids = uid_source(isolation)
            limits = self._limits
            self._reason = f"{isolation.mode}; " + ceiling.describe(
                limits.memory_bytes, limits.scratch_bytes, limits.max_processes
            )

    def availability(self) -> Availability:
        """Probes once (under a second; the registry's warm-up runs it off the event loop), then remembers.

        When available, `reason` tells the isolation mode and what bounds a run as a whole on this host.
        """
        with self._lock:
            if not self._probed:
                self._probe()
                self._probed = True
        if self._isolation is None:
            return Availability(False, f"no sandbox can be set up: {self._reason}")
        return Availability(True, self._reason)

    async def run(self, args: PythonCodeArgs, context: ToolContext) -> ToolResult:
        """Raises `TooManyRequests` when the user already has `SANDBOX_MAX_RUNS_PER_USER` runs in progress."""
        if not self.availability().available or self._isolation is None or self._uids is None:
            return ToolResult.failure(f"python_code is unavailable: {self._reason}")
        with self._per_user.hold(context.user.username):
            try:
                with self._slots.hold():
                    report = await run_sandboxed(self._isolation, args.code, self._limits, self._uids(), self._ceiling)
            except SandboxBusy as error:
                return ToolResult.failure(str(error))
        return ToolResult(ok=report.succeeded, text=render(report), data=asdict(report))
