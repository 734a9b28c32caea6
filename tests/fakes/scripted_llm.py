"""A scripted LLM backend: a real implementation of the LLM port that answers from a queue, like simonw/llm's MockModel.

Each generation takes the next scripted answer: a text, a `ToolCall` (or a tuple of them), an exception
to raise, or a function of (messages, options) returning one of those. A JSON-schema-constrained
generation returns the scripted text, which must be valid against the schema unless `max_tokens` cuts it (a
constrained model cannot answer otherwise, so a script that breaks the schema is a bug in the test).
Every call is recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import jsonschema

from backend.llm.port import (
    BackendHealth,
    ChatMessage,
    GenerationOptions,
    ModelInfo,
    StreamDelta,
    ToolCall,
    Usage,
)

Answer = str | ToolCall | tuple[ToolCall, ...] | BaseException
ScriptedAnswer = Answer | Callable[[list[ChatMessage], GenerationOptions], Answer]


class ScriptExhausted(AssertionError):
    """The code under test asked for more generations than the test scripted."""


@dataclass(frozen=True)
class RecordedCall:
    model: str
    messages: list[ChatMessage]
    options: GenerationOptions


class ScriptedLLM:
    """Answers generations from a queue; `chunk_delay_s` slows streaming so tests can cancel mid-answer."""

    name = "scripted"
    default_model = "scripted-model"

    def __init__(self, answers: Iterable[ScriptedAnswer] = (), *, chunk_delay_s: float = 0.0) -> None:
        self._answers: deque[ScriptedAnswer] = deque(answers)
        self.chunk_delay_s = chunk_delay_s
        self.calls: list[RecordedCall] = []
        self.started = 0
        self.closed_early = 0
        """Streams closed by the consumer before their last delta (a cancelled generation)."""

    def add(self, *answers: ScriptedAnswer) -> None:
        self._answers.extend(answers)

    @property
    def remaining(self) -> int:
        return len(self._answers)

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamDelta]:
        self.calls.append(RecordedCall(model, list(messages), options))
        if not self._answers:
            raise ScriptExhausted(f"no scripted answer left for generation #{len(self.calls)}")
        scripted = self._answers.popleft()
        answer = scripted(messages, options) if callable(scripted) else scripted
        if isinstance(answer, BaseException):
            raise answer
        self.started += 1
        if options.handed_over is not None:
            options.handed_over()
        prompt_tokens = sum(len((message.content or "").split()) for message in messages)
        finished = False
        try:
            if isinstance(answer, ToolCall):
                answer = (answer,)
            if isinstance(answer, tuple):
                yield StreamDelta(tool_calls=answer, finish_reason="tool_calls", usage=Usage(prompt_tokens, 1))
                finished = True
                return
            pieces, truncated = _pieces(answer, options)
            if options.json_schema is not None and not truncated:  # cut at max_tokens, a grammar's JSON is open
                jsonschema.validate(json.loads(answer), options.json_schema)
            for piece in pieces:
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                yield StreamDelta(content=piece)
            finished = True
            yield StreamDelta(
                finish_reason="length" if truncated else "stop", usage=Usage(prompt_tokens, len(pieces))
            )
        finally:
            if not finished:
                self.closed_early += 1

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(self.default_model, 0, "tests")]

    async def health(self) -> BackendHealth:
        return BackendHealth(ok=True, backend=self.name, model=self.default_model)

    async def aclose(self) -> None:
        pass


def _pieces(text: str, options: GenerationOptions) -> tuple[list[str], bool]:
    """The answer as word-sized pieces (one token each), cut at a stop sequence and at `max_tokens`."""
    for stop in options.stop:
        if stop and stop in text:
            text = text[: text.index(stop)]
    pieces: list[str] = []
    word = ""
    for char in text:
        if char == " " and word.strip():
            pieces.append(word)
            word = ""
        word += char
    if word:
        pieces.append(word)
    if options.max_tokens is not None and len(pieces) > options.max_tokens:
        return pieces[: options.max_tokens], True
    return pieces, False
