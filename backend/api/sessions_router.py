"""/api/sessions: the signed-in user's own recorded conversations. Someone else's id answers 404."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from backend.api.deps import ConversationServiceDep, CurrentUser
from backend.api.json_body import body_docs, json_body
from backend.conversations.models import Conversation

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


class SessionRename(BaseModel):
    title: str = Field(min_length=1, max_length=200)


def _session_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "session_id": conversation["session_id"],
        "title": conversation.get("title", ""),
        "created_at": conversation.get("created_at"),
        "updated_at": conversation.get("updated_at"),
        "messages": conversation.get("messages", []),
    }


@router.get("")
async def list_sessions(
    user: CurrentUser,
    conversations: ConversationServiceDep,
    limit: Annotated[int, Query(ge=1, le=200, description="Sessions per page.")] = 50,
    offset: Annotated[int, Query(ge=0, description="Sessions to skip.")] = 0,
) -> dict[str, Any]:
    """Your sessions, most recently updated first."""
    page = await conversations.list_sessions(user, limit, offset)
    return {
        "object": "list",
        "data": [summary.public() for summary in page.items],
        "total": page.total,
        "limit": page.limit,
        "offset": page.offset,
        "has_more": page.offset + len(page.items) < page.total,
    }


@router.get("/{session_id}")
async def get_session(session_id: str, user: CurrentUser, conversations: ConversationServiceDep) -> dict[str, Any]:
    return _session_json(await conversations.get_session(user, session_id))


@router.patch("/{session_id}", openapi_extra=body_docs(SessionRename))
async def rename_session(
    session_id: str, user: CurrentUser, conversations: ConversationServiceDep,
    body: Annotated[SessionRename, Depends(json_body(SessionRename))],  # read after the user
) -> dict[str, Any]:
    return _session_json(await conversations.rename_session(user, session_id, body.title))


@router.delete("/{session_id}")
async def delete_session(session_id: str, user: CurrentUser, conversations: ConversationServiceDep) -> dict[str, Any]:
    await conversations.delete_session(user, session_id)
    return {"session_id": session_id, "deleted": True}
