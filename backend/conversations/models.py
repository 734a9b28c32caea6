"""What a recorded conversation is to the rest of the server: the stored document, its summary, and its 404."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.service_errors import NotFound

Conversation = dict[str, Any]
"""One recorded conversation as stored: `session_id`, `user_id`, `title`, timestamps and `messages`."""


class SessionNotFound(NotFound):
    """No such session, or someone else's: both answer the same, so ids cannot be probed."""

    code = "session_not_found"


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    user_id: str
    title: str
    created_at: str
    updated_at: str
    message_count: int

    def public(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "message_count": self.message_count,
        }
