"""`math_calc`: exact maths with SymPy, computed in worker processes that are killed when they run away.

A SymPy computation in a thread cannot be stopped (`9^9^9^9` would hold a core and memory for good),
so the engine (`engine.py`) runs in a child process with an address-space cap; a call that
overruns `MATH_TIMEOUT_S` kills its worker and a fresh one starts for the next call. At most
`MATH_MAX_WORKERS` compute at once and one user holds at most `MATH_MAX_PER_USER` of them, so a user
flooding the tool with slow computations leaves the other workers to everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from backend.config import Settings
from backend.per_user_limits import PerUserLimit
from backend.tools.base import Availability, ToolContext, ToolResult

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
ENGINE_FILES = tuple(Path(__file__).with_name(name) for name in ("engine.py", "parsing.py"))
WORKER_COMMAND = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from backend.tools.math.engine import main; main(int(sys.argv[2]))"
)
"""`python -I` keeps the environment's PYTHON* variables out but also the script's folder off the path,
so the root is put there by hand, for the engine and its parser."""
WORKER_MEMORY_BYTES = 1024 * 1024 * 1024
"""SymPy itself needs ~150 MB; the rest is room for big but legitimate results."""
WORKER_START_TIMEOUT_S = 20.0
"""Importing SymPy takes a second or two; a loaded CI machine gets more room."""
MAX_REPLY_BYTES = 16 * 1024 * 1024
MAX_TEXT_CHARS = 4000
"""Of a result in the model's text; the structured data keeps it whole."""

Operation = Literal[
    "auto", "evaluate", "simplify", "expand", "factor", "solve",
    "differentiate", "integrate", "limit", "series", "numeric",
]


class MathCalcArgs(BaseModel):
    expression: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)] = Field(
        description=(
            "The maths to do, as an expression or a short instruction. `^` or `**` for powers, `2x` for 2*x. "
            "Examples: '2^10 + 3/4', 'integrate x^2 from 0 to 3', 'derivative of sin(x)*x', "
            "'solve x^2-4=0', 'solve x+y=10, x-y=2', 'limit sin(x)/x as x->0', 'factor x^2-1', "
            "'series of exp(x)', 'numeric value of pi to 30 digits'."
        )
    )
    operation: Operation = Field(
        "auto", description="What to do; `auto` reads it from the expression's leading words."
    )


class WorkerFailed(RuntimeError):
    """The worker died or sent something unreadable; it is discarded."""


class MathWorker:
    """One engine process, speaking JSON lines; bound to the event loop that started it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def start(cls) -> MathWorker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-c", WORKER_COMMAND, str(REPO_ROOT), str(WORKER_MEMORY_BYTES),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            # The engine evaluates model-written text (after a strict token check): it gets no secrets.
            env={"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"},
            start_new_session=True, limit=MAX_REPLY_BYTES,
        )
        worker = cls(process)
        try:
            hello = await asyncio.wait_for(worker._read(), WORKER_START_TIMEOUT_S)
        except BaseException:
            worker.kill()
            raise
        if hello.get("ready") is not True:
            worker.kill()
            raise WorkerFailed("the maths worker did not start")
        return worker

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        await self.process.stdin.drain()
        return await self._read()

    async def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await self.process.stdout.readline()
        except ValueError as error:  # a line longer than MAX_REPLY_BYTES
            raise WorkerFailed("the result is too large") from error
        if not line:
            raise WorkerFailed("the maths worker stopped (out of memory or crashed)")
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as error:
            raise WorkerFailed("the maths worker sent an unreadable reply") from error
        if not isinstance(reply, dict):
            raise WorkerFailed("the maths worker sent an unreadable reply")
        return reply

    @property
    def usable(self) -> bool:
        return self.process.returncode is None and self.loop is asyncio.get_running_loop()

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class MathWorkerPool:
    """Up to `size` warm workers; a worker that overran or failed is killed, never reused."""

    def __init__(self, size: int) -> None:
        self._idle: list[MathWorker] = []
        self._killed: list[MathWorker] = []
        """Until the loop has seen them exit; `aclose` waits for them so no process outlives the pool."""
        self._slots = asyncio.Semaphore(size)

    async def compute(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        async with self._slots:
            worker = await self._take()
            try:
                reply = await asyncio.wait_for(worker.ask(request), timeout_s)
            except BaseException:  # timeout, cancellation or a dead worker: it must not serve again
                self._kill(worker)
                raise
            self._idle.append(worker)
            return reply

    async def _take(self) -> MathWorker:
        while self._idle:
            worker = self._idle.pop()
            if worker.usable:
                return worker
            self._kill(worker)
        return await MathWorker.start()

    def _kill(self, worker: MathWorker) -> None:
        worker.kill()
        self._killed = [w for w in self._killed if w.process.returncode is None] + [worker]

    async def aclose(self) -> None:
        for worker in self._idle + self._killed:
            worker.kill()
            with contextlib.suppress(TimeoutError, RuntimeError):
                await asyncio.wait_for(worker.process.wait(), 5)
        self._idle.clear()
        self._killed.clear()


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def render(result: dict[str, Any]) -> str:
    line = f"{result['input']} = {result['result']}" if result["operation"] != "solve" else (
        f"Solving {result['input']}: {result['result']}"
    )
    parts = [_clip(line)]
    if result.get("numeric"):
        parts.append(f"≈ {result['numeric']}")
    parts.extend(f"({note})" for note in result.get("notes") or [])
    return "\n".join(parts)


class MathCalcTool:
    name = "math_calc"
    description = (
        "Exact mathematics with SymPy: arithmetic, simplify, expand, factor, solve equations and systems, "
        "derivatives, integrals (definite and indefinite), limits, series and numeric values. "
        "Use it for any calculation instead of doing arithmetic yourself."
    )
    args_model = MathCalcArgs

    def __init__(self, settings: Settings) -> None:
        self._timeout_s = settings.math_timeout_s
        self._pool = MathWorkerPool(settings.math_max_workers)
        self._per_user = PerUserLimit("math_calc computation(s)", settings.math_max_per_user)

    def availability(self) -> Availability:
        missing = [path.name for path in ENGINE_FILES if not path.is_file()]
        if missing:
            return Availability(False, f"the maths engine is incomplete: {', '.join(missing)} missing")
        return Availability(True)

    async def run(self, args: MathCalcArgs, context: ToolContext) -> ToolResult:
        """Raises `TooManyRequests` when the user already has `MATH_MAX_PER_USER` computations in progress."""
        request = {"expression": args.expression, "operation": args.operation}
        try:
            # Held while waiting for a worker too: a user's queued calls count against their share.
            with self._per_user.hold(context.user.username):
                reply = await self._pool.compute(request, self._timeout_s)
        except TimeoutError:
            return ToolResult.failure(
                f"The calculation took longer than {self._timeout_s:g} s and was stopped; "
                "try a simpler or more specific expression."
            )
        except WorkerFailed as error:
            return ToolResult.failure(f"The calculation failed: {error}.")
        if not reply.get("ok"):
            return ToolResult.failure(f"Cannot compute '{args.expression}': {reply.get('error', 'unknown error')}.")
        result = reply["result"]
        return ToolResult(ok=True, text=render(result), data=result)

    async def aclose(self) -> None:
        await self._pool.aclose()
