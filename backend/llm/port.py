"""The LLM port: what every backend offers, in backend-neutral types.

The primitive is the stream (`stream_chat`); `complete` joins it. Adapters raise only the
errors defined here, which `api/errors.py` maps to OpenAI error responses.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]


def new_tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for; `arguments` is a JSON string, as on the OpenAI wire."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation, content already flattened to text."""

    role: Role
    content: str | None = None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


ToolChoice = Literal["none", "auto", "required"] | str
"""`none`, `auto`, `required`, or the name of the one function the model must call."""


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling and output constraints for one generation."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    """Constrain the output to JSON valid against this schema."""
    json_object: bool = False
    """Constrain the output to some JSON object (OpenAI's `json_object` mode)."""
    tools: tuple[dict[str, Any], ...] = ()
    """OpenAI function specs: `{"type": "function", "function": {name, description, parameters}}`."""
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    """False: at most one call per answer (the embedded model makes one call per answer anyway)."""
    logit_bias: dict[int, float] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    """The signed-in account the generation is for, whose fair share of the model it takes.

    Set by the chat service from the authenticated user, never from the request body (OpenAI's `user`
    field is whatever the client says). None: no per-user share applies (internal callers, tests)."""
    handed_over: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    """Called once, when the backend has handed the request on: to the model (the embedded engine's
    child or worker took it) or to the HTTP upstream (which answered 200; Ollama's client sends only at
    its first read, so there it is called just before). The chat service starts the router's embedding
    only then, so that it does not slow the hand-off down (the GIL, the two cores)."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens read from the engine's prompt cache instead of being processed again."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.cached_tokens + other.cached_tokens)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class StreamDelta:
    """A piece of a streamed answer: text, whole tool calls, and at the end a finish reason and usage."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@dataclass
class ChatResult:
    """A whole answer: the joined stream."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=lambda: Usage(0, 0))


@dataclass(frozen=True)
class ModelInfo:
    id: str
    created: int
    owned_by: str


@dataclass(frozen=True)
class BackendHealth:
    ok: bool
    backend: str
    model: str
    detail: str = ""
    engine: dict[str, Any] | None = None
    """A supervised engine's state (running, pid, restarts, slots busy), for /ready."""


class LLMError(Exception):
    """Base of the errors an adapter may raise."""


class BackendUnavailable(LLMError):
    """The backend cannot be reached or did not answer in time (HTTP 503)."""


class BackendBusy(LLMError):
    """The backend's queue is full; retry after `retry_after_s` (HTTP 503 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelNotFound(LLMError):
    """The requested model is not served by this backend (HTTP 404)."""

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or is not served here.")
        self.model = model


class UnsupportedRequest(LLMError):
    """A request the backend cannot honour, e.g. a JSON schema its grammar builder rejects (HTTP 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@runtime_checkable
class LLMBackend(Protocol):
    """A chat model backend."""

    name: str
    """Short backend name: `llamacpp`, `ollama`, `openai`."""
    default_model: str

    def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[StreamDelta, None]:
        """Stream the answer; the last delta carries `finish_reason` and `usage`.

        A generator, so a caller can `aclose()` it: closing it early (client gone) must stop the generation.
        """
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def health(self) -> BackendHealth: ...

    async def aclose(self) -> None: ...


async def join_stream(stream: AsyncIterator[StreamDelta]) -> ChatResult:
    """Join a stream of deltas into one result: the non-streaming answer."""
    result = ChatResult()
    parts: list[str] = []
    async for delta in stream:
        parts.append(delta.content)
        result.tool_calls.extend(delta.tool_calls)
        if delta.finish_reason:
            result.finish_reason = delta.finish_reason
        if delta.usage:
            result.usage = delta.usage
    result.content = "".join(parts)
    return result
