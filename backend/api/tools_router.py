"""GET /api/tools and POST /api/tools/{name}/invoke: the tool registry over HTTP, for the UI, debugging and tests."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.encoders import jsonable_encoder

from backend.api.deps import CurrentUser, RateLimitedUser, SettingsDep, ToolRegistryDep
from backend.api.errors import APIError
from backend.api.json_body import body_docs, json_body
from backend.tools.base import ToolContext
from backend.tools.registry import InvalidToolArguments, UnknownTool

router = APIRouter(prefix="/api/tools", tags=["tools"])


@router.get("")
async def list_tools(registry: ToolRegistryDep, _user: CurrentUser) -> dict[str, Any]:
    """Every tool with its argument schema and whether it can run now (and if not, why)."""
    tools = []
    for tool in registry.tools():
        status = registry.availability(tool.name)
        tools.append(
            {
                "name": tool.name,
                "description": tool.description,
                "parameters": registry.schema(tool.name),
                "available": status.available,
                "reason": status.reason or None,
            }
        )
    return {"object": "list", "data": tools}


ToolArguments = Annotated[Any, Depends(json_body(Any, required=False))]
"""The tool's arguments as one JSON object (an empty body means none); the registry validates them."""


@router.post("/{name}/invoke", openapi_extra=body_docs(
    dict[str, Any], required=False, description="The tool's arguments as one JSON object."
))
async def invoke_tool(
    name: str,
    registry: ToolRegistryDep,
    settings: SettingsDep,
    user: RateLimitedUser,
    arguments: ToolArguments,  # after the user: read only once the credentials are good
) -> dict[str, Any]:
    """Run one tool as the signed-in user. A tool that fails answers 200 with `ok: false` and the reason;
    a user already holding their share of the tool's pool gets 429 with `Retry-After` (`TooManyRequests`)."""
    try:
        result = await registry.invoke(name, {} if arguments is None else arguments, ToolContext(user, settings))
    except UnknownTool as error:
        raise APIError(404, str(error), param="name", code="tool_not_found") from None
    except InvalidToolArguments as error:
        raise APIError(400, str(error), param=error.field, code="invalid_tool_arguments") from None
    return {"tool": name, **jsonable_encoder(asdict(result))}
