"""The embedded backend prepares requests off its worker; one abandoned meanwhile never reaches the worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from backend.config import bundled_model_path
from backend.llm.llamacpp_adapter import LlamaCppBackend
from backend.llm.port import ChatMessage, GenerationOptions, UnsupportedRequest, join_stream
from backend.llm.preparation import PREPARATION_THREADS
from backend.metrics import Metrics
from backend.service_errors import TooManyRequests


@pytest.fixture
async def backend() -> AsyncIterator[LlamaCppBackend]:
    path = bundled_model_path()
    assert path is not None
    built = await asyncio.to_thread(
        LlamaCppBackend, path, n_ctx=512, n_threads=1, max_queue=8, queue_timeout_s=30, metrics=Metrics(),
        max_queue_per_user=1,
    )
    yield built
    await built.aclose()


def _worker_started(backend: LlamaCppBackend) -> bool:
    return bool(backend._executor._threads)  # the pool starts its one thread on the first job it is given


async def test_a_request_abandoned_while_being_prepared_never_reaches_the_worker(backend: LlamaCppBackend) -> None:
    release = threading.Event()
    for _ in range(PREPARATION_THREADS):  # hold every preparation thread
        backend._preparation.executor.submit(release.wait, 10)
    hi = [ChatMessage(role="user", content="hi")]
    task = asyncio.create_task(join_stream(backend.stream_chat(backend.default_model, hi, GenerationOptions(
        max_tokens=2, user="alice"))))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await asyncio.sleep(0.2)
    assert not _worker_started(backend)
    assert backend.admission.per_user.in_flight("alice") == 0  # the share is given back too
    answer = await join_stream(backend.stream_chat(backend.default_model, hi, GenerationOptions(
        max_tokens=2, user="alice")))
    assert answer.usage.completion_tokens >= 1


async def test_a_prompt_past_the_context_is_refused_without_the_worker(backend: LlamaCppBackend) -> None:
    for content in ("x" * 100_000, "word " * 1000):
        with pytest.raises(UnsupportedRequest, match="this model's context holds 512"):
            await join_stream(backend.stream_chat(
                backend.default_model, [ChatMessage(role="user", content=content)], GenerationOptions()))
    assert not _worker_started(backend)


async def test_one_user_past_their_share_is_refused_and_others_are_not(backend: LlamaCppBackend) -> None:
    hi = [ChatMessage(role="user", content="Write a long story.")]
    first = backend.stream_chat(backend.default_model, hi, GenerationOptions(max_tokens=200, user="alice"))
    await anext(first)  # alice's one generation is running
    with pytest.raises(TooManyRequests) as caught:
        await join_stream(backend.stream_chat(backend.default_model, hi, GenerationOptions(max_tokens=2, user="alice")))
    assert caught.value.code == "per_user_limit" and caught.value.headers["Retry-After"] == "2"
    other = asyncio.create_task(join_stream(backend.stream_chat(
        backend.default_model, hi, GenerationOptions(max_tokens=2, user="bob"))))
    await first.aclose()
    assert (await asyncio.wait_for(other, 30)).usage.completion_tokens >= 1
