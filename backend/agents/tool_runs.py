"""Running one tool call for an agent: every outcome is an observation, and what is kept is bounded."""

from __future__ import annotations

import json
from typing import Any

from backend.auth.models import User
from backend.config import Settings
from backend.service_errors import TooManyRequests
from backend.tools.base import ToolContext, ToolResult
from backend.tools.registry import ToolError, ToolRegistry

MAX_TRACE_ARGUMENT_CHARS = 2000
"""Characters of one argument the trace keeps (pasted data can be megabytes; the tool got all of it)."""


class ToolRunner:
    """One user's tool calls within one agent run."""

    def __init__(self, tools: ToolRegistry, settings: Settings, user: User) -> None:
        self._tools = tools
        self._context = ToolContext(user=user, settings=settings)
        self._max_chars = settings.agent_observation_max_chars

    async def run(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        """Never raises for the tool's sake: an unknown tool, bad arguments or a full share are failed results."""
        try:
            return await self._tools.invoke(tool, arguments, self._context)
        except ToolError as error:
            return ToolResult.failure(str(error))
        except TooManyRequests as error:
            return ToolResult.failure(error.message)

    def cut(self, text: str) -> str:
        return cut(text, self._max_chars)

    def bounded_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {key: cut(value, MAX_TRACE_ARGUMENT_CHARS) if isinstance(value, str) else value
                for key, value in arguments.items()}


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 30, 0)] + f"… [{len(text) - limit + 30} characters cut]"


def observation_summary(text: str, limit: int = 200) -> str:
    """One line of an observation for the live steps: `math_calc(…) → 9`."""
    flat = " ".join(text.split())
    if " = " in flat and len(flat) < 400:
        flat = flat.rsplit(" = ", 1)[1]
    return cut(flat, limit)


def call_text(tool: str, arguments: dict[str, Any], limit: int = 200) -> str:
    """`tool(main argument)` as the live steps show a call."""
    values = list(arguments.values())
    shown = values[0] if len(values) == 1 else json.dumps(arguments, ensure_ascii=False, default=str)
    return f"{tool}({cut(' '.join(str(shown).split()), limit)})"
