"""What the internet tools remember between calls: why the last one failed, shown in `GET /api/tools`.

Listing tools never probes a service (that would put a network call on every listing), so a failed
call is the only evidence of trouble; it is reported until a call succeeds.
"""

from __future__ import annotations

from backend.tools.base import Availability


class LastFailure:
    """The reason the last call failed, or nothing since one succeeded."""

    def __init__(self) -> None:
        self._reason: str | None = None

    def failed(self, reason: str) -> None:
        self._reason = reason

    def succeeded(self) -> None:
        self._reason = None

    def availability(self) -> Availability:
        """Still available: the next call may well work; the reason says what went wrong last time."""
        if self._reason:
            return Availability(True, f"last call failed: {self._reason}")
        return Availability(True)
