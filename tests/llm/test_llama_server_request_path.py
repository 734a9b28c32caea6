"""The llama-server engine's request path: where the prompt is rendered, and when the request is handed over.

The hop to the preparation pool and back waits for the GIL while the router's embedder runs; a short
chat's template takes well under a millisecond, so it is rendered at once. Everything heavier (long
messages, tools, grammars) still goes to the pool, so it never holds up the event loop. The caller is
told once the child has taken the request (`handed_over`), before its first token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from backend.config import bundled_model_path
from backend.llm.llama_server_backend import INLINE_PREPARE_CHARS, INLINE_PREPARE_MESSAGES, LlamaServerBackend
from backend.llm.llama_server_build import installed_binary
from backend.llm.llama_server_process import EngineLaunch
from backend.llm.port import ChatMessage, GenerationOptions, ToolCall
from backend.llm.preparation import PREPARATION_THREADS
from backend.metrics import Metrics

WEATHER_TOOL = {"type": "function", "function": {
    "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


async def _backend() -> LlamaServerBackend:
    path = bundled_model_path()
    assert path is not None
    launch = EngineLaunch(installed_binary(), path, n_ctx=512, parallel=1, threads=1)
    return await asyncio.to_thread(LlamaServerBackend, launch, max_queue=8, queue_timeout_s=30, metrics=Metrics())


@pytest.fixture
async def backend() -> AsyncIterator[LlamaServerBackend]:
    """The backend without its child: preparation needs only the vocabulary and the template."""
    built = await _backend()
    yield built
    await built.aclose()


async def test_the_caller_is_told_once_the_child_has_the_request_before_its_first_token() -> None:
    started = await _backend()
    try:
        await started.start(ready_timeout_s=60)
        seen: list[str] = []
        options = GenerationOptions(max_tokens=3, temperature=0, handed_over=lambda: seen.append("handed over"))
        hi = [ChatMessage(role="user", content="Hi")]
        async for delta in started.stream_chat(started.default_model, hi, options):
            seen.append("content" if delta.content else "end")
        assert seen[0] == "handed over" and seen.count("handed over") == 1 and "content" in seen, seen
    finally:
        await started.aclose()


async def test_only_a_short_plain_chat_is_prepared_while_the_pool_is_busy(backend: LlamaServerBackend) -> None:
    release = threading.Event()
    for _ in range(PREPARATION_THREADS):  # hold every preparation thread
        backend._preparation.executor.submit(release.wait, 10)
    try:
        short = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")]
        prepared = await asyncio.wait_for(backend._prepare(short, GenerationOptions(), None), 1)
        assert "Be brief." in prepared.prompt and "Hi" in prepared.prompt and prepared.grammar is None

        long = [ChatMessage(role="user", content="x" * (INLINE_PREPARE_CHARS + 1))]
        # The attacks on the loop: tiny content, but a huge tool call to parse and write, or a great many messages.
        huge_call = ToolCall(id="call_1", name="weather", arguments='{"city": "' + "x" * 1_000_000 + '"}')
        hidden_in_a_call = [*short, ChatMessage(role="assistant", content=None, tool_calls=(huge_call,)),
                            ChatMessage(role="tool", content="sunny", tool_call_id="call_1")]
        many = [ChatMessage(role="user", content="hi")] * (INLINE_PREPARE_MESSAGES + 1)
        tools = GenerationOptions(tools=(WEATHER_TOOL,))
        schema = GenerationOptions(json_schema={"type": "object"})
        heavier = [
            (long, GenerationOptions()),
            (hidden_in_a_call, GenerationOptions()),
            (many, GenerationOptions()),
            (short, tools),
            (short, schema),
        ]
        for messages, options in heavier:
            plan = backend.grammars.plan(options)
            waiting = asyncio.create_task(backend._prepare(messages, options, plan))
            await asyncio.sleep(0.2)
            assert not waiting.done()  # queued behind the held pool, not run on the loop
            waiting.cancel()
    finally:
        release.set()
    prepared = await asyncio.wait_for(backend._prepare(short, schema, backend.grammars.plan(schema)), 10)
    assert prepared.grammar
