"""POST /v1/chat/completions: parse the OpenAI request, ask the chat service, answer in JSON or SSE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, TypeVar

import anyio
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from backend.agents.agent_records import agent_json, sources_json, trace_json
from backend.agents.chat_service import ChatTurn, StartedTurn, reasoning_line, started_events
from backend.agents.port import AgentEvent, AnswerText, Finished, RouteDecision
from backend.api.deps import ChatServiceDep, ConversationServiceDep, CurrentUser, MetricsDep
from backend.api.errors import APIError, api_error_from_llm
from backend.api.json_body import body_docs, json_body
from backend.api.openai_schemas import (
    SSE_DONE,
    ChatCompletionRequest,
    ChunkWriter,
    completion_json,
    new_completion_id,
    sse_event,
)
from backend.conversations.conversation_service import AssistantTurn, StreamRecorder
from backend.llm.port import LLMError, StreamDelta, Usage
from backend.metrics import Metrics

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["chat"])

T = TypeVar("T")


@router.post("/chat/completions", response_model=None, openapi_extra=body_docs(ChatCompletionRequest))
async def chat_completions(
    request: Request,
    chat: ChatServiceDep,
    metrics: MetricsDep,
    user: CurrentUser,
    conversations: ConversationServiceDep,
    # After the user: the body is read only once the credentials are good.
    body: Annotated[ChatCompletionRequest, Depends(json_body(ChatCompletionRequest))],
    x_session_id: Annotated[
        str | None, Header(alias="X-Session-Id", description="Session to record into, if the body has none.")
    ] = None,
) -> JSONResponse | StreamingResponse:
    body.check_supported()
    # Recorded in the session the request names (someone else's id answers 404 before any work); a request
    # naming none is recorded only with RECORD_ALL_REQUESTS.
    session = await conversations.open_session(user, body.session_id or x_session_id)
    session_field = {"session_id": session.session_id} if session else {}
    turn = ChatTurn(model=body.model, messages=body.to_messages(), options=body.to_options(), mode=body.mode,
                    user=user)
    session_headers = {"X-Session-Id": session.session_id} if session else {}
    if not body.stream:
        try:
            outcome = await _unless_client_leaves(request, chat.complete(turn))
        except ClientGone:
            return JSONResponse(
                APIError(499, "The client closed the request.", code="client_closed_request").body(), 499
            )
        decision, finished = outcome.decision, outcome.finished
        trace, sources = trace_json(finished.trace), sources_json(finished.sources)
        await conversations.record_exchange(session, turn.messages, AssistantTurn(
            content=outcome.content, model=body.model, mode=decision.mode, tools_used=list(finished.tools_used),
            tool_calls=list(finished.tool_calls), finish_reason=finished.finish_reason, reason=decision.reason,
            confidence=decision.confidence, iterations=finished.iterations, steps=trace, sources=sources,
            reasoning=outcome.reasoning,
        ))
        return JSONResponse(
            completion_json(
                completion_id=new_completion_id(), created=int(time.time()), model=body.model,
                content=outcome.content, tool_calls=list(finished.tool_calls), reasoning=outcome.reasoning,
                finish_reason=finished.finish_reason, usage=finished.usage, extra={
                    **session_field, "agent": agent_json(decision, finished), "agent_trace": trace,
                    "sources": sources,
                },
            ),
            headers={"X-Agent-Mode": decision.mode, **session_headers},
        )

    # The first event comes before the 200, so an unknown model, a full queue or an unreachable
    # backend still gets a proper HTTP error instead of an error inside the stream.
    started = await chat.start(turn)
    decision = started.decision
    writer = ChunkWriter(
        body.model, include_usage=bool(body.stream_options and body.stream_options.include_usage), extra=session_field
    )
    recorder = conversations.stream_recorder(
        session, turn.messages, body.model, decision.mode, decision.reason, decision.confidence
    )
    return StreamingResponse(
        _sse(writer, started, metrics, recorder),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Agent-Mode": decision.mode,
                 **session_headers},
    )


class ClientGone(Exception):
    """The client disconnected before its non-streamed answer was ready."""


DISCONNECT_POLL_S = 0.25


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its generation) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


async def _sse(
    writer: ChunkWriter, started: StartedTurn, metrics: Metrics, recorder: StreamRecorder
) -> AsyncIterator[str]:
    """The SSE body. Runs until done or until the client leaves, which closes the events and stops the agent."""
    metrics.active_streams.inc()
    usage = Usage(0, 0)
    events = started.rest
    try:
        yield writer.role()
        async for event in started_events(started.first, events):
            for chunk in _chunks(writer, event, recorder, started.decision):
                yield chunk
            if isinstance(event, Finished):
                usage = event.usage
        if writer.include_usage:
            yield writer.usage(usage)
        # Recorded before [DONE], so a client that lists its sessions as soon as the stream ends finds it.
        await events.aclose()
        await recorder.finish()
        yield SSE_DONE
    except LLMError as error:
        yield sse_event(api_error_from_llm(error).body())
    except Exception:
        logger.exception("Stream failed after the response started")
        yield sse_event(APIError(500, "Internal server error; see the server log.", type="server_error").body())
    finally:
        # Stop the agent first, then record what was generated (also when the client left
        # mid-stream); shielded so a cancelled request still finishes both.
        with anyio.CancelScope(shield=True):
            await events.aclose()
            await recorder.finish()
        metrics.active_streams.dec()


def _chunks(writer: ChunkWriter, event: AgentEvent, recorder: StreamRecorder, decision: RouteDecision) -> list[str]:
    if isinstance(event, AnswerText):
        delta = StreamDelta(content=event.text)
        recorder.add(delta)
        return writer.delta(delta)
    if isinstance(event, Finished):
        recorder.add(StreamDelta(tool_calls=event.tool_calls, finish_reason=event.finish_reason))  # type: ignore[arg-type]
        trace, sources = trace_json(event.trace), sources_json(event.sources)
        recorder.agent_done(event.iterations, trace, sources, event.tools_used)
        chunks = writer.delta(StreamDelta(tool_calls=event.tool_calls)) if event.tool_calls else []
        chunks.append(writer.finish(event.finish_reason, {
            "agent": agent_json(decision, event), "agent_trace": trace, "sources": sources,
        }))
        return chunks
    line = reasoning_line(event)
    if line is None:
        return []
    recorder.add_reasoning(line)
    return writer.reasoning(line)
