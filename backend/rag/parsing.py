"""Parsing an uploaded file into text, in a worker process that is killed at PARSE_TIMEOUT_S.

Why a process and not a thread: a parser stuck in an infinite loop on a crafted file cannot be
stopped from inside the interpreter, and one that allocates without bound would take the server
with it. The worker (`parse_worker.py`) caps its own memory; here it gets a time limit, a bounded
reply, an empty environment (no secrets reach it) and its own process group, killed as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.rag.document_errors import CorruptFile, ParseResourcesExceeded, ParseTimeout, error_for_reason
from backend.rag.parsed_document import DocumentKind, ParsedDocument

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_MODULE = "backend.rag.parse_worker"
STDERR_KEPT_BYTES = 4096
READ_BLOCK = 1 << 16


@dataclass(frozen=True)
class ParseLimits:
    timeout_s: float
    memory_mb: int
    max_chars: int
    group_chars: int
    """CSV row groups and DOCX table row groups are cut to fit one chunk of this many characters."""

    @property
    def max_reply_bytes(self) -> int:
        # A character is at most 6 bytes of JSON (`\\u001f`); page and section spans are a few bytes each.
        return self.max_chars * 6 + (1 << 20)


class DocumentParser:
    """Runs one worker per file; at most `max_workers` at once, across all users."""

    def __init__(self, limits: ParseLimits, max_workers: int, worker_module: str = WORKER_MODULE) -> None:
        self.limits = limits
        self._worker_module = worker_module
        self._slots = asyncio.Semaphore(max_workers)

    async def parse(self, path: Path, kind: DocumentKind) -> ParsedDocument:
        """The parsed document, or the `ServiceError` saying what is wrong with the file."""
        async with self._slots:
            reply = await self._run_worker(path, kind)
        if not reply.get("ok"):
            message = str(reply.get("message") or "The file could not be parsed.")
            raise error_for_reason(str(reply.get("reason")), message)
        try:
            return ParsedDocument.from_json(reply["document"])
        except (KeyError, TypeError, ValueError) as error:
            logger.error("Parse worker sent a malformed document for %s: %s", path.name, error)
            raise CorruptFile("The file could not be parsed.", param="file") from error

    async def _run_worker(self, path: Path, kind: DocumentKind) -> dict[str, Any]:
        limits = self.limits
        request = {
            "path": str(path), "kind": kind, "max_chars": limits.max_chars, "group_chars": limits.group_chars,
            "memory_mb": limits.memory_mb, "cpu_s": math.ceil(limits.timeout_s) + 1,
        }
        boot = f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r}); from {self._worker_module} import main; main()"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-c", boot,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"LANG": "C.UTF-8"}, cwd=str(path.parent), start_new_session=True,
        )
        stderr = bytearray()
        try:
            async with asyncio.timeout(limits.timeout_s):
                stdout, too_long = await self._exchange(process, json.dumps(request).encode(), stderr)
                if too_long:
                    raise ParseResourcesExceeded("The parser's output exceeded its limit.", param="file")
                await process.wait()
        except TimeoutError:
            logger.warning("Parse of %s (%s) killed after %.1f s", path.name, kind, limits.timeout_s)
            raise ParseTimeout(
                f"Parsing the file took longer than {limits.timeout_s:g} s (PARSE_TIMEOUT_S) and was stopped.",
                param="file",
            ) from None
        finally:
            await _kill(process)
        if stderr:
            logger.info("Parse worker for %s said: %s", path.name, stderr.decode("utf-8", "replace")[-1000:])
        try:
            reply: dict[str, Any] = json.loads(stdout)
        except ValueError:
            return _crash_reply(process.returncode)
        return reply

    async def _exchange(
        self, process: asyncio.subprocess.Process, request: bytes, stderr: bytearray
    ) -> tuple[bytes, bool]:
        """Send the request, read the reply up to its bound and keep the tail of stderr; True when cut off."""
        assert process.stdin and process.stdout and process.stderr
        process.stdin.write(request)
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        process.stdin.close()

        async def drain_stderr() -> None:
            assert process.stderr
            while block := await process.stderr.read(READ_BLOCK):
                stderr.extend(block)
                del stderr[:-STDERR_KEPT_BYTES]

        stderr_task = asyncio.create_task(drain_stderr())
        try:
            stdout = bytearray()
            while block := await process.stdout.read(READ_BLOCK):
                stdout.extend(block)
                if len(stdout) > self.limits.max_reply_bytes:
                    return bytes(stdout), True
            await stderr_task
            return bytes(stdout), False
        finally:
            stderr_task.cancel()


def _crash_reply(returncode: int | None) -> dict[str, Any]:
    """No reply: killed by the CPU or memory limit, or the parser crashed."""
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT):
        return {
            "ok": False, "reason": "resources", "message": "Parsing the file exceeded the parser's CPU or memory limit."
        }
    return {"ok": False, "reason": "corrupt", "message": "The file could not be parsed (the parser failed on it)."}


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the worker's whole process group if it is still there, and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()
