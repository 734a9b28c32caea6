"""How every internet tool calls its service: one time budget, one failure type, one wording of failures,
and the wrapper that turns a failure into `unavailable: <reason>` and remembers it for `GET /api/tools`.

An internet tool writes only `ask` (question in, `ToolResult` out, `ServiceUnavailable` when the service
gives no usable answer); logging, the failure memory and the answer the model reads on failure are the
same for all of them and live here once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic

import httpx

from backend.config import Settings
from backend.redaction import display_host
from backend.tools.base import ArgsT, Availability, ToolContext, ToolResult
from backend.tools.internet.failure_memory import LastFailure

logger = logging.getLogger(__name__)

class ServiceUnavailable(Exception):
    """An internet service gave no usable answer; `str(error)` is the reason shown after "unavailable: "."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        """The HTTP status when the service answered with an error, for callers that explain particular ones."""


@dataclass(frozen=True)
class Budget:
    """The time one tool call may spend on the network, however many requests it makes."""

    seconds: float
    """Named in the reason when it runs out ("did not answer within 8 s")."""
    deadline: float
    """The same budget as event-loop time (`loop.time()`), for `asyncio.timeout_at`."""

    @classmethod
    def start(cls, settings: Settings) -> Budget:
        """The budget of a call starting now.

        A tenth of the tool's overall time is kept back so that the tool's own specific reason
        ("SearXNG did not answer within 8 s"), not the registry's generic timeout, reaches the model.
        """
        seconds = min(settings.internet_tools_timeout_s, settings.tool_timeout_s * 0.9)
        return cls(seconds, asyncio.get_running_loop().time() + seconds)


def describe_failure(service: str, error: BaseException, budget_s: float, url: str) -> str:
    """Explain a failed exchange in one line, without internals such as stack traces, headers or secrets."""
    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        return f"{service} did not answer within {budget_s:g} s"
    if isinstance(error, httpx.HTTPStatusError):
        return f"{service} answered HTTP {error.response.status_code}"
    if isinstance(error, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return f"the configured {service} URL is not valid"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect to {service} at {display_host(url)}"
    if isinstance(error, httpx.HTTPError):
        return f"network error talking to {service} at {display_host(url)} ({type(error).__name__})"
    if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
        return f"{service} sent a response that is not valid JSON"
    logger.warning("unexpected failure talking to %s", service, exc_info=error)
    return f"{service} failed ({type(error).__name__})"


class InternetTool(ABC, Generic[ArgsT]):
    """A tool answered by an internet service: a subclass declares itself through `__init__` and writes `ask`.

    Needing no key, such a tool is always offered; listing tools never probes a service (that would put a
    network call on every listing), so a failed call is the only evidence of trouble, reported until a
    call succeeds. A subclass that needs configuration overrides `availability` to say so.
    """

    def __init__(self, settings: Settings, name: str, description: str, args_model: type[ArgsT]) -> None:
        self.name = name
        self.description = description
        """Written for the model: what the tool does and when to use it."""
        self.args_model = args_model
        """What the registry validates the arguments with; `run` receives an instance of it."""
        self._settings = settings
        self._last_failure = LastFailure()

    def availability(self) -> Availability:
        return self._last_failure.availability()

    async def run(self, args: ArgsT, context: ToolContext) -> ToolResult:
        try:
            result = await self.ask(args, Budget.start(self._settings))
        except ServiceUnavailable as error:
            logger.warning("%s failed: %s", self.name, error)
            self._last_failure.failed(str(error))
            return ToolResult.failure(f"unavailable: {error}")
        self._last_failure.succeeded()
        return result

    @abstractmethod
    async def ask(self, request: ArgsT, budget: Budget) -> ToolResult:
        """Ask the service within `budget`; raise `ServiceUnavailable` when it gives no usable answer."""
