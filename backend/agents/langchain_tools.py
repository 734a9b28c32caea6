"""The LangChain bridge: the registry's tools as langchain-core tools, for the plan-and-execute graph.

Each call goes through `ToolRegistry.invoke` (validation, availability, timeout, redaction). The content
is the text for the model and the artifact the whole `ToolResult`, so the graph keeps sources and
structured data next to the observation. Nothing the tool does reaches the graph as an exception: an
unknown tool, bad arguments and a user's full share (`TooManyRequests`) are failed observations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ValidationError

from backend.field_paths import field_path
from backend.service_errors import TooManyRequests
from backend.tools.base import ToolContext, ToolResult
from backend.tools.registry import ToolError, ToolRegistry


def as_langchain_tools(
    registry: ToolRegistry, context: ToolContext, *, only_available: bool = True
) -> list[StructuredTool]:
    """langchain-core tools bound to one user's context, in the registry's order."""
    tools: list[StructuredTool] = []
    for spec in registry.openai_tool_specs(only_available=only_available):
        tool = registry.get(spec["function"]["name"])
        tools.append(
            StructuredTool.from_function(
                coroutine=_call_through(registry, tool.name, context),
                name=tool.name,
                description=tool.description,
                args_schema=tool.args_model,
                infer_schema=False,
                response_format="content_and_artifact",
                handle_validation_error=validation_message,
            )
        )
    return tools


def _call_through(
    registry: ToolRegistry, name: str, context: ToolContext
) -> Callable[..., Awaitable[tuple[str, ToolResult]]]:
    async def call(**kwargs: Any) -> tuple[str, ToolResult]:
        plain = {key: v.model_dump() if isinstance(v, BaseModel) else v for key, v in kwargs.items()}
        try:
            result = await registry.invoke(name, plain, context)
        except ToolError as error:
            result = ToolResult.failure(str(error))
        except TooManyRequests as error:  # for an agent, a full share is an observation to act on
            result = ToolResult.failure(error.message)
        return result.text, result

    return call


def validation_message(error: ValidationError | Exception) -> str:
    """What the model reads when LangChain's own validation refuses the arguments."""
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        field = field_path(tuple(first["loc"])) or "the arguments"
        return f"Invalid value for '{field}': {first['msg']}"
    return f"Invalid arguments: {error}"
