"""Records every chat completion of a signed-in user and serves their sessions back to them.

As in OpenAI's API the request's `messages` are authoritative: this service records what was
asked and answered, and never injects stored history into a request. Each request appends the
messages the conversation does not hold yet (normally the new user turn) and then the reply.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.auth.models import User
from backend.conversations.models import Conversation, SessionNotFound, SessionSummary
from backend.llm.port import ChatMessage, StreamDelta, ToolCall
from backend.service_errors import CorruptJSONFile, InvalidInput
from backend.storage.conversation_repository import ConversationRepository, is_valid_session_id
from backend.storage.timestamps import utc_now_iso

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 80
DEFAULT_TITLE = "New conversation"


def new_session_id() -> str:
    """128 random bits: unguessable, so nobody stumbles into another user's session."""
    return "sess_" + secrets.token_hex(16)


def title_from(text: str) -> str:
    words = re.sub(r"\s+", " ", text).strip()
    if len(words) <= TITLE_MAX_CHARS:
        return words or DEFAULT_TITLE
    cut = words[:TITLE_MAX_CHARS].rsplit(" ", 1)[0] or words[:TITLE_MAX_CHARS]
    return cut.rstrip(" ,.;:") + "…"


def _tool_calls_json(calls: Sequence[ToolCall]) -> list[dict[str, str]]:
    return [{"id": call.id, "name": call.name, "arguments": call.arguments} for call in calls]


def _stored(message: ChatMessage, at: str) -> dict[str, Any]:
    stored: dict[str, Any] = {"role": message.role, "content": message.content, "timestamp": at}
    if message.name:
        stored["name"] = message.name
    if message.tool_calls:
        stored["tool_calls"] = _tool_calls_json(message.tool_calls)
    if message.tool_call_id:
        stored["tool_call_id"] = message.tool_call_id
    return stored


def new_inputs(recorded: Sequence[dict[str, Any]], request: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The request messages the conversation does not hold yet.

    When the recorded conversation is a prefix of the request (the usual client that resends the
    history), the rest is new. Otherwise the client edited or regenerated: what follows the
    request's last assistant message is what it is asking about now.
    """
    held = [(message.get("role"), message.get("content") or "") for message in recorded]
    sent = [(message.role, message.content or "") for message in request]
    if len(held) <= len(sent) and sent[: len(held)] == held:
        return list(request[len(held):])
    last_assistant = max((index for index, message in enumerate(request) if message.role == "assistant"), default=-1)
    return list(request[last_assistant + 1:])


@dataclass(frozen=True)
class AssistantTurn:
    """What the server answered, as recorded."""

    content: str
    model: str
    mode: str
    tools_used: list[str] = field(default_factory=list)
    """Server-side tools the agent ran for this answer."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    """Calls the model asked the client to run (OpenAI function calling)."""
    finish_reason: str | None = "stop"
    complete: bool = True
    """False when the client left before the stream ended: what was generated so far is recorded."""
    reason: str = ""
    """Why the router chose `mode`."""
    confidence: float | None = None
    iterations: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)
    """The agent's trace (`agent_trace` in the API)."""
    sources: list[dict[str, Any]] = field(default_factory=list)
    reasoning: str = ""
    """The steps as the client saw them (`reasoning_content`)."""

    def stored(self, at: str) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "role": "assistant", "content": self.content, "timestamp": at, "mode": self.mode,
            "tools_used": list(self.tools_used), "model": self.model, "finish_reason": self.finish_reason,
            "reason": self.reason, "confidence": self.confidence, "iterations": self.iterations,
            "steps": list(self.steps), "sources": list(self.sources),
        }
        if self.reasoning:
            stored["reasoning_content"] = self.reasoning
        if self.tool_calls:
            stored["tool_calls"] = _tool_calls_json(self.tool_calls)
        if not self.complete:
            stored["incomplete"] = True
        return stored


@dataclass(frozen=True)
class OpenSession:
    """The session one chat request records into, with the time the request arrived."""

    user: User
    session_id: str
    opened_at: str


class AccountDirectory(Protocol):
    """Tells whether a principal's account still exists (implemented by the user repository)."""

    async def account_exists(self, user: User) -> bool: ...


@dataclass(frozen=True)
class SessionPage:
    items: list[SessionSummary]
    total: int
    limit: int
    offset: int


