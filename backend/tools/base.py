"""What a tool is: typed arguments, an async run, and a result that is a value, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from backend.auth.models import User
from backend.config import Settings

ArgsT = TypeVar("ArgsT", bound=BaseModel)
"""A tool's argument model: the registry validates into it, so `run` receives exactly this type."""


@dataclass(frozen=True)
class Source:
    """Where a piece of a result came from, for citations."""

    title: str
    url: str | None = None
    snippet: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    """E.g. `filename`, `page`, `score` for document chunks."""


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    text: str
    """What the model reads."""
    data: Any = None
    """Structured result for the API and the UI; the registry writes non-finite floats as strings."""
    sources: list[Source] = field(default_factory=list)

    @classmethod
    def failure(cls, message: str) -> ToolResult:
        return cls(ok=False, text=message)


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""


@dataclass(frozen=True)
class ToolContext:
    """Who runs the tool and with which settings; per-user data is found from `user.username`."""

    user: User
    settings: Settings


@runtime_checkable
class Tool(Protocol[ArgsT]):
    """A tool over its argument model; the registry holds `Tool[Any]` and hands each its own model's instance."""

    name: str
    description: str
    """Written for the model: what the tool does and when to use it."""
    args_model: type[ArgsT]

    def availability(self) -> Availability: ...

    async def run(self, args: ArgsT, context: ToolContext) -> ToolResult: ...
