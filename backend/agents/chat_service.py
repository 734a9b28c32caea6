"""Answers a chat turn: picks the path for the requested mode and streams the backend's answer.

Until the agents land every mode answers as plain chat; the mode is kept so the router and the
conversation store already carry it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

from backend.llm.port import ChatMessage, ChatResult, GenerationOptions, LLMBackend, StreamDelta, join_stream
from backend.metrics import Metrics


@dataclass(frozen=True)
class ChatTurn:
    """One request to answer: the conversation so far and how to answer it."""

    model: str
    messages: list[ChatMessage]
    options: GenerationOptions
    mode: str = "auto"
    user: str | None = None
    """The signed-in username: the backend's per-user share of the model is counted against it."""


class ChatService:
    def __init__(self, llm: LLMBackend, metrics: Metrics) -> None:
        self._llm = llm
        self._metrics = metrics

    async def stream(self, turn: ChatTurn) -> AsyncGenerator[StreamDelta, None]:
        """Stream the answer; closing this iterator stops the generation."""
        options = turn.options if turn.user is None else replace(turn.options, user=turn.user)
        stream = self._llm.stream_chat(turn.model, turn.messages, options)
        try:
            async for delta in stream:
                if delta.usage:
                    self._metrics.tokens_generated.labels(self._llm.name).inc(delta.usage.completion_tokens)
                    self._metrics.prompt_tokens.labels(self._llm.name).inc(delta.usage.prompt_tokens)
                yield delta
        finally:
            await stream.aclose()

    async def complete(self, turn: ChatTurn) -> ChatResult:
        return await join_stream(self.stream(turn))