class ConversationService:
    def __init__(
        self, repository: ConversationRepository, accounts: AccountDirectory, *, record_all_requests: bool = False
    ) -> None:
        self._repository = repository
        self._accounts = accounts
        self._record_all_requests = record_all_requests

    # --- recording chat completions

    async def open_session(self, user: User, requested: str | None) -> OpenSession | None:
        """The session this request records into: the requested one if it is the user's or new, else 404.

        A request that names no session is answered without being recorded (None), unless every request is
        (RECORD_ALL_REQUESTS): clients such as Open WebUI send their own title and tag calls, and SDK scripts
        make many one-off calls; each stored as a conversation would flood the history and the disk.
        """
        if not requested:
            return OpenSession(user, new_session_id(), utc_now_iso()) if self._record_all_requests else None
        if not is_valid_session_id(requested):
            raise InvalidInput(
                "session_id must be 1-128 letters, digits, '_' or '-', starting with a letter or digit.",
                param="session_id", code="invalid_session_id",
            )
        try:
            owner = await self._repository.owner_of(requested)
        except CorruptJSONFile:
            owner = None  # moved aside and logged by the store; this request starts the session afresh
        if owner is not None and owner != user.username:
            raise SessionNotFound(f"No session with id '{requested}'.", param="session_id")
        return OpenSession(user, requested, utc_now_iso())

    async def record_exchange(
        self, session: OpenSession | None, messages: Sequence[ChatMessage], reply: AssistantTurn | None
    ) -> None:
        """Append the request's new messages (stamped with its arrival) and the reply, in one locked write.

        Nothing is recorded for an account deleted meanwhile (a stream can outlive its user): deleting
        an account removes its conversations, and a file written afterwards would be left behind.
        """
        if session is None:
            return
        if not await self._accounts.account_exists(session.user):
            logger.info("Not recording session %s: its account no longer exists", session.session_id)
            return

        def append(conversation: Conversation) -> None:
            held = conversation["messages"]
            if messages:
                held.extend([_stored(message, session.opened_at) for message in new_inputs(held, messages)])
            if reply is not None:
                held.append(reply.stored(utc_now_iso()))
            if not conversation.get("title_edited") and not conversation.get("title"):
                first_user = next((m for m in held if m.get("role") == "user" and m.get("content")), None)
                if first_user is not None:
                    conversation["title"] = title_from(str(first_user["content"]))

        owner = session.user.username
        try:
            await self._repository.change(session.session_id, owner, append, create=True)
        except CorruptJSONFile:
            # The broken file is kept aside and logged by the store; record into a fresh one.
            await self._repository.change(session.session_id, owner, append, create=True)
        if not await self._accounts.account_exists(session.user):
            # Deleted between the check above and the write: its deletion may have looked for the
            # user's conversations before this file existed, so remove it here.
            with contextlib.suppress(SessionNotFound):
                await self._repository.delete(session.session_id, owner)
            logger.info("Removed session %s: its account was deleted while it was recorded", session.session_id)

    def stream_recorder(
        self, session: OpenSession | None, messages: Sequence[ChatMessage], model: str, mode: str, reason: str = "",
        confidence: float | None = None,
    ) -> StreamRecorder:
        """Collects a streamed reply; its `finish()` records the request and the reply together."""
        return StreamRecorder(lambda turn: self.record_exchange(session, messages, turn), model, mode, reason,
                              confidence)

    # --- the sessions API

    async def list_sessions(self, user: User, limit: int, offset: int) -> SessionPage:
        summaries = await self._repository.summaries_for(user.username)
        return SessionPage(summaries[offset: offset + limit], len(summaries), limit, offset)

    async def get_session(self, user: User, session_id: str) -> Conversation:
        return await self._repository.get(session_id, user.username)

    async def rename_session(self, user: User, session_id: str, title: str) -> Conversation:
        cleaned = re.sub(r"\s+", " ", title).strip()
        if not cleaned:
            raise InvalidInput("The title must not be empty.", param="title")

        def rename(conversation: Conversation) -> None:
            conversation["title"] = cleaned
            conversation["title_edited"] = True

        return await self._repository.change(session_id, user.username, rename, create=False)

    async def delete_session(self, user: User, session_id: str) -> None:
        await self._repository.delete(session_id, user.username)


class StreamRecorder:
    """Collects a streamed answer and records it once, when the stream ends or the client leaves."""

    def __init__(
        self, save: Callable[[AssistantTurn], Awaitable[None]], model: str, mode: str, reason: str = "",
        confidence: float | None = None,
    ) -> None:
        self._save = save
        self._model = model
        self._mode = mode
        self._reason = reason
        self._confidence = confidence
        self._iterations = 0
        self._steps: list[dict[str, Any]] = []
        self._sources: list[dict[str, Any]] = []
        self._tools_used: list[str] = []
        self._reasoning: list[str] = []
        self._parts: list[str] = []
        self._tool_calls: list[ToolCall] = []
        self._finish_reason: str | None = None
        self._saved = False

    def add(self, delta: StreamDelta) -> None:
        if delta.content:
            self._parts.append(delta.content)
        self._tool_calls.extend(delta.tool_calls)
        if delta.finish_reason:
            self._finish_reason = delta.finish_reason

    def add_reasoning(self, text: str) -> None:
        self._reasoning.append(text)

    def agent_done(
        self, iterations: int, steps: list[dict[str, Any]], sources: list[dict[str, Any]], tools_used: Sequence[str]
    ) -> None:
        """What the agent did, recorded with the answer."""
        self._iterations = iterations
        self._steps = steps
        self._sources = sources
        self._tools_used = list(tools_used)

    async def finish(self, tools_used: Sequence[str] = ()) -> None:
        """Record once; a failure is logged, never raised, since the response has already been sent."""
        if self._saved:
            return
        self._saved = True
        turn = AssistantTurn(
            content="".join(self._parts), model=self._model, mode=self._mode,
            tools_used=list(tools_used) or self._tools_used, tool_calls=self._tool_calls,
            finish_reason=self._finish_reason, complete=self._finish_reason is not None, reason=self._reason,
            confidence=self._confidence, iterations=self._iterations, steps=self._steps, sources=self._sources,
            reasoning="".join(self._reasoning),
        )
        try:
            await self._save(turn)
        except Exception:
            logger.exception("Could not record a streamed reply")
