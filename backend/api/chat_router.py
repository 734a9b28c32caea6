"""POST /v1/chat/completions: parse the OpenAI request, ask the chat service, answer in JSON or SSE."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from backend.agents.chat_service import ChatTurn
from backend.api.deps import ChatServiceDep, MetricsDep
from backend.api.errors import APIError, api_error_from_llm
from backend.api.openai_schemas import (
    SSE_DONE,
    ChatCompletionRequest,
    ChunkWriter,
    completion_json,
    new_completion_id,
    sse_event,
)
from backend.llm.port import LLMError, StreamDelta, Usage

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, chat: ChatServiceDep, metrics: MetricsDep
) -> JSONResponse | StreamingResponse:
    body.check_supported()
    turn = ChatTurn(model=body.model, messages=body.to_messages(), options=body.to_options(), mode=body.mode)
    if not body.stream:
        result = await chat.complete(turn)
        return JSONResponse(
            completion_json(
                completion_id=new_completion_id(), created=int(time.time()), model=body.model,
                content=result.content, tool_calls=result.tool_calls,
                finish_reason=result.finish_reason, usage=result.usage,
            )
        )

    deltas = chat.stream(turn)
    # Wait for the first delta before answering 200, so an unknown model, a full queue or an
    # unreachable backend still gets a proper HTTP error instead of an error inside the stream.
    try:
        first: StreamDelta | None = await anext(deltas)
    except StopAsyncIteration:
        first = None
    writer = ChunkWriter(body.model, include_usage=bool(body.stream_options and body.stream_options.include_usage))
    return StreamingResponse(
        _sse(writer, first, deltas, metrics),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    writer: ChunkWriter, first: StreamDelta | None, deltas: AsyncIterator[StreamDelta], metrics: Any
) -> AsyncIterator[str]:
    """The SSE body. Runs until done or until the client leaves, which closes `deltas` and stops generation."""
    metrics.active_streams.inc()
    usage = Usage(0, 0)
    try:
        yield writer.role()
        pending = [first] if first else []
        while True:
            for delta in pending:
                usage = delta.usage or usage
                for event in writer.delta(delta):
                    yield event
            try:
                pending = [await anext(deltas)]
            except StopAsyncIteration:
                break
        if writer.include_usage:
            yield writer.usage(usage)
        yield SSE_DONE
    except LLMError as error:
        yield sse_event(api_error_from_llm(error).body())
    except Exception:
        logger.exception("Stream failed after the response started")
        yield sse_event(APIError(500, "Internal server error; see the server log.", type="server_error").body())
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
        metrics.active_streams.dec()
