"""`python_code`: run model-written Python in the sandbox (`backend/tools/sandbox/`) and report what happened.

The tool fails closed: until a probe has shown that the sandbox really isolates a program on this
machine, it reports itself unavailable with the reason, and never runs code unconfined.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from backend.config import Settings
from backend.tools.base import Availability, ToolContext, ToolResult
from backend.tools.sandbox.isolation import Isolation, find_isolation
from backend.tools.sandbox.runner import RunLimits, RunReport, SandboxBusy, UidSlots, default_uid_slots, run_sandboxed

REPO_ROOT = Path(__file__).resolve().parents[3]
MAX_CONCURRENT_RUNS = 4
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
    args_model: type[BaseModel] = PythonCodeArgs

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._limits = limits_from(settings)
        self._lock = threading.Lock()
        self._probed = False
        self._isolation: Isolation | None = None
        self._reason = ""
        self._slots: UidSlots | None = None

    def hidden_paths(self) -> list[str]:
        """What the probe must find invisible; if the sandbox would show any of it, the tool stays off."""
        data_dir = self._settings.data_dir.resolve()
        paths = {str(data_dir), str(REPO_ROOT), str(Path(sys.prefix).resolve())}
        return sorted(paths)

    def availability(self) -> Availability:
        """Probes once (about 0.1 s; the registry's warm-up runs it off the event loop), then remembers."""
        with self._lock:
            if not self._probed:
                self._isolation, self._reason = find_isolation(self.hidden_paths())
                if self._isolation is not None:
                    self._slots = default_uid_slots(self._isolation, MAX_CONCURRENT_RUNS)
                self._probed = True
        if self._isolation is None:
            return Availability(False, f"no sandbox can be set up: {self._reason}")
        return Availability(True)

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        assert isinstance(args, PythonCodeArgs)
        if not self.availability().available or self._isolation is None or self._slots is None:
            return ToolResult.failure(f"python_code is unavailable: {self._reason}")
        try:
            uid = self._slots.take()
        except SandboxBusy as error:
            return ToolResult.failure(str(error))
        try:
            report = await run_sandboxed(self._isolation, args.code, self._limits, uid)
        finally:
            self._slots.give_back(uid)
        return ToolResult(ok=report.succeeded, text=render(report), data=asdict(report))
