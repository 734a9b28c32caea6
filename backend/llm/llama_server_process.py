"""Runs llama.cpp's `llama-server` as a supervised child on a private Unix socket.

The child listens on a socket in a fresh directory only this user can enter (0700), never on a TCP
port, and answers only requests that carry a key made for this run (handed over in its environment,
not its command line, which any local user can read). It is started with the server, polled until its
`/health` answers, started again with back-off if it dies (0.5 s doubling to 30 s; the back-off resets
once a run has lasted a minute), and stopped with the server. The kernel stops it too if this process
dies without cleaning up. Its stderr is read all the time (a full pipe would stall it) and the last
lines are kept for the log when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backend.metrics import Metrics
from backend.process_lifetime import stop_when_parent_dies

logger = logging.getLogger(__name__)

HEALTH_POLL_S = 0.05
START_TIMEOUT_S = 300.0
"""A child that has not loaded its model by then is stopped and started again."""
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_RUN_S = 60.0
STOP_TIMEOUT_S = 5.0
STDERR_LINES = 40
STDERR_LINE_CHARS = 2000
STDERR_CHUNK = 64 << 10
PROMPT_CACHE_MIB = 1024
"""RAM for prompts kept beyond the slots (llama-server's `--cache-ram`, default 8 GiB), reused by later requests."""


@dataclass(frozen=True)
class EngineLaunch:
    """What the child is started with."""

    binary: Path
    model_path: Path
    n_ctx: int
    """Tokens per slot; the child's whole context is `n_ctx * parallel`."""
    parallel: int
    threads: int

    def arguments(self, host: str) -> list[str]:
        """The command line; `host` is a Unix socket's path (or, for the benchmark's peer, an address)."""
        return [
            str(self.binary), "--model", str(self.model_path), "--host", host,
            "--ctx-size", str(self.n_ctx * self.parallel), "--parallel", str(self.parallel),
            "--threads", str(self.threads), "--threads-batch", str(self.threads),
            "--cache-ram", str(PROMPT_CACHE_MIB), "--fit", "off", "--no-webui",
        ]


class LlamaServerProcess:
    """One supervised llama-server child; `client` reaches it while it runs."""

    def __init__(self, launch: EngineLaunch, metrics: Metrics) -> None:
        self.launch = launch
        self._metrics = metrics
        self._directory = Path(tempfile.mkdtemp(prefix="llama-server-"))  # 0700, as mkdtemp makes it
        self.socket_path = self._directory / "llama-server.sock"
        api_key = secrets.token_urlsafe(32)
        self._environment = {**os.environ, "LLAMA_API_KEY": api_key}
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)),
            base_url="http://llama-server", headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(None, connect=5.0),  # an answer's time is bounded by max_tokens and the client
            # A new connection per request (on a Unix socket, a fraction of a millisecond): a kept one
            # was at times found closed by llama-server under the next request, just after a streamed answer.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )
        self._ready = asyncio.Event()
        self._closing = False
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)

    # --- lifecycle

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="llama-server supervisor")

    async def wait_ready(self, timeout_s: float) -> bool:
        """True once the child answers; False if it does not within `timeout_s`."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        self._closing = True
        self._ready.clear()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._stop_child()
        await self.client.aclose()
        shutil.rmtree(self._directory, ignore_errors=True)

    # --- state

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    def state(self) -> dict[str, Any]:
        return {"running": self.ready, "pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit}

    # --- supervision

    async def _supervise(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._closing:
            started = time.monotonic()
            try:
                await self._run_once()
            except OSError as error:  # the binary cannot be started at all (removed, not executable)
                self.stderr_tail.append(f"cannot start {self.launch.binary}: {error}")
            if self._closing:
                return
            self.restarts += 1
            self._metrics.engine_restarts.inc()
            backoff = FIRST_BACKOFF_S if time.monotonic() - started >= STABLE_RUN_S else backoff
            logger.warning(
                "llama-server ended (exit %s); starting it again in %.1f s. Its last output:\n%s",
                self.last_exit, backoff, "\n".join(self.stderr_tail),
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _run_once(self) -> None:
        """Start the child, mark it ready once healthy, and return when it has ended."""
        self.socket_path.unlink(missing_ok=True)  # left behind by a child that was killed
        process = await asyncio.create_subprocess_exec(
            *self.launch.arguments(str(self.socket_path)),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            # Its own session: Ctrl-C reaches the server, which stops the child after the requests in flight.
            env=self._environment, start_new_session=True,
            preexec_fn=lambda: stop_when_parent_dies(signal.SIGKILL),
        )
        self._process = process
        reader = asyncio.create_task(self._read_stderr(process))
        try:
            if await self._await_health(process):
                self._ready.set()
                self._metrics.engine_running.set(1)
                logger.info("llama-server ready (pid %d, %d slots)", process.pid, self.launch.parallel)
            else:
                process.kill()
            self.last_exit = await process.wait()
        finally:
            self._ready.clear()
            self._metrics.engine_running.set(0)
            if process.returncode is None:
                await self._stop_child()
            await reader

    async def _await_health(self, process: asyncio.subprocess.Process) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.returncode is None and time.monotonic() < deadline:
            try:
                if (await self.client.get("/health", timeout=2.0)).status_code == 200:
                    return True
            except httpx.TransportError:
                pass  # not listening yet
            await asyncio.sleep(HEALTH_POLL_S)
        return False

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        """In chunks, not lines: a line of any length must neither stop the reading nor be held whole."""
        assert process.stderr is not None
        partial = b""
        while chunk := await process.stderr.read(STDERR_CHUNK):
            *lines, partial = (partial + chunk).split(b"\n")
            partial = partial[-STDERR_LINE_CHARS:]
            for raw in lines:
                line = raw[:STDERR_LINE_CHARS].decode("utf-8", "replace").rstrip()
                self.stderr_tail.append(line)
                logger.debug("llama-server: %s", line)

    async def _stop_child(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
