"""The agent port: every mode answers a turn as a stream of typed events, like the LLM port's deltas.

`ChatService` picks one `Agent` per mode (chat, react, plan_execute; `auto` asks the router first) and
the API turns the events into OpenAI chunks: steps as `delta.reasoning_content`, the answer as
`delta.content`. A non-streamed request joins the same stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from backend.auth.models import User
from backend.llm.port import ChatMessage, GenerationOptions, Usage
from backend.tools.base import Source

AgentMode = Literal["chat", "react", "plan_execute"]
RequestedMode = Literal["auto", "chat", "react", "plan_execute"]


@dataclass(frozen=True)
class RouteDecision:
    """Which path answers a turn, and why: sent as `X-Agent-Mode`, in the `agent` field, and recorded."""

    mode: AgentMode
    reason: str
    confidence: float
    """0..1; 1.0 when the request forced the mode."""
    tools: tuple[str, ...] = ()
    """The tools the router's signals point at, best first (a hint for the agent, never a limit)."""


@dataclass(frozen=True)
class AgentTurn:
    """One request for an agent: the conversation, who asks, and how the answer is generated."""

    model: str
    messages: list[ChatMessage]
    options: GenerationOptions
    user: User
    decision: RouteDecision


@dataclass(frozen=True)
class StepStarted:
    index: int
    """1-based, in the order steps start."""
    kind: str
    """e.g. `plan`, `select_tools`, `thought`, `reason`, `verify`."""
    text: str = ""


@dataclass(frozen=True)
class ToolCalled:
    step: int
    call_id: str
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolFinished:
    step: int
    call_id: str
    tool: str
    ok: bool
    text: str
    """The observation the model reads (a failure is an observation too, never an exception)."""
    duration_s: float
    data: Any = None
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class AnswerText:
    """A piece of the final answer, streamed as `delta.content`."""

    text: str


@dataclass(frozen=True)
class TraceStep:
    """One step of the kept trace: what the API returns in `agent_trace` and the conversation records."""

    index: int
    kind: str
    thought: str = ""
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    observation: str | None = None
    ok: bool | None = None
    duration_s: float = 0.0


@dataclass(frozen=True)
class Finished:
    """The last event of every run."""

    answer: str
    finish_reason: str
    usage: Usage
    iterations: int
    trace: tuple[TraceStep, ...] = ()
    sources: tuple[Source, ...] = ()
    tools_used: tuple[str, ...] = ()
    tool_calls: tuple[Any, ...] = field(default=())
    """Only plain chat with client-side `tools`: the model's calls (`backend.llm.port.ToolCall`)."""


AgentEvent = StepStarted | ToolCalled | ToolFinished | AnswerText | Finished


@runtime_checkable
class Agent(Protocol):
    mode: AgentMode

    def run(self, turn: AgentTurn) -> AsyncGenerator[AgentEvent, None]:
        """Closing the iterator stops the run (and any generation in progress); the last event is `Finished`."""
        ...
